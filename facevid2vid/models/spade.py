"""G's SPADE decoder (``generator_decoder="spade"``), as the open reimplementation's new generator has it.

Each residual block normalises its input per instance (no affine) and modulates it by a
per-pixel scale and shift that two 3x3 convs predict from the occluded, warped features
("label map", nearest-resized to the block's resolution). LeakyReLU(0.2) inside the blocks.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..config import ModelConfig
from .blocks import maybe_sn


class SPADE(nn.Module):
    """``instance_norm(x) * (1 + gamma(label)) + beta(label)``; label (B, Cl, h, w) is resized to x's size."""

    def __init__(self, channels: int, label_channels: int, hidden: int):
        super().__init__()
        self.shared = nn.Conv2d(label_channels, hidden, 3, padding=1)
        self.gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        label = F.interpolate(label, size=x.shape[2:], mode="nearest")
        actv = F.relu(self.shared(label))
        return F.instance_norm(x, eps=1e-5) * (1 + self.gamma(actv)) + self.beta(actv)


class SPADEResBlock(nn.Module):
    """SPADE -> LeakyReLU -> 3x3 conv, twice (cin -> min(cin, cout) -> cout), plus a shortcut.

    The shortcut is SPADE -> 1x1 conv (no bias) when the width changes, else the input.
    """

    def __init__(self, cin: int, cout: int, label_channels: int, hidden: int, sn: bool = False):
        super().__init__()
        mid = min(cin, cout)
        self.norm0 = SPADE(cin, label_channels, hidden)
        self.conv0 = maybe_sn(nn.Conv2d(cin, mid, 3, padding=1), sn)
        self.norm1 = SPADE(mid, label_channels, hidden)
        self.conv1 = maybe_sn(nn.Conv2d(mid, cout, 3, padding=1), sn)
        self.shortcut_norm = SPADE(cin, label_channels, hidden) if cin != cout else None
        self.shortcut = maybe_sn(nn.Conv2d(cin, cout, 1, bias=False), sn) if cin != cout else None

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        skip = x if self.shortcut is None else self.shortcut(self.shortcut_norm(x, label))
        dx = self.conv0(F.leaky_relu(self.norm0(x, label), 0.2))
        dx = self.conv1(F.leaky_relu(self.norm1(dx, label), 0.2))
        return skip + dx


class SPADEDecoder(nn.Module):
    """Features (B, gc, S/v, S/v) -> image (B, 3, S, S) in [0, 1]; they are also every block's label map.

    3x3 conv to 2 gc, ``num_2d_resblocks`` SPADE blocks at 2 gc, then per 2x nearest upsampling
    one block narrowing to gc, gc/4, gc/16, ... (the reference at v = 4: 512 -> 256 -> 64), and a
    LeakyReLU -> 3x3 conv -> sigmoid.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        gc, hidden, sn = cfg.generator_channels, cfg.spade_hidden, cfg.generator_spectral_norm
        stages = cfg.volume_downsample.bit_length() - 1
        widths = [2 * gc] + [max(1, gc // 4**i) for i in range(stages)]
        self.fc = nn.Conv2d(gc, 2 * gc, 3, padding=1)
        self.middle = nn.ModuleList(SPADEResBlock(2 * gc, 2 * gc, gc, hidden, sn) for _ in range(cfg.num_2d_resblocks))
        self.up = nn.ModuleList(SPADEResBlock(widths[i], widths[i + 1], gc, hidden, sn) for i in range(stages))
        self.to_image = nn.Conv2d(widths[-1], 3, 3, padding=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.fc(features)
        for block in self.middle:
            x = block(x, features)
        for block in self.up:
            x = block(F.interpolate(x, scale_factor=2.0, mode="nearest"), features)
        return torch.sigmoid(self.to_image(F.leaky_relu(x, 0.2)))
