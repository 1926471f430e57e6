"""`facevid2vid train`: train on a prepared data directory (one process, or many under torchrun)."""
from __future__ import annotations

import argparse
import gc

from facevid2vid.cli._common import OptionTable, add_device_arg, nonnegative_int, positive_int
from facevid2vid.config import PRESETS

# the options override the TrainConfig of --preset or --config (build_config): every default is None
TRAIN = OptionTable("facevid2vid.config:TrainConfig",
                    {"max_steps": "max_steps", "max_minutes": "max_minutes", "batch_size": "batch_size", "workers": "num_workers",
                     "checkpoint_every": "checkpoint_every", "vgg19": "vgg19_weights", "seed": "seed"},
                    overrides=True)
OPTION_TABLES = (TRAIN,)


def register(sub) -> None:
    p = sub.add_parser(
        "train", help="train the networks on a prepared data directory",
        description="Train F, L, H/Delta, M, G and D (or another family's networks with its own losses: "
                    "--preset fomm-128, monkeynet-128, x2face-128, ...) on pairs from a `prepare`d data directory. "
                    "Runs in one process on CPU or GPU; under `torchrun --nproc_per_node N -m facevid2vid train ...` "
                    "it runs DistributedDataParallel. Ctrl-C or SIGTERM saves a checkpoint before exiting.")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--preset", metavar="NAME",
                       help=f"model preset with default training settings: {', '.join(sorted(PRESETS))}, or a model "
                            f"family's (fomm-256, fomm-128, monkeynet-128, x2face-128, ...: docs/family.md)")
    which.add_argument("--config", metavar="FILE", help="experiment YAML (model preset/overrides, losses, schedule)")
    p.add_argument("--data", required=True, metavar="DATA_DIR", help="output folder of `facevid2vid prepare`")
    p.add_argument("--output", required=True, metavar="RUN_DIR", help="run folder: checkpoints, logs, TensorBoard")
    p.add_argument("--max-steps", type=nonnegative_int, default=None, metavar="N", help="stop after N steps (default: config)")
    p.add_argument("--max-minutes", type=float, default=None, metavar="M",
                   help="also stop after M minutes of training (a checkpoint is saved; default: config, 0 = no limit)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in RUN_DIR")
    p.add_argument("--init-from", metavar="CKPT", default=None,
                   help="start from another checkpoint's weights (e.g. 256 -> 512 fine-tune)")
    p.add_argument("--batch-size", type=positive_int, default=None, metavar="N", help="images per process and step")
    p.add_argument("--workers", type=nonnegative_int, default=None, metavar="N", help="data loader workers per process")
    p.add_argument("--checkpoint-every", type=nonnegative_int, default=None, metavar="N", help="steps between checkpoints")
    p.add_argument("--vgg19", metavar="FILE", default=None,
                   help="torchvision-format VGG19 state dict for the perceptual loss (else multi-scale L1 + SSIM)")
    p.add_argument("--seed", type=nonnegative_int, default=None)
    add_device_arg(p)
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace):
    """The TrainConfig from --preset/--config plus command-line overrides."""
    from facevid2vid.config import TrainConfig, load_train_config, model_config_from
    from facevid2vid.errors import InputError

    if args.config:
        from facevid2vid.validation import regular_file

        regular_file(args.config, "config file")
        try:
            cfg = load_train_config(args.config)
        except FileNotFoundError:
            raise InputError(f"config file not found: {args.config}") from None
        except (ValueError, TypeError) as exc:
            raise InputError(f"bad config {args.config}: {exc}") from None
    else:
        try:
            cfg = TrainConfig(model=model_config_from({"preset": args.preset}))
        except ValueError as exc:
            raise InputError(str(exc)) from None
    for name, value in TRAIN.values(args).items():
        setattr(cfg, name, value)
    try:
        cfg.validate()
    except ValueError as exc:
        raise InputError(f"bad training settings{f' in {args.config}' if args.config else ''}: {exc}") from None
    return cfg


def run(args: argparse.Namespace) -> int:
    from facevid2vid.outputs import check_outputs
    from facevid2vid.training import distributed
    from facevid2vid.training.trainer import Trainer

    check_outputs({"--output": (args.output, "folder")}, {"--data": args.data, "--config": args.config,
                                                          "--init-from": args.init_from, "--vgg19": args.vgg19})
    cfg = build_config(args)
    try:
        trainer = Trainer(cfg, args.data, args.output, device=args.device, resume=args.resume,
                          init_from=args.init_from, progress=args.progress)
        step = trainer.fit(cfg.max_steps)
        if trainer.info.is_main:
            print(f"train: stopped at step {step}; checkpoint {trainer.ckpt_dir / f'step_{step:08d}.safetensors'}")
        # Shut down in step: every rank past its last collective, and the DDP wrappers (which hold
        # gloo work objects) freed while the interpreter is whole, before the group goes away.
        distributed.barrier()
        del trainer
        gc.collect()
    finally:
        distributed.destroy_process_group()
    return 0
