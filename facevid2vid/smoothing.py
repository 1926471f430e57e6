"""Temporal smoothing of the estimated head motion: a One Euro filter (Casiez, Roussel and Vogel, CHI 2012).

H/Delta estimates each driving frame's pose and expression on its own, so small errors that
change from frame to frame make a synthesized head shake even when the person sits still.
The One Euro filter is a first-order low-pass filter whose cutoff frequency rises with the
speed of the signal: when the head is still the cutoff stays at ``min_cutoff`` and the
estimation noise is smoothed away; when it moves fast the cutoff grows by ``beta`` times the
speed, so the filtered motion follows with little lag. Per time step ``t`` (``dt = 1 / fps``):

    alpha(f)  = r / (r + 1) with r = 2 pi f dt       (exponential smoothing factor of cutoff f)
    dx_t      = (x_t - xhat_{t-1}) / dt              (speed against the last filtered value)
    dxhat_t   = dxhat_{t-1} + alpha(d_cutoff) (dx_t - dxhat_{t-1})
    f_t       = min_cutoff + beta |dxhat_t|
    xhat_t    = xhat_{t-1} + alpha(f_t) (x_t - xhat_{t-1})

with ``xhat_0 = x_0`` and ``dxhat_0 = 0``. Every element of a tensor is filtered on its own
(its own speed, its own cutoff). The filter is causal: the output at ``t`` depends only on
inputs up to ``t``, so it runs live, one frame (or one batch of consecutive frames) at a time.

:class:`MotionSmoother` applies it to :class:`~facevid2vid.structures.HeadMotion`: yaw, pitch
and roll (filtered in radians, so that one ``beta`` serves angles and positions alike: a
keypoint one normalised unit from the rotation centre moves one unit per radian),
translation and the expression deltas. The angles stay within the estimator's +-99 degrees,
so nothing is unwrapped. The other families' motion is filtered as its ``vector()`` with the
same settings: :class:`~facevid2vid.structures.KeypointMotion` (FOMM, Monkey-Net: keypoint
coordinates in normalised units and, for FOMM, the Jacobian entries) and
:class:`~facevid2vid.structures.CodeMotion` (X2Face's driving code), so ``--smooth`` works for
every family.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from facevid2vid.errors import InputError
from facevid2vid.structures import CodeMotion, HeadMotion, KeypointMotion

Motion = HeadMotion | KeypointMotion | CodeMotion


@dataclass
class SmoothingSettings:
    """Settings of the One Euro filter on the driving motion.

    The defaults were chosen on the validation split (franck frames 3600-4799, 24 fps) with
    ``benchmarks/tune_smoothing.py``; see docs/metrics.md ("Temporal stability").

    enabled: smooth at all (commands: ``--smooth``; off by default).
    min_cutoff: Hz, cutoff frequency when the motion is still; lower smooths more.
    beta: s per normalised unit, how fast the cutoff rises with speed (speed in normalised
        units per second, angles in radians per second); higher lags less on fast motion.
    d_cutoff: Hz, cutoff of the low-pass filter on the speed estimate.
    """

    enabled: bool = False
    min_cutoff: float = 0.5
    beta: float = 15.0
    d_cutoff: float = 0.5

    def validate(self) -> None:
        if not (math.isfinite(self.min_cutoff) and self.min_cutoff > 0):
            raise InputError(f"smoothing min_cutoff must be a positive frequency in Hz, got {self.min_cutoff}")
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise InputError(f"smoothing beta must be >= 0, got {self.beta}")
        if not (math.isfinite(self.d_cutoff) and self.d_cutoff > 0):
            raise InputError(f"smoothing d_cutoff must be a positive frequency in Hz, got {self.d_cutoff}")


def smoothing_factor(cutoff: torch.Tensor | float, dt: float) -> torch.Tensor | float:
    """Exponential smoothing factor ``alpha`` of a first-order low-pass filter at ``cutoff`` Hz."""
    r = 2 * math.pi * cutoff * dt
    return r / (r + 1)


class OneEuroFilter:
    """Causal One Euro filter over a stream of tensors of any (fixed) shape; see the module docstring.

    :meth:`step` filters one time step; calling the filter on a tensor filters its slices along
    ``dim`` (time) in order. State (the last filtered value and speed) is kept between calls
    until :meth:`reset`.
    """

    def __init__(self, fps: float, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0):
        if not (math.isfinite(fps) and fps > 0):
            raise InputError(f"smoothing needs a positive frame rate, got {fps}")
        SmoothingSettings(True, min_cutoff, beta, d_cutoff).validate()
        self.dt = 1.0 / float(fps)
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self.reset()

    def reset(self) -> None:
        self.value: torch.Tensor | None = None  # last filtered value xhat
        self.speed: torch.Tensor | None = None  # last filtered speed dxhat (units per second)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """The filtered value of the next time step ``x``."""
        if self.value is None:
            self.value, self.speed = x.clone(), torch.zeros_like(x)
            return self.value
        if x.shape != self.value.shape:
            raise ValueError(f"the filter was started on shape {tuple(self.value.shape)}, got {tuple(x.shape)}")
        raw_speed = (x - self.value) / self.dt
        self.speed = self.speed + smoothing_factor(self.d_cutoff, self.dt) * (raw_speed - self.speed)
        alpha = smoothing_factor(self.min_cutoff + self.beta * self.speed.abs(), self.dt)
        self.value = self.value + alpha * (x - self.value)
        return self.value

    def __call__(self, xs: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """Filter consecutive time steps: the slices of ``xs`` along ``dim``, in order."""
        if xs.shape[dim] == 0:
            return xs.clone()
        return torch.stack([self.step(x) for x in xs.unbind(dim)], dim)


def _pack(motion: Motion) -> torch.Tensor:
    """(T, 6 + 3K [+ 1]): yaw, pitch, roll in radians, translation, expression deltas (row-major), scale;
    the other families: their ``vector()`` (T, P)."""
    if not isinstance(motion, HeadMotion):
        return motion.vector().float()
    angles = torch.stack([motion.yaw, motion.pitch, motion.roll], dim=1).float().deg2rad()
    parts = [angles, motion.translation.float(), motion.delta.float().flatten(1)]
    if motion.scale is not None:
        parts.append(motion.scale.float()[:, None])
    return torch.cat(parts, dim=1)


def _unpack(packed: torch.Tensor, like: Motion) -> Motion:
    if isinstance(like, KeypointMotion):
        k = like.kp.shape[1]
        out = KeypointMotion.from_vector(packed, k, like.jacobian is not None)
        return KeypointMotion(out.kp.to(like.kp.dtype), None if out.jacobian is None else
                              out.jacobian.to(like.jacobian.dtype))
    if isinstance(like, CodeMotion):
        return CodeMotion.from_vector(packed.to(like.code.dtype))
    angles = packed[:, :3].rad2deg().to(like.yaw.dtype)
    k3 = like.delta[0].numel()
    scale = None if like.scale is None else packed[:, 6 + k3].to(like.scale.dtype)
    return HeadMotion(angles[:, 0], angles[:, 1], angles[:, 2], packed[:, 3:6].to(like.translation.dtype),
                      packed[:, 6:6 + k3].reshape(like.delta.shape).to(like.delta.dtype), scale=scale)


class MotionSmoother:
    """One Euro filter on a stream of motion batches (time along the batch), causal.

    Takes :class:`HeadMotion`, :class:`KeypointMotion` or :class:`CodeMotion` (one kind per
    stream). Call it with consecutive batches of driving motion in order; the state carries
    across calls, so batch boundaries change nothing. The angle logits are dropped (they no
    longer describe the smoothed angles).
    """

    def __init__(self, fps: float, settings: SmoothingSettings | None = None):
        self.settings = settings or SmoothingSettings(enabled=True)
        self.settings.validate()
        s = self.settings
        self.filter = OneEuroFilter(fps, s.min_cutoff, s.beta, s.d_cutoff)

    def reset(self) -> None:
        self.filter.reset()

    def __call__(self, motion: Motion) -> Motion:
        if isinstance(motion, HeadMotion) and motion.yaw.shape[0] == 0:
            return HeadMotion(motion.yaw, motion.pitch, motion.roll, motion.translation, motion.delta,
                              scale=motion.scale)
        return _unpack(self.filter(_pack(motion)), motion)


def motion_smoother(settings: SmoothingSettings | None, fps: float | None) -> MotionSmoother | None:
    """A fresh smoother when ``settings`` are enabled, else None (no smoothing)."""
    if settings is None or not settings.enabled:
        return None
    if fps is None:
        raise InputError("smoothing needs the video's frame rate")
    return MotionSmoother(fps, settings)


def smooth_motion(motions: Motion | Iterable[Motion], fps: float, settings: SmoothingSettings | None = None) -> Motion:
    """Smooth a whole motion sequence (one batched motion, or per-frame / per-batch motions in order).

    Any family's motion (HeadMotion, KeypointMotion, CodeMotion). ``settings`` None uses the
    defaults with smoothing on; settings with ``enabled`` False return the motion unchanged
    (concatenated).
    """
    if isinstance(motions, (HeadMotion, KeypointMotion, CodeMotion)):
        motion = motions
    else:
        items = list(motions)
        motion = type(items[0]).cat(items)
    settings = settings or SmoothingSettings(enabled=True)
    if not settings.enabled:
        return motion
    return MotionSmoother(fps, settings)(motion)
