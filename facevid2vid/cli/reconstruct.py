"""`facevid2vid reconstruct`: same-identity reconstruction of a video from its first frame."""
from __future__ import annotations

from facevid2vid.cli._common import (SMOOTHING, OptionTable, add_crop_arg, add_model_args, add_smoothing_args, report,
                                     smoothing_settings)
from facevid2vid.outputs import VIDEO_OUTPUT_HELP

RUN = OptionTable("facevid2vid.pipeline:reconstruct_files", {"reference_output": "reference_output", "crop": "crop"})
OPTION_TABLES = (RUN, SMOOTHING)


def register(sub) -> None:
    p = sub.add_parser("reconstruct", help="rebuild a video from its first frame and per-frame motion",
                       description="Same-identity reconstruction: the first frame is the source; each frame's "
                                   "pose and expression drive it (absolute motion).")
    p.add_argument("--video", required=True, metavar="VIDEO")
    p.add_argument("--output", required=True, metavar="OUT.mp4", help=VIDEO_OUTPUT_HELP)
    p.add_argument("--reference-output", metavar="REF.mp4", default=None,
                   help="also write the cropped, resized input frames (to compare like with like)")
    add_smoothing_args(p)
    add_model_args(p)
    add_crop_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from facevid2vid.pipeline import reconstruct_files

    result = reconstruct_files(args.video, args.output, checkpoint=args.checkpoint, device=args.device,
                               smoothing=smoothing_settings(args), **RUN.values(args))
    report(result, "reconstruct")
    if result.reference_output:
        print(f"reconstruct: wrote reference frames to {result.reference_output}")
    return 0
