"""Random 2D warps (affine plus thin-plate spline) for the equivariance loss and still pairs.

A warp ``T`` maps a point of the *warped* image to the point of the original image it
samples from: ``warped(p) = image(T(p))``. Keypoints found on the warped image therefore
map back onto the original through ``T`` itself, which is what the equivariance loss
compares. Coordinates are normalised to [-1, 1] with ``align_corners=True``, the
convention of ``geometry.make_coordinate_grid`` and of the keypoint detector.

:func:`sample_still_warp` draws the larger warps that turn one still photo into a training
pair (two independent warps of the same face crop): rotation, scale, shift, a thin-plate
spline and a horizontal flip. A 2D warp can change only the head's roll (in-plane rotation)
and, by mirroring, the sign of yaw and roll; the pose teacher sees both on the warped images.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def _grid_2d(h: int, w: int, dtype=None, device=None) -> torch.Tensor:
    """(H, W, 2) pixel centres in (x, y) order, linspace(-1, 1)."""
    ys = torch.linspace(-1.0, 1.0, h, dtype=dtype, device=device)
    xs = torch.linspace(-1.0, 1.0, w, dtype=dtype, device=device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1)


def _tps_kernel(points: torch.Tensor, control: torch.Tensor) -> torch.Tensor:
    """Thin-plate radial basis r^2 log r between points (B, N, 2) and control points (P, 2) -> (B, N, P)."""
    diff = points.unsqueeze(2) - control.view(1, 1, -1, 2)  # (B, N, P, 2)
    r2 = diff.pow(2).sum(-1)
    return 0.5 * r2 * torch.log(r2 + 1e-9)  # r^2 log r = 0.5 r^2 log r^2


@dataclass
class RandomWarp:
    """One random warp per batch element: ``T(p) = A p + b + sum_j w_j U(|p - c_j|)``."""

    theta: torch.Tensor  # (B, 2, 3) affine part [A | b]
    control_points: torch.Tensor | None  # (P, 2) thin-plate-spline control points
    control_weights: torch.Tensor | None  # (B, P, 2) spline weights per axis

    @classmethod
    def sample(cls, batch: int, affine_std: float = 0.05, tps_std: float = 0.005, tps_points: int = 5,
               generator: torch.Generator | None = None, device=None) -> "RandomWarp":
        """Draw a warp near the identity; std 0 switches a part off."""
        theta = torch.eye(2, 3).repeat(batch, 1, 1)
        if affine_std > 0:
            theta = theta + affine_std * torch.randn(batch, 2, 3, generator=generator)
        control = weights = None
        if tps_std > 0 and tps_points > 0:
            control = _grid_2d(tps_points, tps_points).view(-1, 2)
            weights = tps_std * torch.randn(batch, control.shape[0], 2, generator=generator)
        to = (lambda t: None if t is None else t.to(device)) if device is not None else (lambda t: t)
        return cls(to(theta), to(control), to(weights))

    @property
    def batch(self) -> int:
        return self.theta.shape[0]

    def warp_points(self, points: torch.Tensor) -> torch.Tensor:
        """Apply T to points (B, N, 2) in (x, y) order -> (B, N, 2)."""
        theta = self.theta.to(points)
        out = points @ theta[:, :, :2].transpose(1, 2) + theta[:, :, 2].unsqueeze(1)
        if self.control_points is not None:
            kernel = _tps_kernel(points, self.control_points.to(points))  # (B, N, P)
            out = out + kernel @ self.control_weights.to(points)
        return out

    def jacobian(self, points: torch.Tensor) -> torch.Tensor:
        """dT/dp at points (B, N, 2) -> (B, N, 2, 2), ``[..., i, j] = dT_i / dp_j`` (FOMM's Jacobian equivariance).

        In closed form: ``A + sum_j w_j (g_j (p - c_j))^T`` with ``g = log(r^2 + 1e-9) + r^2 / (r^2 + 1e-9)``,
        the gradient of the spline basis ``0.5 r^2 log(r^2 + 1e-9)``; differentiable in ``points``.
        """
        theta = self.theta.to(points)
        b, n, _ = points.shape
        out = theta[:, :, :2].unsqueeze(1).expand(b, n, 2, 2)
        if self.control_points is not None:
            diff = points.unsqueeze(2) - self.control_points.to(points).view(1, 1, -1, 2)  # (B, N, P, 2)
            r2 = diff.pow(2).sum(-1)
            g = torch.log(r2 + 1e-9) + r2 / (r2 + 1e-9)  # (B, N, P)
            out = out + torch.einsum("bnp,bpi,bnpj->bnij", g, self.control_weights.to(points), diff)
        return out

    def warp_image(self, image: torch.Tensor) -> torch.Tensor:
        """Warped image (B, C, H, W): every output pixel p samples the input at T(p)."""
        b, _, h, w = image.shape
        grid = _grid_2d(h, w, dtype=image.dtype, device=image.device).view(1, h * w, 2).expand(b, -1, -1)
        grid = self.warp_points(grid).view(b, h, w, 2)
        return F.grid_sample(image, grid, mode="bilinear", padding_mode="reflection", align_corners=True)


@dataclass(frozen=True)
class StillWarpRange:
    """Magnitudes of the still-pair warps (0 switches a part off)."""

    rotation_deg: float = 15.0  # in-plane rotation, uniform in +-rotation_deg
    scale: float = 0.1  # zoom factor log-uniform in [1 / (1 + scale), 1 + scale]
    shift: float = 0.05  # translation per axis, uniform in +-shift (in [-1, 1] coordinates)
    tps_std: float = 0.005  # thin-plate-spline weights ~ N(0, tps_std) on a 5 x 5 grid
    flip: float = 0.0  # probability of a horizontal mirror of this warp alone


def similarity_theta(angle_deg: float, zoom: float, shift: tuple[float, float], flip: bool) -> torch.Tensor:
    """(2, 3) affine ``[A | b]`` of a warp that shows the image rotated, zoomed by ``zoom``, shifted, mirrored.

    ``T(p) = R(angle) M p / zoom + shift`` with ``M`` the mirror: ``zoom > 1`` enlarges the content.
    """
    a = math.radians(angle_deg)
    rot = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float32)
    mirror = torch.diag(torch.tensor([-1.0 if flip else 1.0, 1.0]))
    lin = rot @ mirror / zoom  # (2, 2)
    return torch.cat([lin, torch.tensor(shift, dtype=torch.float32).view(2, 1)], dim=1)  # (2, 3)


def sample_still_warp(rng: np.random.Generator, ranges: StillWarpRange = StillWarpRange(),
                      tps_points: int = 5) -> RandomWarp:
    """One random warp (batch 1) for a still pair, every number drawn from ``rng``.

    The same count of draws whatever the magnitudes, so a sample's other randomness does
    not depend on them. Warp images with ``RandomWarp.warp_image`` (reflection padding:
    no black corners).
    """
    u = rng.uniform(-1.0, 1.0, size=4)  # rotation, log-zoom, shift x, shift y
    flip = bool(rng.random() < ranges.flip)
    weights = rng.standard_normal((1, tps_points * tps_points, 2)) * ranges.tps_std  # (1, P, 2)
    zoom = math.exp(u[1] * math.log1p(ranges.scale))
    theta = similarity_theta(float(u[0]) * ranges.rotation_deg, zoom,
                             (float(u[2]) * ranges.shift, float(u[3]) * ranges.shift), flip)
    control = weight_t = None
    if ranges.tps_std > 0 and tps_points > 0:
        control = _grid_2d(tps_points, tps_points).view(-1, 2)  # (P, 2)
        weight_t = torch.from_numpy(weights).float()
    return RandomWarp(theta.unsqueeze(0), control, weight_t)
