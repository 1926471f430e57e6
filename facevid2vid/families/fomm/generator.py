"""G: the occlusion-aware generator, source image + dense motion -> the driving frame.

A Johnson-style encoder-decoder: a 7x7 block and ``num_down_blocks`` down blocks encode the source
(once per source: :meth:`OcclusionAwareGenerator.encode`), the dense flow deforms that feature map
(``grid_sample``) and the occlusion map multiplies it (both resized to the map when their sides
differ), then residual bottleneck blocks, up blocks and a 7x7 conv with a sigmoid decode it.
M is a separate network here (the reference's generator owns it as ``dense_motion_network``).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from facevid2vid.models.blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d, level_width

from .blocks import resize, warp
from .config import FOMMConfig
from .dense_motion import DenseMotion


class OcclusionAwareGenerator(nn.Module):
    """Widths ``min(block_expansion * 2**i, max_features)`` at level i (the encoder output at level n)."""

    def __init__(self, cfg: FOMMConfig):
        super().__init__()
        e, top, n = cfg.block_expansion, cfg.max_features, cfg.num_down_blocks
        self.align_corners = cfg.align_corners
        self.first = SameBlock2d(3, e, kernel=7)
        self.down_blocks = nn.ModuleList(
            DownBlock2d(level_width(e, i, top), level_width(e, i + 1, top)) for i in range(n))
        self.bottleneck = nn.Sequential(OrderedDict(
            (f"r{i}", ResBlock2d(level_width(e, n, top))) for i in range(cfg.num_bottleneck_blocks)))
        self.up_blocks = nn.ModuleList(
            UpBlock2d(level_width(e, n - i, top), level_width(e, n - i - 1, top)) for i in range(n))
        self.final = nn.Conv2d(e, 3, 7, padding=3)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Source (B, 3, S, S) -> features (B, C, S / 2**n, S / 2**n)."""
        out = self.first(image)
        for block in self.down_blocks:
            out = block(out)
        return out

    def deform(self, features: torch.Tensor, motion: DenseMotion) -> torch.Tensor:
        """The source features warped by the dense flow and multiplied by the occlusion map."""
        size = tuple(features.shape[-2:])
        flow = resize(motion.deformation.permute(0, 3, 1, 2), size).permute(0, 2, 3, 1)  # (B, h, w, 2)
        out = warp(features, flow, self.align_corners).to(features.dtype)
        if motion.occlusion is not None:
            out = out * resize(motion.occlusion, size).to(out.dtype)
        return out

    def decode(self, deformed: torch.Tensor) -> torch.Tensor:
        """Deformed features -> image (B, 3, S, S) in (0, 1)."""
        out = self.bottleneck(deformed)
        for block in self.up_blocks:
            out = block(out)
        return torch.sigmoid(self.final(out))

    def forward(self, features: torch.Tensor, motion: DenseMotion) -> torch.Tensor:
        return self.decode(self.deform(features, motion))
