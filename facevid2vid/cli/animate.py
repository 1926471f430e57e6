"""`facevid2vid animate`: drive a source photo with a video."""
from __future__ import annotations

from facevid2vid.cli._common import (SMOOTHING, VIEW_OPTIONS, OptionTable, add_crop_arg, add_model_args,
                                     add_smoothing_args, add_view_args, report, smoothing_settings)
from facevid2vid.outputs import VIDEO_OUTPUT_HELP

RUN = OptionTable("facevid2vid.pipeline:animate_files", {"mode": "mode", **VIEW_OPTIONS, "crop": "crop"})
OPTION_TABLES = (RUN, SMOOTHING)


def register(sub) -> None:
    p = sub.add_parser("animate", help="animate a source face with a driving video",
                       description="Synthesize the source person performing the driving video's motion.")
    p.add_argument("--source", required=True, metavar="IMG_OR_VIDEO", help="photo (or video: first frame) of the person")
    p.add_argument("--driving", required=True, metavar="VIDEO", help="video whose motion drives the source")
    p.add_argument("--output", required=True, metavar="OUT.mp4", help=VIDEO_OUTPUT_HELP)
    p.add_argument("--mode", choices=["relative", "absolute"], default="relative",
                   help="relative: driving motion relative to its first frame, applied to the source pose "
                        "(default; best across identities); absolute: the driving pose and expression as they are")
    add_view_args(p)
    add_smoothing_args(p)
    add_model_args(p)
    add_crop_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from facevid2vid.pipeline import animate_files

    result = animate_files(args.source, args.driving, args.output, checkpoint=args.checkpoint, device=args.device,
                           smoothing=smoothing_settings(args), **RUN.values(args))
    report(result, "animate")
    return 0
