"""The four model families side by side: trained with one budget on one data set, measured by one protocol.

For each family's small preset (face-vid2vid lite-128, FOMM fomm-128, Monkey-Net monkeynet-128,
X2Face x2face-128) this trains from scratch with the family's own losses on the same prepared
training data for the same wall-time budget on this machine's CPUs (``--minutes``), then runs
the reconstruction protocol of ``facevid2vid benchmark`` on franck's validation frames (DATA.md:
first validation frame as source, absolute motion, evaluated at 256x256) and times synthesis per
frame (source encoded once). It prints one markdown table (the docs/family.md table) and writes
the figures as JSON. The published VoxCeleb figures of the FOMM paper are printed beside it:
they come from models trained for days on many GPUs, so they are not comparable.

    python benchmarks/family.py --data data/v2 --minutes 10 --frames 300 --json family.json

Runs train one after another (``runs/family/<preset>``); a finished run is measured again without
training (``--resume`` continues it for another budget instead). Run it on an otherwise idle machine: the budget is wall time.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from facevid2vid.config import TrainConfig, model_config_from
from facevid2vid.data.fetch import VALIDATION_SPLIT, fetch_samples
from facevid2vid.families.registry import family_of_config, spec
from facevid2vid.metrics.benchmark import BASELINE, MODEL, run_benchmark
from facevid2vid.metrics.evaluate import EvaluateOptions
from facevid2vid.outputs import write_text

PRESETS = ("lite-128", "fomm-128", "monkeynet-128", "x2face-128")
# FOMM paper, Table 3 (VoxCeleb, reconstruction): L1, AKD, AED
PUBLISHED = {"fomm": (0.043, 1.294, 0.140), "monkeynet": (0.049, 1.878, 0.199), "x2face": (0.078, 7.687, 0.405)}
COLUMNS = (("l1", "L1", ".4f"), ("psnr", "PSNR", ".2f"), ("ssim", "SSIM", ".3f"), ("akd", "AKD px", ".2f"),
           ("aed", "AED", ".3f"), ("pd", "PD", ".3f"))


def train_config(preset: str, minutes: float, base: TrainConfig | None = None) -> TrainConfig:
    """The same training settings for every family; only the model (and so its losses) differ."""
    cfg = TrainConfig(model=model_config_from({"preset": preset}), batch_size=4, num_workers=1,
                      max_steps=10**9, max_minutes=minutes, checkpoint_every=0, log_every=25, image_every=0,
                      perceptual_network="mobilenet_v2", identity_network="mobilefacenet",
                      pose_teacher="whenet", lr_milestones=(10**9,))
    cfg.validate()
    return cfg


def train(preset: str, data: str, runs: Path, minutes: float, resume: bool) -> tuple[Path, int, float]:
    """(final checkpoint, steps, seconds) of one budgeted run; a finished run is measured again, not retrained
    (without ``resume``)."""
    from facevid2vid.training.trainer import Trainer

    latest = runs / preset / "checkpoints" / "latest.json"
    if latest.is_file() and not resume:
        done = json.loads(latest.read_text())
        print(f"{preset}: measuring the finished run {runs / preset} (step {done['step']})", flush=True)
        return latest.parent / done["model"], int(done["step"]), float("nan")
    t0 = time.perf_counter()
    trainer = Trainer(train_config(preset, minutes), data, runs / preset, device="cpu", resume=resume,
                      progress=True)
    step = trainer.fit()
    return trainer.ckpt_dir / f"step_{step:08d}.safetensors", step, time.perf_counter() - t0


@torch.inference_mode()
def ms_per_frame(checkpoint: Path, batch: int = 8, repeats: int = 3) -> float:
    from facevid2vid.checkpoint import load_checkpoint

    model = load_checkpoint(checkpoint)
    s = model.cfg.image_size
    gen = torch.Generator().manual_seed(0)
    source = model.encode_source(torch.rand(1, 3, s, s, generator=gen))
    frames = torch.rand(batch, 3, s, s, generator=gen)

    def once() -> float:
        t0 = time.perf_counter()
        model.render(source, model.estimate_motion(frames))
        return time.perf_counter() - t0

    once()
    return 1000 * statistics.median(once() for _ in range(repeats)) / batch


def measure(checkpoint: Path, frames: int) -> dict:
    samples = fetch_samples(quiet=True)
    res = run_benchmark(str(checkpoint), samples.franck, "reconstruction", max_frames=frames,
                        start=VALIDATION_SPLIT[0].start, options=EvaluateOptions(progress=True), eval_size=256)
    rows = res.to_dict()["rows"]
    return {"model": rows[MODEL], "baseline": rows[BASELINE]}


def table(results: list[dict], minutes: float, frames: int) -> str:
    head = ["family", "preset", "steps", *(label for _, label, _ in COLUMNS), "ms/frame (batch 8)",
            "published L1 / AKD / AED (VoxCeleb)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        pub = PUBLISHED.get(r["family"])
        cells = [spec(r["family"]).label, r["preset"], str(r["steps"]),
                 *(_cell(r["metrics"]["model"].get(k), fmt) for k, _, fmt in COLUMNS),
                 f"{r['ms_per_frame']:.1f}", " / ".join(map(str, pub)) if pub else "(not in the FOMM paper)"]
        lines.append("| " + " | ".join(cells) + " |")
    base = results[0]["metrics"]["baseline"]
    lines.append("| no motion (source copied) | | | " + " | ".join(_cell(base.get(k), fmt) for k, _, fmt in COLUMNS)
                 + " | | |")
    return "\n".join(lines) + (f"\n\n{minutes:g} minutes of training each on this machine's CPUs; "
                               f"{frames} validation frames (franck from {VALIDATION_SPLIT[0].start}), 256x256.")


def _cell(value, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="a `facevid2vid prepare`d training folder (the training split)")
    p.add_argument("--minutes", type=float, default=10.0, help="training budget per family (wall time)")
    p.add_argument("--frames", type=int, default=300, help="validation frames measured")
    p.add_argument("--presets", nargs="+", default=list(PRESETS))
    p.add_argument("--runs", default="runs/family")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--resume", action="store_true", help="continue existing runs (up to the budget again)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = []
    for preset in args.presets:
        ckpt, steps, seconds = train(preset, args.data, Path(args.runs), args.minutes, args.resume)
        family = family_of_config(model_config_from({"preset": preset}))
        results.append({"family": family, "preset": preset, "checkpoint": str(ckpt), "steps": steps,
                        "train_seconds": seconds, "ms_per_frame": ms_per_frame(ckpt),
                        "metrics": measure(ckpt, args.frames)})
        print(json.dumps(results[-1]), flush=True)
        if args.json:  # after each family: a crash later loses nothing measured
            write_text(args.json, json.dumps({"minutes": args.minutes, "frames": args.frames, "results": results},
                                             indent=1))
    print(table(results, args.minutes, args.frames))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
