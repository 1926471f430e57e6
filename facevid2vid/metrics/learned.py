"""LPIPS and FID, computed only from weights the user supplies as local files.

No ImageNet backbone can be downloaded on the machines this project targets,
and a network with made-up weights would print plausible but meaningless
numbers under a well-known name. So both metrics are *unavailable* unless the
user passes real weight files; nothing here ever initialises them randomly for
use. Accepted files (formats in docs/metrics.md):

- LPIPS backbone: torchvision ``alexnet`` or ``vgg16`` state dict
  (``features.<i>.weight/bias``; classifier keys are ignored);
- LPIPS linear heads: the ``lpips`` package's ``weights/v0.1/{alex,vgg}.pth``
  (``lin<i>.model.1.weight``, shape (1, C_i, 1, 1));
- FID: an InceptionV3 state dict in torchvision's key layout, ideally pytorch-fid's
  ``pt_inception-2015-12-05-6726825d.pth`` (fc with 1008 outputs -> the
  TensorFlow-compatible "fid" variant; 1000 outputs -> torchvision's variant).

Files are read by :func:`facevid2vid.weights_io.read_state_dict`: ``.safetensors`` with
safetensors, ``.pth``/``.pt`` files with ``torch.load(weights_only=True)`` (plain tensors only,
no pickled code).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn

from facevid2vid.errors import CheckpointError, InputError
from facevid2vid.metrics.inception import InceptionV3Features
from facevid2vid.weights_io import load_module, read_state_dict

UNAVAILABLE_NO_WEIGHTS = "unavailable (no weights)"

# LPIPS's input normalisation (applied to images already scaled to [-1, 1])
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)

# torchvision `features` layouts: conv index -> (in, out, kernel, stride, padding);
# taps are the indices of the ReLUs whose outputs LPIPS compares.
_ALEX_CONVS = {0: (3, 64, 11, 4, 2), 3: (64, 192, 5, 1, 2), 6: (192, 384, 3, 1, 1),
               8: (384, 256, 3, 1, 1), 10: (256, 256, 3, 1, 1)}
_ALEX_POOLS = (2, 5)
_ALEX_TAPS = (1, 4, 7, 9, 11)
_VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
_VGG16_TAPS = (3, 8, 15, 22, 29)


def _load_strict(module: nn.Module, state: dict[str, torch.Tensor], path: Path, what: str,
                 ignore_unexpected: bool = False) -> None:
    # batch-norm step counters are bookkeeping; older files (pytorch-fid's) lack them
    load_module(module, state, path, what, ignore_unexpected=ignore_unexpected, keep_own=("num_batches_tracked",))


def _alexnet_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(12):
        if i in _ALEX_CONVS:
            cin, cout, k, s, p = _ALEX_CONVS[i]
            layers.append(nn.Conv2d(cin, cout, k, stride=s, padding=p))
        elif i in _ALEX_POOLS:
            layers.append(nn.MaxPool2d(3, stride=2))
        else:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _vgg16_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    cin = 3
    for item in _VGG16_CFG:
        if item == "M":
            layers.append(nn.MaxPool2d(2, stride=2))
        else:
            layers += [nn.Conv2d(cin, item, 3, padding=1), nn.ReLU()]
            cin = item
    return nn.Sequential(*layers)


class LPIPS(nn.Module):
    """Learned Perceptual Image Patch Similarity (Zhang et al. 2018), v0.1.

    d(x, y) = sum_l mean_hw( w_l . (f_l(x)/|f_l(x)| - f_l(y)/|f_l(y)|)^2 ),
    where f_l are backbone ReLU outputs (unit-normalised over channels) and w_l
    the learned non-negative 1x1 linear heads.
    """

    def __init__(self, backbone: str):
        super().__init__()
        if backbone == "alex":
            self.features, self.taps, chans = _alexnet_features(), _ALEX_TAPS, (64, 192, 384, 256, 256)
        elif backbone == "vgg":
            self.features, self.taps, chans = _vgg16_features(), _VGG16_TAPS, (64, 128, 256, 512, 512)
        else:
            raise ValueError(f"unknown LPIPS backbone {backbone!r}")
        self.backbone = backbone
        self.heads = nn.ParameterList([nn.Parameter(torch.zeros(1, c, 1, 1)) for c in chans])
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1))

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((2.0 * x - 1.0) - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
            if i == self.taps[-1]:
                break
        return out

    @torch.no_grad()
    def forward(self, reference: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] -> distance per image (B,)."""
        total = reference.new_zeros(reference.shape[0])
        for fa, fb, w in zip(self._taps(reference), self._taps(generated), self.heads):
            total = total + F.conv2d((fa - fb).pow(2), w).mean(dim=(1, 2, 3))
        return total


def _backbone_kind(state: dict[str, torch.Tensor], path: Path) -> str:
    first = state.get("features.0.weight")
    if first is None:
        raise CheckpointError(f"{path} has no features.0.weight: not a torchvision alexnet/vgg16 state dict")
    if tuple(first.shape) == (64, 3, 11, 11):
        return "alex"
    if tuple(first.shape) == (64, 3, 3, 3):
        return "vgg"
    raise CheckpointError(f"{path}: features.0.weight has shape {tuple(first.shape)}, expected AlexNet or VGG16")


def load_lpips(backbone_path: str | Path, heads_path: str | Path, device: str | torch.device = "cpu") -> LPIPS:
    """LPIPS from a torchvision AlexNet/VGG16 state dict and the lpips v0.1 linear heads."""
    backbone_path, heads_path = Path(backbone_path), Path(heads_path)
    backbone = read_state_dict(backbone_path, "LPIPS backbone")
    kind = _backbone_kind(backbone, backbone_path)
    model = LPIPS(kind)
    feats = {k.removeprefix("features."): v for k, v in backbone.items() if k.startswith("features.")}
    _load_strict(model.features, feats, backbone_path, f"a torchvision {kind} backbone")
    heads = read_state_dict(heads_path, "LPIPS heads")
    for i, param in enumerate(model.heads):
        key = f"lin{i}.model.1.weight"
        if key not in heads:
            raise CheckpointError(f"{heads_path} has no {key}: not the lpips v0.1 {kind} linear heads")
        if tuple(heads[key].shape) != tuple(param.shape):
            raise CheckpointError(f"{heads_path}: {key} has shape {tuple(heads[key].shape)}, "
                                  f"the {kind} backbone needs {tuple(param.shape)} (heads for another backbone?)")
        param.data.copy_(heads[key].float())
    return model.eval().to(device)


def load_inception(path: str | Path, device: str | torch.device = "cpu") -> InceptionV3Features:
    """InceptionV3 pool3 extractor from a torchvision-layout state dict (variant from fc size)."""
    path = Path(path)
    state = read_state_dict(path, "FID weights")
    fc = state.get("fc.weight")
    variant = "torchvision" if fc is not None and fc.shape[0] == 1000 else "fid"
    model = InceptionV3Features(variant)
    # torchvision files also hold the classifier (fc) and AuxLogits, which pool3 features do not use
    _load_strict(model, state, path, "a torchvision-layout InceptionV3", ignore_unexpected=True)
    return model.eval().to(device)


def _sqrtm(m: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        # fewer frames than feature dimensions make the product singular; callers handle it
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        return scipy.linalg.sqrtm(m)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) between two Gaussians."""
    diff = mu1 - mu2
    covmean = _sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        # singular product (fewer samples than dimensions): regularise both covariances slightly
        eps = np.eye(sigma1.shape[0]) * 1e-6
        covmean = _sqrtm((sigma1 + eps) @ (sigma2 + eps))
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid_from_features(reference: np.ndarray, generated: np.ndarray) -> float:
    """FID between two feature sets (N, D), N >= 2 each."""
    if reference.shape[0] < 2 or generated.shape[0] < 2:
        raise InputError("FID needs at least 2 frames per video")
    ref, gen = reference.astype(np.float64), generated.astype(np.float64)
    return frechet_distance(ref.mean(0), np.cov(ref, rowvar=False), gen.mean(0), np.cov(gen, rowvar=False))


class FidAccumulator:
    """Collects Inception features of both videos batch by batch."""

    def __init__(self, model: InceptionV3Features):
        self.model = model
        self._ref: list[np.ndarray] = []
        self._gen: list[np.ndarray] = []

    @torch.no_grad()
    def add(self, reference: torch.Tensor, generated: torch.Tensor) -> None:
        """Images (B, 3, H, W) in [0, 1] of both videos."""
        device = next(self.model.parameters()).device
        self._ref.append(self.model(reference.to(device)).double().cpu().numpy())
        self._gen.append(self.model(generated.to(device)).double().cpu().numpy())

    def compute(self) -> float:
        return fid_from_features(np.concatenate(self._ref), np.concatenate(self._gen))
