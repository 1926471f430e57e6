"""File-level synthesis: animate, reconstruct and redirect, streamed frame batch by frame batch.

Library functions behind ``facevid2vid animate``, ``reconstruct`` and ``redirect``. Each
checks its outputs, reads the inputs as face crops (:mod:`.frames`), runs the stateless
:class:`~facevid2vid.inference.Animator` on one batch at a time and writes atomically.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from facevid2vid.checkpoint import resolve_model
from facevid2vid.devices import resolve_device
from facevid2vid.inference import Animator
from facevid2vid.outputs import check_outputs
from facevid2vid.pipeline.frames import FaceVideo, load_source_image
from facevid2vid.smoothing import SmoothingSettings, motion_smoother
from facevid2vid.structures import View
from facevid2vid.validation import check_angle
from facevid2vid.video_io import is_image_path, to_tensor, to_uint8, write_image, write_video


@dataclass
class RunResult:
    output: Path
    num_frames: int
    fps: float | None
    seconds: float
    reference_output: Path | None = None


def _view(yaw: float, pitch: float, roll: float, frontalize: bool) -> View:
    """Free-view angles must be finite and within +-MAX_ANGLE degrees (InputError naming the option)."""
    for name, value in (("--yaw", yaw), ("--pitch", pitch), ("--roll", roll)):
        check_angle(value, name)
    return View(yaw=yaw, pitch=pitch, roll=roll, frontalize=frontalize)


def load_animator(checkpoint: str | None = None, device: str | None = None, batch_size: int = 8) -> Animator:
    """The default (bundled) model unless a checkpoint is named."""
    dev = resolve_device(device)
    return Animator(resolve_model(checkpoint, device=dev), device=dev, batch_size=batch_size)


class _Counter:
    """Frames written so far (the count a RunResult reports)."""

    def __init__(self):
        self.n = 0

    def __call__(self, frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        for frame in frames:
            self.n += 1
            yield frame


def _progress(batches: Iterator[torch.Tensor], total: int, desc: str) -> Iterator[np.ndarray]:
    """uint8 frames of synthesized batches, with a progress bar."""
    with tqdm(total=total, desc=desc, unit="frame", leave=False) as bar:
        for out in batches:
            bar.update(out.shape[0])
            yield from to_uint8(out)


def _driving_batches(video: FaceVideo, animator: Animator) -> Iterator[torch.Tensor]:
    for batch in video.batches(animator.batch_size):
        yield to_tensor(batch)


def animate_files(
    source: str | Path,
    driving: str | Path,
    output: str | Path,
    checkpoint: str | None = None,
    mode: str = "relative",
    yaw: float = 0.0,
    pitch: float = 0.0,
    roll: float = 0.0,
    frontalize: bool = False,
    crop: bool = True,
    device: str | None = None,
    animator: Animator | None = None,
    smoothing: SmoothingSettings | None = None,
) -> RunResult:
    """Animate the person in ``source`` with the motion of ``driving``; writes a video (or frames).

    ``smoothing`` (enabled) runs a One Euro filter on the driving motion, frame by frame.
    """
    view = _view(yaw, pitch, roll, frontalize)
    start = time.perf_counter()
    check_outputs({"--output": (output, "video")},
                  {"--source": source, "--driving": driving, "--checkpoint": checkpoint})
    animator = animator or load_animator(checkpoint, device)
    size = animator.image_size
    src = animator.encode_source(to_tensor(load_source_image(source, size, crop)))
    video = FaceVideo(driving, size, crop)
    out = animator.animate_iter(src, _driving_batches(video, animator), mode=mode, view=view,
                                smoother=motion_smoother(smoothing, video.fps))
    count = _Counter()
    write_video(output, count(_progress(out, video.num_frames, "animate")), video.fps)
    return RunResult(Path(output), count.n, video.fps, time.perf_counter() - start)


def reconstruct_files(
    video: str | Path,
    output: str | Path,
    reference_output: str | Path | None = None,
    checkpoint: str | None = None,
    crop: bool = True,
    device: str | None = None,
    animator: Animator | None = None,
    smoothing: SmoothingSettings | None = None,
) -> RunResult:
    """Same-identity reconstruction: the first frame is the source, every frame drives (absolute motion).

    ``reference_output`` also writes the face crops the model saw (a second streamed pass).
    ``smoothing`` (enabled) runs a One Euro filter on the driving motion, frame by frame.
    """
    start = time.perf_counter()
    check_outputs({"--output": (output, "video"), "--reference-output": (reference_output, "video")},
                  {"--video": video, "--checkpoint": checkpoint})
    animator = animator or load_animator(checkpoint, device)
    clip = FaceVideo(video, animator.image_size, crop)
    src = animator.encode_source(to_tensor(clip.first_frame()))
    out = animator.animate_iter(src, _driving_batches(clip, animator), mode="absolute",
                                smoother=motion_smoother(smoothing, clip.fps))
    count = _Counter()
    write_video(output, count(_progress(out, clip.num_frames, "reconstruct")), clip.fps)
    if reference_output is not None:
        write_video(reference_output, clip.frames(), clip.fps)
    return RunResult(Path(output), count.n, clip.fps, time.perf_counter() - start,
                     Path(reference_output) if reference_output else None)


def redirect_frame(animator: Animator, frame: np.ndarray, view: View | None = None) -> np.ndarray:
    """Re-pose one cropped frame uint8 (S, S, 3): it is its own source and driving frame."""
    return to_uint8(animator.redirect(to_tensor(frame), view))[0]


def redirect_files(
    source: str | Path,
    output: str | Path,
    yaw: float = 0.0,
    pitch: float = 0.0,
    roll: float = 0.0,
    frontalize: bool = False,
    checkpoint: str | None = None,
    crop: bool = True,
    device: str | None = None,
    animator: Animator | None = None,
) -> RunResult:
    """Change head rotation of a photo (image out) or of every frame of a video (video or frames out)."""
    view = _view(yaw, pitch, roll, frontalize)
    start = time.perf_counter()
    check_outputs({"--output": (output, "image" if is_image_path(source) else "video")},
                  {"--source": source, "--checkpoint": checkpoint})
    animator = animator or load_animator(checkpoint, device)
    size = animator.image_size
    if is_image_path(source):
        frame = load_source_image(source, size, crop)
        write_image(output, redirect_frame(animator, frame, view))
        return RunResult(Path(output), 1, None, time.perf_counter() - start)
    video = FaceVideo(source, size, crop, what="video")
    out = (animator.redirect(to_tensor(batch), view) for batch in video.batches(animator.batch_size))
    count = _Counter()
    write_video(output, count(_progress(out, video.num_frames, "redirect")), video.fps)
    return RunResult(Path(output), count.n, video.fps, time.perf_counter() - start)
