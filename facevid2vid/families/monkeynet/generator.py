"""G: Monkey-Net's motion transfer generator, a U-Net whose skips are the source's deformed features.

The encoder runs on the source alone (so it is cached per source); at render time every skip,
the source image itself included, is warped by the dense flow resized to its side, the keypoint
heatmap difference (resized likewise) is concatenated to each, and the decoder, residual
refinement blocks and a 1x1 convolution with a sigmoid make the frame.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from facevid2vid.models.blocks import ResBlock2d
from facevid2vid.models.hourglass2d import HourglassDecoder2d, HourglassEncoder2d

from .config import MonkeyNetConfig
from .movement import resize_flow, warp


class Generator(nn.Module):
    """encode(source) -> skips; forward(skips, flow, heatmap) -> frame (B, 3, S, S) in [0, 1]."""

    def __init__(self, cfg: MonkeyNetConfig):
        super().__init__()
        k = cfg.num_keypoints
        self.encoder = HourglassEncoder2d(3, cfg.block_expansion, cfg.num_blocks, cfg.max_features)
        self.decoder = HourglassDecoder2d(3, cfg.block_expansion, cfg.num_blocks, cfg.max_features, extra_channels=k)
        c = self.decoder.out_channels  # block_expansion + 3 + K
        self.refinement = nn.Sequential(*(ResBlock2d(c) for _ in range(cfg.num_refinement_blocks)))
        self.final = nn.Conv2d(c, 3, 1)

    def encode(self, source: torch.Tensor) -> list[torch.Tensor]:
        """The skips of the source (B, 3, S, S): [the image, then down block i at S / 2**(i + 1)]."""
        return self.encoder(source)

    def forward(self, skips: list[torch.Tensor], flow: torch.Tensor, heatmap: torch.Tensor) -> torch.Tensor:
        """skips (B|1, C_i, S_i, S_i), flow (B, h, w, 2), heatmap difference (B, K, h, w) -> (B, 3, S, S)."""
        b = flow.shape[0]
        inputs = []
        for skip in skips:
            side = skip.shape[-2:]
            moved = warp(skip.expand(b, -1, -1, -1), resize_flow(flow, *side)).to(skip.dtype)
            heat = F.interpolate(heatmap, size=side, mode="bilinear", align_corners=False).to(skip.dtype)
            inputs.append(torch.cat([moved, heat], dim=1))  # (B, C_i + K, S_i, S_i)
        out = self.refinement(self.decoder(inputs))
        return torch.sigmoid(self.final(out))
