"""`facevid2vid redirect`: rotate a head freely, or frontalize it."""
from __future__ import annotations

from facevid2vid.cli._common import VIEW_OPTIONS, OptionTable, add_crop_arg, add_model_args, add_view_args, report
from facevid2vid.outputs import IMAGE_OUTPUT_HELP, VIDEO_OUTPUT_HELP

RUN = OptionTable("facevid2vid.pipeline:redirect_files", {**VIEW_OPTIONS, "crop": "crop"})
OPTION_TABLES = (RUN,)


def register(sub) -> None:
    p = sub.add_parser("redirect", help="change the head pose of a photo or of every frame of a video",
                       description="Free-view redirection: R <- R_u R (or R = I with --frontalize). "
                                   "An image in gives a PNG out; a video in gives a video out.")
    p.add_argument("--source", required=True, metavar="IMG_OR_VIDEO")
    p.add_argument("--output", required=True, metavar="OUT",
                   help=IMAGE_OUTPUT_HELP + " for a photo; for a video, " + VIDEO_OUTPUT_HELP)
    add_view_args(p)
    add_model_args(p)
    add_crop_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from facevid2vid.pipeline import redirect_files

    result = redirect_files(args.source, args.output, checkpoint=args.checkpoint, device=args.device,
                            **RUN.values(args))
    report(result, "redirect")
    return 0
