"""F: the appearance feature extractor, source image -> 3D feature volume f_s."""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .blocks import DownBlock2d, ResBlock3d, SameBlock2d, cpu_channels_last


class AppearanceFeatureExtractor(nn.Module):
    """Image (B, 3, S, S) -> volume (B, C, D, S/v, S/v), v = ``volume_downsample``.

    2D convolutions (the first ``appearance_first_kernel`` wide) at 1, 1/2, ..., 1/v resolution (widths
    doubling up to ``appearance_max_features``), a 1x1 conv to C*D channels that are read as C channels
    over D depth slices, then 3D residual blocks mix along depth.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        be = cfg.appearance_block_expansion
        self.channels, self.depth = cfg.feature_channels, cfg.feature_depth
        self.first = SameBlock2d(3, be, kernel=cfg.appearance_first_kernel)
        stages = cfg.volume_downsample.bit_length() - 1
        widths = [min(be * 2**i, cfg.appearance_max_features) for i in range(stages + 1)]
        self.down = nn.Sequential(*(DownBlock2d(widths[i], widths[i + 1]) for i in range(stages)))
        self.to_volume = nn.Conv2d(widths[-1], self.channels * self.depth, 1)
        self.resblocks = nn.Sequential(*(ResBlock3d(self.channels) for _ in range(cfg.num_3d_resblocks)))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.to_volume(self.down(self.first(cpu_channels_last(image))))  # (B, C*D, S/v, S/v)
        b, _, h, w = x.shape
        x = x.contiguous().view(b, self.channels, self.depth, h, w)  # (B, C, D, S/v, S/v)
        return self.resblocks(x)
