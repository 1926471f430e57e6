"""Synthesis speed per driving frame, models side by side in one run.

Times what a driving frame costs once the source is encoded (H/Delta + keypoint transform +
M + G), at a batch size (default 8, the pipeline's) and at batch 1 (live use), for the
presets ``paper-256`` and ``lite-256`` (random weights: speed does not depend on them), the
bundled model and any ``--checkpoint``. Prints milliseconds per frame and the ratio to the
bundled model. The ``cache`` columns measure what caching the source-only work saves (M's
compressed f_s, the source Gaussians, the coordinate grids): the same frames rendered from a
source encoding without that cache, grids rebuilt every call. A second table (``--no-per-module``
leaves it out) splits the time per network of the model's ``NETWORKS`` (face-vid2vid F, L, H, M, G;
LivePortrait F, M, W, G, S), timed with forward hooks: one ``encode_source`` (batch 1) and, per driving
frame, ``estimate_motion`` + ``render``; "other" is what ran outside every network (keypoint
transform, glue). Run it on an otherwise idle machine:

    python benchmarks/speed.py                      # 2 threads, batch 8 and 1
    python benchmarks/speed.py --threads 2 --repeats 5 --json speed.json
    python benchmarks/speed.py --families open-fv2v-256 open-fv2v-256-beta liveportrait --batches 1 --repeats 1
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from facevid2vid import geometry
from facevid2vid.checkpoint import default_checkpoint, load_checkpoint, realtime_checkpoint
from facevid2vid.complexity import network_meter, networks
from facevid2vid.config import model_preset
from facevid2vid.models import FaceVid2Vid
from facevid2vid.outputs import write_text


@torch.inference_mode()
def frame_seconds(model: FaceVid2Vid, batch: int, repeats: int, cached: bool = True) -> float:
    """Median seconds per driving frame (source encoded once, outside the timing)."""
    s = model.cfg.image_size
    gen = torch.Generator().manual_seed(0)
    source = model.encode_source(torch.rand(1, 3, s, s, generator=gen))
    source = source if cached else source.without_cache()
    frames = torch.rand(batch, 3, s, s, generator=gen)

    def once() -> float:
        if not cached:
            geometry._grid.cache_clear()
        t0 = time.perf_counter()
        model.render(source, model.estimate_motion(frames))
        return time.perf_counter() - t0

    once()  # warm-up: oneDNN picks its kernels on the first call
    return statistics.median(once() for _ in range(repeats)) / batch


def _timed(model, fn, *args) -> dict[str, float]:
    """Seconds of one call: {network prefix (those that ran): s, "other": s, "total": s}."""
    with network_meter(model, time.perf_counter) as seconds:
        t0 = time.perf_counter()
        fn(*args)
        total = time.perf_counter() - t0
    out = {p: seconds[p] for p in networks(model) if p in seconds}
    out["other"] = max(0.0, total - sum(out.values()))
    out["total"] = total
    return out


def _median_run(runs: list[dict[str, float]], per: int) -> dict[str, float]:
    """The run of median total (so its networks and "other" add up to its total), divided by ``per``."""
    run = sorted(runs, key=lambda r: r["total"])[(len(runs) - 1) // 2]
    return {k: v / per for k, v in run.items()}


@torch.inference_mode()
def module_seconds(model, batch: int, repeats: int, warmup: bool = True) -> dict[str, dict[str, float]]:
    """Seconds per network (median run of ``repeats``): ``"source"`` for one ``encode_source`` at batch 1,
    ``"frame"`` per driving frame of ``estimate_motion`` + ``render`` at ``batch`` (source encoded once).

    Each maps the networks that ran (by checkpoint prefix) to seconds, plus ``"other"`` (outside every
    network) and ``"total"``; the networks and "other" add up to the total.
    """
    s = model.cfg.image_size
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, s, s, generator=gen)
    frames = torch.rand(batch, 3, s, s, generator=gen)
    source = model.encode_source(image)

    def frame() -> None:
        model.render(source, model.estimate_motion(frames))

    if warmup:  # oneDNN picks its kernels on the first call (frame_seconds, run before, has done it)
        frame()
    return {"source": _median_run([_timed(model, model.encode_source, image) for _ in range(repeats)], 1),
            "frame": _median_run([_timed(model, frame) for _ in range(repeats)], batch)}


FAMILIES = ("open-fv2v-256", "open-fv2v-256-beta", "liveportrait",  # converted families
            "fomm-256", "monkeynet-256", "x2face-256", "fomm-128", "monkeynet-128", "x2face-128")  # the 2D families


def family_model(name: str):
    """A family's architecture (a converted one's, or a 2D family preset) with seeded random weights
    (speed does not depend on them)."""
    from facevid2vid.checkpoint import _preset_config, build_model

    torch.manual_seed(0)
    return build_model(_preset_config(name))


def models(checkpoints: list[str], families: list[str] = ()) -> dict[str, FaceVid2Vid]:
    out = {name: FaceVid2Vid(model_preset(name)) for name in ("paper-256", "lite-256")}
    out.update({name: family_model(name) for name in families})
    bundled = default_checkpoint()
    if bundled is not None:
        out["bundled"] = load_checkpoint(bundled)
    realtime = realtime_checkpoint()
    if realtime is not None:
        out["realtime (live call)"] = load_checkpoint(realtime)
    for path in checkpoints:
        out[path] = load_checkpoint(path)
    return {k: m.eval().float() for k, m in out.items()}


def print_rows(rows: list[dict], threads: int) -> None:
    """The table, with ratios to the bundled model and the gain of the source cache."""
    ref = {r["batch"]: r["ms_per_frame"] for r in rows if r["model"] == "bundled"}
    print(f"synthesis per driving frame (H/Delta + M + G, source encoded once), {threads} threads")
    print(f"{'model':34s} {'config':10s} {'size':>5s} {'batch':>5s} {'ms/frame':>9s} {'x bundled':>9s} "
          f"{'no cache':>9s} {'cache gain':>10s}")
    for r in rows:
        ratio = r["ms_per_frame"] / ref[r["batch"]] if r["batch"] in ref else float("nan")
        r["ratio_to_bundled"] = ratio
        r["cache_gain"] = 1 - r["ms_per_frame"] / r["ms_per_frame_uncached"]
        print(f"{r['model'][-34:]:34s} {r['config']:10s} {r['size']:5d} {r['batch']:5d} "
              f"{r['ms_per_frame']:9.1f} {ratio:9.2f} {r['ms_per_frame_uncached']:9.1f} {100 * r['cache_gain']:9.1f}%")


def print_module_rows(rows: list[dict]) -> None:
    """The per-network table: ms per network, for one source encoding and per driving frame."""
    print("\nper network (ms; source: one encode_source at batch 1; frame: estimate_motion + render per driving "
          "frame; other: outside the networks)")
    print(f"{'model':34s} {'batch':>5s} {'phase':6s} ms per network")
    for r in rows:
        if "per_module_ms" not in r:
            continue
        for phase in ("source", "frame"):
            cells = "  ".join(f"{k} {v:.1f}" for k, v in r["per_module_ms"][phase].items())
            print(f"{r['model'][-34:]:34s} {r['batch']:5d} {phase:6s} {cells}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", action="append", default=[], help="another model to time (repeatable)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batches", type=int, nargs="+", default=[8, 1])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default=None, help="also write the figures here")
    p.add_argument("--only", nargs="+", default=None, help="time only these models (e.g. bundled lite-256)")
    p.add_argument("--families", nargs="*", default=[], choices=FAMILIES,
                   help="also time these families (random weights; the converted ones are heavy on CPUs: "
                        "open-fv2v about 577 GMAC a frame, use --batches 1 --repeats 1)")
    p.add_argument("--per-module", action=argparse.BooleanOptionalAction, default=True,
                   help="also time each network (forward hooks) and print the per-network table (default on)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    nets = models(args.checkpoint, args.families)
    if args.only:
        nets = {k: v for k, v in nets.items() if k in args.only}
    rows = []
    for name, net in nets.items():
        for b in args.batches:
            ms = 1000 * frame_seconds(net, b, args.repeats)
            uncached = 1000 * frame_seconds(net, b, args.repeats, cached=False)
            row = {"model": name, "config": getattr(net.cfg, "name", name), "size": net.cfg.image_size, "batch": b,
                   "ms_per_frame": ms, "ms_per_frame_uncached": uncached}
            if args.per_module:
                split = module_seconds(net, b, args.repeats, warmup=False)
                row["per_module_ms"] = {phase: {k: 1000 * v for k, v in t.items()} for phase, t in split.items()}
            rows.append(row)
    print_rows(rows, args.threads)
    if args.per_module:
        print_module_rows(rows)
    if args.json:
        write_text(args.json, json.dumps({"threads": args.threads, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
