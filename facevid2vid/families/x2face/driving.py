"""The driving network: driving frame -> driving vector (the motion code) -> 2D sampling field.

An encoder-decoder without skip connections (the paper's driving network), so everything the
decoder knows of the frame passes through the bottleneck: the driving vector, a real (N, D)
vector that :class:`~facevid2vid.structures.CodeMotion` carries (and the codec sends).

The code layer: the encoder's ``driving_num_blocks`` levels end on a small map (2x2 at 256 px
for the paper's model); a linear layer over that flattened map gives the D-dimensional code.
In the paper's network this is its eighth 4x4 stride-2 conv, which on a 2x2 map is exactly
such a linear map (its bottleneck is 1x1); a linear layer keeps the code a vector at any input
size. The decoder mirrors it: a linear layer back to the map, then ``driving_num_blocks`` 2x
up levels to the full-size field.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from facevid2vid.models.blocks import level_width

from .blocks import UNetDown, UNetUp, field_head, sampling_grid, to_signed
from .config import X2FaceConfig


class DrivingNetwork(nn.Module):
    """Encoder (``encode``: frames -> code) and decoder (``decode``: code -> sampling grid)."""

    def __init__(self, cfg: X2FaceConfig):
        super().__init__()
        self.residual_flow = cfg.residual_flow
        n, side = cfg.driving_num_blocks, cfg.driving_code_side
        widths = [level_width(cfg.driving_block_expansion, i, cfg.driving_max_features) for i in range(n)]
        self.bottleneck_shape = (widths[-1], side, side)
        flat = widths[-1] * side * side
        self.down_blocks = nn.ModuleList(
            UNetDown(3 if i == 0 else widths[i - 1], widths[i], activate=i > 0, norm=i > 0) for i in range(n))
        self.to_code = nn.Linear(flat, cfg.motion_dim)
        self.from_code = nn.Linear(cfg.motion_dim, flat, bias=False)
        self.from_code_norm = nn.BatchNorm2d(widths[-1])
        self.up_blocks = nn.ModuleList(UNetUp(widths[i], widths[i - 1]) for i in range(n - 1, 0, -1))
        self.head = field_head(widths[0])

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Driving frames (N, 3, S, S) in [0, 1] -> driving vectors (N, D)."""
        x = to_signed(frames)
        for down in self.down_blocks:
            x = down(x)  # level i: (N, w_i, S / 2**(i+1), S / 2**(i+1))
        return self.to_code(F.leaky_relu(x, 0.2).flatten(1))  # (N, w * side * side) -> (N, D)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """Driving vectors (N, D) -> raw sampling field (N, 2, S, S)."""
        x = self.from_code(F.relu(code)).view(code.shape[0], *self.bottleneck_shape)  # (N, w, side, side)
        x = self.from_code_norm(x)
        for up in self.up_blocks:
            x = up(x)
        return self.head(x)

    def sampling_grid(self, code: torch.Tensor) -> torch.Tensor:
        """Driving vectors (N, D) -> grid (N, S, S, 2) that samples the embedded face."""
        return sampling_grid(self.decode(code), self.residual_flow)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames (N, 3, S, S) -> grid (N, S, S, 2): encoder, then decoder."""
        return self.sampling_grid(self.encode(frames))
