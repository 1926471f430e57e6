"""`facevid2vid benchmark`: the paper's evaluation protocol on one clip, with a no-motion baseline."""
from __future__ import annotations

from facevid2vid.cli._common import (SMOOTHING, OptionTable, add_crop_arg, add_model_args, add_smoothing_args, angle,
                                     int_range, nonnegative_int, positive_int, smoothing_settings)
from facevid2vid.cli.evaluate import EVALUATE, add_metric_args, metric_inputs, metric_options, metric_outputs

JITTER = OptionTable("facevid2vid.metrics.benchmark:JitterOptions", {"still": "still", "still_length": "length"},
                     elsewhere={"smoothing": "smooth_min_cutoff"})  # ROW_SMOOTHING
# the filter of the smoothed jitter row: SMOOTHING's options but --smooth, as that row is always smoothed
ROW_SMOOTHING = OptionTable(SMOOTHING.target, {d: f for d, f in SMOOTHING.options.items() if f != "enabled"},
                            not_on_cli=SMOOTHING.not_on_cli | {"enabled"})
RUN = OptionTable(  # the parameters of run_benchmark with defaults (--device: facevid2vid.devices)
    "facevid2vid.metrics.benchmark:run_benchmark",
    {"task": "task", "max_frames": "max_frames", "start": "start", "yaws": "yaws", "crop": "crop",
     "model_batch_size": "batch_size", "source": "sources", "eval_size": "eval_size"})
OPTION_TABLES = (RUN, JITTER, ROW_SMOOTHING, EVALUATE)


def _yaws(text: str) -> list[float]:
    import argparse

    try:
        values = [angle(v) for v in text.split(",") if v.strip()]
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated degrees: {exc}") from None
    if not values:
        raise argparse.ArgumentTypeError("no yaw angles given")
    return values


def _window(text: str) -> tuple[int, int]:
    import argparse

    from facevid2vid.errors import InputError
    from facevid2vid.metrics.jitter import parse_window

    try:
        return parse_window(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub) -> None:
    p = sub.add_parser("benchmark", help="run the evaluation protocol (reconstruction or redirect) on a clip",
                       description="reconstruction: the first frame is the source and every frame drives it "
                                   "(absolute motion), generated vs cropped reference frames. redirect: a sweep of "
                                   "added yaw angles; achieved yaw (dlib landmarks + PnP) against requested, and "
                                   "identity distance to the source. Both add a no-motion baseline row (the source "
                                   "frame repeated). reconstruction also reports jitter on a still stretch: "
                                   "frame-to-frame change of keypoints and pixels, with and without smoothing. "
                                   "cross-identity: each --source photo driven by the clip (relative motion); "
                                   "identity distance to the photo and yaw/pitch correlation with the driving "
                                   "frames.")
    p.add_argument("--video", required=True, metavar="VIDEO")
    p.add_argument("--task", choices=("reconstruction", "redirect", "cross-identity"), default="reconstruction")
    p.add_argument("--source", action="append", default=None, metavar="IMAGE",
                   help="cross-identity: a photo of another person driven by the clip (repeatable)")
    p.add_argument("--eval-size", type=int, default=None, metavar="N",
                   help="evaluate at N x N (the model's input and output are resized; default: the model's size)")
    p.add_argument("--start", type=nonnegative_int, default=0, help="first frame of the clip (default 0)")
    p.add_argument("--max-frames", type=positive_int, default=None, help="use at most this many frames (default: all)")
    p.add_argument("--yaws", type=_yaws, default=None, metavar="DEG,DEG,...",
                   help="redirect: requested yaw angles (default -30,-20,-10,0,10,20,30)")
    p.add_argument("--model-batch-size", type=positive_int, default=8, help="frames per synthesis batch (default 8)")
    p.add_argument("--still", type=_window, default=None, metavar="START:END",
                   help="reconstruction: video frames START..END-1 as the still window of the jitter figure "
                        "(default: the --still-length frames with the least pixel change)")
    p.add_argument("--still-length", type=int_range(2), default=48, metavar="N",
                   help="frames of the still window found automatically (default 48)")
    add_smoothing_args(p, jitter_row=True)
    add_model_args(p)
    add_crop_arg(p)
    add_metric_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from facevid2vid.errors import InputError
    from facevid2vid.metrics.benchmark import format_benchmark, run_benchmark, write_benchmark
    from facevid2vid.outputs import check_outputs

    check_outputs(metric_outputs(args), {"--video": args.video, "--source": args.source,
                                         "--checkpoint": args.checkpoint, **metric_inputs(args)})
    if args.still_length < 2:
        raise InputError(f"--still-length must be 2 or more, got {args.still_length}")
    jitter = JITTER.build(args, smoothing=smoothing_settings(args, enabled=True))
    result = run_benchmark(args.checkpoint, args.video, device=args.device, options=metric_options(args),
                           jitter=jitter, **RUN.values(args))
    print(format_benchmark(result))
    write_benchmark(result, args.json, args.markdown)
    for path in (args.json, args.markdown):
        if path:
            print(f"benchmark: wrote {path}")
    return 0
