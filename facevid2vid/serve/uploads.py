"""Uploads: a private temporary folder, server-chosen file names, size and duration limits.

No name or path from the client reaches the file system: every stored file gets a name made
here (a random folder id and a fixed file name; the client's file name only picks an
allowed extension and names the file in messages), and files are found again by id only.
"""
from __future__ import annotations

import re
import secrets
import shutil
import tempfile
from pathlib import Path

from facevid2vid.errors import InputError
from facevid2vid.validation import READABLE_IMAGE_EXTENSIONS, READABLE_VIDEO_EXTENSIONS

CHUNK = 1 << 16
_ID = re.compile(r"^[0-9a-f]{32}$")
_SHOWN = re.compile(r"[^A-Za-z0-9 ._()-]+")


class UploadError(InputError):
    """A refused upload (one line for the page); ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def new_id() -> str:
    return secrets.token_hex(16)


def check_id(value: str, what: str) -> str:
    """``value`` if it has the form of an id this server hands out, else UploadError (404)."""
    if not isinstance(value, str) or not _ID.match(value):
        raise UploadError(f"unknown {what}", status=404)
    return value


def shown_name(filename: str | None, default: str) -> str:
    """The client's file name reduced to a short, harmless label for messages."""
    base = re.split(r"[\\/]", filename or "")[-1]
    base = _SHOWN.sub("_", base).strip(" .")[:80]
    return base or default


def extension(filename: str | None, kind: str) -> str:
    """The stored file's extension: the client's when it is a readable ``kind`` ("image"/"video") one."""
    allowed = READABLE_IMAGE_EXTENSIONS if kind == "image" else READABLE_VIDEO_EXTENSIONS
    suffix = Path(shown_name(filename, "")).suffix.lower()
    return suffix if suffix in allowed else (".png" if kind == "image" else ".mp4")


def clean_message(message: str, path: Path, name: str) -> str:
    """A library message with the server's temporary path replaced by the file's shown name."""
    return str(message).replace(str(path), name).replace(str(path.parent), "upload")


class Workspace:
    """The server's temporary folder; each upload or job gets a folder of its own inside it."""

    def __init__(self, parent: str | None = None):
        self.root = Path(tempfile.mkdtemp(prefix="facevid2vid-serve-", dir=parent))

    def folder(self) -> tuple[str, Path]:
        """(a new id, its empty folder)."""
        ident = new_id()
        path = self.root / ident
        path.mkdir()
        return ident, path

    def remove(self, path: Path) -> None:
        """Remove one folder of this workspace (nothing outside it)."""
        path = Path(path)
        if path.parent == self.root:
            shutil.rmtree(path, ignore_errors=True)

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


async def save_part(part, dest: Path, limit: int, what: str) -> int:
    """Stream a multipart file part to ``dest``, at most ``limit`` bytes (UploadError 413 past it)."""
    size = 0
    with open(dest, "wb") as f:
        while True:
            chunk = await part.read_chunk(CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise UploadError(f"the {what} is over the limit of {limit / (1 << 20):g} MB", status=413)
            f.write(chunk)
    if size == 0:
        raise UploadError(f"the {what} is empty")
    return size


def check_video(path: Path, name: str, max_seconds: float, max_frames: int):
    """The upload's :class:`~facevid2vid.video_io.VideoInfo`, or UploadError (unreadable, too long)."""
    from facevid2vid.video_io import video_info

    try:
        info = video_info(path)
    except InputError as exc:
        raise UploadError(clean_message(str(exc), path, name)) from None
    seconds = info.num_frames / info.fps if info.fps else float("inf")
    if seconds > max_seconds or info.num_frames > max_frames:
        raise UploadError(f"{name} is {seconds:.1f} s long ({info.num_frames} frames): the limit is "
                          f"{max_seconds:g} s and {max_frames} frames; trim it first", status=413)
    if info.num_frames < 1:
        raise UploadError(f"{name} has no video frames")
    return info
