"""F: LivePortrait's appearance feature extractor, source image -> 3D feature volume f_s."""
from __future__ import annotations

import torch
from torch import nn

from .blocks import DownBlock2d, ResBlock3d, SameBlock2d
from .config import LivePortraitConfig


class AppearanceFeatureExtractor(nn.Module):
    """Image (B, 3, S, S) -> f_s (B, C, D, h, h), h = S / 2**appearance_num_down_blocks.

    Differs from our F in its 3x3 first conv; the 1x1 conv's C*D channels are read as C
    channels over D depth slices, then 3D residual blocks.
    """

    def __init__(self, cfg: LivePortraitConfig):
        super().__init__()
        be, cap = cfg.appearance_block_expansion, cfg.appearance_max_features
        self.channels, self.depth = cfg.feature_channels, cfg.feature_depth
        widths = [min(cap, be * 2**i) for i in range(cfg.appearance_num_down_blocks + 1)]
        widths[0] = be
        self.first = SameBlock2d(3, be, kernel=3)
        self.down = nn.Sequential(*(DownBlock2d(widths[i], widths[i + 1])
                                    for i in range(cfg.appearance_num_down_blocks)))
        self.to_volume = nn.Conv2d(widths[-1], self.channels * self.depth, 1)
        self.resblocks = nn.Sequential(*(ResBlock3d(self.channels) for _ in range(cfg.num_3d_resblocks)))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.to_volume(self.down(self.first(image)))  # (B, C*D, h, h)
        b, _, h, w = x.shape
        return self.resblocks(x.view(b, self.channels, self.depth, h, w))  # (B, C, D, h, h)
