"""H/Delta: head pose (yaw, pitch, roll bins, translation) and expression deformation from one image."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..config import ModelConfig
from ..geometry import angles_from_bins
from ..structures import HeadMotion
from .blocks import cpu_channels_last
from .conventions import our_angles


@dataclass
class HeadOutputs:
    """H's five heads as they are: angle bin logits (B, bins), translation (B, 3), delta (B, K, 3)."""

    yaw_logits: torch.Tensor
    pitch_logits: torch.Tensor
    roll_logits: torch.Tensor
    translation: torch.Tensor
    delta: torch.Tensor


def head_outputs(module: nn.Module, feat: torch.Tensor) -> HeadOutputs:
    """The linear heads ``yaw, pitch, roll, translation, delta`` of ``module`` on pooled features (B, C)."""
    full = torch.promote_types(feat.dtype, torch.float32)  # motion leaves H in float32 even under autocast
    return HeadOutputs(module.yaw(feat), module.pitch(feat), module.roll(feat), module.translation(feat).to(full),
                       module.delta(feat).to(full).view(feat.shape[0], -1, 3))  # (B, K, 3)


def motion_from_heads(out: HeadOutputs, convention: str = "ours") -> HeadMotion:
    """:class:`HeadMotion` in our convention from the heads' outputs (models/conventions.py).

    With a converted network's convention the logits are not kept: they read out the
    reference's angles, not ours, so a loss on them would train the wrong thing.
    """
    angles = [angles_from_bins(out.yaw_logits), angles_from_bins(out.pitch_logits), angles_from_bins(out.roll_logits)]
    if convention == "ours":
        return HeadMotion(*angles, out.translation, out.delta, out.yaw_logits, out.pitch_logits, out.roll_logits)
    return HeadMotion(*our_angles(*angles, convention), out.translation, out.delta)


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
        self.convention = cfg.angle_convention
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

    def heads(self, image: torch.Tensor) -> HeadOutputs:
        feat = self.stages(self.stem(cpu_channels_last(image))).mean(dim=(2, 3))  # global average pool: (B, C)
        return head_outputs(self, feat)

    def forward(self, image: torch.Tensor) -> HeadMotion:
        return motion_from_heads(self.heads(image), self.convention)
