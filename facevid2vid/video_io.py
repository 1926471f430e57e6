"""Reading and writing videos (PyAV) and images (PIL) as uint8 RGB frames.

Frames on disk and from videos are uint8 numpy arrays ``(H, W, 3)`` RGB; models take
float tensors ``(N, 3, H, W)`` in [0, 1] (:func:`to_tensor`, :func:`to_uint8`).
Every failure a user can cause (missing file, not a video, corrupt or empty file)
raises :class:`~facevid2vid.errors.InputError` with one line naming the file.
"""
from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from fractions import Fraction
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator

import av
import numpy as np
import torch
from PIL import Image, ImageOps

from facevid2vid.errors import InputError
from facevid2vid.validation import FALLBACK_FPS, MAX_IMAGE_PIXELS, check_frame_size, regular_file, sane_fps
# the readable lists (facevid2vid.validation: why what is written is a narrower set); stable names
from facevid2vid.validation import READABLE_IMAGE_EXTENSIONS as IMAGE_EXTENSIONS
from facevid2vid.validation import READABLE_VIDEO_EXTENSIONS as VIDEO_EXTENSIONS

log = logging.getLogger(__name__)

# encoders that take a constant-rate-factor option
_CRF_CODECS = frozenset({"libx264", "libx265", "libsvtav1", "libvpx-vp9", "libvpx", "libaom-av1"})
# pixel formats that store chroma at full resolution (any size is fine)
_FULL_CHROMA = frozenset({"yuv444p", "yuv444p10le", "rgb24", "bgr24", "gbrp"})
MAX_HEADER_FRAMES = 1 << 24  # a header claiming more frames than this is not believed (packets are counted)


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
    p = regular_file(path, "video")  # a FIFO or device is refused before it is opened
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
    ctx = stream.codec_context
    if ctx is None:  # no codec parameters: a truncated or damaged header
        container.close()
        raise InputError(f"cannot read video {p}: its video stream cannot be decoded (a truncated or damaged file)")
    if ctx.width > 0 and ctx.height > 0:
        try:
            check_frame_size(ctx.width, ctx.height, f"video {p}")
        except InputError:
            container.close()
            raise
    return container, stream


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def _header_rate(stream) -> Fraction | None:
    """The container's average frame rate, when it is within MIN_FPS..MAX_FPS."""
    rate = stream.average_rate
    return Fraction(rate) if rate and sane_fps(rate) else None


def _guessed_rate(stream) -> Fraction | None:
    """The codec's or container's nominal rate, when plausible and not merely the time base."""
    rate = stream.guessed_rate
    if not rate or not sane_fps(rate):
        return None
    if stream.time_base is not None and Fraction(rate) == 1 / Fraction(stream.time_base):
        return None  # e.g. 1000 for Matroska's millisecond time base: no information
    return Fraction(rate)


def _timestamp_rate(p: Path, packets: int = 64) -> Fraction | None:
    """The frame rate from the median spacing of the first packets' timestamps, when plausible."""
    try:
        container = av.open(str(p))
    except (av.error.FFmpegError, OSError, ValueError):
        return None
    try:
        stream = container.streams.video[0]
        pts = sorted(pk.pts for pk in islice(container.demux(stream), packets) if pk.pts is not None and pk.size)
    except av.error.FFmpegError:
        return None
    finally:
        container.close()
    steps = np.diff(np.asarray(pts, dtype=np.int64))
    steps = steps[steps > 0]
    if not len(steps) or stream.time_base is None:
        return None
    rate = (1 / (Fraction(int(np.median(steps))) * stream.time_base)).limit_denominator(1001)
    return rate if sane_fps(rate) else None


def _stream_rate(p: Path, stream) -> tuple[Fraction, bool, str | None]:
    """(fps, timestamps usable for seeking, note for the user when the header's rate was not used).

    A nonsense header rate (0, 90000 fps) falls back to the timestamps' rate, else to
    FALLBACK_FPS; frames are never dropped either way.
    """
    rate = _header_rate(stream)
    if rate is not None:
        return rate, True, None
    told = float(stream.average_rate or stream.guessed_rate or 0)
    rate = _timestamp_rate(p)
    if rate is not None:
        return rate, True, (f"{p}: the container's frame rate {told:g} fps is not plausible; "
                            f"using {float(rate):g} fps from the frame timestamps")
    rate = _guessed_rate(stream)
    if rate is not None:  # no usable timestamps (a raw stream): the codec's nominal rate, no seeking
        return rate, False, None
    return Fraction(FALLBACK_FPS), False, (f"{p}: neither the container's frame rate ({told:g} fps) nor the "
                                           f"timestamps give a plausible rate; using {FALLBACK_FPS} fps, every "
                                           f"frame kept")


def _frame_index(frame, stream, fps: Fraction) -> int | None:
    """Index of a decoded frame from its timestamp (constant frame rate assumed)."""
    if frame.pts is None or frame.time_base is None:
        return None
    start = stream.start_time or 0
    return int(round((frame.pts - start) * frame.time_base * fps))


def _decode(container, stream, p: Path, start: int, fps: Fraction, timed: bool = True) -> Iterator:
    """Decoded frames from index ``start`` on, seeking to the key frame before it when possible.

    Without usable timestamps (``timed`` false) it decodes from the start and counts frames.
    """
    if start > 0 and timed and stream.time_base is not None:
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
    try:
        fps, timed, _ = _stream_rate(p, stream)
    except BaseException:
        container.close()
        raise
    stream.thread_type = "AUTO"
    return _iterate(container, stream, p, start, max_frames, fps, timed)


def _iterate(container, stream, p: Path, start: int, max_frames: int | None, fps: Fraction,
             timed: bool) -> Iterator[np.ndarray]:
    try:
        if max_frames is not None and max_frames <= 0:
            return
        n = 0
        for frame in _decode(container, stream, p, start, fps, timed):
            if n == 0:
                check_frame_size(frame.width, frame.height, f"video {p}")
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
    if start < 0:
        raise InputError(f"start frame must be >= 0, got {start}")
    container, stream = _open_video(p)
    try:
        rate, timed, note = _stream_rate(p, stream)
    except BaseException:
        container.close()
        raise
    if note:
        log.warning("note: %s", note)
    stream.thread_type = "AUTO"
    frames = list(_iterate(container, stream, p, start, max_frames, rate, timed))
    fps = float(rate)
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
        rate, timed, note = _stream_rate(p, stream)
        if note:
            log.warning("note: %s", note)
        n = stream.frames
        if not _plausible_count(n, stream, rate if timed else None):
            n = sum(1 for packet in container.demux(stream) if packet.size)
        return VideoInfo(stream.codec_context.width, stream.codec_context.height, float(rate), int(n))
    except av.error.FFmpegError as exc:
        raise InputError(f"cannot read video {p}: {_reason(exc)}") from None
    finally:
        container.close()


def _plausible_count(n: int | None, stream, fps: Fraction | None) -> bool:
    """Whether the header's frame count can be believed (else the packets are counted)."""
    if not n or n < 0 or n >= MAX_HEADER_FRAMES:
        return False
    if fps is None or not stream.duration or stream.time_base is None:
        return True
    expected = float(stream.duration * stream.time_base * fps)
    return expected / 2 - 2 <= n <= expected * 2 + 2


# ----------------------------------------------------------------------------- images


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as uint8 (H, W, 3) RGB (EXIF orientation applied; see :func:`image_to_rgb`).

    The size in the header is checked against the limits before any pixel is decoded.
    """
    p = regular_file(path, "image")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with Image.open(p) as im:  # reads the header only
                check_frame_size(im.width, im.height, f"image {p}")
                rgb = image_to_rgb(ImageOps.exif_transpose(im))
        for warning in caught:  # e.g. corrupt EXIF data: one line each, not Python's two
            if not issubclass(warning.category, Image.DecompressionBombWarning):  # our own limit is lower
                log.warning("note: %s: %s", p, str(warning.message).strip())
        return rgb
    except Image.DecompressionBombError:
        raise InputError(f"image {p} is over the limit of {MAX_IMAGE_PIXELS // 1_000_000} megapixels; "
                         f"downscale it first") from None
    except (InputError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - PIL's decoders raise many types on malformed files
        raise InputError(f"cannot read image {p}: {_reason(exc)}") from None


_SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


def image_to_rgb(im: Image.Image) -> np.ndarray:
    """Any PIL image as uint8 (H, W, 3) RGB.

    16-bit gray ('I;16*', and 'I' read as 0..65535) keeps its top 8 bits; float 'F' is taken
    as 0..1 when its maximum is at most 1, else as 0..255; images with an alpha channel or
    a transparent colour ('RGBA', 'LA', 'PA', 'P' or 'L' with transparency) are composited
    on white; everything else ('1', 'L', 'P', 'CMYK', 'YCbCr', ...) goes through PIL's RGB conversion.
    """
    if im.mode in _SIXTEEN_BIT:
        gray = (np.clip(np.asarray(im).astype(np.int64), 0, 65535) >> 8).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if im.mode == "F":
        values = np.nan_to_num(np.asarray(im, dtype=np.float32), nan=0.0, posinf=255.0, neginf=0.0)
        scale = 255.0 if values.size and values.max() <= 1.0 else 1.0
        gray = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def load_source(path: str | os.PathLike) -> np.ndarray:
    """A source portrait: an image file, or the first frame of a video."""
    if is_image_path(path):
        return read_image(path)
    frames, _ = read_video(path, max_frames=1)
    return frames[0]


def write_image(path: str | os.PathLike, frame: np.ndarray) -> Path:
    """Save a uint8 (H, W, 3) RGB frame atomically; the format follows the file extension."""
    from facevid2vid.outputs import atomic_path, check_output

    p = check_output(path, "image", "image output")
    frame = _check_frame(frame, p)
    try:
        with atomic_path(p) as tmp:
            Image.fromarray(frame).save(tmp, format=Image.registered_extensions()[p.suffix.lower()])
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


def _same_size_frames(frames: Iterable[np.ndarray], p: Path) -> Iterator[np.ndarray]:
    """Checked uint8 (H, W, 3) frames, all of one size; InputError when there are none."""
    shape = None
    for frame in frames:
        frame = _check_frame(frame, p)
        if shape is None:
            shape = frame.shape
        elif frame.shape != shape:
            raise InputError(f"frames for {p} change size: {shape} then {frame.shape}")
        yield frame
    if shape is None:
        raise InputError(f"no frames to write to {p}")


def write_frames(pattern: str | os.PathLike, frames: Iterable[np.ndarray]) -> Path:
    """Lossless PNG frames named by ``pattern`` (``out/%05d.png``: 00001.png for the first frame).

    The frames appear together once all are written (:func:`facevid2vid.outputs.atomic_dir`).
    """
    from facevid2vid.outputs import atomic_dir, check_output, frame_name

    p = check_output(pattern, "pattern", "frame pattern")
    try:
        with atomic_dir(p.parent) as folder:
            for n, frame in enumerate(_same_size_frames(frames, p), start=1):
                Image.fromarray(frame).save(folder / frame_name(p, n), format="PNG", compress_level=3)
    except OSError as exc:
        raise InputError(f"cannot write frames {p}: {_reason(exc)}") from None
    return p


def _default_codec(p: Path) -> str:
    return "libvpx-vp9" if p.suffix.lower() == ".webm" else "libx264"


def _encoder_options(codec: str, crf: int | None, options: dict[str, str] | None) -> dict[str, str]:
    opts = dict(options or {})
    if crf is not None and codec in _CRF_CODECS:
        opts.setdefault("crf", str(crf))
        if codec in ("libvpx-vp9", "libvpx"):
            opts.setdefault("b", "0")
    if codec == "libx265":
        opts.setdefault("x265-params", "log-level=error")
    return opts


def _open_output(tmp: Path, p: Path, codec: str, rate: Fraction, opts: dict[str, str]):
    """The container (written to ``tmp``) and its video stream; errors name the output ``p``."""
    try:
        container = av.open(str(tmp), mode="w")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise InputError(f"cannot write video {p}: {_reason(exc)}") from None
    try:
        stream = container.add_stream(codec, rate=rate, options=opts)
    except (av.error.FFmpegError, ValueError, av.codec.codec.UnknownCodecError) as exc:
        container.close()
        raise InputError(f"cannot write video {p}: unknown or unusable codec {codec!r} ({_reason(exc)})") from None
    stream.time_base = 1 / rate
    return container, stream


def _encode(container, stream, frames: Iterator[np.ndarray], rate: Fraction, pix_fmt: str) -> int:
    """Encode every frame (sizing the stream on the first); the number of frames."""
    pad = pix_fmt not in _FULL_CHROMA
    n = 0
    for frame in frames:
        if n == 0:
            h, w = frame.shape[:2]
            stream.width, stream.height = (w + w % 2, h + h % 2) if pad else (w, h)
            stream.pix_fmt = pix_fmt
        vf = av.VideoFrame.from_ndarray(_pad_even(frame) if pad else frame, format="rgb24")
        vf.pts, vf.time_base = n, 1 / rate
        for packet in stream.encode(vf):
            container.mux(packet)
        n += 1
    for packet in stream.encode():
        container.mux(packet)
    return n


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float | Fraction,
                codec: str | None = None, crf: int | None = 18, pix_fmt: str = "yuv420p",
                options: dict[str, str] | None = None) -> Path:
    """Encode uint8 (H, W, 3) RGB frames into a video file at ``fps`` (one output frame per input frame).

    Written atomically: a temporary file next to ``path`` replaces it once complete; on any
    failure or interruption ``path`` is left as it was. A pattern like ``out/%05d.png`` writes
    lossless PNG frames instead (:func:`write_frames`). ``codec`` defaults to libx264 (VP9 for
    .webm). With 4:2:0 / 4:2:2 pixel formats odd sizes are padded by one replicated row or
    column. ``options`` are passed to the encoder (e.g. ``{"preset": "veryfast"}``).
    """
    from facevid2vid.outputs import atomic_path, check_output, is_pattern

    p = check_output(path, "video", "video output")
    rate = _rate(fps)
    if is_pattern(p):
        return write_frames(p, frames)
    codec = codec or _default_codec(p)
    opts = _encoder_options(codec, crf, options)
    with atomic_path(p) as tmp:
        container, stream = _open_output(tmp, p, codec, rate, opts)
        try:
            _encode(container, stream, _same_size_frames(frames, p), rate, pix_fmt)
            container.close()  # writes the trailer: its errors count
        except av.error.FFmpegError as exc:
            _close_quietly(container)
            raise InputError(f"cannot encode video {p}: {_reason(exc)}") from None
        except BaseException:
            _close_quietly(container)
            raise
    return p


def _close_quietly(container) -> None:
    try:
        container.close()
    except (av.error.FFmpegError, OSError):
        pass  # after a failed encode: the temporary file is removed anyway


# ----------------------------------------------------------------------------- tensors


def resize_square(frames: np.ndarray, size: int) -> np.ndarray:
    """Square frames uint8 (N, s, s, 3) resized to (N, size, size, 3): the project's one resize filter.

    Area averaging when shrinking, bicubic when enlarging (OpenCV); used for face crops, by the
    encoder to reach the model's size and by the decoder to give frames at the encoded size.
    """
    import cv2

    frames = np.asarray(frames)
    if frames.shape[1] == size and frames.shape[2] == size:
        return frames
    interp = cv2.INTER_AREA if frames.shape[1] > size else cv2.INTER_CUBIC
    out = np.empty((len(frames), size, size, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        out[i] = cv2.resize(np.ascontiguousarray(frame), (size, size), interpolation=interp)
    return out


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
