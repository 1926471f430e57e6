"""Every file the project writes goes through this module.

Atomic writes: :func:`atomic_path` (and :func:`atomic_open`, :func:`write_text`,
:func:`write_bytes`) hand out a temporary file next to the destination,
``.NAME.<pid>.<random>.part.EXT`` (the real extension last, so PyAV and PIL pick the
format from it), created exclusively so that it is surely ours. When the block ends
without error the file is flushed to disk (fsync) and renamed onto the destination
(``os.replace``). On any exception, Ctrl-C and SIGTERM included, only that temporary file
is removed: the destination (a previous output) is never touched. :func:`atomic_dir`
does the same for a folder of frames, :func:`replace_dir` swaps a finished folder in.

Checks before any work (:func:`check_outputs`): :func:`check_output` (extension and folder
for a kind of output) and :func:`check_distinct` (no output is an input or another output,
also through links). They raise :class:`~facevid2vid.errors.OutputError`, a usage error;
failures while writing raise :class:`~facevid2vid.errors.InputError`.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import stat
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator, Mapping

from facevid2vid.errors import InputError, OutputError
# what may be written (facevid2vid.validation defines it beside what may be read, and says why they differ)
from facevid2vid.validation import WRITABLE_IMAGE_EXTENSIONS as IMAGE_EXTENSIONS
from facevid2vid.validation import WRITABLE_VIDEO_EXTENSIONS as VIDEO_EXTENSIONS

EXTENSIONS = {
    "video": VIDEO_EXTENSIONS, "image": IMAGE_EXTENSIONS, "fv2v": (".fv2v",), "json": (".json",),
    "markdown": (".md", ".markdown"), "yaml": (".yaml", ".yml"), "checkpoint": (".safetensors",),
}
KINDS = (*EXTENSIONS, "pattern", "folder")
# argparse help of a video output ("%%" is argparse's escape for "%")
VIDEO_OUTPUT_HELP = ("a video file (" + ", ".join(VIDEO_EXTENSIONS) + ") or lossless PNG frames through a "
                     "pattern such as frames/%%05d.png")
IMAGE_OUTPUT_HELP = "an image (" + ", ".join(IMAGE_EXTENSIONS) + ")"
_FIELD = re.compile(r"%(0\d+)?d")
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: the mode a plain new file gets is 0o666 & ~umask
_STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP) arrived while a file was being written: raised so that clean-up runs.

    A KeyboardInterrupt, so whatever handles Ctrl-C handles it too; ``signum`` says which signal.
    """

    def __init__(self, signum: int):
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


# ----------------------------------------------------------------------------- checks before any work


def is_pattern(path: str | os.PathLike) -> bool:
    """True when the file name holds a printf-style frame field, as in ``out/%05d.png``."""
    return "%" in Path(path).name


def frame_name(pattern: str | os.PathLike, index: int) -> str:
    """The file name of frame ``index`` (1 for the first) of a pattern."""
    return Path(pattern).name % index


def _pattern_regex(pattern: Path) -> re.Pattern:
    head, tail = _FIELD.split(pattern.name, maxsplit=1)[::2]
    return re.compile(re.escape(head) + r"\d+" + re.escape(tail))


def check_output(path: str | os.PathLike, kind: str, option: str = "--output") -> Path:
    """Refuse, before any work, an output path that cannot be written as ``kind``.

    Kinds: ``video`` (a video file, or PNG frames through a pattern like ``out/%05d.png``),
    ``image``, ``pattern``, ``fv2v``, ``json``, ``markdown``, ``yaml``, ``checkpoint``,
    ``folder``. ``option`` names the argument in messages. Returns the path.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}")
    text = os.fspath(path)
    if not text.strip():
        raise OutputError(f"{option} is empty: give a file name")
    p = Path(text).expanduser()
    if kind == "folder":
        if p.exists() and not p.is_dir():
            raise OutputError(f"{option} {p} is a file: give a folder")
        _check_folder(p, option)
        return p
    if kind in ("video", "pattern") and is_pattern(p):
        _check_pattern(p, option)
        _check_folder(p.parent, option)
        return p
    example = "%05d.png" if kind == "pattern" else "out" + EXTENSIONS[kind][0]
    if p.is_dir() or text.endswith((os.sep, "/")):
        raise OutputError(f"{option} {p} is a folder: give a file name like {p / example}")
    if kind == "pattern":
        raise OutputError(f"{option} {p}: a frame pattern is needed, like {p.parent / example}")
    _check_extension(p, kind, option)
    _check_folder(p.parent, option)
    return p


def _check_pattern(p: Path, option: str) -> None:
    fields = _FIELD.findall(p.name)
    if p.name.count("%") != 1 or len(fields) != 1 or p.suffix.lower() != ".png" or "%" in str(p.parent):
        raise OutputError(f"{option} {p}: a frame pattern needs exactly one %d-style field in the file name "
                          f"and the .png extension, like {p.parent / '%05d.png'}")


def _check_extension(p: Path, kind: str, option: str) -> None:
    exts = EXTENSIONS[kind]
    ext = p.suffix.lower()
    if ext in exts:
        return
    if kind == "video" and ext in IMAGE_EXTENSIONS:
        raise OutputError(f"{option} {p} is an image name, but a video is written here: use a video file "
                          f"({', '.join(VIDEO_EXTENSIONS)}) or PNG frames with a pattern like "
                          f"{p.with_suffix('') / '%05d.png'}")
    if kind == "image" and ext in VIDEO_EXTENSIONS:
        raise OutputError(f"{option} {p} is a video name, but one image is written here (the input is a photo): "
                          f"use {', '.join(IMAGE_EXTENSIONS)}")
    shown = f"extension {p.suffix!r}" if p.suffix else "no extension"
    raise OutputError(f"{option} {p} has {shown}: {kind} outputs take {', '.join(exts)}")


def _check_folder(folder: Path, option: str) -> None:
    """The folder exists and is writable, or can be created (its nearest existing parent is)."""
    d = Path(os.path.abspath(folder if str(folder) else "."))
    while not d.exists() and not d.is_symlink() and d != d.parent:
        d = d.parent
    if not d.is_dir():
        raise OutputError(f"cannot create the folder {folder} for {option}: {d} is not a folder")
    if not os.access(d, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write into {d} ({option}): permission denied; choose another folder")


def check_outputs(outputs: Mapping[str, tuple[object, str]], inputs: Mapping[str, object]) -> None:
    """Everything about a command's outputs, before any work: each ``option: (path, kind)`` is
    checked by :func:`check_output`, then all of them against the inputs (:func:`check_distinct`)."""
    for option, (path, kind) in outputs.items():
        if path is not None:
            check_output(path, kind, option)
    check_distinct({option: path for option, (path, _) in outputs.items()}, inputs)


def check_distinct(outputs: Mapping[str, object], inputs: Mapping[str, object]) -> None:
    """Refuse when an output is one of the inputs or another output (same file, also through links).

    Keys are option names for the messages (``"--output"``); values are paths, lists of paths or
    ``None`` (skipped).
    A frame pattern clashes with every file in its folder that it would write.
    """
    outs, ins = _named_paths(outputs), _named_paths(inputs)
    for i, (name, out) in enumerate(outs):
        for in_name, inp in ins:
            if _overwrites(out, inp):
                verb = "would overwrite" if is_pattern(out) else f"is the same {_noun(inp)} as"
                raise OutputError(f"{name} {out} {verb} {in_name} {inp}: choose another output")
        for other_name, other in outs[:i]:
            if _overwrites(out, other) or _overwrites(other, out):
                raise OutputError(f"{name} {out} is the same {_noun(other)} as {other_name} {other}: "
                                  "give each output its own name")


def _noun(path: Path) -> str:
    return "folder" if path.is_dir() else "file"


def _named_paths(paths: Mapping[str, object]) -> list[tuple[str, Path]]:
    """(option, path) pairs; a value may be a path, a list of paths (repeated options) or None."""
    out = []
    for option, value in paths.items():
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if v is not None and os.fspath(v) != "":
                out.append((option, Path(os.fspath(v)).expanduser()))
    return out


def _overwrites(out: Path, other: Path) -> bool:
    """Whether writing ``out`` (a file, folder or frame pattern) replaces ``other``."""
    if not is_pattern(out):
        return _same(out, other)
    if is_pattern(other):
        return _same(out.parent, other.parent) and out.name == other.name
    regex = _pattern_regex(out) if len(_FIELD.findall(out.name)) == 1 else None
    return bool(regex and regex.fullmatch(other.name) and _same(out.parent, other.parent))


def _same(a: Path, b: Path) -> bool:
    """Same file: equal once links are followed, or the same (st_dev, st_ino) when both exist."""
    try:
        if a.resolve() == b.resolve():
            return True
    except (OSError, RuntimeError):
        pass
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


# ----------------------------------------------------------------------------- signals during a write


class _Guard:
    """While files are written (main thread only): Ctrl-C, SIGTERM and SIGHUP, where they would
    kill the process or raise KeyboardInterrupt, raise an exception instead, held back during the
    few steps that create, rename or remove a temporary file. Previous handlers come back after."""

    def __init__(self) -> None:
        self.hold = 0
        self.pending: int | None = None
        self.raised = False
        self.previous: dict[int, object] = {}

    def install(self) -> None:
        for signum in (signal.SIGINT, *_STOP_SIGNALS):
            handler = signal.getsignal(signum)
            default = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
            if handler is default:  # a handler someone else installed (the trainer's) stays
                self.previous[signum] = signal.signal(signum, self._on_signal)

    def restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame) -> None:
        if self.raised or self.pending is not None:
            return  # already stopping: let the clean-up finish
        self.pending = signum
        if not self.hold:
            self._raise()

    def _raise(self) -> None:
        signum, self.pending, self.raised = self.pending, None, True
        raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)

    @contextmanager
    def held(self, raise_after: bool = True) -> Iterator[None]:
        """Signals wait until the block is done (then raise, unless ``raise_after`` is False)."""
        self.hold += 1
        try:
            yield
        finally:
            self.hold -= 1
        if raise_after and not self.hold and self.pending is not None:
            self._raise()


class _NoGuard:
    """Outside the main thread signals cannot be handled: nothing to hold."""

    @contextmanager
    def held(self, raise_after: bool = True) -> Iterator[None]:
        yield


_active: _Guard | None = None


@contextmanager
def _guard() -> Iterator[_Guard | _NoGuard]:
    """The guard of the outermost write in progress (installed once, restored at its end)."""
    global _active
    if threading.current_thread() is not threading.main_thread():
        yield _NoGuard()
        return
    if _active is not None:
        yield _active
        return
    guard = _Guard()
    guard.install()
    _active = guard
    try:
        yield guard
    finally:
        _active = None
        guard.restore()


# ----------------------------------------------------------------------------- atomic files


def _destination(path: str | os.PathLike) -> Path:
    """The path to replace: a symbolic link's target (so the link keeps pointing at the output)."""
    p = Path(os.fspath(path)).expanduser()
    return Path(os.path.realpath(p)) if p.is_symlink() else p


def _temp_name(dest: Path, suffix: str) -> Path:
    return dest.with_name(f".{dest.name[:150]}.{os.getpid()}.{secrets.token_hex(4)}.part{suffix}")


def _reserve(dest: Path, folder: bool = False) -> Path:
    """Create an empty temporary file (or folder) next to ``dest``; exclusive, so surely ours."""
    for _ in range(100):
        tmp = _temp_name(dest, "" if folder else dest.suffix)
        try:
            if folder:
                os.mkdir(tmp)
            else:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise InputError(f"cannot create a temporary file next to {dest}")


def _discard(made: list[Path]) -> None:
    """Remove the temporary files and folders this module created (and nothing else)."""
    while made:
        tmp = made.pop()
        try:
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
        except OSError:
            pass


def _fsync(path: Path, folder: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if folder else 0))
    except OSError:
        if folder:
            return  # some systems cannot open folders: the rename is still atomic
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not folder:
            raise
    finally:
        os.close(fd)


def _mkdir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the folder {folder}: {exc.strerror or exc}") from None


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path next to ``path``, renamed onto it when the block ends without error.

    On any exception (KeyboardInterrupt, SIGTERM included) only the temporary file is removed.
    """
    dest = _destination(path)
    made: list[Path] = []
    with _guard() as guard:
        try:
            _mkdir(dest.parent)
            with guard.held():
                made.append(_reserve(dest))
            yield made[0]
            _commit(made, dest, guard)
        except BaseException:
            with guard.held(raise_after=False):
                _discard(made)
            raise


def _commit(made: list[Path], dest: Path, guard) -> None:
    tmp = made[0]
    _fsync(tmp)
    try:
        # an overwrite keeps the file's mode; a new file gets the usual one (some writers use 0o600)
        os.chmod(tmp, stat.S_IMODE(dest.stat().st_mode) if dest.is_file() else 0o666 & ~_UMASK)
        with guard.held():
            os.replace(tmp, dest)
            made.clear()
    except OSError as exc:
        raise InputError(f"cannot write {dest}: {exc.strerror or exc}") from None
    _fsync(dest.parent, folder=True)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """``open(path, mode)`` on a temporary file that replaces ``path`` once closed without error."""
    if not mode.startswith("w"):
        raise ValueError(f"atomic_open writes a new file; mode {mode!r} is not a write mode")
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write a text file atomically."""
    with atomic_open(path, "w", encoding=encoding) as f:
        f.write(text)
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write a binary file atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def copy_file(source: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Copy ``source`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        shutil.copyfile(source, tmp)
    return Path(path)


# ----------------------------------------------------------------------------- atomic folders


@contextmanager
def atomic_dir(folder: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder whose files move into ``folder`` when the block ends without error.

    A folder that did not exist appears in one rename (staged as a sibling); into an existing
    one every file moves by ``os.replace`` with signals held (staged inside it). On failure
    only the temporary folder, all of it written here, is removed.
    """
    dest = Path(os.path.abspath(_destination(folder)))
    made: list[Path] = []
    with _guard() as guard:
        try:
            existed = dest.is_dir()
            _mkdir(dest if existed else dest.parent)
            with guard.held():
                made.append(_reserve(dest / dest.name if existed else dest, folder=True))
            yield made[0]
            _move_into(made, dest, existed, guard)
        except BaseException:
            with guard.held(raise_after=False):
                _discard(made)
            raise


def _move_into(made: list[Path], dest: Path, existed: bool, guard) -> None:
    tmp = made[0]
    files = sorted(tmp.iterdir())
    for f in files:
        _fsync(f)
    with guard.held():
        if not existed:
            try:
                os.rename(tmp, dest)
                made.clear()
            except OSError:
                _mkdir(dest)  # the folder appeared meanwhile: move the files one by one
        for f in files if made else ():
            os.replace(f, dest / f.name)
        if made:
            os.rmdir(tmp)
            made.clear()
    _fsync(dest, folder=True)


def replace_dir(finished: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Put the complete folder ``finished`` in the place of ``dest`` (which may exist): the old one
    is renamed aside first and removed only once the new one is in place."""
    finished, dest = Path(finished), Path(dest)
    old = None
    with _guard() as guard, guard.held():
        if dest.exists():
            old = _temp_name(dest, ".old")
            os.rename(dest, old)
        os.rename(finished, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return dest
