"""What FOMM's three networks share: the 2D hourglass, the coordinate grid, the warp, the Gaussians.

The hourglass keeps the reference's module names (``encoder.down_blocks.i``, ``decoder.up_blocks.i``)
so a converted state dict only loses a prefix. Its blocks are facevid2vid's own 2D blocks (the same
layers: conv 3x3, batch norm, ReLU, 2x average pooling / 2x nearest upsampling).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from facevid2vid.geometry import make_coordinate_grid
from facevid2vid.models.blocks import DownBlock2d, UpBlock2d, level_width


class HourglassEncoder(nn.Module):
    """``num_blocks`` down blocks; returns the input and every block's output (the decoder's skips)."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int):
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock2d(in_features if i == 0 else level_width(block_expansion, i, max_features),
                        level_width(block_expansion, i + 1, max_features))
            for i in range(num_blocks))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))  # level i + 1: (B, w_{i+1}, H / 2**(i+1), W / 2**(i+1))
        return outs


class HourglassDecoder(nn.Module):
    """Up blocks from the innermost map, each output concatenated with the encoder map of its side."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int):
        super().__init__()
        self.up_blocks = nn.ModuleList(
            UpBlock2d((1 if i == num_blocks - 1 else 2) * level_width(block_expansion, i + 1, max_features),
                      level_width(block_expansion, i, max_features))
            for i in reversed(range(num_blocks)))
        self.out_filters = block_expansion + in_features

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        skips = list(skips)
        out = skips.pop()
        for block in self.up_blocks:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return out  # (B, block_expansion + in_features, H, W)


class Hourglass(nn.Module):
    """The reference's U-Net: (B, in_features, H, W) -> (B, block_expansion + in_features, H, W)."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int):
        super().__init__()
        self.encoder = HourglassEncoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = HourglassDecoder(block_expansion, in_features, num_blocks, max_features)
        self.out_filters = self.decoder.out_filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def coordinate_grid(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """(H, W, 2) pixel centres in (x, y) order on linspace(-1, 1) (the reference's make_coordinate_grid)."""
    return make_coordinate_grid(1, h, w, dtype=like.dtype, device=like.device)[0, ..., :2]


def gaussians(kp: torch.Tensor, h: int, w: int, variance: float) -> torch.Tensor:
    """``exp(-|z - kp_k|^2 / (2 variance))``: keypoints (B, K, 2) -> (B, K, H, W)."""
    b, k, _ = kp.shape
    diff = coordinate_grid(h, w, kp).view(1, 1, h, w, 2) - kp.view(b, k, 1, 1, 2)
    return torch.exp(-0.5 * diff.pow(2).sum(-1) / variance)


def warp(image: torch.Tensor, grid: torch.Tensor, align_corners: bool) -> torch.Tensor:
    """Bilinear backward warp with zero padding (grid_sample's defaults): (B, C, H, W) by (B, h, w, 2)."""
    dtype = torch.promote_types(image.dtype, grid.dtype)  # never round the flow to half precision
    return F.grid_sample(image.to(dtype), grid.to(dtype), mode="bilinear", padding_mode="zeros",
                         align_corners=align_corners)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (align_corners False) to ``size``, a no-op at that size already."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
