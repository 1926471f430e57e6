"""Shared convolution blocks: 2D/3D residual, down/up sampling, and the 3D hourglass.

3D blocks resample only height and width (depth stays fixed), as the feature
volume's depth is small (16) and carries the head's depth ordering.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

from ..geometry import warp_volume


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` that stays on oneDNN for a single volume at inference.

    PyTorch's CPU heuristic sends 3x3x3 convolutions of one small volume (batch 1) to its
    reference kernel ``slow_conv3d``, about three times slower per frame than oneDNN, which it
    uses from batch 2; live use is batch 1. Without autograd this calls oneDNN directly:
    same weights and state dict, outputs equal to float rounding (bundled model, batch 1:
    148 -> 55 ms a frame on one thread, max difference 2e-7). Training keeps the default path.
    """

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if (input.device.type == "cpu" and input.dtype == torch.float32 and self.padding_mode == "zeros"
                and not isinstance(self.padding, str) and torch.backends.mkldnn.is_available()
                and not (torch.is_grad_enabled() and (input.requires_grad or weight.requires_grad))):
            return torch.ops.aten.mkldnn_convolution(input.contiguous(), weight.contiguous(), bias,
                                                     list(self.padding), list(self.stride), list(self.dilation),
                                                     self.groups)
        return super()._conv_forward(input, weight, bias)


def cpu_channels_last(x: torch.Tensor) -> torch.Tensor:
    """A 4D tensor in channels-last order on the CPU (unchanged elsewhere), for a stack of 2D convolutions.

    oneDNN runs 2D convolutions natively in NHWC; NCHW input costs a reorder around every layer.
    Measured at batch 1 on one AVX2 thread (realtime-128): a frame (M + G) 68 -> 56 ms, F's 2D
    part 19 -> 15 ms, H 6.9 -> 6.1 ms; outputs equal to float rounding (4e-7 on G's image).
    """
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" and x.dim() == 4 else x


def maybe_sn(module: nn.Module, use: bool) -> nn.Module:
    """Wrap a conv/linear layer in spectral norm when ``use`` (G and D)."""
    return spectral_norm(module) if use else module


def activation(x: torch.Tensor, kind: str) -> torch.Tensor:
    """"relu", or "leaky_relu" with torch's default slope 0.01 (``nn.LeakyReLU()``)."""
    return F.leaky_relu(x, 0.01) if kind == "leaky_relu" else F.relu(x)


def warp_3d(volume: torch.Tensor, flow: torch.Tensor, align_corners: bool = True,
            padding: str = "border") -> torch.Tensor:
    """Trilinear backward warp (B, C, D, H, W) by (B, D, H, W, 3): :func:`geometry.warp_volume` by default.

    ``align_corners=False`` samples as ``grid_sample``'s default does (the open reimplementation), over a
    flow whose identity was built for ``align_corners=True``: a slight zoom the converted weights expect.
    """
    if align_corners:
        return warp_volume(volume, flow, padding_mode=padding)
    dtype = torch.promote_types(volume.dtype, flow.dtype)
    return F.grid_sample(volume.to(dtype), flow.to(dtype), mode="bilinear", padding_mode=padding,
                         align_corners=False)


class SameBlock2d(nn.Module):
    """Conv -> BatchNorm -> ReLU (or LeakyReLU) at constant resolution."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, sn: bool = False, act: str = "relu"):
        super().__init__()
        self.conv = maybe_sn(nn.Conv2d(cin, cout, kernel, padding=kernel // 2), sn)
        self.norm = nn.BatchNorm2d(cout)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return activation(self.norm(self.conv(x)), self.act)


class ResBlock2d(nn.Module):
    """Pre-activation residual block (BN-ReLU-conv twice, plus identity)."""

    def __init__(self, channels: int, kernel: int = 3, sn: bool = False):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(channels)
        self.conv1 = maybe_sn(nn.Conv2d(channels, channels, kernel, padding=kernel // 2), sn)
        self.norm2 = nn.BatchNorm2d(channels)
        self.conv2 = maybe_sn(nn.Conv2d(channels, channels, kernel, padding=kernel // 2), sn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return x + out


class ResBlock3d(nn.Module):
    """Pre-activation 3D residual block."""

    def __init__(self, channels: int, kernel: int = 3):
        super().__init__()
        self.norm1 = nn.BatchNorm3d(channels)
        self.conv1 = Conv3d(channels, channels, kernel, padding=kernel // 2)
        self.norm2 = nn.BatchNorm3d(channels)
        self.conv2 = Conv3d(channels, channels, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return x + out


class DownBlock2d(nn.Module):
    """Conv 3x3 -> BN -> ReLU -> 2x average pooling."""

    def __init__(self, cin: int, cout: int, sn: bool = False):
        super().__init__()
        self.conv = maybe_sn(nn.Conv2d(cin, cout, 3, padding=1), sn)
        self.norm = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.relu(self.norm(self.conv(x))), 2)


class UpBlock2d(nn.Module):
    """2x nearest upsampling -> conv 3x3 -> BN -> ReLU."""

    def __init__(self, cin: int, cout: int, sn: bool = False):
        super().__init__()
        self.conv = maybe_sn(nn.Conv2d(cin, cout, 3, padding=1), sn)
        self.norm = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return F.relu(self.norm(self.conv(x)))


class DownBlock3d(nn.Module):
    """Conv 3x3x3 -> BN -> ReLU -> average pooling of height and width by 2.

    ``mode="stride"``: the conv itself steps by 2 in height and width, no pooling (same weights' shapes).
    """

    def __init__(self, cin: int, cout: int, mode: str = "pool"):
        super().__init__()
        self.pool = mode == "pool"
        self.conv = Conv3d(cin, cout, 3, padding=1, stride=1 if self.pool else (1, 2, 2))
        self.norm = nn.BatchNorm3d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm(self.conv(x)))
        return F.avg_pool3d(x, (1, 2, 2)) if self.pool else x


class UpBlock3d(nn.Module):
    """Upsampling of height and width by 2 (``mode`` "nearest" or "trilinear") -> conv 3x3x3 -> BN -> ReLU."""

    def __init__(self, cin: int, cout: int, mode: str = "nearest"):
        super().__init__()
        self.conv = Conv3d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm3d(cout)
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "nearest":
            x = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
        else:
            x = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="trilinear", align_corners=False)
        return F.relu(self.norm(self.conv(x)))


def level_width(block_expansion: int, level: int, max_features: int) -> int:
    """Channel width at hourglass level ``level`` (doubling, capped)."""
    return min(max_features, block_expansion * (2**level))


class Hourglass3d(nn.Module):
    """U-Net over a 3D volume with skip connections; output has ``out_channels`` channels.

    The output concatenates the input, so ``out_channels = block_expansion + in_channels``.
    ``final_conv`` adds a 3x3x3 conv -> BN -> ReLU on that output (the open reimplementation's decoder);
    ``upsample`` / ``downsample`` pick the modes of :class:`UpBlock3d` / :class:`DownBlock3d`.
    """

    def __init__(self, in_channels: int, block_expansion: int, num_blocks: int, max_features: int,
                 final_conv: bool = False, upsample: str = "nearest", downsample: str = "pool"):
        super().__init__()
        self.down = nn.ModuleList(
            DownBlock3d(in_channels if i == 0 else level_width(block_expansion, i, max_features),
                        level_width(block_expansion, i + 1, max_features), downsample)
            for i in range(num_blocks)
        )
        up = []
        for i in reversed(range(num_blocks)):
            cin = (1 if i == num_blocks - 1 else 2) * level_width(block_expansion, i + 1, max_features)
            up.append(UpBlock3d(cin, level_width(block_expansion, i, max_features), upsample))
        self.up = nn.ModuleList(up)
        self.out_channels = block_expansion + in_channels
        self.final_conv = Conv3d(self.out_channels, self.out_channels, 3, padding=1) if final_conv else None
        self.final_norm = nn.BatchNorm3d(self.out_channels) if final_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [x]
        for block in self.down:
            skips.append(block(skips[-1]))
        out = skips.pop()
        for block in self.up:
            out = torch.cat([block(out), skips.pop()], dim=1)
        if self.final_conv is not None:
            out = F.relu(self.final_norm(self.final_conv(out)))
        return out
