"""The embedding network: source face -> 2D sampling field -> the embedded (pose-normalised) face.

A pix2pix U-Net with skip connections (the paper's embedding network). Its field samples the
source itself; the result, the "embedded face", is a frontalised, pose-normalised face that
holds the source's appearance, and the driving network's field samples it to make each
output frame. The released code also predicts a confidence map to average several sources'
embedded faces; with one source per stream that channel has no use and is left out.
"""
from __future__ import annotations

import torch
from torch import nn

from facevid2vid.models.blocks import level_width

from .blocks import UNetDown, UNetUp, field_head, sampling_grid, to_signed, warp_image
from .config import X2FaceConfig


class EmbeddingNetwork(nn.Module):
    """U-Net of ``embedding_num_blocks`` levels; level i's width ``min(e * 2**i, max)``.

    Down: level 0 is a plain conv on the image, the innermost level has no BN (pix2pix).
    Up: each level's output is concatenated with the down map of the same side.
    """

    def __init__(self, cfg: X2FaceConfig):
        super().__init__()
        self.residual_flow = cfg.residual_flow
        n = cfg.embedding_num_blocks
        widths = [level_width(cfg.embedding_block_expansion, i, cfg.embedding_max_features) for i in range(n)]
        self.down_blocks = nn.ModuleList(
            UNetDown(3 if i == 0 else widths[i - 1], widths[i], activate=i > 0, norm=0 < i < n - 1)
            for i in range(n))
        # up level for down level i (i = n-1 .. 1): its input is level i's map, concatenated with its
        # skip except at the innermost level; its output has level i-1's width
        self.up_blocks = nn.ModuleList(
            UNetUp(widths[i] * (1 if i == n - 1 else 2), widths[i - 1]) for i in range(n - 1, 0, -1))
        self.head = field_head(2 * widths[0])

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Source (B, 3, S, S) in [0, 1] -> raw sampling field (B, 2, S, S)."""
        skips = []
        x = to_signed(image)
        for down in self.down_blocks:
            x = down(x)
            skips.append(x)  # level i: (B, w_i, S / 2**(i+1), S / 2**(i+1))
        x = skips.pop()
        for up, skip in zip(self.up_blocks, reversed(skips)):
            x = torch.cat([up(x), skip], dim=1)  # (B, 2 w_{i-1}, side of level i-1)
        return self.head(x)

    def embed(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(embedded face (B, 3, S, S) float32, its sampling grid (B, S, S, 2)) of source images."""
        grid = sampling_grid(self(image), self.residual_flow)
        return warp_image(image, grid), grid
