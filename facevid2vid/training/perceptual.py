"""Perceptual loss: VGG19 features on an image pyramid, weights from a local file.

No ImageNet weights can be downloaded here and the project does not depend on torchvision,
so the VGG19 trunk is rebuilt with torchvision's layer numbering (``features.<i>.weight``):
a state dict saved from ``torchvision.models.vgg19`` (a ``.pth`` read with
``weights_only=True``, or the same tensors as ``.safetensors``) loads as is. The optional
face term uses the same loader for a VGG16- or VGG19-shaped face network (e.g. VGGFace
converted to this key layout).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from facevid2vid.errors import CheckpointError
from facevid2vid.training.losses import image_pyramid
# read_state_dict: the one reader of user-supplied state dicts (--vgg19, --face-weights, Hopenet files)
from facevid2vid.weights_io import load_module, read_state_dict

# torchvision's "E" (VGG19) and "D" (VGG16) layouts; "M" is a 2x2 max pool
VGG_LAYOUTS = {
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}
LAYER_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)  # relu1_1 .. relu5_1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _build_features(layout: list) -> tuple[nn.Sequential, list[int]]:
    """VGG trunk with torchvision indices; returns it and the indices of each block's first ReLU."""
    layers: list[nn.Module] = []
    taps: list[int] = []
    in_ch, new_block = 3, True
    for v in layout:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
            new_block = True
            continue
        layers.append(nn.Conv2d(in_ch, v, 3, padding=1))
        layers.append(nn.ReLU(inplace=False))
        if new_block:
            taps.append(len(layers) - 1)
            new_block = False
        in_ch = v
    return nn.Sequential(*layers), taps


class VGGFeatures(nn.Module):
    """Frozen VGG trunk returning relu1_1 .. relu5_1 for images in [0, 1]."""

    def __init__(self, arch: str = "vgg19"):
        super().__init__()
        self.features, self.taps = _build_features(VGG_LAYOUTS[arch])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_file(cls, path: str | Path, arch: str | None = None) -> "VGGFeatures":
        """Load torchvision-format weights (``features.<i>.*``; ``classifier.*`` and prefixes ignored)."""
        state = read_state_dict(path, "VGG weights")  # ``module.`` prefixes already removed
        feats = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        if not feats:
            raise CheckpointError(f"{path}: no 'features.<i>' keys; expected a torchvision-format VGG state dict")
        if arch is None:
            convs = sum(1 for k in feats if k.endswith(".weight"))
            arch = {16: "vgg19", 13: "vgg16"}.get(convs)
            if arch is None:
                raise CheckpointError(f"{path}: {convs} conv layers; expected 16 (VGG19) or 13 (VGG16)")
        net = cls(arch)
        load_module(net.features, feats, path, f"the {arch.upper()} feature trunk (features.<i>)",
                    hint=f"the file does not match {arch}: use a state dict of torchvision.models.{arch}")
        return net

    def train(self, mode: bool = True):  # always frozen
        return super().train(False)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        x = (image - self.mean.to(image)) / self.std.to(image)
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
                if len(out) == len(self.taps):
                    break
        return out


class PerceptualLoss(nn.Module):
    """Weighted L1 between VGG features of prediction and target over an image pyramid (SPEC's L_P)."""

    replaces_pixel_terms = True  # the paper's setting: no pixel L1 / SSIM beside it

    def __init__(self, vgg: VGGFeatures, scales=(1.0, 0.5, 0.25, 0.125), layer_weights=LAYER_WEIGHTS,
                 face: VGGFeatures | None = None, face_weight: float = 1.0):
        super().__init__()
        self.vgg = vgg
        self.face = face
        self.scales = tuple(scales)
        self.layer_weights = tuple(layer_weights)
        self.face_weight = face_weight

    @staticmethod
    def _feature_l1(net: VGGFeatures, a: torch.Tensor, b: torch.Tensor, weights) -> torch.Tensor:
        fa, fb = net(a), net(b.detach())
        return sum(w * (x - y).abs().mean() for w, x, y in zip(weights, fa, fb))

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = prediction.new_zeros((), dtype=torch.float32)
        for p, t in zip(image_pyramid(prediction, self.scales), image_pyramid(target, self.scales)):
            if min(p.shape[-2:]) < 16:  # relu5_1 sits behind four 2x2 pools
                continue
            total = total + self._feature_l1(self.vgg, p, t, self.layer_weights)
        if self.face is not None:
            # face networks see the full aligned crop, one scale, equal layer weights
            total = total + self.face_weight * self._feature_l1(self.face, prediction, target, (1.0,) * 5)
        return total
