"""K: Monkey-Net's unsupervised keypoint detector, one frame -> K keypoints (x, y) in [-1, 1].

An hourglass on a downscaled copy of the frame gives K heatmaps; a softmax over each
heatmap's pixels (temperature ``cfg.temperature``) makes it a distribution, and the keypoint
is its expected coordinate. No Jacobians (FOMM's addition) and no covariance: the paper also
reads a covariance off each heatmap, here the Gaussians are isotropic with ``cfg.kp_variance``.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from facevid2vid.models.hourglass2d import Hourglass2d

from .config import MonkeyNetConfig
from .movement import coordinate_grid


class KPDetector(nn.Module):
    """Images (B, 3, S, S) -> keypoints (B, K, 2) in (x, y) order."""

    def __init__(self, cfg: MonkeyNetConfig):
        super().__init__()
        self.scale = cfg.kp_scale_factor
        self.side = cfg.side(cfg.kp_scale_factor)
        self.temperature = cfg.temperature
        self.predictor = Hourglass2d(3, cfg.kp_block_expansion, cfg.kp_num_blocks, cfg.kp_max_features)
        self.heatmap = nn.Conv2d(self.predictor.out_channels, cfg.num_keypoints, 3, padding=1)

    def heatmaps(self, image: torch.Tensor) -> torch.Tensor:
        """(B, K, s, s) softmax-normalised heatmaps, s = the side at ``kp_scale_factor``."""
        if self.scale != 1:
            image = F.interpolate(image, size=(self.side, self.side), mode="bilinear", align_corners=False,
                                  antialias=True)
        logits = self.heatmap(self.predictor(image))  # (B, K, s, s)
        b, k, h, w = logits.shape
        prob = F.softmax(logits.float().view(b, k, h * w) / self.temperature, dim=2)
        return prob.view(b, k, h, w)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        heat = self.heatmaps(image)  # (B, K, s, s)
        grid = coordinate_grid(heat.shape[2], heat.shape[3], heat)  # (s, s, 2)
        # expected (x, y) as a sum of products, not a matmul: autocast would round it to bfloat16
        return (heat.unsqueeze(-1) * grid).sum(dim=(2, 3))  # (B, K, s, s, 2) -> (B, K, 2)
