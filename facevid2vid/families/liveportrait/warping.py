"""W: LivePortrait's warping module, the dense-motion design of face-vid2vid at K = 21.

Differences from our M (facevid2vid/models/motion.py), all needed to reproduce the released
weights: per-keypoint flows are pure translations ``p - x_d,k + x_s,k`` (no rotation),
``grid_sample`` uses ``align_corners=False`` with zero padding, the hourglass ends in its own
conv/BN/ReLU, and after warping f_s two 2D convs (``third``, ``fourth``) map the volume to
G's input, multiplied by the occlusion map.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from facevid2vid.models.blocks import Conv3d
from facevid2vid.structures import MotionSourceCache

from .blocks import Hourglass3d, SameBlock2d
from .config import LivePortraitConfig


@dataclass
class WarpingOutput:
    features: torch.Tensor  # (B, warped_channels, h, w) G's input
    deformation: torch.Tensor  # (B, D, h, w, 3) composed backward flow (x, y, z)
    mask: torch.Tensor  # (B, K+1, D, h, w) flow weights (index 0: background)
    occlusion: torch.Tensor | None  # (B, 1, h, w)


def coordinate_grid(d: int, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """(D, H, W, 3) grid of (x, y, z) in [-1, 1]: ``2 * i / (n - 1) - 1`` per axis, as the reference."""
    def axis(n):
        return 2 * (torch.arange(n, dtype=like.dtype, device=like.device) / (n - 1)) - 1

    z, y, x = torch.meshgrid(axis(d), axis(h), axis(w), indexing="ij")
    return torch.stack([x, y, z], dim=-1)


def gaussians(kp: torch.Tensor, spatial: tuple[int, int, int], variance: float) -> torch.Tensor:
    """``exp(-|p - x_k|^2 / (2 variance))``: kp (B, K, 3) -> (B, K, D, H, W)."""
    b, k, _ = kp.shape
    grid = coordinate_grid(*spatial, like=kp)
    diff = grid.view(1, 1, *spatial, 3) - kp.view(b, k, 1, 1, 1, 3)
    return torch.exp(-0.5 * (diff ** 2).sum(-1) / variance)


class DenseMotion(nn.Module):
    """(f_s, x_s, x_d) -> composed flow, masks and occlusion."""

    def __init__(self, cfg: LivePortraitConfig):
        super().__init__()
        k, cc = cfg.num_keypoints, cfg.motion_compressed_channels
        self.num_keypoints, self.variance = k, cfg.kp_variance
        self.compress = Conv3d(cfg.feature_channels, cc, 1)
        self.norm = nn.BatchNorm3d(cc)
        self.hourglass = Hourglass3d((k + 1) * (cc + 1), cfg.motion_block_expansion, cfg.motion_num_blocks,
                                     cfg.motion_max_features)
        out = self.hourglass.out_channels
        self.mask = Conv3d(out, k + 1, 7, padding=3)
        self.occlusion = nn.Conv2d(out * cfg.feature_depth, 1, 7, padding=3) if cfg.estimate_occlusion else None

    def prepare_source(self, features: torch.Tensor, kp_source: torch.Tensor) -> MotionSourceCache:
        """The source-only part: compressed f_s (B, cc, D, h, w) and Gaussians at x_s (B, K, D, h, w)."""
        compressed = F.relu(self.norm(self.compress(features)))
        return MotionSourceCache(compressed, gaussians(kp_source, tuple(compressed.shape[2:]), self.variance))

    def forward(self, features: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor,
                cache: MotionSourceCache | None = None):
        """-> (deformation (B, D, h, w, 3), mask (B, K+1, D, h, w), occlusion (B, 1, h, w) or None)."""
        b, k = kp_driving.shape[:2]
        cache = cache or self.prepare_source(features, kp_source)
        comp = cache.compressed.expand(b, *cache.compressed.shape[1:])  # (B, cc, D, h, w)
        cc, d, h, w = comp.shape[1:]
        grid = coordinate_grid(d, h, w, like=kp_source).view(1, 1, d, h, w, 3)
        flows = torch.cat([grid.expand(b, 1, d, h, w, 3), grid - kp_driving.view(b, k, 1, 1, 1, 3)
                           + kp_source.expand(b, -1, -1).view(b, k, 1, 1, 1, 3)], dim=1)  # (B, K+1, D, h, w, 3)
        repeated = comp.unsqueeze(1).expand(b, k + 1, cc, d, h, w).reshape(b * (k + 1), cc, d, h, w)
        warped = F.grid_sample(repeated, flows.reshape(b * (k + 1), d, h, w, 3), align_corners=False)
        warped = warped.view(b, k + 1, cc, d, h, w)
        heat = gaussians(kp_driving, (d, h, w), self.variance) - cache.heat.expand(b, -1, -1, -1, -1)
        heat = torch.cat([heat.new_zeros(b, 1, d, h, w), heat], dim=1).unsqueeze(2)  # (B, K+1, 1, D, h, w)
        pred = self.hourglass(torch.cat([heat, warped], dim=2).view(b, -1, d, h, w))
        mask = torch.softmax(self.mask(pred), dim=1)  # (B, K+1, D, h, w)
        deformation = (flows * mask.unsqueeze(-1)).sum(dim=1)  # (B, D, h, w, 3)
        occlusion = None
        if self.occlusion is not None:
            occlusion = torch.sigmoid(self.occlusion(pred.reshape(b, -1, h, w)))
        return deformation, mask, occlusion


class WarpingModule(nn.Module):
    """f_s warped by the dense motion of (x_s -> x_d), flattened over depth, two 2D convs, times occlusion."""

    def __init__(self, cfg: LivePortraitConfig):
        super().__init__()
        self.dense_motion = DenseMotion(cfg)
        self.third = SameBlock2d(cfg.feature_channels * cfg.feature_depth, cfg.warped_channels, 3, leaky=True)
        self.fourth = nn.Conv2d(cfg.warped_channels, cfg.warped_channels, 1)

    def forward(self, features: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor,
                cache: MotionSourceCache | None = None) -> WarpingOutput:
        """features (B or 1, C, D, h, w); kp_source (B or 1, K, 3); kp_driving (B, K, 3)."""
        b = kp_driving.shape[0]
        deformation, mask, occlusion = self.dense_motion(features, kp_source, kp_driving, cache)
        volume = features.expand(b, *features.shape[1:])
        out = F.grid_sample(volume, deformation, align_corners=False)  # (B, C, D, h, w)
        out = self.fourth(self.third(out.reshape(b, -1, *out.shape[3:])))
        if occlusion is not None:
            out = out * occlusion
        return WarpingOutput(out, deformation, mask, occlusion)
