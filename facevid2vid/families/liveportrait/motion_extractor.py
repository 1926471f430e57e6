"""M: LivePortrait's motion extractor, a ConvNeXt-V2 regressing keypoints, pose, expression and scale.

One image gives everything at once (there is no separate keypoint detector L): canonical
keypoints x_c (K x 3), pitch / yaw / roll as 66-bin logits, translation t (3), expression
delta (K x 3) and a scale s. Angles are ``3 * E[softmax bin] - 97.5`` degrees
(LivePortrait's offset; our own H uses 99).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .config import LivePortraitConfig


@dataclass
class MotionExtractorOutput:
    """Raw regression of one batch (what the released network outputs, reshaped)."""

    kp: torch.Tensor  # (B, K, 3) canonical keypoints x_c
    pitch_logits: torch.Tensor  # (B, num_bins)
    yaw_logits: torch.Tensor  # (B, num_bins)
    roll_logits: torch.Tensor  # (B, num_bins)
    translation: torch.Tensor  # (B, 3) t (only t_x, t_y move keypoints)
    expression: torch.Tensor  # (B, K, 3) delta
    scale: torch.Tensor  # (B,) s


def angles_from_bins(logits: torch.Tensor, offset: float) -> torch.Tensor:
    """Degrees (B,) from bin logits (B, bins): ``3 * E[bin] - offset``, in float32 like the reference."""
    logits = logits.float()
    idx = torch.arange(logits.shape[-1], dtype=logits.dtype, device=logits.device)
    return (torch.softmax(logits, dim=1) * idx).sum(dim=1) * 3 - offset


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over the channels of (B, C, H, W), written out as the reference computes it."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class GlobalResponseNorm(nn.Module):
    """GRN of ConvNeXt-V2 on channels-last (B, H, W, C): x + gamma * (x * N(x)) + beta."""

    def __init__(self, channels: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, channels))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.linalg.vector_norm(x, ord=2, dim=(1, 2), keepdim=True)  # (B, 1, 1, C)
        n = g / (g.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * n) + self.beta + x


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7 -> LayerNorm -> Linear 4C -> GELU -> GRN -> Linear C, plus identity."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.grn = GlobalResponseNorm(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)  # (B, H, W, C)
        y = self.pwconv2(self.grn(F.gelu(self.pwconv1(self.norm(y)))))
        return x + y.permute(0, 3, 1, 2)


class MotionExtractor(nn.Module):
    """Image (B, 3, S, S) -> :class:`MotionExtractorOutput` (ConvNeXt-V2, stride 32, global pooling)."""

    def __init__(self, cfg: LivePortraitConfig):
        super().__init__()
        dims, k, bins = cfg.convnext_dims, cfg.num_keypoints, cfg.num_bins
        self.num_keypoints = k
        stem = nn.Sequential(nn.Conv2d(3, dims[0], 4, stride=4), ChannelsFirstLayerNorm(dims[0]))
        self.downsample_layers = nn.ModuleList(
            [stem] + [nn.Sequential(ChannelsFirstLayerNorm(dims[i]), nn.Conv2d(dims[i], dims[i + 1], 2, stride=2))
                      for i in range(3)])
        self.stages = nn.ModuleList(nn.Sequential(*(ConvNeXtBlock(dims[i]) for _ in range(cfg.convnext_depths[i])))
                                    for i in range(4))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.fc_kp = nn.Linear(dims[-1], 3 * k)
        self.fc_scale = nn.Linear(dims[-1], 1)
        self.fc_pitch = nn.Linear(dims[-1], bins)
        self.fc_yaw = nn.Linear(dims[-1], bins)
        self.fc_roll = nn.Linear(dims[-1], bins)
        self.fc_t = nn.Linear(dims[-1], 3)
        self.fc_exp = nn.Linear(dims[-1], 3 * k)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        x = image
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
        return self.norm(x.mean(dim=(-2, -1)))  # (B, dims[-1])

    def forward(self, image: torch.Tensor) -> MotionExtractorOutput:
        x = self.features(image)
        b, k = x.shape[0], self.num_keypoints
        return MotionExtractorOutput(
            kp=self.fc_kp(x).view(b, k, 3), pitch_logits=self.fc_pitch(x), yaw_logits=self.fc_yaw(x),
            roll_logits=self.fc_roll(x), translation=self.fc_t(x), expression=self.fc_exp(x).view(b, k, 3),
            scale=self.fc_scale(x).view(b))
