"""FOMM's relative motion transfer: the reference demo's ``normalize_kp`` with every option on.

``normalize_kp(kp_source, kp_driving, kp_driving_initial, adapt_movement_scale=True,
use_relative_movement=True, use_relative_jacobian=True)``:

- movement scale ``s = sqrt(area(hull(kp_s))) / sqrt(area(hull(kp_ref)))`` (the source's keypoints
  and the reference driving frame's, batch element 0 of each, as the reference);
- ``kp = (kp_d - kp_ref) s + kp_s``;
- ``J = J_d J_ref^-1 J_s``.

The hull area is a monotone chain here (the reference calls scipy's ConvexHull; the area is the same).
"""
from __future__ import annotations

import torch

from facevid2vid.structures import KeypointMotion

MIN_AREA = 1e-12  # below this a hull is degenerate (collinear keypoints): the scale falls back to 1


def _cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def hull_area(points: torch.Tensor) -> float:
    """Area of the convex hull of points (N, 2), in float64 (Andrew's monotone chain; 0 for < 3 points)."""
    pts = sorted(set(map(tuple, points.detach().to("cpu", torch.float64).tolist())))
    if len(pts) < 3:
        return 0.0
    chains = []
    for ordered in (pts, pts[::-1]):  # lower hull, then upper hull
        chain: list[tuple[float, float]] = []
        for p in ordered:
            while len(chain) >= 2 and _cross(chain[-2], chain[-1], p) <= 0:
                chain.pop()
            chain.append(p)
        chains.append(chain[:-1])  # each chain's last point starts the other
    hull = chains[0] + chains[1]
    twice = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(hull, hull[1:] + hull[:1]))
    return abs(twice) / 2.0


def movement_scale(source_kp: torch.Tensor, reference_kp: torch.Tensor) -> float:
    """``sqrt(hull area of source_kp) / sqrt(hull area of reference_kp)`` for (K, 2) keypoints (1 if degenerate)."""
    source, reference = hull_area(source_kp), hull_area(reference_kp)
    if source < MIN_AREA or reference < MIN_AREA:
        return 1.0
    return (source / reference) ** 0.5


def relative_motion(motion: KeypointMotion, reference: KeypointMotion, source: KeypointMotion,
                    adapt_movement_scale: bool = True) -> KeypointMotion:
    """``motion`` (N frames) relative to ``reference`` (batch 1), applied to ``source`` (batch 1)."""
    scale = movement_scale(source.kp[0], reference.kp[0]) if adapt_movement_scale else 1.0
    kp = (motion.kp - reference.kp) * scale + source.kp
    jacobian = None
    if motion.jacobian is not None and reference.jacobian is not None and source.jacobian is not None:
        jacobian = (motion.jacobian @ torch.linalg.inv(reference.jacobian)) @ source.jacobian
    return KeypointMotion(kp, jacobian)
