"""L: the canonical keypoint detector, source image -> K identity-specific 3D keypoints."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..config import ModelConfig
from ..geometry import make_coordinate_grid, no_autocast
from .blocks import DownBlock2d, UpBlock3d, level_width


class CanonicalKeypointDetector(nn.Module):
    """Image (B, 3, S, S) -> canonical keypoints (B, K, 3) in [-1, 1], (x, y, z) order.

    Works on a copy downscaled by ``kp_scale_factor``: a 2D encoder, a 1x1 conv whose
    channels are read as a (C, kp_depth) volume, a 3D decoder back to the downscaled size,
    K heatmaps (7x7x7 conv) and a soft-argmax with temperature ``kp_temperature``.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        be, nb, mx = cfg.kp_block_expansion, cfg.kp_num_blocks, cfg.kp_max_features
        self.scale = cfg.kp_scale_factor
        self.depth = cfg.kp_depth
        self.temperature = cfg.kp_temperature
        size = round(cfg.image_size * self.scale)
        if size % (2**nb) != 0:
            raise ValueError(f"keypoint input {size}px is not divisible by 2**kp_num_blocks={2 ** nb}")
        self.encoder = nn.Sequential(
            *(DownBlock2d(3 if i == 0 else level_width(be, i, mx), level_width(be, i + 1, mx)) for i in range(nb))
        )
        self.reshape_channels = level_width(be, nb, mx)
        self.to_volume = nn.Conv2d(self.reshape_channels, self.reshape_channels * self.depth, 1)
        self.decoder = nn.Sequential(
            *(UpBlock3d(level_width(be, i + 1, mx), level_width(be, i, mx)) for i in reversed(range(nb)))
        )
        self.heatmap = nn.Conv3d(be, cfg.num_keypoints, 7, padding=3)

    def downscale(self, image: torch.Tensor) -> torch.Tensor:
        if self.scale == 1.0:
            return image
        return F.interpolate(image, scale_factor=self.scale, mode="bilinear", align_corners=False, antialias=True)

    def heatmaps(self, image: torch.Tensor) -> torch.Tensor:
        """Unnormalised keypoint heatmaps (B, K, kp_depth, s, s), s = S * kp_scale_factor."""
        x = self.to_volume(self.encoder(self.downscale(image)))  # (B, Cr*Dk, s/2^nb, s/2^nb)
        b, _, h, w = x.shape
        x = x.view(b, self.reshape_channels, self.depth, h, w)  # (B, Cr, Dk, s/2^nb, s/2^nb)
        return self.heatmap(self.decoder(x))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        heat = self.heatmaps(image)
        b, k, d, h, w = heat.shape
        # soft-argmax in float32 (keypoints need more than bfloat16's ~3 digits)
        dtype = torch.promote_types(heat.dtype, torch.float32)
        with no_autocast(heat):
            prob = torch.softmax(heat.view(b, k, -1).to(dtype) / self.temperature, dim=-1)  # (B, K, D*H*W)
            grid = make_coordinate_grid(d, h, w, dtype=dtype, device=prob.device).view(-1, 3)
            return prob @ grid  # expected coordinate, (B, K, 3)
