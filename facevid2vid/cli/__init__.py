"""Command line: ``facevid2vid <command> ...``.

Each command lives in its own module ``facevid2vid/cli/<command>.py`` defining
``register(subparsers)``; the parser it adds sets ``func`` to a ``run(args) -> int``
that calls library functions.

One error path (docs/reliability.md): every error ends as one line on stderr, on a line of
its own (progress bars are closed first), ``facevid2vid COMMAND: error: ...``. Exit code 2
for usage errors (bad arguments, also those argparse finds), 1 for every other error, 130
on Ctrl-C (128 + the signal for SIGTERM). An unexpected exception prints one line that says
to run again with ``--debug``, which shows the traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from facevid2vid.errors import FaceVid2VidError, UsageError

# command modules, in the order `--help` lists them
COMMANDS = [
    "demo", "animate", "reconstruct", "redirect", "inspect",
    "data", "weights", "convert", "prepare", "train", "evaluate", "benchmark", "encode", "decode",
    "serve",
]


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (``PROG: error: MESSAGE (see PROG --help)``), exit 2."""

    def error(self, message: str):
        _close_progress_bars()
        print(f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)", file=sys.stderr)
        self.exit(2)


def _add_debug(parser: argparse.ArgumentParser, top: bool = True, seen: set | None = None) -> None:
    """``--debug`` on the main parser and on every subcommand's (so it may come anywhere)."""
    seen = set() if seen is None else seen
    if id(parser) in seen:
        return
    seen.add(id(parser))
    parser.add_argument("--debug", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="show the traceback of an error instead of one line")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _add_debug(sub, False, seen)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="facevid2vid",
        description="One-shot free-view neural talking-head synthesis and video-call codec.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"facevid2vid.cli.{name.replace('-', '_')}")
        except ModuleNotFoundError as exc:
            if exc.name == f"facevid2vid.cli.{name.replace('-', '_')}":
                continue  # command not built yet
            raise
        module.register(sub)
    _add_debug(parser)
    return parser


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return "; ".join(lines)


def _close_progress_bars() -> None:
    """Close every open tqdm bar so that a message starts on a line of its own."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return
    for bar in list(getattr(tqdm, "_instances", ())):
        try:
            bar.close()
        except Exception:  # noqa: BLE001 - a broken bar must not hide the error
            pass
    sys.stderr.flush()


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    torch = sys.modules.get("torch")  # imported by every command that could run out of memory
    oom = getattr(torch, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


def _memory_hint(args) -> str:
    for option in ("batch_size", "model_batch_size"):
        if getattr(args, option, None) is not None:
            return f"try a smaller --{option.replace('_', '-')} or a shorter, smaller input"
    return "try a shorter or lower-resolution input, or a machine with more memory"


def _os_error(exc: OSError) -> str:
    name = exc.filename if exc.filename is not None else ""
    if isinstance(exc, FileNotFoundError):
        return f"file not found: {name}"
    if isinstance(exc, IsADirectoryError):
        return f"{name} is a folder: give a file name"
    if isinstance(exc, NotADirectoryError):
        return f"{name}: a part of this path is a file, not a folder"
    if isinstance(exc, PermissionError):
        return f"permission denied: {name}"
    where = f" {name}" if name else ""
    return f"cannot access{where}: {exc.strerror or _one_line(exc) or type(exc).__name__}"


def describe_error(exc: BaseException, args) -> tuple[int, str]:
    """(exit code, one-line message) for an exception that ended a command."""
    if isinstance(exc, KeyboardInterrupt):
        signum = getattr(exc, "signum", None)
        return (128 + signum, _one_line(exc) or "terminated") if signum else (130, "interrupted")
    if isinstance(exc, UsageError):
        return 2, f"error: {_one_line(exc)}"
    if isinstance(exc, FaceVid2VidError):
        return 1, f"error: {_one_line(exc)}"
    if _is_out_of_memory(exc):
        detail = _one_line(str(exc).splitlines()[0] if str(exc).strip() else "")
        return 1, f"error: out of memory{f' ({detail})' if detail else ''}; {_memory_hint(args)}"
    if isinstance(exc, OSError):
        return 1, f"error: {_os_error(exc)}"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return 1, (f"error: unexpected {type(exc).__name__}{f': {first}' if first else ''} "
               f"(run with --debug for the traceback)")


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (argparse's own exits are returned, not raised)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    try:
        return int(args.func(args) or 0)
    except SystemExit:
        raise
    except BaseException as exc:
        _close_progress_bars()
        if getattr(args, "debug", False) and not isinstance(exc, KeyboardInterrupt):
            raise
        code, message = describe_error(exc, args)
        print(f"facevid2vid {args.command}: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
