"""`facevid2vid demo`: the bundled model on the sample clips."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the bundled model on the sample clips (fetched if needed)",
                       description="Writes a reconstruction, a cross-identity animation, a yaw sweep, a "
                                   "frontalized clip and a contact sheet into the output folder.")
    p.add_argument("--output", default="demo", metavar="DIR", help="output folder (default: ./demo)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--checkpoint", metavar="FILE", default=None, help="another model instead of the bundled one")
    p.add_argument("--frames", type=int, default=96, help="frames per clip (default 96)")
    p.set_defaults(func=run)


def run(args) -> int:
    from facevid2vid.demo import run_demo

    run_demo(args.output, device=args.device, checkpoint=args.checkpoint, num_frames=args.frames)
    return 0
