"""Convolution blocks of the LivePortrait networks (F and W).

Kept apart from ``facevid2vid/models/blocks.py`` on purpose: these must reproduce the
released checkpoints' arithmetic exactly (e.g. the hourglass ends in its own conv, BN
and ReLU), whatever our own networks' blocks become.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from facevid2vid.models.blocks import Conv3d


class SameBlock2d(nn.Module):
    """Conv -> BatchNorm -> ReLU (or LeakyReLU with slope 0.01) at constant resolution."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, leaky: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2)
        self.norm = nn.BatchNorm2d(cout)
        self.leaky = leaky

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(x))
        return F.leaky_relu(x, 0.01) if self.leaky else F.relu(x)


class DownBlock2d(nn.Module):
    """Conv 3x3 -> BN -> ReLU -> 2x2 average pooling."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.relu(self.norm(self.conv(x))), 2)


class ResBlock3d(nn.Module):
    """Pre-activation 3D residual block: x + conv2(relu(bn2(conv1(relu(bn1(x))))))."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = Conv3d(channels, channels, 3, padding=1)
        self.conv2 = Conv3d(channels, channels, 3, padding=1)
        self.norm1 = nn.BatchNorm3d(channels)
        self.norm2 = nn.BatchNorm3d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        return x + self.conv2(F.relu(self.norm2(out)))


class DownBlock3d(nn.Module):
    """Conv 3x3x3 -> BN -> ReLU -> average pooling of height and width by 2 (depth kept)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = Conv3d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm3d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool3d(F.relu(self.norm(self.conv(x))), (1, 2, 2))


class UpBlock3d(nn.Module):
    """Nearest upsampling of height and width by 2 -> conv 3x3x3 -> BN -> ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = Conv3d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm3d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
        return F.relu(self.norm(self.conv(x)))


def _width(block_expansion: int, level: int, max_features: int) -> int:
    return min(max_features, block_expansion * 2**level)


class Hourglass3d(nn.Module):
    """3D U-Net with skips; the concatenated output goes through a last conv, BN and ReLU.

    ``out_channels = block_expansion + in_channels`` (the input is the last skip).
    """

    def __init__(self, in_channels: int, block_expansion: int, num_blocks: int, max_features: int):
        super().__init__()
        self.down = nn.ModuleList(
            DownBlock3d(in_channels if i == 0 else _width(block_expansion, i, max_features),
                        _width(block_expansion, i + 1, max_features)) for i in range(num_blocks))
        self.up = nn.ModuleList(
            UpBlock3d((1 if i == num_blocks - 1 else 2) * _width(block_expansion, i + 1, max_features),
                      _width(block_expansion, i, max_features)) for i in reversed(range(num_blocks)))
        self.out_channels = block_expansion + in_channels
        self.conv = Conv3d(self.out_channels, self.out_channels, 3, padding=1)
        self.norm = nn.BatchNorm3d(self.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [x]
        for block in self.down:
            skips.append(block(skips[-1]))
        out = skips.pop()
        for block in self.up:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return F.relu(self.norm(self.conv(out)))
