"""H/Delta: head pose (yaw, pitch, roll bins, translation) and expression deformation from one image."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..config import ModelConfig
from ..geometry import angles_from_bins
from ..structures import HeadMotion


class Bottleneck(nn.Module):
    """ResNet bottleneck: 1x1 reduce -> 3x3 (strided) -> 1x1 expand, plus a projected shortcut."""

    def __init__(self, cin: int, mid: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.norm1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, cout, 1, bias=False)
        self.norm3 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = F.relu(self.norm2(self.conv2(out)))
        out = self.norm3(self.conv3(out))
        skip = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + skip)


class HeadPoseExpressionEstimator(nn.Module):
    """Image (B, 3, S, S) -> :class:`HeadMotion` (angles in degrees, translation, delta (B, K, 3), logits).

    A ResNet-50-like trunk (``he_layers`` bottlenecks per stage, base width ``he_block_expansion``)
    with five linear heads. Angles are 66-bin classifications read out as ``3 * E[bin] - 99``.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        be = cfg.he_block_expansion
        self.num_keypoints = cfg.num_keypoints
        self.stem = nn.Sequential(
            nn.Conv2d(3, be, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(be), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages, cin = [], be
        for i, count in enumerate(cfg.he_layers):
            mid = be * 2**i
            blocks = []
            for j in range(count):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(Bottleneck(cin, mid, 4 * mid, stride))
                cin = 4 * mid
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.yaw = nn.Linear(cin, cfg.he_num_bins)
        self.pitch = nn.Linear(cin, cfg.he_num_bins)
        self.roll = nn.Linear(cin, cfg.he_num_bins)
        self.translation = nn.Linear(cin, 3)
        self.delta = nn.Linear(cin, 3 * cfg.num_keypoints)

    def forward(self, image: torch.Tensor) -> HeadMotion:
        feat = self.stages(self.stem(image)).mean(dim=(2, 3))  # global average pool: (B, C)
        yaw_l, pitch_l, roll_l = self.yaw(feat), self.pitch(feat), self.roll(feat)
        full = torch.promote_types(feat.dtype, torch.float32)  # motion leaves H in float32 even under autocast
        return HeadMotion(
            yaw=angles_from_bins(yaw_l),
            pitch=angles_from_bins(pitch_l),
            roll=angles_from_bins(roll_l),
            translation=self.translation(feat).to(full),
            delta=self.delta(feat).to(full).view(-1, self.num_keypoints, 3),  # (B, K, 3)
            yaw_logits=yaw_l,
            pitch_logits=pitch_l,
            roll_logits=roll_l,
        )
