"""Quantisation of motion to integer indices, and back.

A frame's motion is one vector of P numbers, laid out per model family by
:mod:`facevid2vid.codec.layout`. For face-vid2vid it is P = 6 + 3K numbers: yaw, pitch, roll
(degrees), translation (3) and the expression deltas (K x 3, row-major); families whose
motion has a keypoint scale (LivePortrait) append it: P = 7 + 3K (the helpers below are these
head-motion layouts). Each number has its own step; the index is ``round(value / step)``.
Everything after quantisation (prediction, entropy coding, dequantisation) works on these
integers, so encoder and decoder agree bit for bit whatever the float maths of the machine:
dequantisation is one float32 product ``index * step``, which IEEE-754 defines exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from facevid2vid.structures import HeadMotion

# values are clipped to these magnitudes before quantisation (degrees; normalised units)
ANGLE_LIMIT = 180.0
TRANSLATION_LIMIT = 4.0
EXPRESSION_LIMIT = 4.0
SCALE_LIMIT = 16.0
MAX_INDEX = 1 << 20  # no index may exceed this magnitude (bounds the escape alphabet)

DEFAULT_QUALITY = 50


@dataclass(frozen=True)
class QuantizerSteps:
    """Step sizes: angles in degrees, translation and expression in normalised units."""

    yaw: float
    pitch: float
    roll: float
    tx: float
    ty: float
    tz: float
    expression: float
    scale: float | None = None  # keypoint scale (LivePortrait); None: the motion has none

    def as_tuple(self) -> tuple[float, ...]:
        """The seven steps of every family (the scale step is apart: :attr:`scale_step`)."""
        # float32 round trip: the header stores float32, so both sides use these exact values
        return tuple(float(np.float32(v)) for v in (self.yaw, self.pitch, self.roll,
                                                     self.tx, self.ty, self.tz, self.expression))

    @property
    def scale_step(self) -> float | None:
        return None if self.scale is None else float(np.float32(self.scale))

    @classmethod
    def from_tuple(cls, values, scale: float | None = None) -> "QuantizerSteps":
        """From the seven header steps, plus the scale step (None or 0: no scale)."""
        return cls(*(float(np.float32(v)) for v in values), scale=float(np.float32(scale)) if scale else None)

    def vector(self, num_keypoints: int) -> np.ndarray:
        """Per-parameter steps, float32 (6 + 3K,), or (7 + 3K,) with a scale step."""
        t = self.as_tuple()
        tail = [] if self.scale is None else [self.scale_step]
        return np.array(list(t[:6]) + [t[6]] * (3 * num_keypoints) + tail, dtype=np.float32)


# Steps at the default quality, chosen with benchmarks/tune_steps.py on training frames
# (docs/codec.md): the expression deltas are 3K of the 6 + 3K numbers and carry most of
# the bits, while the angles and translation are few but move the whole picture, so the
# expression step is the coarse one. With the bundled model these steps cost about 33
# bits per frame at 51 dB mean (43 dB 5th percentile) PSNR of the quantised synthesis
# against the unquantised one.
BASE_STEPS = QuantizerSteps(yaw=0.5, pitch=0.5, roll=0.4, tx=0.003, ty=0.003, tz=0.003, expression=0.018)
# The keypoint scale s multiplies every keypoint (|x| up to ~1), so a step of 0.004 moves them by
# about a translation step. Not tuned on real LivePortrait motion (no weights here to tune with).
BASE_SCALE_STEP = 0.004


def steps_for_quality(quality: int = DEFAULT_QUALITY, base: QuantizerSteps = BASE_STEPS,
                      with_scale: bool = False) -> QuantizerSteps:
    """Steps for ``quality`` in 1..100: each 25 points above the default halve every step.

    ``with_scale`` adds a scale step (:data:`BASE_SCALE_STEP` unless ``base`` has one).
    """
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    factor = 2.0 ** ((DEFAULT_QUALITY - int(quality)) / 25.0)
    scale = base.scale if base.scale is not None else BASE_SCALE_STEP if with_scale else None
    return QuantizerSteps(*(v * factor for v in base.as_tuple()), scale=None if scale is None else scale * factor)


def value_limits(num_keypoints: int, scale: bool = False) -> np.ndarray:
    """Largest magnitude of each parameter, float32 (6 + 3K,), or (7 + 3K,) with the scale."""
    return np.array([ANGLE_LIMIT] * 3 + [TRANSLATION_LIMIT] * 3 + [EXPRESSION_LIMIT] * (3 * num_keypoints)
                    + [SCALE_LIMIT] * scale, dtype=np.float32)


def max_indices(steps: QuantizerSteps, num_keypoints: int) -> np.ndarray:
    """Largest index magnitude of each parameter, int64 (6 + 3K,), or (7 + 3K,) with a scale step."""
    return index_limits(value_limits(num_keypoints, steps.scale is not None), steps.vector(num_keypoints))


def index_limits(limits: np.ndarray, step_vector: np.ndarray) -> np.ndarray:
    """Largest index magnitude ``ceil(limit / step)`` of each parameter (in float64), int64 (P,)."""
    limits, step_vector = np.asarray(limits, dtype=np.float64), np.asarray(step_vector, dtype=np.float64)
    out = np.array([math.ceil(l / s) for l, s in zip(limits, step_vector)], dtype=np.int64)
    if out.max() > MAX_INDEX:
        raise ValueError(f"a step is too small: index range {out.max()} exceeds {MAX_INDEX}")
    return out


def num_parameters(num_keypoints: int, scale: bool = False) -> int:
    return 6 + 3 * num_keypoints + int(scale)


def motion_to_array(motion: HeadMotion) -> np.ndarray:
    """HeadMotion of N frames -> float32 (N, 6 + 3K): yaw, pitch, roll, t, delta (row-major), then the
    scale when the motion has one (N, 7 + 3K)."""
    n = motion.yaw.shape[0]
    parts = [motion.yaw.reshape(n, 1), motion.pitch.reshape(n, 1), motion.roll.reshape(n, 1),
             motion.translation.reshape(n, 3), motion.delta.reshape(n, -1)]  # delta (N, K, 3) -> (N, 3K)
    if motion.scale is not None:
        parts.append(motion.scale.reshape(n, 1))
    return torch.cat([p.detach().float().cpu() for p in parts], dim=1).numpy()


def array_to_motion(values: np.ndarray, num_keypoints: int, device: str | torch.device = "cpu",
                    scale: bool = False) -> HeadMotion:
    """float32 (N, 6 + 3K), or (N, 7 + 3K) with ``scale``, -> HeadMotion (inverse of :func:`motion_to_array`)."""
    values = np.asarray(values, dtype=np.float32).reshape(-1, num_parameters(num_keypoints, scale))
    t = torch.from_numpy(values.copy()).to(device)
    n, end = t.shape[0], 6 + 3 * num_keypoints
    return HeadMotion(yaw=t[:, 0], pitch=t[:, 1], roll=t[:, 2], translation=t[:, 3:6],
                      delta=t[:, 6:end].reshape(n, num_keypoints, 3), scale=t[:, end] if scale else None)


class Quantizer:
    """Maps parameter vectors to integer indices and back.

    ``hysteresis`` (in steps, encoder only) keeps the previous index while the value stays
    within ``0.5 + hysteresis`` steps of it: estimator jitter around a bin edge then costs
    no bits, at the price of a maximum error of ``0.5 + hysteresis`` steps.

    ``layout`` is a :mod:`~facevid2vid.codec.layout` MotionLayout, or a keypoint count K for
    face-vid2vid's head motion (LivePortrait's when ``steps`` has a scale step).
    """

    def __init__(self, steps: QuantizerSteps, layout, hysteresis: float = 0.0):
        self.steps = steps
        self.layout = layout
        if isinstance(layout, int):
            self.step_vector, limits = steps.vector(layout), value_limits(layout, steps.scale is not None)
        else:
            self.step_vector, limits = layout.step_vector(steps), layout.value_limits()
        self.step_vector = np.asarray(self.step_vector, dtype=np.float32)  # (P,)
        self.limits = index_limits(limits, self.step_vector)  # int64 (P,)
        self.hysteresis = float(hysteresis)

    @property
    def num_parameters(self) -> int:
        return self.step_vector.shape[0]

    def quantize(self, values: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
        """float (P,) -> int64 (P,), optionally holding ``previous`` indices within the hysteresis band."""
        scaled = np.asarray(values, dtype=np.float64) / self.step_vector.astype(np.float64)
        scaled = np.nan_to_num(scaled, nan=0.0)
        index = np.clip(np.rint(scaled), -self.limits, self.limits).astype(np.int64)
        if previous is not None and self.hysteresis > 0:
            hold = np.abs(scaled - previous) <= 0.5 + self.hysteresis
            index = np.where(hold, previous, index)
        return index

    def dequantize(self, indices: np.ndarray) -> np.ndarray:
        """int (..., P) -> float32 (..., P): one exact float32 product per value."""
        return np.asarray(indices).astype(np.float32) * self.step_vector
