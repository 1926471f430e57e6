"""`facevid2vid inspect`: parameter counts, volume shape and compute per frame of a model."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("inspect", help="print per-module parameters, the volume shape and MACs per frame")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--preset", metavar="NAME", help="an architecture preset (random weights)")
    g.add_argument("--checkpoint", metavar="FILE", help="a .safetensors checkpoint")
    p.set_defaults(func=run)


def run(args) -> int:
    from facevid2vid.complexity import describe_model

    print(describe_model(checkpoint=args.checkpoint, preset=args.preset))
    return 0
