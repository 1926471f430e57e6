"""Hopenet-lite head pose: a ShuffleNetV2 (x1.0) trunk with three 66-bin classifiers.

Ported from ``model/fr_pose.onnx`` of the npm package faceplugin-face-recognition-js 0.0.1
(ONNX opset 9, exported from PyTorch 1.7 with BatchNorm folded into the convolutions, so every
convolution here has a bias and there is no BatchNorm). Input: a 224x224 face crop (the face
box enlarged 1.5x, as the package and Hopenet crop), RGB, ImageNet mean/std of x in [0, 1].
Each head scores 66 bins of 3 degrees; the angle is ``3 * E_softmax[bin] - 99``.

Channel order: the package's ``lib/fr_pose.js`` turns the RGBA canvas into BGR (``COLOR_BGR2RGB``
on RGBA data) before applying the R, G, B statistics; Hopenet was trained on RGB, and RGB
agrees better with the landmark pose estimator (pitch correlation 0.91 against 0.85 for BGR on
184 frames), so the port feeds RGB.

Signs, found by rotating and mirroring real crops and by comparison with the landmark PnP
estimator (``tests/test_perception_faceplugin.py``): the network's yaw (positive = nose toward
image-left) and roll (positive = clockwise in the image) agree with this project's convention;
its pitch is positive looking up, the opposite of the project's. ``logits`` gives the raw bins
in the network's own convention; ``forward`` gives angles in the project's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from facevid2vid.geometry import angles_from_bins
from facevid2vid.perception import onnx_io

ONNX_FILE = "package/model/fr_pose.onnx"
SIZE = 224
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# project angle = SIGNS * network angle, for (yaw, pitch, roll)
SIGNS = (1.0, -1.0, 1.0)
STAGES = ((116, 4), (232, 8), (464, 4))  # (output channels, units) of stages 2..4


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    """Interleave the channels of ``groups`` equal groups: (B, g*c, H, W) -> (B, c*g, H, W)."""
    b, c, h, w = x.shape
    x = x.reshape(b, groups, c // groups, h, w).transpose(1, 2)  # (B, c, g, H, W)
    return x.reshape(b, c, h, w)


def _depthwise(channels: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, stride=stride, padding=1, groups=channels)


def _pointwise(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1)


class ShuffleUnit(nn.Module):
    """Stride-1 unit: split the channels in two, keep the first half, transform the second
    (1x1 -> ReLU -> depthwise 3x3 -> 1x1 -> ReLU), concatenate and shuffle."""

    def __init__(self, channels: int):
        super().__init__()
        half = channels // 2
        self.pw1 = _pointwise(half, half)
        self.dw = _depthwise(half, 1)
        self.pw2 = _pointwise(half, half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep, x = x.chunk(2, dim=1)
        x = F.relu(self.pw2(self.dw(F.relu(self.pw1(x)))))
        return channel_shuffle(torch.cat([keep, x], dim=1))


class DownsampleUnit(nn.Module):
    """Stride-2 unit: both halves see the whole input; the shortcut branch is depthwise 3x3
    (stride 2) -> 1x1 -> ReLU, the main branch as in ``ShuffleUnit`` with a strided depthwise."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        half = cout // 2
        # registration order = the ONNX graph's layer order (shortcut first)
        self.short_dw = _depthwise(cin, 2)
        self.short_pw = _pointwise(cin, half)
        self.pw1 = _pointwise(cin, half)
        self.dw = _depthwise(half, 2)
        self.pw2 = _pointwise(half, half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        short = F.relu(self.short_pw(self.short_dw(x)))
        main = F.relu(self.pw2(self.dw(F.relu(self.pw1(x)))))
        return channel_shuffle(torch.cat([short, main], dim=1))


def _stage(cin: int, cout: int, units: int) -> nn.Sequential:
    return nn.Sequential(DownsampleUnit(cin, cout), *(ShuffleUnit(cout) for _ in range(units - 1)))


class HopenetLite(nn.Module):
    """Face crop (B, 3, H, W) RGB in [0, 1] -> (B, 3) yaw, pitch, roll in degrees (project convention)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 24, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        stages, cin = [], 24
        for cout, units in STAGES:
            stages.append(_stage(cin, cout, units))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.conv5 = nn.Conv2d(cin, 1024, 1)
        self.fc_yaw = nn.Linear(1024, 66)
        self.fc_pitch = nn.Linear(1024, 66)
        self.fc_roll = nn.Linear(1024, 66)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("signs", torch.tensor(SIGNS), persistent=False)

    def preprocess(self, face: torch.Tensor) -> torch.Tensor:
        """RGB [0, 1] at any size -> the network's 224x224 ImageNet-normalised input."""
        if face.shape[-2:] != (SIZE, SIZE):
            face = F.interpolate(face, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)
        return (face - self.mean) / self.std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed (B, 3, 224, 224) -> pooled trunk features (B, 1024)."""
        x = self.pool(F.relu(self.stem(x)))  # (B, 24, 56, 56)
        x = F.relu(self.conv5(self.stages(x)))  # (B, 1024, 7, 7)
        return x.mean(dim=(2, 3))

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed (B, 3, 224, 224) -> raw bin logits (B, 3, 66): yaw, pitch, roll (ONNX outputs
        ``output``, ``617``, ``618``), in the network's sign convention."""
        x = self.features(x)
        return torch.stack([self.fc_yaw(x), self.fc_pitch(x), self.fc_roll(x)], dim=1)

    def logits(self, face: torch.Tensor) -> torch.Tensor:
        """Raw bin logits (B, 3, 66) for yaw, pitch, roll in the network's convention: the
        network's angle is ``3 * E_softmax[bin] - 99``; the project's is that times ``SIGNS``."""
        return self.body(self.preprocess(face))

    def angles_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, 3, 66) raw logits -> (B, 3) degrees in the project's convention."""
        return angles_from_bins(logits) * self.signs

    def forward(self, face: torch.Tensor) -> torch.Tensor:
        return self.angles_from_logits(self.logits(face))


def convert(read) -> dict[str, torch.Tensor]:
    """State dict of ``HopenetLite`` from the package's ONNX graph (layers matched in graph order)."""
    return onnx_io.match_layers(HopenetLite(), onnx_io.walk(read(ONNX_FILE)))
