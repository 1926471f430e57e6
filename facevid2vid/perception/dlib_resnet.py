"""dlib's ResNet-34 face descriptor (``dlib_face_recognition_resnet_model_v1``), 128-D.

The weights come from face-api (``@vladmandic/face-api``), which ships dlib's network as a
TF.js manifest with most tensors uint8-quantized. The layout is dlib's ``anet_type``:

    con 7x7/2 (32) + affine, relu, max_pool 3x3/2
    3 x residual(32), residual_down(64) + 3 x residual(64), residual_down(128) + 2 x residual(128),
    residual_down(256) + 2 x residual(256), residual_down(256), global average pool, fc 256->128

Each conv carries a bias and is followed by an "affine" (per-channel scale and shift, dlib's
frozen batch norm). dlib pads only its stride-1 convs (k // 2, "same"); strided convs and the
pools are unpadded ("valid"). A down block adds ``avg_pool 2x2/2`` of its input to its conv
branch; where the two differ in size (channels, or 3x3 against 4x4 spatially) dlib adds them
as if the smaller were zero-padded at the end, which ``_add_padded`` does.

Input convention (dlib's ``input_rgb_image_sized<150>``): RGB pixel values 0..255, minus the
per-channel means (122.782, 117.001, 104.298), divided by 256. face-api divides by 255 instead
(0.4 % larger inputs); this port follows dlib.

The descriptor is NOT unit-normalised: dlib compares raw descriptors by Euclidean distance,
with 0.6 as its same-person threshold (``SAME_PERSON_DISTANCE``; see ``distance``). Faces
should be square crops aligned as dlib's ``get_face_chip`` makes them (150x150, padding 0.25)
for the threshold to hold; other sizes are resized to 150x150.
"""
from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facevid2vid.perception.keras import conv_kernel
from facevid2vid.perception.tfjs import decode_weights

INPUT_SIZE = 150
MEAN_RGB = (122.782, 117.001, 104.298)  # dlib's input_rgb_image averages, in 0..255
PIXEL_DIVISOR = 256.0  # dlib's (face-api uses 255)
SAME_PERSON_DISTANCE = 0.6  # dlib's threshold on the raw Euclidean distance
MANIFEST = "package/model/face_recognition_model-weights_manifest.json"

# (name, in channels, out channels, down) in forward order; names are face-api's
BLOCKS = (
    ("conv32_1", 32, 32, False), ("conv32_2", 32, 32, False), ("conv32_3", 32, 32, False),
    ("conv64_down", 32, 64, True), ("conv64_1", 64, 64, False), ("conv64_2", 64, 64, False),
    ("conv64_3", 64, 64, False),
    ("conv128_down", 64, 128, True), ("conv128_1", 128, 128, False), ("conv128_2", 128, 128, False),
    ("conv256_down", 128, 256, True), ("conv256_1", 256, 256, False), ("conv256_2", 256, 256, False),
    ("conv256_down_out", 256, 256, True),
)
# block outputs exposed by ``taps`` (the ends of each resolution level)
TAPS = ("conv32_3", "conv64_3", "conv128_2", "conv256_2", "conv256_down_out")


class Affine(nn.Module):
    """Per-channel ``x * weight + bias`` (dlib's affine layer, face-api's ScaleLayer)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class ConvAffine(nn.Module):
    """Conv (with bias) then affine; stride 1 pads k // 2, stride 2 does not pad (dlib's rule)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2 if stride == 1 else 0)
        self.scale = Affine(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale(self.conv(x))


def _add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a + b`` for (B, C, H, W) maps of different C/H/W, the smaller zero-padded at the end."""
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def grow(t: torch.Tensor) -> torch.Tensor:
        pads = (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1])
        return F.pad(t, pads) if any(pads) else t

    return grow(a) + grow(b)


class Residual(nn.Module):
    """relu(conv2(relu(conv1(x))) + skip), skip = x, or avg_pool 2x2/2 of x in a down block."""

    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        self.down = down
        self.conv1 = ConvAffine(cin, cout, 3, 2 if down else 1)
        self.conv2 = ConvAffine(cout, cout, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        if not self.down:
            return F.relu(out + x)
        return F.relu(_add_padded(out, F.avg_pool2d(x, 2, 2)))


class DlibFaceDescriptor(nn.Module):
    """dlib's face descriptor: ``forward(face (B,3,H,W) RGB in [0,1]) -> (B,128)``, raw (not unit norm)."""

    input_size = INPUT_SIZE
    same_person_distance = SAME_PERSON_DISTANCE

    def __init__(self):
        super().__init__()
        self.stem = ConvAffine(3, 32, 7, 2)
        self.blocks = nn.Sequential(OrderedDict((n, Residual(i, o, d)) for n, i, o, d in BLOCKS))
        self.fc = nn.Linear(256, 128, bias=False)
        self.register_buffer("mean", torch.tensor(MEAN_RGB).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, face: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) in [0,1] -> (B,3,150,150) as the network body expects it."""
        if tuple(face.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
            face = F.interpolate(face, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                                 antialias=True, align_corners=False)
        return (face * 255.0 - self.mean) / PIXEL_DIVISOR

    def taps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Body on a preprocessed (B,3,150,150) batch: the stem, the ``TAPS`` block outputs,
        the pooled (B,256) features and the (B,128) descriptor."""
        out = {"stem": F.relu(self.stem(x))}  # (B,32,72,72)
        h = F.max_pool2d(out["stem"], 3, 2)  # (B,32,35,35)
        for name, block in self.blocks.named_children():
            h = block(h)
            if name in TAPS:
                out[name] = h  # 35, 17, 8, 4, 2 pixels square
        out["pooled"] = h.mean(dim=(2, 3))
        out["descriptor"] = self.fc(out["pooled"])
        return out

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.taps(x)["descriptor"]

    def forward(self, face: torch.Tensor) -> torch.Tensor:
        return self.body(self.preprocess(face))

    @staticmethod
    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Euclidean distance between raw descriptors over the last dim; < 0.6: same person (dlib)."""
        return torch.linalg.vector_norm(a - b, dim=-1)


def _state_name(tfjs_name: str) -> str:
    """'conv64_1/conv2/scale/weights' -> 'blocks.conv64_1.conv2.scale.weight', and so on."""
    parts = tfjs_name.split("/")
    leaf = {"filters": "weight", "bias": "bias", "weights": "weight", "biases": "bias"}[parts[-1]]
    if parts[0] == "conv32_down":  # the stem: conv32_down/{conv,scale}/...
        return f"stem.{parts[1]}.{leaf}"
    return f"blocks.{parts[0]}.{parts[1]}.{parts[2]}.{leaf}"


def convert(read) -> dict[str, torch.Tensor]:
    """face-api's TF.js weights (dequantized) -> the state dict of ``DlibFaceDescriptor``."""
    groups = json.loads(read(MANIFEST))
    folder = MANIFEST.rsplit("/", 1)[0]
    tensors: dict[str, np.ndarray] = {}
    for group in groups:
        data = b"".join(read(f"{folder}/{p}") for p in group["paths"])
        tensors.update(decode_weights(group["weights"], data))
    state = {"fc.weight": torch.from_numpy(np.ascontiguousarray(tensors.pop("fc").T)).float()}  # (128,256)
    for name, value in tensors.items():
        key = _state_name(name)
        state[key] = conv_kernel(value) if value.ndim == 4 else torch.from_numpy(value.copy()).float()
    return state
