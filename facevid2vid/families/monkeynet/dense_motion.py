"""M: Monkey-Net's dense motion network, keypoints of source and driving -> a dense backward flow.

Per motion m (0: background, k: keypoint k), the input holds the heatmap difference
``G(x_d,k) - G(x_s,k)`` (zero for the background) and the source moved by that motion's
displacement ``x_s,k - x_d,k``. Grouped 1x1 blocks (one group per motion) and an hourglass
predict K + 1 mask logits and a 2-channel residual; the flow is
``p + sum_m mask_m (x_s,m - x_d,m) + residual(p)``. All at ``cfg.dense_motion_scale_factor``
of the image.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from facevid2vid.models.hourglass2d import Hourglass2d

from .config import MonkeyNetConfig
from .movement import coordinate_grid, deformed_sources, displacements


@dataclass
class DenseMotion:
    flow: torch.Tensor  # (B, h, w, 2) backward flow into the source, grid_sample's (x, y)
    mask: torch.Tensor  # (B, K+1, h, w) softmax weights of the coarse motions (index 0: background)
    residual: torch.Tensor  # (B, h, w, 2) the predicted correction added to the masked displacements


class DenseMotionNetwork(nn.Module):
    """(source at the motion side, heatmap difference, keypoints) -> :class:`DenseMotion`."""

    def __init__(self, cfg: MonkeyNetConfig):
        super().__init__()
        k = cfg.num_keypoints
        channels = (k + 1) * 4  # per motion: heatmap difference + 3 colour channels of the moved source
        self.group_blocks = nn.Sequential(*(
            nn.Sequential(nn.Conv2d(channels, channels, 1, groups=k + 1), nn.BatchNorm2d(channels), nn.ReLU())
            for _ in range(cfg.dense_motion_num_group_blocks)))
        self.hourglass = Hourglass2d(channels, cfg.dense_motion_block_expansion, cfg.dense_motion_num_blocks,
                                     cfg.dense_motion_max_features)
        self.out = nn.Conv2d(self.hourglass.out_channels, k + 1 + 2, 3, padding=1)
        # start from the identity flow: zero weights, the background favoured by its bias
        nn.init.zeros_(self.out.weight)
        with torch.no_grad():
            self.out.bias.zero_()
            self.out.bias[0] = cfg.background_init

    def forward(self, source: torch.Tensor, heatmap: torch.Tensor, kp_driving: torch.Tensor,
                kp_source: torch.Tensor) -> DenseMotion:
        """source (B|1, 3, h, w) at the motion side, heatmap (B, K, h, w), keypoints (B|1, K, 2)."""
        b, k, h, w = heatmap.shape
        shifts = displacements(kp_driving, kp_source)  # (B, K+1, 2)
        moved = deformed_sources(source, shifts)  # (B, K+1, 3, h, w)
        heat = torch.cat([heatmap.new_zeros(b, 1, h, w), heatmap], dim=1).to(moved.dtype)  # (B, K+1, h, w)
        x = torch.cat([heat.unsqueeze(2), moved], dim=2).view(b, (k + 1) * 4, h, w)  # grouped per motion
        out = self.out(self.hourglass(self.group_blocks(x))).float()  # (B, K+1+2, h, w)
        mask = F.softmax(out[:, :k + 1], dim=1)
        residual = out[:, k + 1:].permute(0, 2, 3, 1)  # (B, h, w, 2)
        coarse = (mask.unsqueeze(-1) * shifts.view(b, k + 1, 1, 1, 2)).sum(dim=1)  # (B, h, w, 2)
        flow = coordinate_grid(h, w, coarse) + coarse + residual
        return DenseMotion(flow, mask, residual)
