"""Command line: ``facevid2vid <command> ...``.

Each command lives in its own module ``facevid2vid/cli/<command>.py`` defining
``register(subparsers)``; the parser it adds sets ``func`` to a ``run(args) -> int``
that calls library functions. Errors caused by inputs print one line on stderr.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from facevid2vid.errors import FaceVid2VidError

# command modules, in the order `--help` lists them
COMMANDS = [
    "demo", "animate", "reconstruct", "redirect", "inspect",
    "data", "weights", "prepare", "train", "evaluate", "benchmark", "encode", "decode",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FaceVid2VidError as exc:
        print(f"facevid2vid {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        print(f"facevid2vid {args.command}: error: file not found: {exc.filename}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"facevid2vid {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
