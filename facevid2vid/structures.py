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

    @property
    def batch_size(self) -> int:
        return self.yaw.shape[0]

    def to(self, device: torch.device | str) -> "HeadMotion":
        """The pose, translation, expression (and scale) on ``device`` (logits are dropped)."""
        scale = None if self.scale is None else self.scale.to(device)
        return HeadMotion(*(t.to(device) for t in (self.yaw, self.pitch, self.roll, self.translation, self.delta)),
                          scale=scale)

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
    image: torch.Tensor | None = None  # (B, 3, S, S) the source itself, kept for G's pixel path only

    @property
    def batch_size(self) -> int:
        return self.features.shape[0]

    def index(self, idx) -> "SourceEncoding":
        """The sources ``idx`` (a slice keeps the batch dimension)."""
        cache = None if self.cache is None else self.cache.index(idx)
        return SourceEncoding(self.features[idx], self.canonical_kp[idx], self.motion.index(idx), self.kp[idx],
                              self.rotation[idx], cache, _pick(self.image, idx))

    def without_cache(self) -> "SourceEncoding":
        """The same source with M's source part left to be recomputed (to measure what caching saves)."""
        return SourceEncoding(self.features, self.canonical_kp, self.motion, self.kp, self.rotation, None, self.image)

    @staticmethod
    def cat(parts: list["SourceEncoding"]) -> "SourceEncoding":
        """Sources encoded in batches, as one (the cache is kept only if every part has one)."""
        def cat(name):
            return torch.cat([getattr(p, name) for p in parts])

        cache = None
        if all(p.cache is not None for p in parts):
            cache = MotionSourceCache(torch.cat([p.cache.compressed for p in parts]),
                                      torch.cat([p.cache.heat for p in parts]))
        return SourceEncoding(cat("features"), cat("canonical_kp"), HeadMotion.cat([p.motion for p in parts]),
                              cat("kp"), cat("rotation"), cache, _cat([p.image for p in parts]))


def _pick(t: torch.Tensor | None, idx) -> torch.Tensor | None:
    return None if t is None else t[idx]


def _cat(values: list[torch.Tensor | None]) -> torch.Tensor | None:
    return None if any(v is None for v in values) else torch.cat(values)


@dataclass
class KeypointMotion:
    """Motion of the 2D keypoint families (Monkey-Net: keypoints; FOMM: keypoints and local affine Jacobians)."""

    kp: torch.Tensor  # (B, K, 2) in [-1, 1], (x, y) as grid_sample expects
    jacobian: torch.Tensor | None = None  # (B, K, 2, 2) FOMM's d(driving -> frame) at each keypoint

    @property
    def batch_size(self) -> int:
        return self.kp.shape[0]

    def index(self, idx) -> "KeypointMotion":
        return KeypointMotion(self.kp[idx], _pick(self.jacobian, idx))

    def detach(self) -> "KeypointMotion":
        return KeypointMotion(self.kp.detach(), None if self.jacobian is None else self.jacobian.detach())

    def to(self, device: torch.device | str) -> "KeypointMotion":
        return KeypointMotion(self.kp.to(device), None if self.jacobian is None else self.jacobian.to(device))

    @staticmethod
    def cat(items: list["KeypointMotion"]) -> "KeypointMotion":
        return KeypointMotion(torch.cat([m.kp for m in items]), _cat([m.jacobian for m in items]))

    def vector(self) -> torch.Tensor:
        """(B, 2K) or, with Jacobians, (B, 6K): per keypoint x, y then J row-major (the codec's payload)."""
        b, k = self.kp.shape[:2]
        if self.jacobian is None:
            return self.kp.reshape(b, 2 * k)
        return torch.cat([self.kp, self.jacobian.reshape(b, k, 4)], dim=2).reshape(b, 6 * k)

    @staticmethod
    def from_vector(values: torch.Tensor, num_keypoints: int, jacobian: bool) -> "KeypointMotion":
        """Inverse of :meth:`vector`."""
        b = values.shape[0]
        if not jacobian:
            return KeypointMotion(values.reshape(b, num_keypoints, 2))
        v = values.reshape(b, num_keypoints, 6)
        return KeypointMotion(v[..., :2], v[..., 2:].reshape(b, num_keypoints, 2, 2))


@dataclass
class CodeMotion:
    """Motion as one latent vector per frame (X2Face's driving code: the bottleneck of its driving network)."""

    code: torch.Tensor  # (B, D)

    @property
    def batch_size(self) -> int:
        return self.code.shape[0]

    def index(self, idx) -> "CodeMotion":
        return CodeMotion(self.code[idx])

    def detach(self) -> "CodeMotion":
        return CodeMotion(self.code.detach())

    def to(self, device: torch.device | str) -> "CodeMotion":
        return CodeMotion(self.code.to(device))

    @staticmethod
    def cat(items: list["CodeMotion"]) -> "CodeMotion":
        return CodeMotion(torch.cat([m.code for m in items]))

    def vector(self) -> torch.Tensor:
        return self.code

    @staticmethod
    def from_vector(values: torch.Tensor) -> "CodeMotion":
        return CodeMotion(values)


@dataclass
class ImageSource:
    """Source encoding of the 2D families: the image, its motion, and what the family caches of it.

    ``features`` holds the family's per-source tensors, batch first (FOMM and Monkey-Net: the
    generator's encoder features; X2Face: the embedded face), so rendering many frames from one
    source runs the source-only networks once.
    """

    image: torch.Tensor  # (B, 3, S, S) in [0, 1]
    motion: KeypointMotion | CodeMotion | None  # the source's own keypoints (None: the family has none)
    features: tuple[torch.Tensor, ...] = ()

    @property
    def batch_size(self) -> int:
        return self.image.shape[0]

    def index(self, idx) -> "ImageSource":
        motion = None if self.motion is None else self.motion.index(idx)
        return ImageSource(self.image[idx], motion, tuple(f[idx] for f in self.features))

    def without_cache(self) -> "ImageSource":
        """The same source; its features are what rendering needs, so they stay."""
        return self

    @staticmethod
    def cat(parts: list["ImageSource"]) -> "ImageSource":
        motion = None if parts[0].motion is None else type(parts[0].motion).cat([p.motion for p in parts])
        features = tuple(torch.cat(f) for f in zip(*(p.features for p in parts)))
        return ImageSource(torch.cat([p.image for p in parts]), motion, features)


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

    def is_default(self) -> bool:
        """True when the view changes nothing: zero angles and translation (numbers or per-frame), no frontalize."""
        values = [self.yaw, self.pitch, self.roll] + ([] if self.translation is None else [self.translation])
        return not self.frontalize and not any(bool(torch.as_tensor(v).any()) for v in values)

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
    image_share: torch.Tensor | None = None  # (B, 1, H, W) G's weight against its pixel path (generator_image_skip)


@dataclass
class ForwardOutput:
    """What the training path (``FaceVid2Vid.forward``) returns."""

    generated: GeneratorOutput  # the driving frame re-rendered from the source
    source: SourceEncoding
    driving: HeadMotion  # H/Delta on the driving frame
    kp_driving: torch.Tensor  # (B, K, 3) x_d
