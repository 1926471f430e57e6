"""LPIPS-like perceptual distance on a frozen feature network, without learned weights.

For each tapped layer of ``net`` (``InceptionV3Features``, ``MobileNetV2Features``, or any
module returning a list of (B, C, h, w) maps), the channel vector at every position is scaled
to unit length; the distance of that layer is the squared Euclidean distance between the two
images' unit vectors (``2 - 2 cos``, in [0, 4]) averaged over positions; the result is the
mean over layers, so every layer counts the same whatever its channel count or resolution.
Unlike LPIPS there are no learned per-channel weights: every channel counts the same.

Differentiable (used as a training loss and as an evaluation metric); when ``b`` needs no
gradient (a detached target) its features are computed without building a graph.
"""
from __future__ import annotations

import torch
from torch import nn

EPS = 1e-8  # added to the squared channel norm: positions with no response give ~0 vectors, finite gradients


def unit_channels(x: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> the same with every position's channel vector of unit length."""
    x = x.float()
    return x * torch.rsqrt(x.pow(2).sum(1, keepdim=True) + EPS)


def feature_distance(fa: list[torch.Tensor], fb: list[torch.Tensor]) -> torch.Tensor:
    """(B,) distance between two lists of feature maps (same shapes, in the same order)."""
    if len(fa) != len(fb) or not fa:
        raise ValueError(f"need the same, non-zero number of feature maps, got {len(fa)} and {len(fb)}")
    per_layer = [(unit_channels(a) - unit_channels(b)).pow(2).sum(1).mean((1, 2)) for a, b in zip(fa, fb)]
    return torch.stack(per_layer).mean(0)


def perceptual_distance(net: nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B,) LPIPS-like distance between RGB images ``a`` and ``b`` (B, 3, H, W) in [0, 1].

    0 for identical images; grows with blur, noise and compression (see
    tests/test_perception_features.py). Both images go through ``net`` as given (the feature
    networks do not resize), so they must have the same size, at least ``net.min_size``.
    """
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {tuple(a.shape)} and {tuple(b.shape)}")
    fa = net(a)
    with torch.set_grad_enabled(torch.is_grad_enabled() and b.requires_grad):
        fb = net(b)
    return feature_distance(fa, fb)
