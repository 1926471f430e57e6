"""Choose the One Euro filter's defaults (``SmoothingSettings``) on the validation split only.

On franck frames 3600-4799 (``VALIDATION_SPLIT``; never cap13, carphone or the stills) the
model estimates every frame's motion once; the first frame is the source, as in the
reconstruction benchmark. For each candidate (min_cutoff, beta, d_cutoff) the script filters
the motion causally, frame by frame, and measures on the driving keypoints ``x_d`` (no synthesis
needed):

- ``still jitter``: mean frame-to-frame keypoint step on the ``--windows`` stillest
  non-overlapping stretches of ``--length`` frames (least pixel change of the driving crops);
- ``all jitter``: the same over the whole split (real motion included);
- ``lag``: the delay tau (frames) that best aligns the smoothed track with the raw one over the
  whole split, ``argmin_tau mean ||x_s(t) - x_raw(t - tau)||^2`` (tau in steps of 0.05 frame);
- ``ramp lag``: the steady-state delay (frames) of the filter on a head turning at a constant
  ``--ramp-speed`` degrees per second (synthetic, the filter alone);
- ``deviation``: RMS distance of smoothed to raw keypoints over the split.

It prints the grid and the candidate with the lowest still jitter whose lag and ramp lag are
both within ``--max-lag`` frames.

    python benchmarks/tune_smoothing.py [--checkpoint CKPT] [--max-lag 1.0] [--ramp-speed 10]
"""
from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch

MIN_CUTOFFS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
BETAS = (0.0, 3.0, 5.0, 7.0, 10.0, 15.0, 30.0, 100.0)
D_CUTOFFS = (0.5, 1.0, 2.0)


def still_windows(frames: np.ndarray, length: int, count: int) -> list[tuple[int, int]]:
    """Up to ``count`` non-overlapping windows of ``length`` frames, stillest first."""
    from facevid2vid.metrics.jitter import frame_changes

    totals = np.convolve(frame_changes(frames), np.ones(length - 1), mode="valid")
    windows: list[tuple[int, int]] = []
    for start in np.argsort(totals, kind="stable"):
        if all(start + length <= a or start >= b for a, b in windows):
            windows.append((int(start), int(start) + length))
        if len(windows) == count:
            break
    return windows


def best_lag(smoothed: torch.Tensor, raw: torch.Tensor, max_lag: float = 6.0, step: float = 0.05) -> float:
    """Delay in frames (fractional, linear interpolation) that best aligns ``smoothed`` to ``raw``."""
    n, skip = raw.shape[0], int(np.ceil(max_lag)) + 1
    best, best_err = 0.0, float("inf")
    for tau in np.arange(0.0, max_lag + 1e-9, step):
        lo, frac = int(np.floor(tau)), tau - np.floor(tau)
        idx = torch.arange(skip, n)
        delayed = (1 - frac) * raw[idx - lo] + frac * raw[idx - lo - 1]
        err = float((smoothed[idx] - delayed).pow(2).sum(-1).mean())
        if err < best_err:
            best, best_err = float(tau), err
    return best


def ramp_lag(settings, fps: float, degrees_per_second: float, seconds: float = 6.0) -> float:
    """Steady-state delay in frames of the filter on a ramp (an angle changing at a constant speed)."""
    from facevid2vid.smoothing import OneEuroFilter

    speed = np.radians(degrees_per_second)  # the filter sees angles in radians
    ramp = speed * torch.arange(int(seconds * fps), dtype=torch.float64)[:, None] / fps
    out = OneEuroFilter(fps, settings.min_cutoff, settings.beta, settings.d_cutoff)(ramp)
    return float((ramp[-1, 0] - out[-1, 0]) / (speed / fps))


def evaluate(model, source, motion, fps, windows, settings, ramp_speed: float) -> dict:
    from facevid2vid.metrics.jitter import keypoint_jitter
    from facevid2vid.smoothing import smooth_motion

    raw_kp, _ = model.driving_keypoints(source, motion)
    kp = raw_kp if settings is None else model.driving_keypoints(source, smooth_motion(motion, fps, settings))[0]
    still = float(np.mean([keypoint_jitter(kp[a:b]) for a, b in windows]))
    return {"still": still, "all": keypoint_jitter(kp), "lag": best_lag(kp, raw_kp),
            "ramp": 0.0 if settings is None else ramp_lag(settings, fps, ramp_speed),
            "deviation": float((kp - raw_kp).pow(2).sum(-1).mean().sqrt())}


def load_validation(checkpoint: str | None):
    from facevid2vid.data.fetch import VALIDATION_SPLIT, fetch_samples
    from facevid2vid.pipeline import load_animator, load_driving_frames
    from facevid2vid.video_io import to_tensor

    (split,) = VALIDATION_SPLIT
    path = getattr(fetch_samples(), split.clip)
    animator = load_animator(checkpoint, "cpu", batch_size=32)
    frames, fps = load_driving_frames(path, animator.image_size, start=split.start,
                                      max_frames=split.stop - split.start)
    source = animator.encode_source(to_tensor(frames[0]))
    return animator, source, frames, fps, animator.estimate_motion(to_tensor(frames))


def main(argv=None) -> int:
    from facevid2vid.smoothing import SmoothingSettings

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="model (.safetensors); default: the bundled model")
    p.add_argument("--length", type=int, default=48, help="frames per still window (default 48)")
    p.add_argument("--windows", type=int, default=5, help="still windows averaged (default 5)")
    p.add_argument("--max-lag", type=float, default=1.0, help="largest acceptable lag, frames (default 1)")
    p.add_argument("--ramp-speed", type=float, default=10.0, help="head turn of the ramp lag, deg/s (default 10)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    with torch.inference_mode():
        animator, source, frames, fps, motion = load_validation(args.checkpoint)
        windows = still_windows(frames, args.length, args.windows)
        print(f"validation: {len(frames)} frames at {fps:g} fps; still windows {windows}")
        rows = [("off", evaluate(animator.model, source, motion, fps, windows, None, args.ramp_speed))]
        for dc, mc, beta in itertools.product(D_CUTOFFS, MIN_CUTOFFS, BETAS):
            settings = SmoothingSettings(True, mc, beta, dc)
            rows.append((f"{mc:g} Hz, beta {beta:g}, d {dc:g}",
                         evaluate(animator.model, source, motion, fps, windows, settings,
                                  args.ramp_speed)))
    print(f"{'setting':<28} {'still jitter':>12} {'all jitter':>11} {'lag (frames)':>13} {'ramp lag':>9} "
          f"{'deviation':>10}")
    for name, r in rows:
        print(f"{name:<28} {r['still']:12.5f} {r['all']:11.5f} {r['lag']:13.2f} {r['ramp']:9.2f} "
              f"{r['deviation']:10.5f}")
    ok = [(name, r) for name, r in rows[1:] if max(r["lag"], r["ramp"]) <= args.max_lag]
    if ok:
        name, r = min(ok, key=lambda item: item[1]["still"])
        print(f"chosen (lowest still jitter with both lags <= {args.max_lag:g} frames): {name}: still jitter "
              f"{r['still']:.5f} (off: {rows[0][1]['still']:.5f}), lag {r['lag']:.2f} frames "
              f"({1000 * r['lag'] / fps:.0f} ms), ramp lag at {args.ramp_speed:g} deg/s {r['ramp']:.2f} frames")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
