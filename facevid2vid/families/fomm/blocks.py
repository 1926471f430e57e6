"""What FOMM's three networks share: the coordinate grid, the warp, the Gaussians.

Their 2D hourglass is :class:`facevid2vid.models.hourglass2d.Hourglass2d` (Monkey-Net's too), which
keeps the reference's module names (``encoder.down_blocks.i``, ``decoder.up_blocks.i``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from facevid2vid.geometry import make_coordinate_grid


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
