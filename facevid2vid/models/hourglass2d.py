"""The 2D hourglass (U-Net) of the 2D families (FOMM, Monkey-Net), split into its two halves.

Monkey-Net's generator deforms the encoder's outputs before the decoder sees them, so encoder
and decoder are separate modules; :class:`Hourglass2d` is the two back to back. The module names
are the first-order-model reference's (``encoder.down_blocks.i``, ``decoder.up_blocks.i``), so a
converted FOMM state dict only loses a prefix. Blocks are facevid2vid's own 2D blocks (conv 3x3,
batch norm, ReLU, then 2x average pooling / after 2x nearest upsampling).
"""
from __future__ import annotations

import torch
from torch import nn

from .blocks import DownBlock2d, UpBlock2d, level_width


class HourglassEncoder2d(nn.Module):
    """``num_blocks`` down blocks; returns the input and every block's output (the skips), finest first."""

    def __init__(self, in_channels: int, block_expansion: int, num_blocks: int, max_features: int):
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock2d(in_channels if i == 0 else level_width(block_expansion, i, max_features),
                        level_width(block_expansion, i + 1, max_features))
            for i in range(num_blocks))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = [x]
        for block in self.down_blocks:
            skips.append(block(skips[-1]))  # level i + 1: (B, w_{i+1}, H / 2**(i+1), W / 2**(i+1))
        return skips


class HourglassDecoder2d(nn.Module):
    """Up blocks from the coarsest skip, each output concatenated with the next finer skip.

    ``extra_channels`` are channels the caller appends to every skip (Monkey-Net's keypoint
    embedding). Output: ``block_expansion + in_channels + extra_channels`` at full side.
    """

    def __init__(self, in_channels: int, block_expansion: int, num_blocks: int, max_features: int,
                 extra_channels: int = 0):
        super().__init__()
        self.up_blocks = nn.ModuleList(
            UpBlock2d((1 if i == num_blocks - 1 else 2) * level_width(block_expansion, i + 1, max_features)
                      + extra_channels, level_width(block_expansion, i, max_features))
            for i in reversed(range(num_blocks)))
        self.out_channels = block_expansion + in_channels + extra_channels

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        skips = list(skips)
        out = skips.pop()
        for block in self.up_blocks:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return out


class Hourglass2d(nn.Module):
    """Encoder and decoder: (B, C, H, W) -> (B, block_expansion + C, H, W); H, W divisible by 2**num_blocks."""

    def __init__(self, in_channels: int, block_expansion: int, num_blocks: int, max_features: int):
        super().__init__()
        self.encoder = HourglassEncoder2d(in_channels, block_expansion, num_blocks, max_features)
        self.decoder = HourglassDecoder2d(in_channels, block_expansion, num_blocks, max_features)
        self.out_channels = self.decoder.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))
