"""`facevid2vid prepare`: raw videos -> steady face clips + index for training."""
from __future__ import annotations

import argparse
import sys

from facevid2vid.cli._common import OptionTable, int_range, positive_int

PREPARE = OptionTable(
    "facevid2vid.data.prepare:PrepareOptions",
    {"size": "size", "min_frames": "min_frames", "max_frames": "max_frames", "min_face": "min_face",
     "detect_every": "detect_every", "poses": "poses"},
    elsewhere={"start": "frames", "end": "frames"},  # --frames START:END
    # how a steady segment is found and cropped: tuned once for the face detector, not per data set
    not_on_cli=frozenset({"max_shift", "max_zoom", "margin", "shift", "jpeg_quality"}))
RUN = OptionTable("facevid2vid.data.prepare:prepare",
                  {"workers": "workers", "progress": "progress", "stills": "stills",
                   "allow_evaluation": "allow_evaluation"})
OPTION_TABLES = (PREPARE, RUN)


def register(sub) -> None:
    p = sub.add_parser(
        "prepare", help="turn raw videos (and photos) into a training set of face clips",
        description="Detect and track the face in every video (mp4, webm, avi, mkv, ...) or folder of frames "
                    "under RAW_DIR_OR_VIDEO, cut clips where the face is steady and large enough, crop each clip "
                    "with one square box, resize, and write DATA_DIR/clips/<id>/*.jpg, DATA_DIR/index.json "
                    "(with per-frame teacher head pose) and DATA_DIR/report.json. Inputs that fail are "
                    "skipped and listed; re-running skips what is done. Layout RAW_DIR/<identity>/.../video "
                    "gives identity labels. A photo (an image given as the input, or every image of a folder "
                    "with --stills) gives a one-frame 'still' clip per face; held-out stills and the "
                    "evaluation clips are refused by name.")
    p.add_argument("--input", required=True, metavar="RAW_DIR_OR_VIDEO")
    p.add_argument("--output", required=True, metavar="DATA_DIR")
    p.add_argument("--size", type=int_range(16, 4096), default=256, help="side of the square clips in pixels (default 256)")
    p.add_argument("--workers", type=positive_int, default=1, metavar="N", help="inputs processed in parallel (default 1)")
    p.add_argument("--frames", default=None, metavar="START:END",
                   help="use only frames [START, END) of every input, e.g. 0:3600 for a training split")
    p.add_argument("--min-frames", type=int_range(2), default=32, metavar="N", help="shortest clip kept (default 32)")
    p.add_argument("--max-frames", type=int_range(2), default=256, metavar="N", help="longer clips are split (default 256)")
    p.add_argument("--min-face", type=positive_int, default=40, metavar="PX", help="smallest face side in source pixels")
    p.add_argument("--detect-every", type=positive_int, default=4, metavar="N", help="run the detector every N frames")
    p.add_argument("--no-pose", dest="poses", action="store_false", help="skip the head-pose teacher")
    p.add_argument("--stills", action="store_true",
                   help="every image is a still photo (one clip per face), not a frame of a video")
    p.add_argument("--allow-evaluation", action="store_true",
                   help="also prepare the evaluation clips (cap13, carphone, astronaut): for checking the tools, "
                        "never for training (held-out stills are refused regardless)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from facevid2vid.data.prepare import parse_frame_range, prepare

    start, end = parse_frame_range(args.frames)
    opts = PREPARE.build(args, start=start, end=end)
    report = prepare(args.input, args.output, opts, log=lambda msg: print(f"prepare: {msg}", file=sys.stderr),
                     **RUN.values(args))
    t = report.to_dict()["totals"]
    print(f"prepare: {t['clips']} clips ({t['frames']} frames) from {t['sources'] - t['skipped']} of "
          f"{t['sources']} inputs into {args.output}; {t['skipped']} skipped (see {args.output}/report.json)")
    return 0
