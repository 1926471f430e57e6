"""Reading and writing videos (PyAV) and images (PIL) as uint8 RGB frames.

Frames on disk and from videos are uint8 numpy arrays ``(H, W, 3)`` RGB; models take
float tensors ``(N, 3, H, W)`` in [0, 1] (:func:`to_tensor`, :func:`to_uint8`).
Every failure a user can cause (missing file, not a video, corrupt or empty file)
raises :class:`~facevid2vid.errors.InputError` with one line naming the file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from facevid2vid.errors import InputError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
# encoders that take a constant-rate-factor option
_CRF_CODECS = frozenset({"libx264", "libx265", "libsvtav1", "libvpx-vp9", "libvpx", "libaom-av1"})
# pixel formats that store chroma at full resolution (any size is fine)
_FULL_CHROMA = frozenset({"yuv444p", "yuv444p10le", "rgb24", "bgr24", "gbrp"})


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    num_frames: int


def is_image_path(path: str | os.PathLike) -> bool:
    """True when the file name says it is a still image (by extension)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


# ----------------------------------------------------------------------------- reading videos


def _check_video_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(f"video not found: {p}")
    if p.is_dir():
        raise InputError(f"expected a video file, got a folder: {p}")
    if is_image_path(p):
        raise InputError(f"{p} is an image; a video is needed here")
    return p


def _open_video(p: Path):
    """Open a container and its first video stream, or raise InputError."""
    try:
        container = av.open(str(p))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise InputError(f"cannot read video {p}: {_reason(exc)}") from None
    if not container.streams.video:
        container.close()
        raise InputError(f"{p} has no video stream")
    stream = container.streams.video[0]
    if container.format.name in {"image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe"}:
        container.close()
        raise InputError(f"{p} is an image; a video is needed here")
    return container, stream


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def _fps(stream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return Fraction(rate) if rate else Fraction(25)


def _frame_index(frame, stream, fps: Fraction) -> int | None:
    """Index of a decoded frame from its timestamp (constant frame rate assumed)."""
    if frame.pts is None or frame.time_base is None:
        return None
    start = stream.start_time or 0
    return int(round((frame.pts - start) * frame.time_base * fps))


def _decode(container, stream, p: Path, start: int, fps: Fraction) -> Iterator:
    """Decoded frames from index ``start`` on, seeking to the key frame before it when possible."""
    if start > 0 and stream.time_base is not None:
        target = int((stream.start_time or 0) + Fraction(start) / fps / stream.time_base)
        first, idx = None, None
        try:
            container.seek(target, stream=stream, backward=True, any_frame=False)
            frames = container.decode(stream)
            first = next(frames, None)
            idx = None if first is None else _frame_index(first, stream, fps)
        except av.error.FFmpegError:
            idx = None
        if idx is not None and idx <= start:
            # skip to the wanted frame without converting the skipped ones
            if idx == start:
                yield first
            for frame in frames:
                i = _frame_index(frame, stream, fps)
                if i is None or i >= start:
                    yield frame
            return
        container.seek(0)  # the seek overshot or timestamps are missing: decode from the start
    for i, frame in enumerate(container.decode(stream)):
        if i >= start:
            yield frame


def iter_video(path: str | os.PathLike, start: int = 0, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Iterate the frames of a video as uint8 (H, W, 3) RGB, from frame ``start`` on."""
    p = _check_video_path(path)
    if start < 0:
        raise InputError(f"start frame must be >= 0, got {start}")
    container, stream = _open_video(p)
    stream.thread_type = "AUTO"
    return _iterate(container, stream, p, start, max_frames)


def _iterate(container, stream, p: Path, start: int, max_frames: int | None) -> Iterator[np.ndarray]:
    try:
        if max_frames is not None and max_frames <= 0:
            return
        n = 0
        for frame in _decode(container, stream, p, start, _fps(stream)):
            yield frame.to_ndarray(format="rgb24")
            n += 1
            if max_frames is not None and n >= max_frames:
                return
    except av.error.FFmpegError as exc:
        raise InputError(f"cannot decode video {p}: {_reason(exc)}") from None
    finally:
        container.close()


def read_video(path: str | os.PathLike, start: int = 0, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Frames ``[start, start + max_frames)`` of a video as uint8 (N, H, W, 3), and its fps."""
    p = _check_video_path(path)
    container, stream = _open_video(p)
    fps = float(_fps(stream))
    container.close()
    frames = list(iter_video(p, start=start, max_frames=max_frames))
    if not frames:
        if start > 0:
            raise InputError(f"{p} has no frames from frame {start} on")
        raise InputError(f"{p} has no video frames")
    return np.stack(frames), fps


def video_info(path: str | os.PathLike) -> VideoInfo:
    """Size, frame rate and frame count (from the header, else by counting packets)."""
    p = _check_video_path(path)
    container, stream = _open_video(p)
    try:
        n = stream.frames
        if not n:
            n = sum(1 for packet in container.demux(stream) if packet.size)
        return VideoInfo(stream.codec_context.width, stream.codec_context.height, float(_fps(stream)), int(n))
    except av.error.FFmpegError as exc:
        raise InputError(f"cannot read video {p}: {_reason(exc)}") from None
    finally:
        container.close()


# ----------------------------------------------------------------------------- images


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as uint8 (H, W, 3) RGB (EXIF orientation applied)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"image not found: {p}")
    try:
        with Image.open(p) as im:
            im = ImageOps.exif_transpose(im)
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"cannot read image {p}: {_reason(exc)}") from None


def load_source(path: str | os.PathLike) -> np.ndarray:
    """A source portrait: an image file, or the first frame of a video."""
    if is_image_path(path):
        return read_image(path)
    frames, _ = read_video(path, max_frames=1)
    return frames[0]


def write_image(path: str | os.PathLike, frame: np.ndarray) -> Path:
    """Save a uint8 (H, W, 3) RGB frame; the format follows the file extension."""
    p = Path(path)
    frame = _check_frame(frame, p)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        Image.fromarray(frame).save(p)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"cannot write image {p}: {_reason(exc)}") from None
    return p


# ----------------------------------------------------------------------------- writing videos


def _check_frame(frame: np.ndarray, p: Path) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise InputError(f"frames for {p} must be uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
    return np.ascontiguousarray(frame)


def _rate(fps: float | Fraction) -> Fraction:
    if fps is None or fps <= 0:
        raise InputError(f"frame rate must be positive, got {fps}")
    return Fraction(fps).limit_denominator(1001)


def _pad_even(frame: np.ndarray) -> np.ndarray:
    """Replicate the last row/column so both sizes are even (4:2:0 chroma needs it)."""
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float | Fraction,
                codec: str = "libx264", crf: int | None = 18, pix_fmt: str = "yuv420p",
                options: dict[str, str] | None = None) -> Path:
    """Encode uint8 (H, W, 3) RGB frames into a video file at ``fps`` (one output frame per input frame).

    With 4:2:0 / 4:2:2 pixel formats odd sizes are padded by one replicated row or
    column. ``options`` are passed to the encoder (e.g. ``{"preset": "veryfast"}``).
    """
    p = Path(path)
    rate = _rate(fps)
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise InputError(f"no frames to write to {p}")
    first = _check_frame(first, p)
    shape = first.shape
    pad = pix_fmt not in _FULL_CHROMA
    h, w = shape[0] + (shape[0] % 2 if pad else 0), shape[1] + (shape[1] % 2 if pad else 0)
    opts = dict(options or {})
    if crf is not None and codec in _CRF_CODECS:
        opts.setdefault("crf", str(crf))
        if codec in ("libvpx-vp9", "libvpx"):
            opts.setdefault("b", "0")
    if codec == "libx265":
        opts.setdefault("x265-params", "log-level=error")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        container = av.open(str(p), mode="w")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise InputError(f"cannot write video {p}: {_reason(exc)}") from None
    try:
        try:
            stream = container.add_stream(codec, rate=rate, options=opts)
        except (av.error.FFmpegError, ValueError, av.codec.codec.UnknownCodecError) as exc:
            raise InputError(f"cannot write video {p}: unknown or unusable codec {codec!r} ({_reason(exc)})") from None
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        stream.time_base = 1 / rate
        n = 0
        frame = first
        while frame is not None:
            frame = _check_frame(frame, p)
            if frame.shape != shape:
                raise InputError(f"frames for {p} change size: {shape} then {frame.shape}")
            vf = av.VideoFrame.from_ndarray(_pad_even(frame) if pad else frame, format="rgb24")
            vf.pts = n
            vf.time_base = 1 / rate
            for packet in stream.encode(vf):
                container.mux(packet)
            n += 1
            frame = next(it, None)
        for packet in stream.encode():
            container.mux(packet)
    except av.error.FFmpegError as exc:
        container.close()
        p.unlink(missing_ok=True)
        raise InputError(f"cannot encode video {p}: {_reason(exc)}") from None
    except BaseException:
        container.close()
        p.unlink(missing_ok=True)  # no half-written file left behind
        raise
    container.close()
    return p


# ----------------------------------------------------------------------------- tensors


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) or (H, W, 3) -> float (N, 3, H, W) in [0, 1]."""
    arr = np.asarray(frames)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise InputError(f"frames must be (N, H, W, 3) or (H, W, 3), got {arr.shape}")
    t = torch.from_numpy(np.ascontiguousarray(arr))
    return t.permute(0, 3, 1, 2).float().div_(255.0)  # (N,H,W,3) -> (N,3,H,W)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float (N, 3, H, W) or (3, H, W) in [0, 1] -> uint8 (N, H, W, 3), rounded and clipped."""
    t = images.detach()
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4 or t.shape[1] != 3:
        raise InputError(f"images must be (N, 3, H, W) or (3, H, W), got {tuple(t.shape)}")
    t = (t.float().clamp(0, 1) * 255.0).round().to(torch.uint8)
    return t.permute(0, 2, 3, 1).cpu().numpy()  # (N,3,H,W) -> (N,H,W,3)
