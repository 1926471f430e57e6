"""Cost of the perception terms in one training step, measured side by side in one run.

Times ``Trainer.train_step`` of a config (default: configs/bundled-v2.yaml) on a generated data
folder, once with the config's losses as they are with the perception networks off (pixel L1
+ SSIM, landmark-PnP poses from the index) and once with each perception term added and with
all of them together, and prints seconds per step and the ratio to the plain step. The GAN
terms are on in every variant. Needs `facevid2vid weights fetch`.

    python benchmarks/train_step.py --threads 2 --steps 5
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from facevid2vid.config import load_train_config
from facevid2vid.training.trainer import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_dataset import make_synthetic_dataset  # noqa: E402  (generated frames, no sample data needed)

VARIANTS = {
    "plain": {},
    "+ perceptual": {"perceptual_network": "mobilenet_v2"},
    "+ identity": {"identity_network": "mobilefacenet"},
    "+ pose teacher": {"pose_teacher": "whenet"},
    "+ all three": {"perceptual_network": "mobilenet_v2", "identity_network": "mobilefacenet",
                    "pose_teacher": "whenet"},
}


def step_seconds(cfg, data: Path, steps: int) -> float:
    with tempfile.TemporaryDirectory() as run:
        tr = Trainer(cfg, data, run, device="cpu", progress=False, console=False)
        batch = next(tr.batches())
        tr.train_step(batch)  # warm-up
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            tr.train_step(batch)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/bundled-v2.yaml")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = load_train_config(args.config)
    base = dataclasses.replace(base, num_workers=0, log_every=0, image_every=0, checkpoint_every=0,
                               gan_start_step=0, perceptual_network=None, identity_network=None, pose_teacher="index",
                               still_fraction=0.0)  # generated video clips only: the step costs the same
    with tempfile.TemporaryDirectory() as tmp:
        data = make_synthetic_dataset(Path(tmp) / "data", clips=2, frames=8, size=base.model.image_size)
        rows = {name: step_seconds(dataclasses.replace(base, **kw), data, args.steps) for name, kw in VARIANTS.items()}
    print(f"training step of {args.config} ({base.model.name}, batch {base.batch_size}), {args.threads} threads")
    for name, sec in rows.items():
        print(f"{name:16s} {sec:7.2f} s/step  {sec / rows['plain']:5.2f} x plain  ({100 * (sec / rows['plain'] - 1):+.0f}%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
