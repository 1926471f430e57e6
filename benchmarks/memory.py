"""Peak memory of ``facevid2vid reconstruct`` on a long full-HD clip (streaming check).

Makes a 1920x1080 clip of ``--seconds`` (default 60) at 25 fps, with franck's face moving
over a still background, then runs ``facevid2vid reconstruct`` on it in a child process
with the bundled model and prints the child's peak resident memory beside what the clip
takes decoded at once (what the commands used to hold, twice). Target: under 2.5 GB.

    python benchmarks/memory.py                 # 60 s at 1080p (about 5 min on 2 cores)
    python benchmarks/memory.py --seconds 10 --json memory.json
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WIDTH, HEIGHT, FPS = 1920, 1080, 25


def make_clip(path: Path, seconds: float) -> int:
    """Write the test clip; returns its frame count."""
    from facevid2vid.data.fetch import fetch_samples
    from facevid2vid.video_io import iter_video, write_video

    n = int(round(seconds * FPS))
    faces = list(iter_video(fetch_samples().franck, max_frames=250))
    background = np.full((HEIGHT, WIDTH, 3), 90, dtype=np.uint8)
    background[:, :, 2] = np.linspace(60, 200, WIDTH, dtype=np.uint8)[None]

    def frames():
        for t in range(n):
            face = np.repeat(np.repeat(faces[t % len(faces)], 2, axis=0), 2, axis=1)  # 512 x 512
            frame = background.copy()
            x = int(700 + 200 * np.sin(t / 50))
            frame[280:280 + face.shape[0], x:x + face.shape[1]] = face
            yield frame

    write_video(path, frames(), FPS, options={"preset": "ultrafast"})
    return n


def peak_rss_of(argv: list[str]) -> tuple[float, float]:
    """(peak resident set in bytes, seconds) of a child process."""
    t0 = time.perf_counter()
    subprocess.run(argv, check=True)
    seconds = time.perf_counter() - t0
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, seconds  # Linux: KiB


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0, help="clip length (default 60)")
    p.add_argument("--checkpoint", default=None, help="model; default: the bundled one")
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fv2v-memory-") as tmp:
        clip = Path(tmp) / "long.mp4"
        t0 = time.perf_counter()
        n = make_clip(clip, args.seconds)
        print(f"clip: {n} frames {WIDTH}x{HEIGHT} ({time.perf_counter() - t0:.0f} s to make)", file=sys.stderr)
        cmd = [sys.executable, "-m", "facevid2vid", "reconstruct", "--video", str(clip), "--output",
               str(Path(tmp) / "rec.mp4"), "--device", "cpu"]
        if args.checkpoint:
            cmd += ["--checkpoint", args.checkpoint]
        peak, seconds = peak_rss_of(cmd)
    decoded = n * WIDTH * HEIGHT * 3
    print(f"reconstruct of {args.seconds:g} s at {WIDTH}x{HEIGHT} ({n} frames): peak RSS {peak / 2**30:.2f} GiB "
          f"in {seconds:.0f} s; the clip decoded at once: {decoded / 2**30:.1f} GiB "
          f"(peak / clip {peak / decoded:.3f}); target < 2.5 GB: {'met' if peak < 2.5e9 else 'MISSED'}")
    if args.json:
        from facevid2vid.outputs import write_text

        write_text(args.json, json.dumps({"seconds": args.seconds, "frames": n, "width": WIDTH, "height": HEIGHT,
                                          "peak_rss_bytes": peak, "run_seconds": seconds,
                                          "decoded_clip_bytes": decoded}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
