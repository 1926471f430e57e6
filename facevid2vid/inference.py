"""Tensor-level inference: encode a source once, then synthesize driving frames in batches.

The :class:`Animator` never touches files; ``pipeline.py`` does reading, cropping and
writing around it. Per source it runs F, L and H/Delta once (cached in
``animator.source``); per driving frame it runs only H/Delta, M and G.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from facevid2vid.geometry import rotation_from_angles, user_rotation
from facevid2vid.models import FaceVid2Vid
from facevid2vid.structures import HeadMotion, SourceEncoding

MOTION_MODES = ("relative", "absolute")


class Animator:
    """Animate one source image with driving frames or explicit motion parameters.

    Args:
        model: a FaceVid2Vid network (weights loaded by the caller).
        device: where to run; the model is moved there.
        batch_size: driving frames synthesized per forward pass.
    """

    def __init__(self, model: FaceVid2Vid, device: str | torch.device = "cpu", batch_size: int = 8):
        self.device = torch.device(device)
        if self.device.type == "cpu":
            torch.set_flush_denormal(True)  # denormal floats slow CPU kernels several times over
        self.model = model.to(self.device).eval()
        self.batch_size = max(1, int(batch_size))
        self.source: SourceEncoding | None = None

    @property
    def image_size(self) -> int:
        return self.model.cfg.image_size

    def _check_images(self, images: torch.Tensor, what: str) -> torch.Tensor:
        if images.dim() == 3:
            images = images.unsqueeze(0)
        size = self.image_size
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[-2:] != (size, size):
            raise ValueError(f"{what} must be (N, 3, {size}, {size}) images in [0, 1], got {tuple(images.shape)}")
        return images.to(self.device, torch.float32)

    @torch.inference_mode()
    def set_source(self, image: torch.Tensor) -> SourceEncoding:
        """Run F, L and H/Delta on the source image (1, 3, S, S) and keep the result."""
        image = self._check_images(image, "source")
        if image.shape[0] != 1:
            raise ValueError("set_source takes exactly one image")
        self.source = self.model.encode_source(image)
        return self.source

    def _require_source(self) -> SourceEncoding:
        if self.source is None:
            raise RuntimeError("call set_source() before synthesizing frames")
        return self.source

    @torch.inference_mode()
    def estimate_motion(self, frames: torch.Tensor) -> HeadMotion:
        """H/Delta on driving frames (N, 3, S, S), in batches."""
        frames = self._check_images(frames, "driving frames")
        parts = [self.model.estimate_motion(frames[i:i + self.batch_size])
                 for i in range(0, frames.shape[0], self.batch_size)]
        return HeadMotion.cat(parts)

    @staticmethod
    def relative_motion(motion: HeadMotion, reference: HeadMotion, source: HeadMotion) -> HeadMotion:
        """Motion relative to a reference driving frame, applied to the source's pose and expression.

        Each of yaw, pitch, roll, translation and delta becomes
        ``source + (driving - reference)``, as in the open reimplementations.
        ``reference`` and ``source`` have batch 1 and broadcast.
        """
        def rel(name):
            return getattr(source, name) + getattr(motion, name) - getattr(reference, name)

        return HeadMotion(rel("yaw"), rel("pitch"), rel("roll"), rel("translation"), rel("delta"))

    @torch.inference_mode()
    def render(
        self,
        motion: HeadMotion,
        yaw: float = 0.0,
        pitch: float = 0.0,
        roll: float = 0.0,
        translation: tuple[float, float, float] | None = None,
        frontalize: bool = False,
    ) -> torch.Tensor:
        """Synthesize frames (N, 3, S, S) from absolute driving motion with free-view controls.

        The user rotation is applied as ``R_d <- R_u R_d`` (or ``R_d = I`` when
        frontalizing) and the translation as ``t_d <- t_u + t_d``.
        """
        source = self._require_source()
        _check_finite(yaw=yaw, pitch=pitch, roll=roll, translation=translation)
        outputs = []
        n = motion.yaw.shape[0]
        per_frame_source = source.kp.shape[0] > 1  # redirect(): one source per frame
        if per_frame_source and source.kp.shape[0] != n:
            raise ValueError("a batch of sources needs motion of the same batch size")
        for i in range(0, n, self.batch_size):
            part = motion.index(slice(i, i + self.batch_size))
            part = HeadMotion(*(t.to(self.device) for t in (part.yaw, part.pitch, part.roll,
                                                             part.translation, part.delta)))
            rotation = rotation_from_angles(part.yaw, part.pitch, part.roll)
            rotation = user_rotation(rotation, yaw=yaw, pitch=pitch, roll=roll, frontalize=frontalize)
            if translation is not None:
                part.translation = part.translation + torch.tensor(translation, device=self.device,
                                                                   dtype=part.translation.dtype)
            src = _slice_source(source, slice(i, i + self.batch_size)) if per_frame_source else source
            kp_driving, rotation = self.model.driving_keypoints(src, part, rotation=rotation)
            outputs.append(self.model.synthesize(src, kp_driving, rotation).image.float().clamp(0, 1))
        return torch.cat(outputs) if outputs else torch.empty(0, 3, self.image_size, self.image_size)

    @torch.inference_mode()
    def redirect(self, frames: torch.Tensor, **controls) -> torch.Tensor:
        """Re-pose frames (N, 3, S, S), each its own source and driving frame (free view per frame).

        Runs F, L and H/Delta on every frame; ``controls`` are :meth:`render`'s free-view arguments.
        Leaves ``self.source`` set to the last batch.
        """
        frames = self._check_images(frames, "frames")
        outputs = []
        for i in range(0, frames.shape[0], self.batch_size):
            self.source = self.model.encode_source(frames[i:i + self.batch_size])
            outputs.append(self.render(self.source.motion, **controls))
        return torch.cat(outputs) if outputs else torch.empty(0, 3, self.image_size, self.image_size)

    def animate_iter(
        self,
        frames: torch.Tensor | Iterator[torch.Tensor],
        mode: str = "relative",
        yaw: float = 0.0,
        pitch: float = 0.0,
        roll: float = 0.0,
        translation: tuple[float, float, float] | None = None,
        frontalize: bool = False,
        smoother: Callable[[HeadMotion], HeadMotion] | None = None,
    ) -> Iterator[torch.Tensor]:
        """Yield synthesized batches for driving frames given as a tensor or as an iterator of batches.

        ``smoother`` (e.g. a :class:`~facevid2vid.smoothing.MotionSmoother`) is applied to each
        batch's estimated driving motion in order, before relative/absolute handling.
        """
        if mode not in MOTION_MODES:
            raise ValueError(f"mode must be one of {MOTION_MODES}, got {mode!r}")
        source = self._require_source()
        if isinstance(frames, torch.Tensor):
            frames = self._check_images(frames, "driving frames")
            batches = (frames[i:i + self.batch_size] for i in range(0, frames.shape[0], self.batch_size))
        else:
            batches = frames
        reference = None
        for batch in batches:
            motion = self.estimate_motion(batch)
            if smoother is not None:
                motion = smoother(motion)
            if mode == "relative":
                if reference is None:
                    reference = motion.index(slice(0, 1))
                motion = self.relative_motion(motion, reference, source.motion)
            yield self.render(motion, yaw=yaw, pitch=pitch, roll=roll, translation=translation,
                              frontalize=frontalize)

    def animate(self, frames: torch.Tensor, mode: str = "relative", **controls) -> torch.Tensor:
        """All synthesized frames (N, 3, S, S) for driving frames (N, 3, S, S)."""
        parts = list(self.animate_iter(frames, mode=mode, **controls))
        return torch.cat(parts) if parts else torch.empty(0, 3, self.image_size, self.image_size)


def _check_finite(**controls) -> None:
    """Free-view controls must be finite: NaN or inf would give black frames."""
    for name, value in controls.items():
        if value is None:
            continue
        if not bool(torch.isfinite(torch.as_tensor(value, dtype=torch.float64)).all()):
            raise ValueError(f"{name} must be finite, got {value}")


def _slice_source(source: SourceEncoding, idx: slice) -> SourceEncoding:
    return SourceEncoding(source.features[idx], source.canonical_kp[idx], source.motion.index(idx),
                          source.kp[idx], source.rotation[idx])
