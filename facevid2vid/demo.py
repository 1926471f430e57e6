"""The demo: the bundled model on the sample clips, as videos plus one contact sheet.

Parts (each an mp4 in the output folder):
1. reconstruction: a validation stretch of franck rebuilt from its first frame;
2. cross-identity: a held-out still (a person never trained on) driven by another man's video (cap13);
3. free view: a yaw sweep from -30 to +30 degrees of one franck frame, and of another held-out still;
4. frontalization: the cap13 clip with every frame turned to face the camera.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from facevid2vid.data.fetch import VALIDATION_SPLIT, fetch_samples
from facevid2vid.errors import UsageError
from facevid2vid.inference import Animator
from facevid2vid.pipeline import load_animator, load_driving_frames, load_source_image
from facevid2vid.video_io import to_tensor, to_uint8, write_image, write_video


@dataclass
class DemoPart:
    name: str
    path: Path
    seconds: float
    source: list[np.ndarray]
    driving: list[np.ndarray]
    result: list[np.ndarray]
    labels: list[str] = field(default_factory=list)


def _pick(frames, count: int) -> list[np.ndarray]:
    idx = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return [frames[i] for i in idx]


def _animate(animator: Animator, source: np.ndarray, frames: np.ndarray, mode: str) -> np.ndarray:
    animator.set_source(to_tensor(source))
    return to_uint8(animator.animate(to_tensor(frames), mode=mode))


def run_demo(output: str | Path = "demo", device: str | None = None, checkpoint: str | None = None,
             num_frames: int = 96, columns: int = 5, log=print) -> list[DemoPart]:
    """Write the demo videos and ``contact_sheet.png`` into ``output``; returns what was written."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 2:
        raise UsageError(f"--frames must be an integer of 2 or more, got {num_frames!r}")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    samples = fetch_samples()
    log(f"samples ready in {time.perf_counter() - t0:.1f} s")
    animator = load_animator(checkpoint, device)
    size = animator.image_size
    parts: list[DemoPart] = []
    val_start = VALIDATION_SPLIT[0].start
    # the "photo" of franck: one validation frame, cropped on its own
    franck_photo = load_driving_frames(samples.franck, size, start=val_start + 400, max_frames=1)[0][0]
    # held-out stills (data.fetch.HELD_OUT_STILLS): faces the model never saw in training
    still_a, still_b = (load_source_image(p, size) for p in samples.held_out_stills()[:2])

    def timed(name, fn):
        start = time.perf_counter()
        part = fn()
        part.seconds = time.perf_counter() - start
        log(f"{name}: wrote {part.path} in {part.seconds:.1f} s")
        parts.append(part)

    def reconstruction():
        frames, fps = load_driving_frames(samples.franck, size, start=val_start, max_frames=num_frames)
        result = _animate(animator, frames[0], frames, mode="absolute")
        path = out / "reconstruction.mp4"
        write_video(path, result, fps)
        return DemoPart("same-identity reconstruction", path, 0, [frames[0]] * columns, _pick(frames, columns),
                        _pick(result, columns))

    def cross_identity():
        source = still_a
        frames, fps = load_driving_frames(samples.cap13, size, max_frames=num_frames)
        result = _animate(animator, source, frames, mode="relative")
        path = out / "cross_identity.mp4"
        write_video(path, result, fps)
        return DemoPart("cross-identity (relative motion)", path, 0, [source] * columns, _pick(frames, columns),
                        _pick(result, columns))

    def yaw_sweep(source: np.ndarray, name: str, title: str):
        angles = np.linspace(-30, 30, num_frames // 2)
        motion = animator.set_source(to_tensor(source)).motion  # F, L, H/Delta once for the whole sweep
        result = [to_uint8(animator.render(motion, yaw=float(a)))[0] for a in angles]
        path = out / name
        write_video(path, result, 24)
        shown = _pick(list(range(len(angles))), columns)
        return DemoPart(title, path, 0, [source] * columns, [source] * columns,
                        [result[i] for i in shown], [f"yaw {angles[i]:+.0f}" for i in shown])

    def frontalize():
        frames, fps = load_driving_frames(samples.cap13, size, max_frames=num_frames)
        result = to_uint8(animator.redirect(to_tensor(frames), frontalize=True))
        path = out / "frontalized.mp4"
        write_video(path, result, fps)
        return DemoPart("frontalization", path, 0, _pick(frames, columns), _pick(frames, columns),
                        _pick(result, columns))

    with torch.inference_mode():
        timed("reconstruction", reconstruction)
        timed("cross-identity", cross_identity)
        timed("yaw sweep", lambda: yaw_sweep(franck_photo, "yaw_sweep.mp4", "free view: yaw -30..+30"))
        timed("yaw sweep (unseen face)", lambda: yaw_sweep(still_b, "yaw_sweep_unseen.mp4",
                                                           "free view of a face never trained on"))
        timed("frontalization", frontalize)
    sheet = out / "contact_sheet.png"
    write_image(sheet, contact_sheet(parts))
    log(f"contact sheet: wrote {sheet}")
    log(f"demo finished in {time.perf_counter() - t0:.1f} s")
    return parts


def contact_sheet(parts: list[DemoPart], tile: int = 160) -> np.ndarray:
    """One image: per part a title and three rows (source, driving, result) of tiles."""
    font = ImageFont.load_default()
    label_w, title_h, row_names = 80, 22, ("source", "driving", "result")
    cols = max(len(p.result) for p in parts)
    width = label_w + cols * tile
    height = sum(title_h + 3 * tile for _ in parts)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    y = 0
    for part in parts:
        draw.text((6, y + 5), part.name, fill="black", font=font)
        y += title_h
        for r, (row_name, row) in enumerate(zip(row_names, (part.source, part.driving, part.result))):
            draw.text((6, y + r * tile + tile // 2 - 6), row_name, fill="black", font=font)
            for c, img in enumerate(row):
                sheet.paste(Image.fromarray(img).resize((tile, tile), Image.BILINEAR), (label_w + c * tile, y + r * tile))
        for c, label in enumerate(part.labels):
            draw.text((label_w + c * tile + 4, y + 2 * tile + 4), label, fill="yellow", font=font)
        y += 3 * tile
    return np.asarray(sheet)
