"""Monkey-Net's movement embedding: keypoint heatmaps, coarse displacements and 2D warps.

Coordinates are normalised to [-1, 1] in (x, y) order with ``align_corners=True``, the
convention of :func:`facevid2vid.geometry.make_coordinate_grid`; a flow (B, H, W, 2) holds,
for each output pixel, the source point it samples (``grid_sample``'s grid).
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from facevid2vid.geometry import kp2gaussian_2d, make_coordinate_grid


def coordinate_grid(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """(H, W, 2) pixel centres (x, y) in [-1, 1] (read-only: a cached tensor)."""
    return make_coordinate_grid(1, h, w, dtype=like.dtype, device=like.device)[0, ..., :2]


def heatmap_difference(kp_driving: torch.Tensor, kp_source: torch.Tensor, side: int, variance: float,
                       norm: float) -> torch.Tensor:
    """``(G(x_d) - G(x_s)) / norm``: the paper's keypoint embedding, (B, K, 2) each -> (B, K, side, side).

    A batch-1 source broadcasts to the driving batch.
    """
    kp_driving, kp_source = kp_driving.float(), kp_source.float()
    heat_d = kp2gaussian_2d(kp_driving, (side, side), variance)
    heat_s = kp2gaussian_2d(kp_source, (side, side), variance)
    return (heat_d - heat_s) / norm


def displacements(kp_driving: torch.Tensor, kp_source: torch.Tensor) -> torch.Tensor:
    """The K + 1 coarse motions: 0 for the background, then ``x_s,k - x_d,k``: (B, K, 2) -> (B, K+1, 2)."""
    shift = kp_source.float() - kp_driving.float()  # (B, K, 2), batch-1 source broadcast
    return torch.cat([shift.new_zeros(shift.shape[0], 1, 2), shift], dim=1)


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp (B, C, H, W) by a flow (B, H', W', 2) -> (B, C, H', W'), zero outside, in full precision."""
    dtype = torch.promote_types(image.dtype, flow.dtype)
    return F.grid_sample(image.to(dtype), flow.to(dtype), mode="bilinear", padding_mode="zeros",
                         align_corners=True)


def resize_flow(flow: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """A flow (B, H', W', 2) resampled to (B, h, w, 2); ``align_corners=True`` keeps the identity exact."""
    if flow.shape[1:3] == (h, w):
        return flow
    out = F.interpolate(flow.permute(0, 3, 1, 2), size=(h, w), mode="bilinear", align_corners=True)
    return out.permute(0, 2, 3, 1)


def deformed_sources(source: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """The source moved by each coarse motion: (B|1, C, H, W), shifts (B, M, 2) -> (B, M, C, H, W)."""
    b, m = shifts.shape[:2]
    c, h, w = source.shape[1:]
    grid = coordinate_grid(h, w, shifts)
    flows = grid.view(1, 1, h, w, 2) + shifts.view(b, m, 1, 1, 2)  # (B, M, H, W, 2)
    images = source.expand(b, -1, -1, -1).unsqueeze(1).expand(b, m, c, h, w).reshape(b * m, c, h, w)
    return warp(images, flows.reshape(b * m, h, w, 2)).view(b, m, c, h, w)
