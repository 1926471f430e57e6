"""VMAF through the ffmpeg binary bundled with imageio-ffmpeg (filter ``libvmaf``).

Debian's ffmpeg has no libvmaf; the static build inside the ``imageio-ffmpeg``
wheel does, with the built-in model ``vmaf_v0.6.1``. Frames arrive in batches,
are appended losslessly as raw RGB24 to two temporary files, and ffmpeg scores
them once at the end (both converted to 8-bit YUV 4:4:4, BT.601, so no chroma
subsampling enters the score). The score is the pooled arithmetic mean over
frames that libvmaf writes to its JSON log.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facevid2vid.errors import FaceVid2VidError, InputError

VMAF_MODEL = "vmaf_v0.6.1"


class VmafError(FaceVid2VidError):
    """ffmpeg could not compute VMAF."""


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str | None:
    """Path of imageio-ffmpeg's ffmpeg, or None when the package or binary is missing."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:
        return None


@functools.lru_cache(maxsize=1)
def unavailable_reason() -> str | None:
    """Why VMAF cannot be computed here, or None when it can."""
    exe = ffmpeg_exe()
    if exe is None:
        return "no ffmpeg from imageio-ffmpeg"
    out = subprocess.run([exe, "-hide_banner", "-filters"], capture_output=True, text=True, check=False)
    if " libvmaf " not in out.stdout:
        return "ffmpeg has no libvmaf filter"
    return None


@dataclass
class VmafScore:
    mean: float  # pooled arithmetic mean over frames (the usual VMAF figure)
    harmonic_mean: float
    min: float
    per_frame: list[float]
    model: str = VMAF_MODEL


class VmafAccumulator:
    """Collects (reference, generated) frames batch by batch; ``score()`` runs libvmaf once."""

    def __init__(self, threads: int | None = None):
        self._dir = Path(tempfile.mkdtemp(prefix="facevid2vid-vmaf-"))
        self._ref = open(self._dir / "reference.rgb", "wb")
        self._gen = open(self._dir / "generated.rgb", "wb")
        self._size: tuple[int, int] | None = None  # (H, W)
        self.num_frames = 0
        self.threads = threads or min(4, os.cpu_count() or 1)

    def add(self, reference: np.ndarray, generated: np.ndarray) -> None:
        """Append uint8 frames (N, H, W, 3) or (H, W, 3) of both videos."""
        reference, generated = np.asarray(reference), np.asarray(generated)
        if reference.ndim == 3:
            reference, generated = reference[None], generated[None]
        if reference.shape != generated.shape or reference.dtype != np.uint8 or generated.dtype != np.uint8:
            raise InputError(f"VMAF needs uint8 frames of equal shape, got {reference.shape} {reference.dtype} "
                             f"and {generated.shape} {generated.dtype}")
        size = reference.shape[1:3]
        if self._size is None:
            self._size = size
        elif size != self._size:
            raise InputError(f"VMAF frames changed size from {self._size} to {size}")
        self._ref.write(np.ascontiguousarray(reference).tobytes())
        self._gen.write(np.ascontiguousarray(generated).tobytes())
        self.num_frames += reference.shape[0]

    def score(self) -> VmafScore:
        """Run libvmaf on everything added so far and clean up the temporary files."""
        try:
            self._ref.close()
            self._gen.close()
            if self.num_frames == 0 or self._size is None:
                raise InputError("VMAF got no frames")
            reason = unavailable_reason()
            if reason is not None:
                raise VmafError(f"VMAF unavailable: {reason}")
            return _run_libvmaf(self._dir, self._size, self.threads)
        finally:
            self.close()

    def close(self) -> None:
        self._ref.close()
        self._gen.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __del__(self):
        if hasattr(self, "_gen"):
            self.close()


def _run_libvmaf(folder: Path, size: tuple[int, int], threads: int) -> VmafScore:
    h, w = size
    raw = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", "25"]
    # libvmaf's first input is the distorted ("main") video, the second the reference
    graph = ("[0:v]format=yuv444p[dis];[1:v]format=yuv444p[ref];"
             f"[dis][ref]libvmaf=model=version={VMAF_MODEL}:log_fmt=json:log_path=vmaf.json:n_threads={threads}")
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin",
           *raw, "-i", "generated.rgb", *raw, "-i", "reference.rgb",
           "-lavfi", graph, "-f", "null", "-"]
    out = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, check=False)
    log = folder / "vmaf.json"
    if out.returncode != 0 or not log.exists():
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise VmafError(f"ffmpeg libvmaf failed (exit {out.returncode}): {last}")
    data = json.loads(log.read_text())
    pooled = data["pooled_metrics"]["vmaf"]
    frames = [float(f["metrics"]["vmaf"]) for f in data["frames"]]
    return VmafScore(mean=float(pooled["mean"]), harmonic_mean=float(pooled["harmonic_mean"]),
                     min=float(pooled["min"]), per_frame=frames)


def vmaf(reference: np.ndarray, generated: np.ndarray, threads: int | None = None) -> VmafScore:
    """VMAF of two aligned uint8 frame stacks (N, H, W, 3)."""
    acc = VmafAccumulator(threads)
    acc.add(reference, generated)
    return acc.score()
