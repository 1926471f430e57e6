"""H/Delta with the open reimplementation's ResNet-50-like trunk (``he_trunk="widening"``).

Unlike torchvision's ResNet (our "bottleneck" trunk, models/pose_expression.py), every conv has a
bias, each stage starts with a 1x1 conv -> BN -> ReLU that widens the features to the stage's width,
and the bottlenecks keep that width (w -> w/4 -> w/4 -> w) with a 1x1 projected shortcut only on
the strided first block of stages 2..4.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..config import ModelConfig
from ..structures import HeadMotion
from .blocks import cpu_channels_last
from .pose_expression import HeadOutputs, head_outputs, motion_from_heads


class ConvNorm(nn.Module):
    """Conv (with bias) -> BatchNorm, the activation left to the caller."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)
        self.norm = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class WideBottleneck(nn.Module):
    """w -> w/4 (1x1) -> w/4 (3x3, strided) -> w (1x1), plus the input (projected when strided), ReLU."""

    def __init__(self, width: int, stride: int = 1):
        super().__init__()
        self.reduce = ConvNorm(width, width // 4)
        self.spatial = ConvNorm(width // 4, width // 4, 3, stride)
        self.expand = ConvNorm(width // 4, width)
        self.shortcut = ConvNorm(width, width, 1, stride) if stride != 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand(F.relu(self.spatial(F.relu(self.reduce(x)))))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class WideningStage(nn.Module):
    """1x1 widening conv -> BN -> ReLU, then ``count`` bottlenecks (the first strided unless ``first``)."""

    def __init__(self, cin: int, width: int, count: int, first: bool):
        super().__init__()
        self.widen = ConvNorm(cin, width)
        self.blocks = nn.Sequential(*(WideBottleneck(width, 2 if (j == 0 and not first) else 1) for j in range(count)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(F.relu(self.widen(x)))


class WideningPoseExpressionEstimator(nn.Module):
    """Image (B, 3, S, S) -> :class:`HeadMotion`; stage i is ``4 * he_block_expansion * 2**i`` wide.

    Stem: 7x7 stride-2 conv -> BN -> ReLU -> 3x3 stride-2 max pool. The heads and the angle
    read-out are those of :class:`~.pose_expression.HeadPoseExpressionEstimator`.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        be = cfg.he_block_expansion
        self.convention = cfg.angle_convention
        self.stem = ConvNorm(3, be, 7, stride=2)
        widths = [4 * be * 2**i for i in range(len(cfg.he_layers))]
        self.stages = nn.Sequential(*(WideningStage(widths[i - 1] if i else be, widths[i], count, i == 0)
                                      for i, count in enumerate(cfg.he_layers)))
        cin = widths[-1]
        self.yaw = nn.Linear(cin, cfg.he_num_bins)
        self.pitch = nn.Linear(cin, cfg.he_num_bins)
        self.roll = nn.Linear(cin, cfg.he_num_bins)
        self.translation = nn.Linear(cin, 3)
        self.delta = nn.Linear(cin, 3 * cfg.num_keypoints)

    def heads(self, image: torch.Tensor) -> HeadOutputs:
        x = F.max_pool2d(F.relu(self.stem(cpu_channels_last(image))), 3, stride=2, padding=1)
        feat = self.stages(x).mean(dim=(2, 3))  # global average pool: (B, C)
        return head_outputs(self, feat)

    def forward(self, image: torch.Tensor) -> HeadMotion:
        return motion_from_heads(self.heads(image), self.convention)
