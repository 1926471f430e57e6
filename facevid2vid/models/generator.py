"""G: the occlusion-aware generator, warped appearance volume -> output image."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

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

    With ``generator_image_skip`` G also warps the source *image* by the composed flow averaged over
    depth (upsampled to S) and returns ``a * decoded + (1 - a) * warped_source``, ``a`` a per-pixel
    mask from its last features: where the motion is small (background, a still head) the output
    keeps the source's pixels instead of a re-synthesis of them (X2Face's pixel warp, with G's
    decoder for what the warp cannot explain).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        gc, sn = cfg.generator_channels, cfg.generator_spectral_norm
        self.warp_options = dict(align_corners=cfg.warp_align_corners, padding=cfg.warp_padding)
        self.project = SameBlock2d(cfg.feature_channels * cfg.feature_depth, gc, kernel=3, sn=sn,
                                   act=cfg.generator_activation)
        self.mix = maybe_sn(nn.Conv2d(gc, gc, 1), sn)
        self.blend = None  # the pixel path's mask conv (generator_image_skip, "resblocks" only)
        if cfg.generator_decoder == "spade":
            self.decoder = SPADEDecoder(cfg)
            return
        self.decoder = None
        self.resblocks = nn.Sequential(*(ResBlock2d(gc, sn=sn) for _ in range(cfg.num_2d_resblocks)))
        stages = cfg.volume_downsample.bit_length() - 1  # 2x upsampling back to the image size
        self.up = nn.Sequential(*(UpBlock2d(gc // 2**i, gc // 2**(i + 1), sn=sn) for i in range(stages)))
        self.final = maybe_sn(nn.Conv2d(gc // 2**stages, 3, 7, padding=3), sn)
        if cfg.generator_image_skip:
            # no spectral norm: starts at zero weights, bias 2 (a = 0.88, mostly G's own output), so a G
            # initialised from a model without the pixel path starts where that model was
            self.blend = nn.Conv2d(gc // 2**stages, 1, 7, padding=3)
            nn.init.zeros_(self.blend.weight)
            nn.init.constant_(self.blend.bias, 2.0)

    def decode(self, x: torch.Tensor,
               warped_image: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Occluded features (B, gc, S/v, S/v) -> (image (B, 3, S, S) in [0, 1], G's share (B, 1, S, S) of it
        against the warped source with the pixel path, else None)."""
        if self.decoder is not None:
            return self.decoder(x), None
        x = self.up(self.resblocks(x))
        image = torch.sigmoid(self.final(x))
        if self.blend is None:
            return image, None
        share = torch.sigmoid(self.blend(x))  # (B, 1, S, S)
        return self.mix_pixel_path(image, share, warped_image), share

    @staticmethod
    def mix_pixel_path(image: torch.Tensor, share: torch.Tensor, warped_image: torch.Tensor) -> torch.Tensor:
        """G's own image and the warped source image, G weighted by ``share``."""
        return share * image + (1 - share) * warped_image.to(image.dtype)

    def warp_image(self, image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        """The source image (B, 3, S, S) warped by the 3D flow (B, D, h, w, 3) averaged over depth."""
        s = image.shape[-1]
        grid = flow[..., :2].mean(dim=1).permute(0, 3, 1, 2)  # (B, 2, h, w): source (x, y)
        grid = F.interpolate(grid, size=(s, s), mode="bilinear", align_corners=True).permute(0, 2, 3, 1)
        dtype = torch.promote_types(image.dtype, grid.dtype)
        return F.grid_sample(image.to(dtype), grid.to(dtype), mode="bilinear", padding_mode="border",
                             align_corners=True)

    def forward(self, features: torch.Tensor, flows: torch.Tensor, mask: torch.Tensor,
                occlusion: torch.Tensor | None, source_image: torch.Tensor | None = None) -> GeneratorOutput:
        flow = compose_flow(flows, mask.to(flows.dtype))  # (B, D, h, w, 3)
        warped = warp_3d(features, flow, **self.warp_options)  # (B, C, D, h, w)
        b, c, d, h, w = warped.shape
        x = self.mix(self.project(cpu_channels_last(warped.reshape(b, c * d, h, w))))  # (B, gc, h, w)
        if occlusion is not None:
            x = x * occlusion.to(x.dtype)
        warped_image = None
        if self.blend is not None:
            if source_image is None:
                raise ValueError("this generator blends in the source image (generator_image_skip): pass it")
            warped_image = self.warp_image(source_image, flow)
        image, share = self.decode(x, warped_image)
        return GeneratorOutput(image=image.contiguous(), mask=mask, occlusion=occlusion, flow=flow,
                               image_share=share)
