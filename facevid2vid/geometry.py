"""3D geometry of face-vid2vid: rotations, keypoint transform, flows and warping.

Coordinate frame (shared with the landmark pose estimator in ``face/pose.py``):
x points right in the image, y points down, z points away from the camera.
Keypoints and flows are in normalised coordinates [-1, 1] ordered (x, y, z),
the order ``grid_sample`` expects.

Angles are in degrees. ``R = R_z(roll) @ R_y(yaw) @ R_x(pitch)``; with this
frame a positive yaw moves the nose toward the image's left (the subject turns
to their right), a positive pitch moves the nose down, a positive roll turns
the face clockwise in the image.
"""
from __future__ import annotations

import contextlib
import functools
import math

import torch


def _full_precision(*tensors: torch.Tensor):
    """Float16/bfloat16 tensors as float32 (geometry is done in full precision even under autocast)."""
    out = tuple(t.float() if t.is_floating_point() and t.element_size() < 4 else t for t in tensors)
    return out if len(out) > 1 else out[0]


def no_autocast(ref: torch.Tensor):
    """Turn autocast off so small matrix products stay in float32 (bfloat16 keeps ~3 digits)."""
    if ref.device.type in ("cuda", "cpu"):
        return torch.autocast(device_type=ref.device.type, enabled=False)
    return contextlib.nullcontext()


def _rot_x(a: torch.Tensor) -> torch.Tensor:
    c, s, o, z = torch.cos(a), torch.sin(a), torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([o, z, z, z, c, -s, z, s, c], dim=-1).view(*a.shape, 3, 3)


def _rot_y(a: torch.Tensor) -> torch.Tensor:
    c, s, o, z = torch.cos(a), torch.sin(a), torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, z, s, z, o, z, -s, z, c], dim=-1).view(*a.shape, 3, 3)


def _rot_z(a: torch.Tensor) -> torch.Tensor:
    c, s, o, z = torch.cos(a), torch.sin(a), torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, -s, z, s, c, z, z, z, o], dim=-1).view(*a.shape, 3, 3)


def rotation_from_angles(yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """Yaw, pitch, roll in degrees, each (B,), to rotation matrices (B, 3, 3)."""
    yaw, pitch, roll = _full_precision(yaw, pitch, roll)
    to_rad = math.pi / 180.0
    with no_autocast(yaw):
        return _rot_z(roll * to_rad) @ _rot_y(yaw * to_rad) @ _rot_x(pitch * to_rad)


def angles_from_rotation(rotation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse of :func:`rotation_from_angles` for |yaw| < 90 degrees: (yaw, pitch, roll) in degrees."""
    # R = Rz(r) Ry(y) Rx(p):  R[2,0] = -sin(y), R[2,1] = cos(y) sin(p), R[2,2] = cos(y) cos(p),
    #                          R[1,0] = sin(r) cos(y), R[0,0] = cos(r) cos(y)
    r = rotation
    yaw = torch.asin((-r[..., 2, 0]).clamp(-1.0, 1.0))
    pitch = torch.atan2(r[..., 2, 1], r[..., 2, 2])
    roll = torch.atan2(r[..., 1, 0], r[..., 0, 0])
    to_deg = 180.0 / math.pi
    return yaw * to_deg, pitch * to_deg, roll * to_deg


def angles_from_bins(logits: torch.Tensor) -> torch.Tensor:
    """Expected angle in degrees from bin logits (B, num_bins): ``3 * E[bin] - 99``.

    The expectation (not the arg-max) keeps the angle continuous and differentiable.
    """
    logits = _full_precision(logits)
    idx = torch.arange(logits.shape[-1], dtype=logits.dtype, device=logits.device)
    prob = torch.softmax(logits, dim=-1)
    return 3.0 * (prob * idx).sum(dim=-1) - 99.0


def transform_keypoints(
    canonical: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor, delta: torch.Tensor
) -> torch.Tensor:
    """``x_k = R x_c,k + t + delta_k`` for every keypoint.

    canonical (B, K, 3), rotation (B, 3, 3), translation (B, 3), delta (B, K, 3) -> (B, K, 3).
    A batch-1 canonical set broadcasts to the batch of the pose.
    """
    canonical, rotation, translation, delta = _full_precision(canonical, rotation, translation, delta)
    with no_autocast(canonical):
        rotated = torch.einsum("bij,bkj->bki", rotation, canonical.expand(rotation.shape[0], -1, -1))
    return rotated + translation.unsqueeze(1) + delta


def make_coordinate_grid(
    d: int, h: int, w: int, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """Normalised voxel centres (D, H, W, 3) in (x, y, z) order, matching ``align_corners=True``.

    Cached per shape, dtype and device (every driving frame of a model uses the same few
    grids): treat the result as read-only.
    """
    return _grid(d, h, w, dtype or torch.get_default_dtype(), torch.device(device or "cpu"))


@functools.lru_cache(maxsize=32)
def _grid(d: int, h: int, w: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # a normal tensor even under inference_mode, so training code can use the cached grid too
    with torch.inference_mode(False):
        z = torch.linspace(-1.0, 1.0, d, dtype=dtype, device=device)
        y = torch.linspace(-1.0, 1.0, h, dtype=dtype, device=device)
        x = torch.linspace(-1.0, 1.0, w, dtype=dtype, device=device)
        zz, yy, xx = torch.meshgrid(z, y, x, indexing="ij")
        return torch.stack([xx, yy, zz], dim=-1)


def keypoint_flows(
    kp_source: torch.Tensor,
    kp_driving: torch.Tensor,
    rot_source: torch.Tensor | None,
    rot_driving: torch.Tensor | None,
    spatial: tuple[int, int, int],
    mode: str = "rotation",
) -> torch.Tensor:
    """Backward flows from the driving volume into the source volume, one per keypoint plus background.

    For a driving-frame point p, keypoint k says the matching source point is
    ``w_k(p) = R_s R_d^-1 (p - x_d,k) + x_s,k`` ("rotation") or ``p - x_d,k + x_s,k``
    ("identity", as the open reimplementations do). Index 0 is the background ``w_0(p) = p``.

    kp_source, kp_driving (B, K, 3); rotations (B, 3, 3) (ignored in "identity" mode);
    a batch-1 source broadcasts to the driving batch. Returns (B, K+1, D, H, W, 3).
    """
    if mode not in ("rotation", "identity"):
        raise ValueError(f"flow mode must be 'rotation' or 'identity', got {mode!r}")
    kp_source, kp_driving = _full_precision(kp_source, kp_driving)
    b, k, _ = kp_driving.shape
    grid = make_coordinate_grid(*spatial, dtype=kp_driving.dtype, device=kp_driving.device)
    rel = grid.view(1, 1, *spatial, 3) - kp_driving.view(b, k, 1, 1, 1, 3)  # (B, K, D, H, W, 3)
    if mode == "rotation":
        rot_source, rot_driving = _full_precision(rot_source, rot_driving)
        # R_s R_d^-1 = R_s R_d^T for rotations; applied to row vectors as v @ (R_s R_d^T)^T = v @ R_d R_s^T
        with no_autocast(rel):
            rel_rot = rot_driving @ rot_source.expand(b, -1, -1).transpose(1, 2)  # (B, 3, 3)
            rel = (rel.reshape(b, -1, 3) @ rel_rot.to(rel.dtype)).view(b, k, *spatial, 3)
    flows = rel + kp_source.expand(b, -1, -1).reshape(b, k, 1, 1, 1, 3)
    background = grid.expand(b, 1, *spatial, 3)
    return torch.cat([background, flows], dim=1)


def compose_flow(flows: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``w = sum_k m_k w_k``: flows (B, K+1, D, H, W, 3), masks (B, K+1, D, H, W) -> (B, D, H, W, 3)."""
    return (flows * masks.unsqueeze(-1)).sum(dim=1)


def warp_volume(volume: torch.Tensor, flow: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """Trilinear backward warp of (B, C, D, H, W) by a flow (B, D, H, W, 3) of normalised (x, y, z).

    ``align_corners=True`` so that :func:`make_coordinate_grid` hits voxel centres exactly and the
    identity flow returns the volume unchanged. Padding defaults to "border": samples pushed past
    the volume (large rotations, depth shifts of a 16-deep volume) repeat the edge features
    instead of fading to zero; the occlusion map tells G where the source has no content.
    """
    dtype = torch.promote_types(volume.dtype, flow.dtype)  # never round the flow to half precision
    return torch.nn.functional.grid_sample(
        volume.to(dtype), flow.to(dtype), mode="bilinear", padding_mode=padding_mode, align_corners=True
    )


def kp2gaussian(kp: torch.Tensor, spatial: tuple[int, int, int], variance: float) -> torch.Tensor:
    """Gaussian blobs ``exp(-|p - x_k|^2 / (2 variance))`` at each keypoint: (B, K, 3) -> (B, K, D, H, W)."""
    b, k, _ = kp.shape
    grid = make_coordinate_grid(*spatial, dtype=kp.dtype, device=kp.device)
    diff = grid.view(1, 1, *spatial, 3) - kp.view(b, k, 1, 1, 1, 3)
    return torch.exp(-0.5 * (diff**2).sum(-1) / variance)


def kp2gaussian_2d(kp: torch.Tensor, size: tuple[int, int], variance: float) -> torch.Tensor:
    """Image-plane Gaussians from the (x, y) of each keypoint: (B, K, 3) -> (B, K, H, W) (for D)."""
    b, k, _ = kp.shape
    grid = make_coordinate_grid(1, *size, dtype=kp.dtype, device=kp.device)[0, ..., :2]  # (H, W, 2)
    diff = grid.view(1, 1, *size, 2) - kp[..., :2].reshape(b, k, 1, 1, 2)
    return torch.exp(-0.5 * (diff**2).sum(-1) / variance)


def user_rotation(
    rotation_driving: torch.Tensor,
    yaw: float | torch.Tensor = 0.0,
    pitch: float | torch.Tensor = 0.0,
    roll: float | torch.Tensor = 0.0,
    frontalize: bool = False,
) -> torch.Tensor:
    """Free-view rotation ``R_u R_d`` (or ``R_u`` alone when frontalising, i.e. ``R_d = I``).

    rotation_driving (B, 3, 3); yaw, pitch, roll in degrees, scalars or (B,) tensors.
    """
    rotation_driving = _full_precision(rotation_driving)
    b = rotation_driving.shape[0]
    opts = dict(dtype=rotation_driving.dtype, device=rotation_driving.device)

    def as_batch(a):
        a = torch.as_tensor(a, **opts)
        return a.expand(b) if a.dim() == 0 else a

    r_user = rotation_from_angles(as_batch(yaw), as_batch(pitch), as_batch(roll)).to(rotation_driving.dtype)
    if frontalize:
        return r_user
    with no_autocast(rotation_driving):
        return r_user @ rotation_driving
