"""Keras conventions in PyTorch: TensorFlow "same" padding, BN epsilon 1e-3, HWIO kernels.

TensorFlow pads "same" convolutions asymmetrically (the extra row/column goes at the
bottom/right) whenever the total padding is odd, which ``nn.Conv2d(padding="same")`` does not
do for strided convolutions; ``same_pad`` reproduces TF's rule for any stride.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3  # Keras' BatchNormalization default (PyTorch's is 1e-5)


def same_pad(x: torch.Tensor, kernel: int, stride: int, dilation: int = 1, value: float = 0.0) -> torch.Tensor:
    """Pad (B, C, H, W) as TensorFlow's padding="same" does for this kernel and stride."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad order: last dim first
        out = math.ceil(size / stride)
        total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
        pads += [total // 2, total - total // 2]
    if not any(pads):
        return x
    return F.pad(x, pads, value=value)


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "same" padding (asymmetric when it must be)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, bias: bool = True):
        super().__init__(cin, cout, kernel, stride=stride, padding=0, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(same_pad(x, self.kernel_size[0], self.stride[0], self.dilation[0]))


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


def conv_kernel(hwio: np.ndarray) -> torch.Tensor:
    """A Keras/TF conv kernel (kh, kw, in, out) -> PyTorch (out, in, kh, kw)."""
    return torch.from_numpy(np.ascontiguousarray(np.transpose(hwio, (3, 2, 0, 1)))).float()


def depthwise_kernel(hwcm: np.ndarray) -> torch.Tensor:
    """A TF depthwise kernel (kh, kw, in, multiplier) -> PyTorch grouped (in * m, 1, kh, kw)."""
    kh, kw, cin, mult = hwcm.shape
    w = np.transpose(hwcm, (2, 3, 0, 1)).reshape(cin * mult, 1, kh, kw)
    return torch.from_numpy(np.ascontiguousarray(w)).float()


def dense_kernel(io: np.ndarray) -> torch.Tensor:
    """A Keras Dense kernel (in, out) -> ``nn.Linear`` weight (out, in)."""
    return torch.from_numpy(np.ascontiguousarray(io.T)).float()
