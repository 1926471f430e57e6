"""File-level pipeline: read photos and videos, crop faces, run the Animator, write results.

Library functions behind ``facevid2vid animate``, ``reconstruct`` and ``redirect``.
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
from facevid2vid.errors import InputError, NoFaceError, UsageError
from facevid2vid.face.crop import prepare_frames
from facevid2vid.inference import Animator
from facevid2vid.outputs import check_outputs
from facevid2vid.smoothing import SmoothingSettings, motion_smoother
from facevid2vid.validation import check_angle
from facevid2vid.video_io import (is_image_path, load_source, read_video, to_tensor, to_uint8,
                                  write_image, write_video)


@dataclass
class RunResult:
    output: Path
    num_frames: int
    fps: float | None
    seconds: float
    reference_output: Path | None = None


def _device(device: str | None) -> str:
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, index = str(device).partition(":")
    if kind not in ("cpu", "cuda") or (index and (kind != "cuda" or not index.isdigit())):
        raise UsageError(f"--device {device!r} is not a device: choose cpu, cuda (or cuda:N) or auto")
    if kind == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device} was asked for but no CUDA device is available: use cpu or auto")
    return device


def _check_view(yaw: float, pitch: float, roll: float) -> None:
    """Free-view angles must be finite and within +-MAX_ANGLE degrees (InputError naming the option)."""
    for name, value in (("--yaw", yaw), ("--pitch", pitch), ("--roll", roll)):
        check_angle(value, name)


def load_animator(checkpoint: str | None = None, device: str | None = None, batch_size: int = 8) -> Animator:
    """The default (bundled) model unless a checkpoint is named."""
    dev = _device(device)
    return Animator(resolve_model(checkpoint, device=dev), device=dev, batch_size=batch_size)


def _crop(frames: np.ndarray, size: int, crop: bool, what: str, photo: bool = False) -> np.ndarray:
    try:
        cropped, _ = prepare_frames(frames, size, crop=crop, photo=photo)
    except NoFaceError as exc:
        raise NoFaceError(f"no face found in {what} ({exc}); pass --no-crop to use the frames as they are") from None
    return cropped


def load_source_image(path: str | Path, size: int, crop: bool = True) -> np.ndarray:
    """The source photo (or a video's first frame), face-cropped and resized: uint8 (size, size, 3)."""
    return _crop(load_source(path)[None], size, crop, f"source {path}", photo=is_image_path(path))[0]


def load_driving_frames(path: str | Path, size: int, crop: bool = True, start: int = 0,
                        max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Frames of a driving video, cropped with one steady box: uint8 (N, size, size, 3) and fps."""
    if is_image_path(path):
        raise InputError(f"{path} is an image; a driving video is needed")
    frames, fps = read_video(path, start=start, max_frames=max_frames)
    return _crop(frames, size, crop, f"driving video {path}"), fps


def _batches(frames: np.ndarray, batch_size: int) -> Iterator[torch.Tensor]:
    for i in range(0, len(frames), batch_size):
        yield to_tensor(frames[i:i + batch_size])


def _stream(animator: Animator, frames: np.ndarray, desc: str, **kwargs) -> Iterator[np.ndarray]:
    """Synthesize frames batch by batch, yielding uint8 frames, with a progress bar."""
    with tqdm(total=len(frames), desc=desc, unit="frame", leave=False) as bar:
        for out in animator.animate_iter(_batches(frames, animator.batch_size), **kwargs):
            bar.update(out.shape[0])
            yield from to_uint8(out)


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
    """Animate the person in ``source`` with the motion of ``driving``; writes an mp4.

    ``smoothing`` (enabled) runs a One Euro filter on the driving motion, frame by frame.
    """
    _check_view(yaw, pitch, roll)
    start = time.perf_counter()
    check_outputs({"--output": (output, "video")},
                  {"--source": source, "--driving": driving, "--checkpoint": checkpoint})
    animator = animator or load_animator(checkpoint, device)
    size = animator.image_size
    source_img = load_source_image(source, size, crop)
    frames, fps = load_driving_frames(driving, size, crop)
    animator.set_source(to_tensor(source_img))
    write_video(output, _stream(animator, frames, "animate", mode=mode, yaw=yaw, pitch=pitch, roll=roll,
                                frontalize=frontalize, smoother=motion_smoother(smoothing, fps)), fps)
    return RunResult(Path(output), len(frames), fps, time.perf_counter() - start)


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

    ``smoothing`` (enabled) runs a One Euro filter on the driving motion, frame by frame.
    """
    start = time.perf_counter()
    check_outputs({"--output": (output, "video"), "--reference-output": (reference_output, "video")},
                  {"--video": video, "--checkpoint": checkpoint})
    animator = animator or load_animator(checkpoint, device)
    frames, fps = load_driving_frames(video, animator.image_size, crop)
    animator.set_source(to_tensor(frames[0]))
    write_video(output, _stream(animator, frames, "reconstruct", mode="absolute",
                                smoother=motion_smoother(smoothing, fps)), fps)
    if reference_output is not None:
        write_video(reference_output, iter(frames), fps)
    return RunResult(Path(output), len(frames), fps, time.perf_counter() - start,
                     Path(reference_output) if reference_output else None)


def redirect_frame(animator: Animator, frame: np.ndarray, **controls) -> np.ndarray:
    """Re-pose one cropped frame uint8 (S, S, 3): it is its own source and driving frame."""
    return to_uint8(animator.redirect(to_tensor(frame), **controls))[0]


def _redirect_stream(animator: Animator, frames: np.ndarray, **controls) -> Iterator[np.ndarray]:
    with tqdm(total=len(frames), desc="redirect", unit="frame", leave=False) as bar:
        for batch in _batches(frames, animator.batch_size):
            out = to_uint8(animator.redirect(batch, **controls))
            bar.update(batch.shape[0])
            yield from out


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
    """Change head rotation of a photo (PNG out) or of every frame of a video (mp4 out)."""
    _check_view(yaw, pitch, roll)
    start = time.perf_counter()
    check_outputs({"--output": (output, "image" if is_image_path(source) else "video")},
                  {"--source": source, "--checkpoint": checkpoint})
    animator = animator or load_animator(checkpoint, device)
    size = animator.image_size
    controls = dict(yaw=yaw, pitch=pitch, roll=roll, frontalize=frontalize)
    if is_image_path(source):
        frame = load_source_image(source, size, crop)
        write_image(output, redirect_frame(animator, frame, **controls))
        return RunResult(Path(output), 1, None, time.perf_counter() - start)
    frames, fps = load_driving_frames(source, size, crop)
    write_video(output, _redirect_stream(animator, frames, **controls), fps)
    return RunResult(Path(output), len(frames), fps, time.perf_counter() - start)
