"""MobileFaceNet face descriptor: 512-D identity embedding from a 112x112 face.

Ported from ``model/fr_feature.onnx`` of the npm package faceplugin-face-recognition-js 0.0.1
(ONNX opset 9, exported from PyTorch 1.10 with BatchNorm folded into the convolutions).
MobileFaceNet: a strided 3x3 stem, inverted-residual bottlenecks with depthwise 3x3 and PReLU
(linear projections, no PReLU after them), then a 7x7 depthwise "global depthwise
convolution" and a 1x1 linear embedding (the original Linear + BatchNorm1d, exported as a
convolution). The graph ends in that embedding: it does NOT L2-normalise, so ``forward`` does.

Input convention, from the package's ``lib/fr_feature.js``: NCHW, RGB (it reads the first three
channels of an RGBA canvas), ``(v - 127) / 128`` for v in 0..255. Here it is the usual
MobileFaceNet ``(255 x - 127.5) / 128``; the half-level offset (0.004 in input units) is well
below the network's sensitivity. The package feeds 5-point aligned crops (ArcFace reference
points, eyes at y ~ 51/112); a looser face crop still works, with less separation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from facevid2vid.perception import onnx_io

ONNX_FILE = "package/model/fr_feature.onnx"
SIZE = 112
EMBEDDING = 512
# (in, out, expansion width, stride, residual units after the strided one)
STAGES = ((64, 64, 128, 2, 4), (64, 128, 256, 2, 6), (128, 128, 512, 2, 2))
RESIDUAL_WIDTH = (128, 256, 256)  # expansion width of each stage's residual units


class ConvBlock(nn.Module):
    """Convolution (BatchNorm folded into its bias), then PReLU unless ``linear``."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 padding: int | None = None, linear: bool = False):
        super().__init__()
        padding = kernel // 2 if padding is None else padding
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, groups=groups)
        self.prelu = None if linear else nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return x if self.prelu is None else self.prelu(x)


class Bottleneck(nn.Module):
    """Inverted residual: 1x1 expand + PReLU, depthwise 3x3 + PReLU, linear 1x1 projection;
    the input is added back when ``residual`` (stride 1, same width)."""

    def __init__(self, cin: int, cout: int, width: int, stride: int = 1, residual: bool = True):
        super().__init__()
        if residual and (stride != 1 or cin != cout):
            raise ValueError("a residual bottleneck keeps resolution and width")
        self.residual = residual
        self.expand = ConvBlock(cin, width)
        self.depthwise = ConvBlock(width, width, 3, stride=stride, groups=width)
        self.project = ConvBlock(width, cout, linear=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


def _stage(cin: int, cout: int, width: int, stride: int, units: int, residual_width: int) -> nn.Sequential:
    return nn.Sequential(Bottleneck(cin, cout, width, stride, residual=False),
                         *(Bottleneck(cout, cout, residual_width) for _ in range(units)))


class MobileFaceNet(nn.Module):
    """Face crop (B, 3, H, W) RGB in [0, 1] -> (B, 512) L2-normalised identity embedding."""

    def __init__(self):
        super().__init__()
        self.stem = ConvBlock(3, 64, 3, stride=2)  # 112 -> 56
        self.stem_dw = ConvBlock(64, 64, 3, groups=64)
        self.stages = nn.Sequential(*(_stage(*s, rw) for s, rw in zip(STAGES, RESIDUAL_WIDTH)))  # 56 -> 7
        self.head = ConvBlock(128, 512)
        self.gdc = ConvBlock(512, 512, 7, groups=512, padding=0, linear=True)  # 7x7 -> 1x1
        self.embed = ConvBlock(512, EMBEDDING, linear=True)

    def preprocess(self, face: torch.Tensor) -> torch.Tensor:
        """RGB [0, 1] at any size -> the network's 112x112 input, (255 x - 127.5) / 128."""
        if face.shape[-2:] != (SIZE, SIZE):
            face = F.interpolate(face, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)
        return (face * 255.0 - 127.5) / 128.0

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed (B, 3, 112, 112) -> the raw (unnormalised) 512-D embedding, the ONNX output."""
        x = self.stages(self.stem_dw(self.stem(x)))
        x = self.embed(self.gdc(self.head(x)))  # (B, 512, 1, 1)
        return x.flatten(1)

    def forward(self, face: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.body(self.preprocess(face)), dim=1)


def convert(read) -> dict[str, torch.Tensor]:
    """State dict of ``MobileFaceNet`` from the package's ONNX graph (layers matched in graph order)."""
    return onnx_io.match_layers(MobileFaceNet(), onnx_io.walk(read(ONNX_FILE)))
