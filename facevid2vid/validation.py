"""Checks at the edges: what kind of file a path is, and limits on numbers from users and files.

Every limit a user can hit is a constant here, listed in docs/reliability.md ("Validated
inputs"). The checks raise :class:`~facevid2vid.errors.InputError` (or the error class a
caller passes) with one line naming the file or the option.
"""
from __future__ import annotations

import math
import os
import stat
from pathlib import Path

from facevid2vid.errors import InputError

MAX_IMAGE_PIXELS = 50_000_000  # width x height of an image or of a video frame
MAX_IMAGE_SIDE = 16_384  # longest side of an image or of a video frame, in pixels
MIN_FPS, MAX_FPS = 0.1, 1000.0  # frame rates outside this are taken as nonsense (the .fv2v range)
FALLBACK_FPS = 25  # used, with a note, when neither the header nor the timestamps give a sane rate
MAX_ANGLE = 90.0  # |yaw|, |pitch|, |roll| of a user rotation, in degrees

# What kind of file a name is, by its extension (lower case). The two pairs differ on purpose:
# READABLE_* is every format PIL and PyAV open for us (inputs of every command, and the files
# `prepare` picks out of a folder); WRITABLE_* is the narrower set the commands write and the tests
# cover (TIFF/PPM stills or .m4v/.mpg muxing are never exercised), so an output outside it is
# refused before any work. What is written is read back (a subset); writable lists are tuples, in
# the order messages list them.
READABLE_IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
READABLE_VIDEO_EXTENSIONS = frozenset({".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg"})
WRITABLE_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
WRITABLE_VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")


def regular_file(path: str | os.PathLike, what: str = "file", error: type[Exception] = InputError) -> Path:
    """``path`` as a Path when it is a regular file (links followed); else ``error`` with one line.

    FIFOs, devices and sockets are refused before anything opens them (a FIFO would block).
    """
    p = Path(path)
    try:
        mode = os.stat(p).st_mode
    except FileNotFoundError:
        raise error(f"{what} not found: {p}") from None
    except OSError as exc:
        raise error(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise error(f"expected a {what} file, got a folder: {p}")
    if not stat.S_ISREG(mode):
        raise error(f"{p} is not a regular file (a FIFO, device or socket); give a {what} file")
    return p


def check_frame_size(width: int, height: int, what: str) -> None:
    """Refuse images and video frames beyond :data:`MAX_IMAGE_SIDE` or :data:`MAX_IMAGE_PIXELS`."""
    if width < 1 or height < 1:
        raise InputError(f"{what} has an empty frame size {width}x{height}")
    if max(width, height) > MAX_IMAGE_SIDE or width * height > MAX_IMAGE_PIXELS:
        raise InputError(f"{what} is {width}x{height} pixels, over the limit of {MAX_IMAGE_SIDE} px a side and "
                         f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels; downscale it first")


def sane_fps(rate) -> bool:
    """True when ``rate`` (frames per second) is a finite number within MIN_FPS..MAX_FPS."""
    try:
        value = float(rate)
    except (TypeError, ValueError, ZeroDivisionError):
        return False
    return math.isfinite(value) and MIN_FPS <= value <= MAX_FPS


def check_angle(value: float, name: str) -> float:
    """A user rotation angle in degrees: finite and within +-MAX_ANGLE (InputError naming ``name``)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number of degrees, got {value!r}") from None
    if not math.isfinite(value) or abs(value) > MAX_ANGLE:
        raise InputError(f"{name} must be a finite angle within -{MAX_ANGLE:g}..{MAX_ANGLE:g} degrees, got {value}")
    return value
