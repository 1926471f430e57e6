"""X2Face's pix2pix blocks and its sampling-field helpers (shared by both networks).

pix2pix orders a level as activation -> convolution -> batch norm, so skip connections carry
pre-activation maps: a down level is LeakyReLU(0.2) -> 4x4 stride-2 conv -> BN, an up level
ReLU -> 2x bilinear upsampling -> 3x3 conv -> BN (the released code's "better upsampler",
in place of pix2pix's transposed convolutions). Convolutions followed by BN have no bias.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from facevid2vid.geometry import make_coordinate_grid


class UNetDown(nn.Module):
    """[LeakyReLU(0.2)] -> conv 4x4 stride 2 -> [BN]: halves the side."""

    def __init__(self, cin: int, cout: int, activate: bool = True, norm: bool = True):
        super().__init__()
        self.activate = activate
        self.conv = nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=not norm)
        self.norm = nn.BatchNorm2d(cout) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activate:
            x = F.leaky_relu(x, 0.2)
        return self.norm(self.conv(x))


class UNetUp(nn.Module):
    """ReLU -> 2x bilinear upsampling -> conv 3x3 -> [BN]: doubles the side."""

    def __init__(self, cin: int, cout: int, norm: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=not norm)
        self.norm = nn.BatchNorm2d(cout) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(F.relu(x), scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.norm(self.conv(x))


def field_head(cin: int) -> UNetUp:
    """The last up level: 2 channels (x, y) of the raw sampling field, no norm.

    Its weights start 100 times smaller than PyTorch's default, so both fields start near
    zero (with ``residual_flow``: near the identity warp) and training starts from the
    unwarped image rather than from a random scramble.
    """
    head = UNetUp(cin, 2, norm=False)
    with torch.no_grad():
        head.conv.weight.mul_(0.01)
        head.conv.bias.zero_()
    return head


def sampling_grid(field: torch.Tensor, residual: bool) -> torch.Tensor:
    """Raw field (B, 2, H, W) -> grid_sample grid (B, H, W, 2), (x, y) in [-1, 1] image coordinates.

    ``tanh`` bounds the field; ``residual`` adds it to the identity grid (the released code).
    """
    offset = torch.tanh(field.float()).permute(0, 2, 3, 1)  # (B, H, W, 2)
    if not residual:
        return offset
    h, w = field.shape[-2:]
    identity = make_coordinate_grid(1, h, w, dtype=offset.dtype, device=offset.device)[0, ..., :2]  # (H, W, 2)
    return offset + identity


def warp_image(image: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Bilinear backward warp of (B, C, H, W) by a grid (B, H, W, 2), in float32.

    Border padding (the released code pads with zeros): samples outside the image repeat its
    edge instead of turning black.
    """
    return F.grid_sample(image.float(), grid.float(), mode="bilinear", padding_mode="border", align_corners=True)


def to_signed(image: torch.Tensor) -> torch.Tensor:
    """[0, 1] images as pix2pix's [-1, 1] inputs."""
    return image * 2.0 - 1.0
