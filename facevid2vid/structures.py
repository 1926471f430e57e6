"""Typed containers passed between the networks (no string-keyed dicts).

Conventions used everywhere in the package:
- images: float tensors (B, 3, H, W), RGB, values in [0, 1];
- keypoints: (B, K, 3) in normalised coordinates [-1, 1], ordered (x, y, z) as
  ``torch.nn.functional.grid_sample`` expects (x: width, y: height, z: depth);
- angles: degrees, tensors of shape (B,);
- rotation matrices: (B, 3, 3).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class HeadMotion:
    """Output of H/Delta for a batch of frames: head pose plus expression."""

    yaw: torch.Tensor  # (B,) degrees
    pitch: torch.Tensor  # (B,) degrees
    roll: torch.Tensor  # (B,) degrees
    translation: torch.Tensor  # (B, 3)
    delta: torch.Tensor  # (B, K, 3) expression deformation
    # raw 66-bin logits, kept for training losses; None when not needed
    yaw_logits: torch.Tensor | None = None
    pitch_logits: torch.Tensor | None = None
    roll_logits: torch.Tensor | None = None
    # (B,) keypoint scale s of families that regress one (LivePortrait: x = s (R x_c + delta) + t);
    # None for face-vid2vid
    scale: torch.Tensor | None = None

    def index(self, idx) -> "HeadMotion":
        def pick(t):
            return None if t is None else t[idx]

        return HeadMotion(
            pick(self.yaw), pick(self.pitch), pick(self.roll), pick(self.translation), pick(self.delta),
            pick(self.yaw_logits), pick(self.pitch_logits), pick(self.roll_logits), pick(self.scale),
        )

    def detach(self) -> "HeadMotion":
        def d(t):
            return None if t is None else t.detach()

        return HeadMotion(d(self.yaw), d(self.pitch), d(self.roll), d(self.translation), d(self.delta),
                          d(self.yaw_logits), d(self.pitch_logits), d(self.roll_logits), d(self.scale))

    @staticmethod
    def cat(items: list["HeadMotion"]) -> "HeadMotion":
        def c(name):
            vals = [getattr(m, name) for m in items]
            return None if any(v is None for v in vals) else torch.cat(vals)

        return HeadMotion(*(c(n) for n in ("yaw", "pitch", "roll", "translation", "delta",
                                             "yaw_logits", "pitch_logits", "roll_logits", "scale")))


@dataclass
class MotionSourceCache:
    """What M needs of the source alone, computed once per source."""

    compressed: torch.Tensor  # (B, cc, D, h, w) f_s through M's 1x1x1 compression
    heat: torch.Tensor  # (B, K, D, h, w) Gaussians at the source keypoints x_s

    def index(self, idx) -> "MotionSourceCache":
        return MotionSourceCache(self.compressed[idx], self.heat[idx])


@dataclass
class SourceEncoding:
    """Everything computed once per source image (F, L and H/Delta on the source, plus M's source part).

    Immutable in use: rendering never changes it, so any number of streams can each hold
    their own and share one model.
    """

    features: torch.Tensor  # (B, C, D, h, w) appearance volume f_s
    canonical_kp: torch.Tensor  # (B, K, 3) x_c
    motion: HeadMotion  # source pose and expression
    kp: torch.Tensor  # (B, K, 3) x_s = R_s x_c + t_s + delta_s
    rotation: torch.Tensor  # (B, 3, 3) R_s
    cache: MotionSourceCache | None = None  # None: M recomputes it per driving batch

    @property
    def batch_size(self) -> int:
        return self.features.shape[0]

    def index(self, idx) -> "SourceEncoding":
        """The sources ``idx`` (a slice keeps the batch dimension)."""
        cache = None if self.cache is None else self.cache.index(idx)
        return SourceEncoding(self.features[idx], self.canonical_kp[idx], self.motion.index(idx), self.kp[idx],
                              self.rotation[idx], cache)

    def without_cache(self) -> "SourceEncoding":
        """The same source with M's source part left to be recomputed (to measure what caching saves)."""
        return SourceEncoding(self.features, self.canonical_kp, self.motion, self.kp, self.rotation, None)


@dataclass(frozen=True)
class View:
    """Free-view controls of a render: ``R_d <- R_u R_d`` (``R_d = I`` when frontalizing), ``t_d <- t_d + t_u``.

    Angles in degrees, each a number or a per-frame (N,) tensor (a yaw sweep is one render);
    ``translation`` is (3,) or (N, 3) in normalised keypoint units.
    """

    yaw: float | torch.Tensor = 0.0
    pitch: float | torch.Tensor = 0.0
    roll: float | torch.Tensor = 0.0
    translation: tuple[float, float, float] | torch.Tensor | None = None
    frontalize: bool = False

    def _fields(self):
        return {"yaw": self.yaw, "pitch": self.pitch, "roll": self.roll, "translation": self.translation}

    def validate(self) -> "View":
        """ValueError naming the control if a value is not finite or per-frame lengths differ."""
        for name, value in self._fields().items():
            if value is not None and not bool(torch.isfinite(torch.as_tensor(value, dtype=torch.float64)).all()):
                raise ValueError(f"view {name} must be finite, got {value}")
        self.num_frames()
        return self

    def num_frames(self) -> int | None:
        """The per-frame length N, or None when every control is one value for all frames."""
        lengths = set()
        for name, value in self._fields().items():
            t = None if value is None else torch.as_tensor(value)
            if t is not None and t.dim() == (2 if name == "translation" else 1):
                lengths.add(t.shape[0])
        if len(lengths) > 1:
            raise ValueError(f"per-frame view controls have different lengths {sorted(lengths)}")
        return lengths.pop() if lengths else None

    def index(self, idx: slice) -> "View":
        """The controls of frames ``idx`` (values shared by all frames are kept as they are)."""
        if self.num_frames() is None:
            return self

        def pick(name, value):
            t = None if value is None else torch.as_tensor(value)
            per_frame = t is not None and t.dim() == (2 if name == "translation" else 1)
            return t[idx] if per_frame else value

        return View(**{k: pick(k, v) for k, v in self._fields().items()}, frontalize=self.frontalize)


@dataclass
class GeneratorOutput:
    image: torch.Tensor  # (B, 3, H, W) in [0, 1]
    mask: torch.Tensor  # (B, K+1, D, h, w) flow composition masks (index 0: background)
    occlusion: torch.Tensor | None  # (B, 1, h, w)
    flow: torch.Tensor  # (B, D, h, w, 3) composed backward flow


@dataclass
class ForwardOutput:
    """What the training path (``FaceVid2Vid.forward``) returns."""

    generated: GeneratorOutput  # the driving frame re-rendered from the source
    source: SourceEncoding
    driving: HeadMotion  # H/Delta on the driving frame
    kp_driving: torch.Tensor  # (B, K, 3) x_d
