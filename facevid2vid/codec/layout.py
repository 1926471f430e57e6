"""How each model family's motion becomes the codec's parameter vector, and back.

The codec codes a frame's motion as one vector of P numbers. A :class:`MotionLayout` (one
per family and keypoint count) says what P is, which step of the stream each parameter is
quantised with, the magnitude it is clipped to, its entropy-coding group, and how a batch
of the family's motion becomes a float32 (N, P) array and back. The quantiser, the entropy
coder, the encoder and the decoder know nothing else about the motion.

============  ======  ==========================================  ===============================
family (id)   P       parameters, in order                        header steps they use
============  ======  ==========================================  ===============================
face-vid2vid  6 + 3K  yaw, pitch, roll, tx, ty, tz, then the      all seven
(0)                   expression deltas (K x 3, row-major)
LivePortrait  7 + 3K  ... then the keypoint scale                 all seven and the scale step
(1)
FOMM (2)      6K      per keypoint: x, y, then its Jacobian       tx for x, ty for y, expression
                      J row-major (J00, J01, J10, J11)            for the Jacobian entries
Monkey-Net    2K      per keypoint: x, y                          tx for x, ty for y
(3)
============  ======  ==========================================  ===============================

The header keeps its seven steps (and its scale step, 0 but for LivePortrait) for every
family. The steps a family does not use (FOMM: yaw, pitch, roll, tz; Monkey-Net: those and
expression) are written as face-vid2vid's steps at the stream's quality, validated as
face-vid2vid's are, and ignored. Keypoint coordinates are clipped to +-2 (keypoints lie in
[-1, 1]) and Jacobian entries to +-8. In the entropy coder the coordinates share the
translation group and the Jacobian entries the expression group; the angle group is unused.

Default steps at quality 50 for the keypoint families (:data:`KEYPOINT_STEP`,
:data:`JACOBIAN_STEP`; not tuned: no trained FOMM or Monkey-Net weights were at hand):
coordinates 0.003, so a keypoint moves by at most 0.0015 normalised units, a fifth of a
pixel at 256 px (one pixel is 2/256 = 0.0078 units); Jacobian entries 0.015, so each row of
J is off by at most 0.0075 per entry, which moves a point 0.2 units from its keypoint (both
ways) by at most 0.003 units, 0.4 px at 256 px. ``--quality`` scales them as every step.

X2Face has no layout: its motion is a learned code, not keypoints.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from facevid2vid.codec.entropy import GROUP_EXPRESSION, GROUP_TRANSLATION, parameter_groups
from facevid2vid.codec.quantize import (ANGLE_LIMIT, BASE_STEPS, EXPRESSION_LIMIT, TRANSLATION_LIMIT,
                                        QuantizerSteps, array_to_motion, motion_to_array, num_parameters,
                                        steps_for_quality, value_limits)
from facevid2vid.errors import InputError
from facevid2vid.structures import HeadMotion, KeypointMotion

KEYPOINT_LIMIT = 2.0  # keypoint coordinates (in [-1, 1]) are clipped to this magnitude
JACOBIAN_LIMIT = 8.0  # Jacobian entries (about 1 on the diagonal) are clipped to this magnitude
KEYPOINT_STEP = 0.003  # default step (quality 50) of the keypoint coordinates: the tx and ty steps
JACOBIAN_STEP = 0.015  # default step (quality 50) of the Jacobian entries: the expression step

# index of each header step (QuantizerSteps.as_tuple order)
STEP_TX, STEP_TY, STEP_EXPRESSION = 3, 4, 6
# magnitude each header step is validated against when a family does not say otherwise
HEAD_STEP_LIMITS = (ANGLE_LIMIT,) * 3 + (TRANSLATION_LIMIT,) * 3 + (EXPRESSION_LIMIT,)

CODEC_FAMILIES = ("facevid2vid", "liveportrait", "fomm", "monkeynet")
_NO_CODEC = {
    "x2face": "X2Face's motion is a learned code, not keypoints: the codec supports face-vid2vid, LivePortrait, "
              "FOMM and Monkey-Net",
}


def _as_array(values: torch.Tensor) -> np.ndarray:
    return values.detach().float().cpu().numpy()


@dataclass(frozen=True)
class HeadLayout:
    """face-vid2vid's motion (HeadMotion), and LivePortrait's with its keypoint ``scale`` last."""

    family: str
    num_keypoints: int
    scale: bool = False

    @property
    def num_parameters(self) -> int:
        return num_parameters(self.num_keypoints, self.scale)

    @property
    def uses_scale(self) -> bool:
        return self.scale

    @property
    def step_limits(self) -> tuple[float, ...]:
        """The largest magnitude quantised with each of the seven header steps."""
        return HEAD_STEP_LIMITS

    def default_steps(self, quality: int) -> QuantizerSteps:
        return steps_for_quality(quality, with_scale=self.scale)

    def step_vector(self, steps: QuantizerSteps) -> np.ndarray:
        """Per-parameter steps, float32 (P,)."""
        if self.scale and steps.scale is None:
            raise ValueError(f"the {self.family} motion needs a scale step")
        t = steps.as_tuple()
        tail = [steps.scale_step] if self.scale else []
        return np.array(list(t[:6]) + [t[6]] * (3 * self.num_keypoints) + tail, dtype=np.float32)

    def value_limits(self) -> np.ndarray:
        return value_limits(self.num_keypoints, self.scale)

    def groups(self) -> np.ndarray:
        return parameter_groups(self.num_keypoints, self.scale)

    def to_array(self, motion: HeadMotion) -> np.ndarray:
        """HeadMotion of N frames -> float32 (N, P)."""
        if not isinstance(motion, HeadMotion) or (motion.scale is not None) != self.scale:
            raise ValueError(f"the {self.family} layout codes HeadMotion{' with a scale' if self.scale else ''}, "
                             f"got {type(motion).__name__}")
        return _checked(motion_to_array(motion), self.num_parameters)

    def from_array(self, values: np.ndarray, device: str | torch.device = "cpu") -> HeadMotion:
        return array_to_motion(values, self.num_keypoints, device, scale=self.scale)


@dataclass(frozen=True)
class KeypointLayout:
    """The 2D keypoint families' motion (KeypointMotion): per keypoint x, y and, with ``jacobian``, J."""

    family: str
    num_keypoints: int
    jacobian: bool = False

    @property
    def per_keypoint(self) -> int:
        return 6 if self.jacobian else 2

    @property
    def num_parameters(self) -> int:
        return self.per_keypoint * self.num_keypoints

    @property
    def uses_scale(self) -> bool:
        return False

    @property
    def step_limits(self) -> tuple[float, ...]:
        limits = list(HEAD_STEP_LIMITS)
        limits[STEP_TX] = limits[STEP_TY] = KEYPOINT_LIMIT
        if self.jacobian:
            limits[STEP_EXPRESSION] = JACOBIAN_LIMIT
        return tuple(limits)

    def default_steps(self, quality: int) -> QuantizerSteps:
        """Keypoint coordinates :data:`KEYPOINT_STEP`, Jacobians :data:`JACOBIAN_STEP` at quality 50; the
        steps this family does not use are face-vid2vid's."""
        jacobian = JACOBIAN_STEP if self.jacobian else BASE_STEPS.expression
        base = replace(BASE_STEPS, tx=KEYPOINT_STEP, ty=KEYPOINT_STEP, expression=jacobian)
        return steps_for_quality(quality, base=base)

    def _per_keypoint(self, x, y, j) -> np.ndarray:
        row = [x, y] + [j] * 4 * self.jacobian
        return np.tile(np.array(row), self.num_keypoints)

    def step_vector(self, steps: QuantizerSteps) -> np.ndarray:
        t = steps.as_tuple()
        return self._per_keypoint(t[STEP_TX], t[STEP_TY], t[STEP_EXPRESSION]).astype(np.float32)

    def value_limits(self) -> np.ndarray:
        return self._per_keypoint(KEYPOINT_LIMIT, KEYPOINT_LIMIT, JACOBIAN_LIMIT).astype(np.float32)

    def groups(self) -> np.ndarray:
        return self._per_keypoint(GROUP_TRANSLATION, GROUP_TRANSLATION, GROUP_EXPRESSION).astype(np.int64)

    def to_array(self, motion: KeypointMotion) -> np.ndarray:
        """KeypointMotion of N frames -> float32 (N, P): :meth:`KeypointMotion.vector`."""
        if not isinstance(motion, KeypointMotion) or (motion.jacobian is not None) != self.jacobian:
            raise ValueError(f"the {self.family} layout codes KeypointMotion "
                             f"{'with' if self.jacobian else 'without'} Jacobians, got {type(motion).__name__}")
        return _checked(_as_array(motion.vector()), self.num_parameters)

    def from_array(self, values: np.ndarray, device: str | torch.device = "cpu") -> KeypointMotion:
        values = np.asarray(values, dtype=np.float32).reshape(-1, self.num_parameters)
        t = torch.from_numpy(values.copy()).to(device)
        return KeypointMotion.from_vector(t, self.num_keypoints, self.jacobian)


MotionLayout = HeadLayout | KeypointLayout


def _checked(values: np.ndarray, num: int) -> np.ndarray:
    if values.ndim != 2 or values.shape[1] != num:
        raise ValueError(f"motion of {values.shape[-1]} numbers per frame; the layout has {num}")
    return values


def layout_for(family: str, num_keypoints: int) -> MotionLayout:
    """The layout of ``family``'s motion with ``num_keypoints`` keypoints; InputError if the codec has none."""
    if family in _NO_CODEC:
        raise InputError(_NO_CODEC[family])
    if family == "facevid2vid":
        return HeadLayout(family, num_keypoints)
    if family == "liveportrait":
        return HeadLayout(family, num_keypoints, scale=True)
    if family == "fomm":
        return KeypointLayout(family, num_keypoints, jacobian=True)
    if family == "monkeynet":
        return KeypointLayout(family, num_keypoints)
    raise InputError(f"the codec does not know the model family {family!r} (it codes {', '.join(CODEC_FAMILIES)})")


def model_layout(model) -> MotionLayout:
    """The layout of ``model``'s motion (from its family and config); InputError if the codec cannot code it."""
    from facevid2vid.checkpoint import model_family

    family = model_family(model)
    layout = layout_for(family, 1)  # refuses families without a codec before their config is read
    cfg = model.cfg
    if family == "fomm" and not getattr(cfg, "estimate_jacobian", True):
        raise InputError("the codec sends FOMM's keypoints with their Jacobians: this FOMM model estimates none "
                         "(estimate_jacobian is false)")
    return replace(layout, num_keypoints=int(cfg.num_keypoints))


def step_limits(family: str) -> tuple[float, ...]:
    """The magnitude each of the seven header steps quantises, for header validation."""
    return layout_for(family, 1).step_limits
