"""``facevid2vid convert``: another project's checkpoint -> our safetensors checkpoint (docs/checkpoints.md)."""
from __future__ import annotations

import argparse

from facevid2vid.errors import UsageError

FAMILIES = ("open-fv2v", "liveportrait", "fomm")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "convert", help="convert a third-party checkpoint (open face-vid2vid, LivePortrait, FOMM) into ours",
        description="Read a checkpoint of another implementation without running its code (weights-only "
                    "torch.load), map and check every tensor, and write one facevid2vid .safetensors checkpoint "
                    "that every command takes with --checkpoint. See docs/checkpoints.md for where the files "
                    "come from and their licenses.")
    p.add_argument("--from", dest="family", required=True, choices=FAMILIES,
                   help="open-fv2v: the open face-vid2vid reimplementation's Vox-256 .pth.tar "
                        "(zhanglonghao1992/One-Shot_Free-View_Neural_Talking_Head_Synthesis); "
                        "liveportrait: a folder of LivePortrait's pretrained weights; "
                        "fomm: first-order-model's vox-cpk.pth.tar (AliaksandrSiarohin/first-order-model)")
    p.add_argument("source", metavar="CKPT_OR_DIR",
                   help="the checkpoint file (open-fv2v, fomm) or folder (liveportrait)")
    p.add_argument("--output", required=True, metavar="OUT.safetensors", help="the converted checkpoint to write")
    p.add_argument("--generator", choices=("spade", "original"), default=None,
                   help="open-fv2v: the generator the checkpoint holds (default: found from its keys; "
                        "00000189-checkpoint.pth.tar: spade, the beta checkpoint: original)")
    p.add_argument("--config", metavar="vox-256.yaml|vox-256-beta.yaml", default=None,
                   help="open-fv2v: the reference's YAML config the checkpoint was trained with, by name (a path "
                        "is taken by its file name); default: found from the keypoint detector (vox-256.yaml "
                        "when it downscales its input by 4, else vox-256-beta.yaml, the code of 2021-09-18)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.family == "fomm":
        return _fomm(args)
    if args.family == "liveportrait":
        output = _liveportrait(args)
        print(f"wrote {output} (liveportrait, from {args.source})")
        return 0
    from pathlib import Path

    from facevid2vid.config import OPEN_FV2V_CONFIGS
    from facevid2vid.convert.open_fv2v import convert_open_fv2v

    if args.config is not None and Path(args.config).name not in OPEN_FV2V_CONFIGS:
        raise UsageError(f"--config must name {' or '.join(OPEN_FV2V_CONFIGS)} (the reference's YAML file), "
                         f"got {args.config!r}")
    output = convert_open_fv2v(args.source, args.output, generator=args.generator, config=args.config)
    from facevid2vid.checkpoint import read_checkpoint_config

    cfg = read_checkpoint_config(output)
    print(f"wrote {output} ({cfg.name}: open-fv2v {cfg.generator_decoder} generator, {cfg.image_size} px, "
          f"{cfg.num_keypoints} keypoints) from {args.source}")
    return 0


def _no_open_fv2v_options(args: argparse.Namespace, takes: str) -> None:
    for option in ("generator", "config"):
        if getattr(args, option) is not None:
            raise UsageError(f"--{option} is an open-fv2v option; --from {args.family} takes {takes} and --output")


def _fomm(args: argparse.Namespace) -> int:
    _no_open_fv2v_options(args, "a .pth.tar")
    from facevid2vid.checkpoint import read_checkpoint_config
    from facevid2vid.convert.fomm import convert_fomm

    output = convert_fomm(args.source, args.output)
    cfg = read_checkpoint_config(output)
    jacobians = "with Jacobians" if cfg.estimate_jacobian else "without Jacobians"
    print(f"wrote {output} ({cfg.name}: FOMM, {cfg.num_keypoints} keypoints {jacobians}, {cfg.image_size} px) "
          f"from {args.source}")
    return 0


def _liveportrait(args: argparse.Namespace):
    _no_open_fv2v_options(args, "a folder")
    try:
        from facevid2vid.convert.liveportrait import convert_liveportrait
    except ModuleNotFoundError as exc:
        if exc.name == "facevid2vid.convert.liveportrait":
            raise UsageError("--from liveportrait is not available in this version "
                             "(facevid2vid.convert.liveportrait is missing)") from None
        raise
    return convert_liveportrait(args.source, args.output)
