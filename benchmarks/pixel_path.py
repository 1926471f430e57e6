"""What G's pixel path (``generator_image_skip``) does to free view: the yaw sweep three ways.

Renders the redirect protocol of ``facevid2vid benchmark`` (dlib pose and identity, first frame as
source) on the first validation frames with G's output as trained (``blend``), G's own image alone
(``g``) and the warped source image alone (``warp``), and prints the achieved yaw, the frames with
a face, the identity distance to the source and G's mean share of the blended output. A model that
has learnt to copy the source shows a small G share and a head that hardly turns.

    python benchmarks/pixel_path.py --checkpoint checkpoints/bundled-v2-wip.safetensors
"""
from __future__ import annotations

import argparse
from contextlib import contextmanager

import torch

from facevid2vid.data.fetch import VALIDATION_SPLIT, fetch_samples
from facevid2vid.metrics.benchmark import MODEL, run_benchmark
from facevid2vid.models import generator

MODES = ("blend", "g", "warp")


@contextmanager
def decoding(mode: str, shares: list[float]):
    """G outputs as ``mode`` inside the block; G's mean share of each batch goes into ``shares``."""
    original = generator.Generator.mix_pixel_path

    def mix(image, share, warped_image):
        shares.append(float(share.mean()))
        if mode == "g":
            return image
        return warped_image.to(image.dtype) if mode == "warp" else original(image, share, warped_image)

    generator.Generator.mix_pixel_path = staticmethod(mix)
    try:
        yield
    finally:
        generator.Generator.mix_pixel_path = staticmethod(original)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--yaws", type=float, nargs="+", default=[-20.0, 0.0, 20.0])
    args = p.parse_args(argv)
    torch.set_flush_denormal(True)
    video = fetch_samples(quiet=True).franck
    print("mode   yaw  achieved  faces  ID     G share")
    for mode in MODES:
        shares: list[float] = []
        with decoding(mode, shares):
            result = run_benchmark(args.checkpoint, video, "redirect", max_frames=args.frames,
                                   start=VALIDATION_SPLIT[0].start, yaws=args.yaws, eval_size=256)
        if not shares:
            raise SystemExit("this checkpoint's G has no pixel path (generator_image_skip)")
        share = sum(shares) / len(shares)
        for r in result.redirect[MODEL]:
            achieved = "n/a" if r.achieved_yaw is None else f"{r.achieved_yaw:+.1f}"
            ident = "n/a" if r.id_distance is None else f"{r.id_distance:.3f}"
            print(f"{mode:<6} {r.requested_yaw:+4.0f}  {achieved:>8}  {r.frames_measured:>2}/{r.frames:<2}  "
                  f"{ident:<6} {share:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
