"""K: the keypoint detector, image -> K keypoints in [-1, 1] and a local affine Jacobian at each.

An hourglass on the anti-aliased, downscaled image; a 7x7 conv makes one heatmap per keypoint,
softmax over its pixels at temperature 0.1; the keypoint is the heatmap's expected coordinate.
A second 7x7 conv makes 4 maps per keypoint (zero weights and an identity bias at initialisation,
so every Jacobian starts as I); the Jacobian is their heatmap-weighted sum (FOMM, Sec. 3.1).
"""
from __future__ import annotations

import torch
from torch import nn

from facevid2vid.geometry import no_autocast
from facevid2vid.models.hourglass2d import Hourglass2d
from facevid2vid.models.keypoints import GaussianDownsample
from facevid2vid.structures import KeypointMotion

from .blocks import coordinate_grid
from .config import FOMMConfig


class KPDetector(nn.Module):
    """Images (B, 3, S, S) in [0, 1] -> :class:`KeypointMotion` (kp (B, K, 2), jacobian (B, K, 2, 2) or None)."""

    def __init__(self, cfg: FOMMConfig):
        super().__init__()
        k = cfg.num_keypoints
        self.temperature = cfg.temperature
        self.predictor = Hourglass2d(3, cfg.kp_block_expansion, cfg.kp_num_blocks, cfg.kp_max_features)
        self.kp = nn.Conv2d(self.predictor.out_channels, k, 7, padding=cfg.kp_padding)
        self.jacobian = None
        if cfg.estimate_jacobian:
            self.num_jacobian_maps = 1 if cfg.single_jacobian_map else k
            self.jacobian = nn.Conv2d(self.predictor.out_channels, 4 * self.num_jacobian_maps, 7,
                                      padding=cfg.kp_padding)
            nn.init.zeros_(self.jacobian.weight)
            with torch.no_grad():
                self.jacobian.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]).repeat(self.num_jacobian_maps))
        # the reference's AntiAliasInterpolation2d (its kernel buffer `down.weight` is recomputed, not stored)
        self.down = GaussianDownsample(cfg.kp_scale_factor) if cfg.kp_scale_factor != 1 else nn.Identity()

    def heatmaps(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(softmax heatmaps (B, K, h, w) float32, hourglass features (B, C, h', w'))."""
        features = self.predictor(self.down(image))
        logits = self.kp(features).float()  # (B, K, h, w)
        b, k, h, w = logits.shape
        heat = torch.softmax(logits.view(b, k, h * w) / self.temperature, dim=2)
        return heat.view(b, k, h, w), features

    def forward(self, image: torch.Tensor) -> KeypointMotion:
        heat, features = self.heatmaps(image)
        b, k, h, w = heat.shape
        with no_autocast(heat):  # sums over h * w terms: float32 even under autocast
            kp = torch.einsum("bkhw,hwc->bkc", heat, coordinate_grid(h, w, heat))  # expected (x, y)
        if self.jacobian is None:
            return KeypointMotion(kp)
        maps = self.jacobian(features).float().view(b, self.num_jacobian_maps, 4, h, w)
        with no_autocast(heat):
            jacobian = torch.einsum("bkhw,bkchw->bkc", heat, maps.expand(b, k, 4, h, w))  # (B, K, 4)
        return KeypointMotion(kp, jacobian.view(b, k, 2, 2))  # row-major [[j00, j01], [j10, j11]]
