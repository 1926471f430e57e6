"""L: the canonical keypoint detector, source image -> K identity-specific 3D keypoints."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..config import ModelConfig
from ..geometry import make_coordinate_grid, no_autocast
from .blocks import Conv3d, DownBlock2d, UpBlock3d, level_width


def gaussian_kernel(scale: float) -> torch.Tensor:
    """The anti-alias blur of an image downscaled by ``scale`` = 1/n: sigma (n - 1) / 2, 2 round(4 sigma) + 1 taps.

    As the open reimplementation (after first-order-model) builds it: 13 x 13 with sigma 1.5 for 1/4.
    Returns the normalised 2D kernel (k, k), float32.
    """
    sigma = (1.0 / scale - 1.0) / 2.0
    size = 2 * round(sigma * 4) + 1
    taps = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    one = torch.exp(-taps**2 / (2 * sigma**2))
    kernel = one[:, None] * one[None, :]
    return kernel / kernel.sum()


class GaussianDownsample(nn.Module):
    """Blur with :func:`gaussian_kernel` (zero padding), keep every n-th pixel from the first: (B, C, S, S) -> S/n."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale, self.step = scale, round(1.0 / scale)
        # no parameter or buffer: the kernel is recomputed on each call (169 numbers); the converter
        # checks a checkpoint's own copy of it against gaussian_kernel
        self.pad = round(4 * (1.0 / scale - 1.0) / 2.0)  # half of gaussian_kernel's size, without building it

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        c = image.shape[1]
        kernel = gaussian_kernel(self.scale).to(image.device, image.dtype).expand(c, 1, -1, -1)
        x = F.conv2d(F.pad(image, (self.pad,) * 4), kernel, groups=c)
        return x[:, :, ::self.step, ::self.step]


class CanonicalKeypointDetector(nn.Module):
    """Image (B, 3, S, S) -> canonical keypoints (B, K, 3) in [-1, 1], (x, y, z) order.

    Works on a copy downscaled by ``kp_scale_factor``: a 2D encoder, a 1x1 conv whose
    channels are read as a (C, kp_depth) volume, a 3D decoder back to the downscaled size,
    K heatmaps (a ``kp_heatmap_kernel``-wide 3D conv) and a soft-argmax with temperature ``kp_temperature``.
    ``kp_downsample`` "gaussian" downscales as the open reimplementation does (:class:`GaussianDownsample`).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        be, nb, mx = cfg.kp_block_expansion, cfg.kp_num_blocks, cfg.kp_max_features
        self.scale = cfg.kp_scale_factor
        self.depth = cfg.kp_depth
        self.temperature = cfg.kp_temperature
        size = round(cfg.image_size * self.scale)
        if size % (2**nb) != 0:
            raise ValueError(f"keypoint input {size}px is not divisible by 2**kp_num_blocks={2 ** nb}")
        self.encoder = nn.Sequential(
            *(DownBlock2d(3 if i == 0 else level_width(be, i, mx), level_width(be, i + 1, mx)) for i in range(nb))
        )
        self.reshape_channels = level_width(be, nb, mx)
        self.to_volume = nn.Conv2d(self.reshape_channels, self.reshape_channels * self.depth, 1)
        self.decoder = nn.Sequential(
            *(UpBlock3d(level_width(be, i + 1, mx), level_width(be, i, mx), cfg.upsample_3d)
              for i in reversed(range(nb)))
        )
        ks = cfg.kp_heatmap_kernel
        self.heatmap = Conv3d(be, cfg.num_keypoints, ks, padding=ks // 2)
        self.gaussian = GaussianDownsample(self.scale) if cfg.kp_downsample == "gaussian" and self.scale != 1 else None

    def downscale(self, image: torch.Tensor) -> torch.Tensor:
        if self.scale == 1.0:
            return image
        if self.gaussian is not None:
            return self.gaussian(image)
        return F.interpolate(image, scale_factor=self.scale, mode="bilinear", align_corners=False, antialias=True)

    def heatmaps(self, image: torch.Tensor) -> torch.Tensor:
        """Unnormalised keypoint heatmaps (B, K, kp_depth, s, s), s = S * kp_scale_factor."""
        x = self.to_volume(self.encoder(self.downscale(image)))  # (B, Cr*Dk, s/2^nb, s/2^nb)
        b, _, h, w = x.shape
        x = x.view(b, self.reshape_channels, self.depth, h, w)  # (B, Cr, Dk, s/2^nb, s/2^nb)
        return self.heatmap(self.decoder(x))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        heat = self.heatmaps(image)
        b, k, d, h, w = heat.shape
        # soft-argmax in float32 (keypoints need more than bfloat16's ~3 digits)
        dtype = torch.promote_types(heat.dtype, torch.float32)
        with no_autocast(heat):
            prob = torch.softmax(heat.view(b, k, -1).to(dtype) / self.temperature, dim=-1)  # (B, K, D*H*W)
            if d * h * w > PRECISE_SOFT_ARGMAX_VOXELS:
                return _expected_coordinate(prob.view(b, k, d, h, w))
            grid = make_coordinate_grid(d, h, w, dtype=dtype, device=prob.device).view(-1, 3)
            return prob @ grid  # expected coordinate, (B, K, 3)


# Above this many voxels the soft-argmax sums marginals instead of one float32 matrix product, whose
# accumulation over ~10^6 terms drifts by ~1e-4 (the beta open fv2v L at 256 px: 16 x 256 x 256).
# Smaller heatmaps (every preset of our own) keep the product, so their outputs stay bit for bit.
PRECISE_SOFT_ARGMAX_VOXELS = 1 << 18


def _expected_coordinate(prob: torch.Tensor) -> torch.Tensor:
    """E[(x, y, z)] of (B, K, D, H, W) probabilities on the align_corners grid, from its marginals -> (B, K, 3)."""
    b, k, d, h, w = prob.shape
    axes = [torch.linspace(-1.0, 1.0, n, dtype=prob.dtype, device=prob.device) for n in (w, h, d)]
    marginals = (prob.sum(dim=(2, 3)), prob.sum(dim=(2, 4)), prob.sum(dim=(3, 4)))  # over x, y, z
    return torch.stack([(m * a).sum(-1) for m, a in zip(marginals, axes)], dim=-1)
