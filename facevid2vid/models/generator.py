"""G: the occlusion-aware generator, warped appearance volume -> output image."""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..geometry import compose_flow
from ..structures import GeneratorOutput
from .blocks import ResBlock2d, SameBlock2d, UpBlock2d, cpu_channels_last, maybe_sn, warp_3d
from .spade import SPADEDecoder


class Generator(nn.Module):
    """(f_s, flows, masks, occlusion) -> :class:`GeneratorOutput` with a (B, 3, S, S) image in [0, 1].

    Composes the flow ``w = sum_k m_k w_k``, warps f_s (trilinear), folds depth into channels
    (C*D at S/v), projects to ``generator_channels``, multiplies by the occlusion map, then decodes:
    2D residual blocks and log2(v) 2x upsampling stages ("resblocks"), or the SPADE decoder
    (``generator_decoder="spade"``, models/spade.py). With ``generator_spectral_norm`` (the default)
    every conv of the "resblocks" decoder is spectrally normalised.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        gc, sn = cfg.generator_channels, cfg.generator_spectral_norm
        self.warp_options = dict(align_corners=cfg.warp_align_corners, padding=cfg.warp_padding)
        self.project = SameBlock2d(cfg.feature_channels * cfg.feature_depth, gc, kernel=3, sn=sn,
                                   act=cfg.generator_activation)
        self.mix = maybe_sn(nn.Conv2d(gc, gc, 1), sn)
        if cfg.generator_decoder == "spade":
            self.decoder = SPADEDecoder(cfg)
            return
        self.decoder = None
        self.resblocks = nn.Sequential(*(ResBlock2d(gc, sn=sn) for _ in range(cfg.num_2d_resblocks)))
        stages = cfg.volume_downsample.bit_length() - 1  # 2x upsampling back to the image size
        self.up = nn.Sequential(*(UpBlock2d(gc // 2**i, gc // 2**(i + 1), sn=sn) for i in range(stages)))
        self.final = maybe_sn(nn.Conv2d(gc // 2**stages, 3, 7, padding=3), sn)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Occluded features (B, gc, S/v, S/v) -> image (B, 3, S, S) in [0, 1]."""
        if self.decoder is not None:
            return self.decoder(x)
        return torch.sigmoid(self.final(self.up(self.resblocks(x))))

    def forward(self, features: torch.Tensor, flows: torch.Tensor, mask: torch.Tensor,
                occlusion: torch.Tensor | None) -> GeneratorOutput:
        flow = compose_flow(flows, mask.to(flows.dtype))  # (B, D, h, w, 3)
        warped = warp_3d(features, flow, **self.warp_options)  # (B, C, D, h, w)
        b, c, d, h, w = warped.shape
        x = self.mix(self.project(cpu_channels_last(warped.reshape(b, c * d, h, w))))  # (B, gc, h, w)
        if occlusion is not None:
            x = x * occlusion.to(x.dtype)
        return GeneratorOutput(image=self.decode(x).contiguous(), mask=mask, occlusion=occlusion, flow=flow)
