"""`facevid2vid benchmark`: the paper's evaluation protocol on one clip, with a no-motion baseline."""
from __future__ import annotations

from facevid2vid.cli._common import add_crop_arg, add_model_args
from facevid2vid.cli.evaluate import add_metric_args, metric_options


def _yaws(text: str) -> list[float]:
    import argparse

    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated degrees, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("no yaw angles given")
    return values


def register(sub) -> None:
    p = sub.add_parser("benchmark", help="run the evaluation protocol (reconstruction or redirect) on a clip",
                       description="reconstruction: the first frame is the source and every frame drives it "
                                   "(absolute motion), generated vs cropped reference frames. redirect: a sweep of "
                                   "added yaw angles; achieved yaw (dlib landmarks + PnP) against requested, and "
                                   "identity distance to the source. Both add a no-motion baseline row (the source "
                                   "frame repeated).")
    p.add_argument("--video", required=True, metavar="VIDEO")
    p.add_argument("--task", choices=("reconstruction", "redirect"), default="reconstruction")
    p.add_argument("--start", type=int, default=0, help="first frame of the clip (default 0)")
    p.add_argument("--max-frames", type=int, default=None, help="use at most this many frames (default: all)")
    p.add_argument("--yaws", type=_yaws, default=None, metavar="DEG,DEG,...",
                   help="redirect: requested yaw angles (default -30,-20,-10,0,10,20,30)")
    p.add_argument("--model-batch-size", type=int, default=8, help="frames per synthesis batch (default 8)")
    add_model_args(p)
    add_crop_arg(p)
    add_metric_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from facevid2vid.metrics.benchmark import DEFAULT_YAWS, format_benchmark, run_benchmark, write_benchmark

    result = run_benchmark(args.checkpoint, args.video, task=args.task, max_frames=args.max_frames,
                           start=args.start, yaws=args.yaws or DEFAULT_YAWS, crop=args.crop, device=args.device,
                           batch_size=args.model_batch_size, options=metric_options(args))
    print(format_benchmark(result))
    write_benchmark(result, args.json, args.markdown)
    for path in (args.json, args.markdown):
        if path:
            print(f"benchmark: wrote {path}")
    return 0
