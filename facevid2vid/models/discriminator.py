"""D: multi-scale patch discriminator with spectral norm, optionally seeing keypoint heatmaps."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..config import ModelConfig
from ..geometry import kp2gaussian_2d
from .blocks import level_width, maybe_sn


class _DiscBlock(nn.Module):
    """Conv 4x4 (spectral norm) -> instance norm (not on the first block) -> LeakyReLU -> 2x pooling."""

    def __init__(self, cin: int, cout: int, norm: bool):
        super().__init__()
        self.conv = maybe_sn(nn.Conv2d(cin, cout, 4, padding=1), True)
        self.norm = nn.InstanceNorm2d(cout, affine=True) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        return F.avg_pool2d(F.leaky_relu(x, 0.2), 2)


class PatchDiscriminator(nn.Module):
    """One scale: image (+ heatmaps) -> (block features, patch logits (B, 1, h, w))."""

    def __init__(self, cin: int, cfg: ModelConfig):
        super().__init__()
        be, mx = cfg.disc_block_expansion, cfg.disc_max_features
        self.blocks = nn.ModuleList(
            _DiscBlock(cin if i == 0 else level_width(be, i, mx), level_width(be, i + 1, mx), norm=i > 0)
            for i in range(cfg.disc_num_blocks)
        )
        self.logits = maybe_sn(nn.Conv2d(level_width(be, cfg.disc_num_blocks, mx), 1, 1), True)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features, self.logits(x)


class MultiScaleDiscriminator(nn.Module):
    """``D(image, kp=None)`` -> list over ``disc_scales`` of (features list, logits).

    With ``disc_use_kp`` the keypoints' (x, y) Gaussians are concatenated to the image.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.scales = tuple(cfg.disc_scales)
        self.use_kp = cfg.disc_use_kp
        self.variance = cfg.kp_variance
        cin = 3 + (cfg.num_keypoints if cfg.disc_use_kp else 0)
        self.discs = nn.ModuleList(PatchDiscriminator(cin, cfg) for _ in self.scales)

    def forward(self, image: torch.Tensor, kp: torch.Tensor | None = None):
        if self.use_kp and kp is None:
            raise ValueError("this discriminator was built with disc_use_kp=True: pass the keypoints")
        results = []
        for scale, disc in zip(self.scales, self.discs):
            x = image
            if scale != 1.0:
                x = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False, antialias=True)
            if self.use_kp:
                heat = kp2gaussian_2d(kp.detach(), x.shape[-2:], self.variance).to(x.dtype)
                x = torch.cat([x, heat], dim=1)
            results.append(disc(x))
        return results
