"""The 2D hourglass (U-Net) all three Monkey-Net networks are built on, split into its two halves.

The generator deforms the encoder's outputs before the decoder sees them, so encoder and
decoder are separate modules; :class:`Hourglass2d` is the two back to back. Blocks are
facevid2vid's own (conv 3x3, BatchNorm, ReLU, then 2x average pooling / after 2x nearest upsampling).
"""
from __future__ import annotations

import torch
from torch import nn

from facevid2vid.models.blocks import DownBlock2d, UpBlock2d, level_width


class Encoder2d(nn.Module):
    """``num_blocks`` down blocks; returns the input and every block's output (the skips), finest first."""

    def __init__(self, in_channels: int, block_expansion: int, num_blocks: int, max_features: int):
        super().__init__()
        self.down = nn.ModuleList(
            DownBlock2d(in_channels if i == 0 else level_width(block_expansion, i, max_features),
                        level_width(block_expansion, i + 1, max_features))
            for i in range(num_blocks))
        # channels of each skip: the input's, then level_width(be, i + 1) at 1 / 2**(i + 1) of the side
        self.skip_channels = [in_channels] + [level_width(block_expansion, i + 1, max_features)
                                              for i in range(num_blocks)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = [x]
        for block in self.down:
            skips.append(block(skips[-1]))
        return skips


class Decoder2d(nn.Module):
    """Up blocks from the coarsest skip, concatenating the next finer skip after each.

    ``extra_channels`` are channels appended to every skip by the caller (the generator's
    keypoint embedding). Output: ``block_expansion + skip_channels[0] + extra_channels`` at full side.
    """

    def __init__(self, skip_channels: list[int], block_expansion: int, max_features: int, extra_channels: int = 0):
        super().__init__()
        num_blocks = len(skip_channels) - 1
        up = []
        for i in reversed(range(num_blocks)):
            below = skip_channels[i + 1] if i == num_blocks - 1 else level_width(block_expansion, i + 1, max_features)
            skip = skip_channels[i + 1] if i < num_blocks - 1 else 0
            up.append(UpBlock2d(below + skip + extra_channels, level_width(block_expansion, i, max_features)))
        self.up = nn.ModuleList(up)
        self.out_channels = block_expansion + skip_channels[0] + extra_channels

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        skips = list(skips)
        out = skips.pop()
        for block in self.up:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return out


class Hourglass2d(nn.Module):
    """Encoder and decoder: (B, C, H, W) -> (B, block_expansion + C, H, W); H, W divisible by 2**num_blocks."""

    def __init__(self, in_channels: int, block_expansion: int, num_blocks: int, max_features: int):
        super().__init__()
        self.encoder = Encoder2d(in_channels, block_expansion, num_blocks, max_features)
        self.decoder = Decoder2d(self.encoder.skip_channels, block_expansion, max_features)
        self.out_channels = self.decoder.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))
