"""Regenerate the parity fixtures of converted checkpoints (tests/data/parity/) from the references' own code.

    python scripts/make_parity_fixtures.py --open-fv2v /tmp/ref-ofv2v [--open-fv2v-beta /tmp/ref-ofv2v-beta] \\
        [--liveportrait /tmp/ref-lp] [--fomm /tmp/fomm-ref] --output tests/data/parity

No weights are needed: every network gets seeded random weights from a recipe the tests rebuild
without the reference code. Open face-vid2vid: scripts/fixtures/parity_open_fv2v.py (what is run, the
shims); LivePortrait: scripts/fixtures/parity_liveportrait.py; FOMM: scripts/fixtures/parity_fomm.py.
docs/checkpoints.md has the figures.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "scripts" / "fixtures"


def _load(name: str):
    """scripts/fixtures/<name>.py as a module, or None if that file does not exist."""
    path = FIXTURES / f"{name}.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--open-fv2v", metavar="SRC", help="the open face-vid2vid reimplementation (today's code)")
    p.add_argument("--open-fv2v-beta", metavar="SRC", help="the same repository at commit 0b8e3a8 (the beta's code)")
    p.add_argument("--liveportrait", metavar="SRC", help="checkout of KwaiVGI/LivePortrait")
    p.add_argument("--fomm", metavar="SRC", help="checkout of AliaksandrSiarohin/first-order-model")
    p.add_argument("--output", default=str(ROOT / "tests" / "data" / "parity"), help="fixture folder")
    p.add_argument("--stats", action="store_true",
                   help="open fv2v: only print the 128 px outputs' ranges; fomm: every network output's range")
    args = p.parse_args(argv)
    if not (args.open_fv2v or args.open_fv2v_beta or args.liveportrait or args.fomm):
        p.error("give --open-fv2v, --open-fv2v-beta, --liveportrait and/or --fomm")
    output = Path(args.output)
    if args.open_fv2v or args.open_fv2v_beta:
        start = time.time()
        module = _load("parity_open_fv2v")
        for path in module.main(args.open_fv2v, args.open_fv2v_beta, output / "open_fv2v", args.stats):
            print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")
        print(f"open fv2v: {time.time() - start:.0f} s")
    if args.fomm:
        start = time.time()
        for path in _load("parity_fomm").main(args.fomm, output / "fomm", args.stats):
            print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")
        print(f"fomm: {time.time() - start:.0f} s")
    if args.liveportrait:
        module = _load("parity_liveportrait")
        if module is None:
            print("scripts/fixtures/parity_liveportrait.py is not here: LivePortrait fixtures skipped", file=sys.stderr)
            return 1
        for path in module.main(args.liveportrait, output / "liveportrait"):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
