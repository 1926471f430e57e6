"""Choose the codec's quantiser steps on training frames (docs/codec.md, "Choosing the steps").

For a model, estimates the motion of a few segments of the *training* split (never the
validation frames the rate-quality benchmark reports on), then, for each candidate set of
steps, runs the encoder's quantiser (with its hysteresis) and the real entropy coder at
one packet per frame, and synthesizes every frame from the quantised and from the exact
motion. It prints, per candidate, the motion bits per frame and the PSNR of the
quantised synthesis against the exact one (mean, 5th percentile), then the cheapest
candidate that keeps both the mean and the 5th percentile at or above ``--min-psnr``.

    python benchmarks/tune_steps.py [--checkpoint CKPT] [--angles 0.5,1.5,3] [--translation 0.003,0.012]
                                    [--expression 0.009,0.018,0.03]

The candidates vary the steps of the three parameter groups (angles, translation,
expression) independently, so the chosen steps weigh each group by how much it costs in
bits against how much it moves the picture. The current defaults are ``BASE_STEPS``.
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import time

import numpy as np
import torch

from facevid2vid.cli._common import device_name

ROLL_RATIO = 0.8  # roll step relative to the yaw and pitch steps (as in BASE_STEPS)


def training_segments(size: int, segments: int, frames: int) -> list[np.ndarray]:
    """``segments`` runs of ``frames`` face crops spread over the training split (franck 0-3599, cap12)."""
    from facevid2vid.data.fetch import TRAIN_SPLIT, fetch_samples
    from facevid2vid.face.crop import prepare_frames
    from facevid2vid.video_io import read_video, video_info

    samples = fetch_samples()
    out = []
    per_clip = [segments - segments // 2, segments // 2]
    for clip_range, count in zip(TRAIN_SPLIT, per_clip):
        path = getattr(samples, clip_range.clip)
        stop = clip_range.stop or video_info(path).num_frames
        starts = np.linspace(clip_range.start, stop - frames, count + 2)[1:-1].astype(int)
        for start in starts:
            raw, _ = read_video(path, start=int(start), max_frames=frames)
            crops, _ = prepare_frames(raw, size, crop=True, name=f"{clip_range.clip} from frame {start}")
            out.append(crops)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="model (.safetensors); default: the bundled model")
    p.add_argument("--device", type=device_name, default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--segments", type=int, default=6, help="training segments (half franck, half cap12)")
    p.add_argument("--frames", type=int, default=80, help="frames per segment")
    p.add_argument("--angles", default="0.5,1.5,3", help="yaw and pitch steps to try, degrees (roll: 0.8 of it)")
    p.add_argument("--translation", default="0.003,0.012", help="translation steps to try")
    p.add_argument("--expression", default="0.009,0.018,0.03", help="expression steps to try")
    p.add_argument("--min-psnr", type=float, default=43.0,
                   help="dB the mean and 5th percentile must reach: the 40 dB target plus a margin for clips "
                        "that move more than these segments")
    p.add_argument("--hysteresis", type=float, default=None, help="default: the encoder's")
    args = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 0)) or max(1, min(4, os.cpu_count() or 1)))

    from facevid2vid.codec.encoder import EncoderSettings
    from facevid2vid.metrics.image import psnr
    from facevid2vid.codec.entropy import MotionEntropyCoder
    from facevid2vid.codec.quantize import Quantizer, QuantizerSteps, array_to_motion, motion_to_array
    from facevid2vid.pipeline import load_animator
    from facevid2vid.video_io import to_tensor

    t0 = time.time()
    animator = load_animator(args.checkpoint, args.device)
    k = animator.model.cfg.num_keypoints
    hysteresis = EncoderSettings().hysteresis if args.hysteresis is None else args.hysteresis
    segments = training_segments(animator.image_size, args.segments, args.frames)
    print(f"{len(segments)} training segments of {args.frames} frames at {animator.image_size} px "
          f"({time.time() - t0:.0f} s)", file=sys.stderr)

    # per segment: source (its first frame), exact motion and the exact synthesis
    prepared = []
    with torch.inference_mode():
        for crops in segments:
            frames = to_tensor(crops)
            values = motion_to_array(animator.estimate_motion(frames))  # (N, P)
            source = animator.encode_source(frames[:1])
            exact = animator.render(source, array_to_motion(values, k))
            prepared.append((source, values, exact))

    def evaluate(steps: QuantizerSteps) -> tuple[float, float, float]:
        quantizer = Quantizer(QuantizerSteps.from_tuple(steps.as_tuple()), k, hysteresis)
        coder = MotionEntropyCoder(quantizer.limits)
        bits, quality = [], []
        for source, values, exact in prepared:
            previous = quantizer.quantize(values[0])
            coder.reset(previous)
            rows = [previous]
            for v in values[1:]:
                previous = quantizer.quantize(v, previous)
                rows.append(previous)
                bits.append(8 * len(coder.encode(previous[None])))  # one packet per frame, as live mode sends
            with torch.inference_mode():
                synth = animator.render(source, array_to_motion(quantizer.dequantize(np.stack(rows)), k))
            quality += psnr(exact, synth).tolist()
        q = np.asarray(quality)
        return float(np.mean(bits)), float(np.mean(q)), float(np.percentile(q, 5))

    grid = [[float(s) for s in group.split(",")] for group in (args.angles, args.translation, args.expression)]
    results = []
    print("| yaw, pitch, roll steps (deg) | translation step | expression step | motion bits/frame | "
          "PSNR mean dB | PSNR 5th pct dB |")
    print("|---:|---:|---:|---:|---:|---:|")
    for a, t, e in itertools.product(*grid):
        steps = QuantizerSteps(a, a, ROLL_RATIO * a, t, t, t, e)
        bits, mean, p05 = evaluate(steps)
        results.append((bits, mean, p05, steps))
        v = steps.as_tuple()
        print(f"| {v[0]:.3g}, {v[1]:.3g}, {v[2]:.3g} | {v[3]:.3g} | {v[6]:.3g} | {bits:.1f} | {mean:.2f} | "
              f"{p05:.2f} |", flush=True)
    ok = [r for r in results if r[1] >= args.min_psnr and r[2] >= args.min_psnr]
    if not ok:
        print(f"no candidate keeps {args.min_psnr} dB; try smaller steps")
        return 1
    bits, mean, p05, steps = min(ok, key=lambda r: r[0])
    values = ", ".join(f"{name}={v:.4g}" for name, v in zip(("yaw", "pitch", "roll", "tx", "ty", "tz", "expression"),
                                                                steps.as_tuple()))
    print(f"\ncheapest at >= {args.min_psnr} dB (mean and 5th percentile): {bits:.1f} bits/frame, "
          f"{mean:.2f} / {p05:.2f} dB\nQuantizerSteps({values})\n({(time.time() - t0) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
