"""The live call's full loop without a browser: both directions in one process, in real time.

Two parties' cameras are played from sample clips at 25 fps (real time: a frame that is not
taken before the next one arrives is dropped, as from a camera). Each direction runs the
server's session layer, exactly as ``facevid2vid serve`` does behind WebRTC (face tracker ->
encoder -> lossy link -> decoder, :mod:`facevid2vid.serve.session`), in a worker thread of
its own, both sharing one Animator. Prints, per direction and together: sustained fps shown,
median and 95th-percentile latency (camera frame in -> synthesized frame out), kbps (key
frames and motion), key frames and why, the PSNR of the frames shown against the face crops
the sender coded, and the CPU use of the process.

    python benchmarks/call.py                       # the call's model (realtime-thin-128), 30 s, 2 threads
    python benchmarks/call.py --checkpoint facevid2vid/weights/facevid2vid.safetensors   # the bundled model
    python benchmarks/call.py --seconds 60 --loss 0.1 --threads 2 --json call.json
    python benchmarks/call.py --device cuda

Run it on an otherwise idle machine; the load average at the start is printed with the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import threading
import time

import numpy as np
import torch

from facevid2vid.data.fetch import fetch_samples
from facevid2vid.metrics.image import psnr
from facevid2vid.outputs import write_text
from facevid2vid.pipeline import load_animator
from facevid2vid.serve.session import CallDirection, CapturedFrame
from facevid2vid.serve.settings import CallSettings, LinkSettings, ServeSettings
from facevid2vid.video_io import read_video, resize_square, to_tensor

CAMERA_FPS = 25.0


def camera(direction: CallDirection, frames: np.ndarray, stop: threading.Event, wake: threading.Event) -> None:
    """Play ``frames`` (looped) into the direction's inbox at CAMERA_FPS, in real time."""
    start = time.monotonic()
    i = 0
    while not stop.is_set():
        due = start + i / CAMERA_FPS
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        direction.inbox.put(CapturedFrame(frames[i % len(frames)], time.monotonic()))
        wake.set()
        i += 1


class Fidelity:
    """PSNR of each frame shown against the face crop the sender coded for it, at the model's size.

    Wraps the sender's encoder to keep the crops it is given (by frame index, until shown or
    passed), so the figure covers every frame the receiver shows, checked by the sender or not.
    """

    def __init__(self, direction: CallDirection):
        self.crops: dict[int, np.ndarray] = {}
        self.psnr: list[float] = []
        encoder = direction.sender.encoder
        encode = encoder.encode

        def keep(frames, present=None):
            for i, crop in enumerate(frames):
                self.crops[encoder.frame_index + i] = crop
            return encode(frames, present)

        encoder.encode = keep

    def add(self, shown: list) -> None:
        for frame in shown:
            crop = self.crops.pop(frame.index, None)
            if crop is None:
                continue
            shown = resize_square(frame.image[None], crop.shape[0])
            self.psnr.append(float(psnr(to_tensor(crop), to_tensor(shown))[0]))
            for old in [k for k in self.crops if k < frame.index]:
                del self.crops[old]


def worker(direction: CallDirection, stop: threading.Event, wake: threading.Event, latencies: list,
           fidelity: Fidelity) -> None:
    """Step the direction whenever frames wait (as the server's per-party thread does)."""
    while not stop.is_set():
        if not wake.wait(0.1):
            continue
        wake.clear()
        shown = direction.step()
        latencies += [f.latency for f in shown]
        fidelity.add(shown)


def run_call(animator, clips: list[np.ndarray], settings: CallSettings, seconds: float, warmup: float) -> dict:
    """Both directions for ``seconds`` after ``warmup``; the figures of each and the CPU use."""
    directions = [CallDirection(animator, settings, name=n) for n in ("A->B", "B->A")]
    stop = threading.Event()
    wakes = [threading.Event() for _ in directions]
    latencies: list[list[float]] = [[], []]
    fidelities = [Fidelity(d) for d in directions]
    threads = []
    for d, frames, wake, lat, fid in zip(directions, clips, wakes, latencies, fidelities):
        threads += [threading.Thread(target=camera, args=(d, frames, stop, wake), daemon=True),
                    threading.Thread(target=worker, args=(d, stop, wake, lat, fid), daemon=True)]
    for t in threads:
        t.start()
    time.sleep(warmup)
    marks = [(len(lat), len(fid.psnr), d.snapshot()) for lat, fid, d in zip(latencies, fidelities, directions)]
    cpu0, wall0 = time.process_time(), time.monotonic()
    time.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    stop.set()
    for t in threads:
        t.join(timeout=30)
    rows = [measure(d, lat[n:], fid.psnr[m:], before, wall)
            for d, lat, fid, (n, m, before) in zip(directions, latencies, fidelities, marks)]
    return {"directions": rows, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "cpu_cores": round(cpu / wall, 2), "cores": os.cpu_count()}


def measure(direction: CallDirection, latencies: list[float], psnr: list[float], before: dict, wall: float) -> dict:
    """Figures of one direction over the measured window (after the warm-up)."""
    after = direction.snapshot()
    sender, link, receiver = after["sender"], after["link"], after["receiver"]
    b_sender = before.get("sender", {"key_bytes": 0, "motion_bytes": 0, "frames": 0, "key_frames": 0})
    key = sender["key_bytes"] - b_sender["key_bytes"]
    motion = sender["motion_bytes"] - b_sender["motion_bytes"]
    frames = len(latencies)
    ms = [1000 * x for x in latencies]
    return {"name": direction.name, "frames_shown": frames, "fps": round(frames / wall, 2),
            "latency_ms_median": round(float(np.median(ms)), 1) if ms else None,
            "latency_ms_p95": round(float(np.percentile(ms, 95)), 1) if ms else None,
            "psnr_db": round(float(np.mean(psnr)), 2) if psnr else None,
            "kbps": round(8 * (key + motion) / wall / 1000, 3), "kbps_key": round(8 * key / wall / 1000, 3),
            "kbps_motion": round(8 * motion / wall / 1000, 3),
            "key_frames": sender["key_frames"] - b_sender["key_frames"], "key_reasons": sender["key_reasons"],
            "motion_bits_per_frame": sender["motion_bits_per_frame"],
            "camera_dropped": after["input"]["dropped"], "camera_received": after["input"]["received"],
            "packets_lost": link["dropped"] + link["corrupted"], "recoveries": receiver["recoveries"],
            "stage_s": after["stage_s"]}


def print_report(result: dict, args) -> None:
    print(f"model {args.model_name} on {args.device}, {args.threads} torch threads, {args.seconds:g} s measured "
          f"after {args.warmup:g} s warm-up, camera {CAMERA_FPS:g} fps, loss {args.loss:g}, max batch {args.batch}")
    print(f"load average at start: {args.load}")
    head = f"{'direction':<8} {'fps':>6} {'lat med':>8} {'lat p95':>8} {'kbps':>7} {'key':>7} {'motion':>7} " \
           f"{'keys':>5} {'bits/fr':>7} {'lost':>5} {'recov':>5} {'PSNR':>6}"
    print(head)
    for r in result["directions"]:
        med, p95 = r["latency_ms_median"] or 0, r["latency_ms_p95"] or 0
        print(f"{r['name']:<8} {r['fps']:>6.2f} {med:>7.0f}ms {p95:>6.0f}ms "
              f"{r['kbps']:>7.2f} {r['kbps_key']:>7.2f} {r['kbps_motion']:>7.2f} {r['key_frames']:>5} "
              f"{r['motion_bits_per_frame']:>7.1f} {r['packets_lost']:>5} {r['recoveries']:>5} "
              f"{r['psnr_db'] or 0:>6.2f}")
        print(f"         whole run: key frames {r['key_reasons']}; seconds in stages {r['stage_s']}")
    print(f"CPU: {result['cpu_s']:.1f} s in {result['wall_s']:.1f} s = {result['cpu_cores']:.2f} cores busy "
          f"of {result['cores']}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None,
                   help="default: the call's (serve --call-checkpoint): the bundled real-time model realtime-thin-128")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (shared by both directions)")
    p.add_argument("--loss", type=float, default=0.0, help="packet loss of each direction's link")
    p.add_argument("--batch", type=int, default=CallSettings.max_batch, help="camera frames coded together at most")
    p.add_argument("--drift-check-every", type=int, default=CallSettings.drift_check_every,
                   help="the sender synthesizes every N-th frame to check for drift (default: the call's)")
    p.add_argument("--min-keyframe-interval", type=float, default=CallSettings.min_keyframe_interval,
                   help="seconds after a key frame in which drift sends no new one (default: the call's)")
    p.add_argument("--detect-every", type=int, default=CallSettings.detect_every, help="face detection interval")
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    args.load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    samples = fetch_samples(quiet=True)
    clips = [read_video(samples.franck, max_frames=250)[0], read_video(samples.franck, start=2000, max_frames=250)[0]]
    animator = load_animator(args.checkpoint or ServeSettings().call_model, args.device)
    args.model_name = animator.model.cfg.name
    settings = CallSettings(max_batch=args.batch, input_queue=args.batch, drift_check_every=args.drift_check_every,
                            min_keyframe_interval=args.min_keyframe_interval, detect_every=args.detect_every,
                            link=LinkSettings(loss=args.loss, seed=0))
    result = run_call(animator, clips, settings, args.seconds, args.warmup)
    print_report(result, args)
    if args.json:
        write_text(args.json, json.dumps({"settings": vars(args), **result}, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
