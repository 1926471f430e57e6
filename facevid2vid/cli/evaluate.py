"""`facevid2vid evaluate`: compare a generated video with its aligned reference."""
from __future__ import annotations

import argparse

from facevid2vid.cli._common import OptionTable, positive_int

EVALUATE = OptionTable(
    "facevid2vid.metrics.evaluate:EvaluateOptions",
    {"batch_size": "batch_size", "faces": "faces", "vmaf": "vmaf", "perception": "perception",
     "lpips_backbone": "lpips_backbone", "lpips_heads": "lpips_heads", "fid_weights": "fid_weights",
     "progress": "progress"},
    # device: given by the command (evaluate: the CPU; benchmark: its model's); libvmaf picks its threads
    not_on_cli=frozenset({"device", "vmaf_threads"}))
OPTION_TABLES = (EVALUATE,)


def add_metric_args(p: argparse.ArgumentParser) -> None:
    """Options shared by `evaluate` and `benchmark`."""
    p.add_argument("--json", metavar="OUT.json", default=None, help="also write the results as JSON")
    p.add_argument("--markdown", metavar="OUT.md", default=None, help="also write the table as Markdown")
    p.add_argument("--batch-size", type=positive_int, default=16, help="frames per batch (default 16)")
    p.add_argument("--no-faces", dest="faces", action="store_false",
                   help="skip the dlib metrics (AKD, AED, pose error)")
    p.add_argument("--no-vmaf", dest="vmaf", action="store_false", help="skip VMAF")
    p.add_argument("--no-perception", dest="perception", action="store_false",
                   help="skip PD, AED and pose error from the ported networks (docs/perception.md)")
    p.add_argument("--lpips-backbone", metavar="FILE", default=None,
                   help="torchvision AlexNet or VGG16 state dict (.pth or .safetensors) for LPIPS")
    p.add_argument("--lpips-heads", metavar="FILE", default=None,
                   help="LPIPS v0.1 linear heads for that backbone (lpips/weights/v0.1/alex.pth or vgg.pth)")
    p.add_argument("--fid-weights", metavar="FILE", default=None,
                   help="InceptionV3 state dict in torchvision key layout (e.g. pytorch-fid's pt_inception) for FID")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")


def metric_inputs(args) -> dict:
    """The weight files of the metric options, as inputs no output may overwrite."""
    return {"--lpips-backbone": args.lpips_backbone, "--lpips-heads": args.lpips_heads,
            "--fid-weights": args.fid_weights}


def metric_outputs(args) -> dict:
    """--json and --markdown, for :func:`facevid2vid.outputs.check_outputs`."""
    return {"--json": (args.json, "json"), "--markdown": (args.markdown, "markdown")}


def metric_options(args, device: str = "cpu"):
    """EvaluateOptions from the metric options (:func:`add_metric_args`)."""
    return EVALUATE.build(args, device=device)


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="metrics of a generated video against its aligned reference",
                       description="L1, PSNR, SSIM, MS-SSIM, AKD, AED, head-pose error and VMAF (LPIPS and FID "
                                   "with user-supplied weights) between two videos of equal frame count and size. "
                                   "Definitions: docs/metrics.md.")
    p.add_argument("--reference", required=True, metavar="REF_VIDEO")
    p.add_argument("--generated", required=True, metavar="GEN_VIDEO")
    p.add_argument("--source", metavar="IMG", default=None,
                   help="source image (or video: first frame) to measure identity distance of generated frames to")
    add_metric_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from facevid2vid.metrics.evaluate import evaluate_videos, format_markdown, format_table, write_json
    from facevid2vid.outputs import check_outputs, write_text
    from facevid2vid.video_io import load_source

    check_outputs(metric_outputs(args), {"--reference": args.reference, "--generated": args.generated,
                                         "--source": args.source, **metric_inputs(args)})
    source = load_source(args.source) if args.source else None
    result = evaluate_videos(args.reference, args.generated, source=source, options=metric_options(args))
    columns = {"generated vs reference": result}
    print(format_table(columns))
    if args.json:
        write_json(args.json, {"reference": str(args.reference), "generated": str(args.generated),
                               "source": args.source, "result": result.to_dict()})
        print(f"evaluate: wrote {args.json}")
    if args.markdown:
        write_text(args.markdown, format_markdown(columns) + "\n")
        print(f"evaluate: wrote {args.markdown}")
    return 0
