"""Tensor-level inference: the stateless synthesis core, batched in one place.

:class:`Animator` wraps a model that implements the synthesis interface
(``encode_source``, ``estimate_motion``, ``render``; see :class:`~facevid2vid.models.FaceVid2Vid`)
and adds what every caller needs: device placement, input checks, inference mode and
batching (:meth:`Animator._chunks` is the only place frames are split into batches).
It holds no per-stream state: a :class:`~facevid2vid.structures.SourceEncoding` is a
value the caller keeps, so one Animator serves any number of sources at once (two
directions of a call, an encoder and its decoder). ``pipeline.py`` does reading,
cropping and writing around it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch

from facevid2vid.devices import resolve_device
from facevid2vid.errors import InputError
from facevid2vid.families.base import refuse_free_view
from facevid2vid.families.registry import FamilySpec, spec
from facevid2vid.models import FaceVid2Vid
from facevid2vid.structures import HeadMotion, SourceEncoding, View

MOTION_MODES = ("relative", "absolute")


class Animator:
    """Batched, device-placed synthesis with one model.

    Args:
        model: a FaceVid2Vid network (weights loaded by the caller).
        device: where to run; the model is moved there.
        batch_size: frames per forward pass.
    """

    def __init__(self, model: FaceVid2Vid, device: str | torch.device = "cpu", batch_size: int = 8):
        self.device = torch.device(resolve_device(str(device)))
        if self.device.type == "cpu":
            torch.set_flush_denormal(True)  # denormal floats slow CPU kernels several times over
        self.model = model.to(self.device).eval()
        self.batch_size = max(1, int(batch_size))

    @property
    def image_size(self) -> int:
        return self.model.cfg.image_size

    @property
    def output_size(self) -> int:
        """Side of rendered frames (LivePortrait renders 512 from 256 input)."""
        return getattr(self.model.cfg, "output_size", self.image_size)

    def empty(self) -> torch.Tensor:
        return torch.empty(0, 3, self.output_size, self.output_size)

    def _check_images(self, images: torch.Tensor, what: str) -> torch.Tensor:
        if images.dim() == 3:
            images = images.unsqueeze(0)
        size = self.image_size
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[-2:] != (size, size):
            raise ValueError(f"{what} must be (N, 3, {size}, {size}) images in [0, 1], got {tuple(images.shape)}")
        return images.to(self.device, torch.float32)

    def _chunks(self, n: int) -> Iterator[slice]:
        """The batches of n frames (the one place batching happens)."""
        for i in range(0, n, self.batch_size):
            yield slice(i, min(n, i + self.batch_size))

    @torch.inference_mode()
    def encode_source(self, image: torch.Tensor) -> SourceEncoding:
        """F, L, H/Delta and M's source part on source image(s) (3, S, S) or (N, 3, S, S)."""
        image = self._check_images(image, "source")
        parts = [self.model.encode_source(image[s]) for s in self._chunks(image.shape[0])]
        return parts[0] if len(parts) == 1 else type(parts[0]).cat(parts)

    @torch.inference_mode()
    def estimate_motion(self, frames: torch.Tensor) -> HeadMotion:
        """H/Delta on driving frames (N, 3, S, S)."""
        frames = self._check_images(frames, "driving frames")
        parts = [self.model.estimate_motion(frames[s]) for s in self._chunks(frames.shape[0])]
        return type(parts[0]).cat(parts) if parts else HeadMotion.cat([])

    @torch.inference_mode()
    def render(self, source: SourceEncoding, motion: HeadMotion, view: View | None = None) -> torch.Tensor:
        """Frames (N, 3, S, S) from absolute driving motion and free-view controls, on the CPU.

        ``source`` has batch 1 (one source for every frame) or N (one per frame, as in
        redirect); per-frame ``view`` controls have length N; a batch-1 motion broadcasts.
        """
        view = self._check_view(view)
        n = max(source.batch_size, motion.batch_size, view.num_frames() or 1)
        for what, size in (("source", source.batch_size), ("motion", motion.batch_size),
                           ("view", view.num_frames() or 1)):
            if size not in (1, n):
                raise ValueError(f"{what} batch {size} does not match the {n} frames to render")
        outputs = []
        for s in self._chunks(n):
            src = source if source.batch_size == 1 else source.index(s)
            part = motion if motion.batch_size == 1 else motion.index(s)
            outputs.append(self.model.render(src, part.to(self.device), view.index(s)).cpu())
        return torch.cat(outputs) if outputs else self.empty()

    @torch.inference_mode()
    def redirect(self, frames: torch.Tensor, view: View | None = None) -> torch.Tensor:
        """Re-pose frames (N, 3, S, S), each its own source and driving frame: encode_source + render."""
        frames = self._check_images(frames, "frames")
        view = self._check_view(view)
        outputs = []
        for s in self._chunks(frames.shape[0]):
            source = self.model.encode_source(frames[s])
            outputs.append(self.model.render(source, source.motion, view.index(s)).cpu())
        return torch.cat(outputs) if outputs else self.empty()

    @property
    def family(self) -> FamilySpec:
        from facevid2vid.checkpoint import model_family

        return spec(model_family(self.model))

    def _check_view(self, view: View | None) -> View:
        """The validated view; InputError when free view is asked of a family without it."""
        view = (view or View()).validate()
        if not self.family.free_view:
            refuse_free_view(view, self.family.label)
        return view

    def check_mode(self, mode: str) -> None:
        """ValueError for an unknown mode, InputError for relative on a family without it."""
        if mode not in MOTION_MODES:
            raise ValueError(f"mode must be one of {MOTION_MODES}, got {mode!r}")
        if mode == "relative" and not self.family.relative:
            raise InputError(f"{self.family.label} has no relative mode: use --mode absolute")

    def relative(self, motion: HeadMotion, reference: HeadMotion, source: HeadMotion) -> HeadMotion:
        """Relative motion as the model's family defines it (``model.relative_motion``), else face-vid2vid's."""
        rule = getattr(self.model, "relative_motion", None)
        return rule(motion, reference, source) if rule is not None else self.relative_motion(motion, reference,
                                                                                                source)

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

    def animate_iter(self, source: SourceEncoding, frames: torch.Tensor | Iterable[torch.Tensor],
                     mode: str = "relative", view: View | None = None,
                     smoother: Callable[[HeadMotion], HeadMotion] | None = None) -> Iterator[torch.Tensor]:
        """Synthesized frames for driving frames given as a tensor or as an iterable of batches.

        ``smoother`` (e.g. a :class:`~facevid2vid.smoothing.MotionSmoother`) is applied to each
        batch's estimated driving motion in order, before relative/absolute handling.
        """
        self.check_mode(mode)
        view = self._check_view(view)
        if isinstance(frames, torch.Tensor):
            frames = self._check_images(frames, "driving frames")
            batches = (frames[s] for s in self._chunks(frames.shape[0]))  # streamed batch by batch
        else:
            batches = frames
        reference = None
        for batch in batches:
            motion = self.estimate_motion(batch)
            if smoother is not None:
                motion = smoother(motion)
            if mode == "relative":
                reference = reference if reference is not None else motion.index(slice(0, 1))
                motion = self.relative(motion, reference, source.motion)
            yield self.render(source, motion, view)

    def animate(self, source: SourceEncoding, frames: torch.Tensor, mode: str = "relative",
                view: View | None = None, smoother: Callable[[HeadMotion], HeadMotion] | None = None) -> torch.Tensor:
        """All synthesized frames (N, 3, S, S) for driving frames (N, 3, S, S)."""
        parts = list(self.animate_iter(source, frames, mode=mode, view=view, smoother=smoother))
        return torch.cat(parts) if parts else self.empty()
