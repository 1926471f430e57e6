"""`facevid2vid demo`: the bundled model on the sample clips."""
from __future__ import annotations

from facevid2vid.cli._common import OptionTable, add_device_arg, int_range

RUN = OptionTable("facevid2vid.demo:run_demo", {"output": "output", "frames": "num_frames"})
OPTION_TABLES = (RUN,)


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the bundled model on the sample clips (fetched if needed)",
                       description="Writes a reconstruction, a cross-identity animation, a yaw sweep, a "
                                   "frontalized clip and a contact sheet into the output folder.")
    p.add_argument("--output", default="demo", metavar="DIR", help="output folder (default: ./demo)")
    add_device_arg(p)
    p.add_argument("--checkpoint", metavar="FILE", default=None, help="another model instead of the bundled one")
    p.add_argument("--frames", type=int_range(2, 100_000), default=96, help="frames per clip, 2 or more (default 96)")
    p.set_defaults(func=run)


def run(args) -> int:
    from facevid2vid.demo import run_demo
    from facevid2vid.outputs import check_outputs

    check_outputs({"--output": (args.output, "folder")}, {"--checkpoint": args.checkpoint})
    run_demo(device=args.device, checkpoint=args.checkpoint, **RUN.values(args))
    return 0
