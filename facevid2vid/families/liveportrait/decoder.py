"""G: LivePortrait's SPADE decoder, warped features -> image at ``upscale`` times the input size.

The released weights use spectral norm on the residual blocks' convs; at inference spectral
norm is a fixed division of each weight by ``sigma = u . (W v)`` with the stored u and v, so
the converter folds it into plain weights (facevid2vid/convert/liveportrait.py) and this
module has ordinary convs.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .config import LivePortraitConfig


class SPADE(nn.Module):
    """Instance norm (no affine) modulated by gamma/beta convs of the segmentation map (the warped features)."""

    def __init__(self, channels: int, label_channels: int, hidden: int):
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_channels, hidden, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        normalized = F.instance_norm(x)  # eps 1e-5, no running statistics
        actv = self.mlp_shared(F.interpolate(seg, size=x.shape[2:], mode="nearest"))
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    """SPADE -> LeakyReLU(0.2) -> conv, twice, plus a (SPADE + 1x1 conv) shortcut when widths differ."""

    def __init__(self, cin: int, cout: int, label_channels: int, hidden: int):
        super().__init__()
        middle = min(cin, cout)
        self.learned_shortcut = cin != cout
        self.conv_0 = nn.Conv2d(cin, middle, 3, padding=1)
        self.conv_1 = nn.Conv2d(middle, cout, 3, padding=1)
        self.norm_0 = SPADE(cin, label_channels, hidden)
        self.norm_1 = SPADE(middle, label_channels, hidden)
        if self.learned_shortcut:
            self.conv_s = nn.Conv2d(cin, cout, 1, bias=False)
            self.norm_s = SPADE(cin, label_channels, hidden)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        shortcut = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return shortcut + dx


class SPADEDecoder(nn.Module):
    """Features (B, W, h, h) -> image (B, 3, 4 h upscale, 4 h upscale) in (0, 1)."""

    def __init__(self, cfg: LivePortraitConfig):
        super().__init__()
        c, hidden = cfg.warped_channels, cfg.spade_hidden
        self.fc = nn.Conv2d(c, 2 * c, 3, padding=1)
        self.middle = nn.ModuleList(SPADEResnetBlock(2 * c, 2 * c, c, hidden)
                                    for _ in range(cfg.decoder_num_middle_blocks))
        self.up_0 = SPADEResnetBlock(2 * c, c, c, hidden)
        self.up_1 = SPADEResnetBlock(c, cfg.decoder_out_channels, c, hidden)
        self.upscale = cfg.upscale
        self.conv_img = nn.Conv2d(cfg.decoder_out_channels, 3 * cfg.upscale ** 2, 3, padding=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        seg = features
        x = self.fc(features)  # (B, 2W, h, h)
        for block in self.middle:
            x = block(x, seg)
        x = self.up_0(F.interpolate(x, scale_factor=2.0, mode="nearest"), seg)  # (B, W, 2h, 2h)
        x = self.up_1(F.interpolate(x, scale_factor=2.0, mode="nearest"), seg)  # (B, out, 4h, 4h)
        x = self.conv_img(F.leaky_relu(x, 0.2))
        if self.upscale > 1:
            x = F.pixel_shuffle(x, self.upscale)  # (B, 3, 4h u, 4h u)
        return torch.sigmoid(x)
