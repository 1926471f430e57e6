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
from facevid2vid.structures import View
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
    return to_uint8(animator.animate(animator.encode_source(to_tensor(source)), to_tensor(frames), mode=mode))


@dataclass
class _Demo:
    """What every part of the demo needs: the model, the sample files, where to write, how much."""

    animator: Animator
    samples: object
    out: Path
    num_frames: int
    columns: int

    @property
    def size(self) -> int:
        return self.animator.image_size

    def frames(self, video, start: int = 0):
        return load_driving_frames(video, self.size, start=start, max_frames=self.num_frames)

    def part(self, title: str, name: str, result, fps, source, driving) -> DemoPart:
        """Write ``result`` as the video ``name``; its contact-sheet rows."""
        write_video(self.out / name, result, fps)
        return DemoPart(title, self.out / name, 0, source, driving, _pick(result, self.columns))


def _reconstruction(d: _Demo) -> DemoPart:
    frames, fps = d.frames(d.samples.franck, start=VALIDATION_SPLIT[0].start)
    result = _animate(d.animator, frames[0], frames, mode="absolute")
    return d.part("same-identity reconstruction", "reconstruction.mp4", result, fps, [frames[0]] * d.columns,
                  _pick(frames, d.columns))


def _cross_identity(d: _Demo, source: np.ndarray) -> DemoPart:
    frames, fps = d.frames(d.samples.cap13)
    result = _animate(d.animator, source, frames, mode="relative")
    return d.part("cross-identity (relative motion), a face never trained on", "cross_identity.mp4", result, fps,
                  [source] * d.columns, _pick(frames, d.columns))


def _yaw_sweep(d: _Demo, source: np.ndarray, name: str, title: str) -> DemoPart:
    angles = np.linspace(-30, 30, d.num_frames // 2)
    encoded = d.animator.encode_source(to_tensor(source))  # F, L, H/Delta once for the whole sweep
    sweep = View(yaw=torch.as_tensor(angles, dtype=torch.float32))  # one render, a yaw per frame
    result = list(to_uint8(d.animator.render(encoded, encoded.motion, sweep)))
    write_video(d.out / name, result, 24)
    shown = _pick(list(range(len(angles))), d.columns)
    return DemoPart(title, d.out / name, 0, [source] * d.columns, [source] * d.columns,
                    [result[i] for i in shown], [f"yaw {angles[i]:+.0f}" for i in shown])


def _frontalize(d: _Demo) -> DemoPart:
    frames, fps = d.frames(d.samples.cap13)
    result = to_uint8(d.animator.redirect(to_tensor(frames), View(frontalize=True)))
    return d.part("frontalization", "frontalized.mp4", result, fps, _pick(frames, d.columns), _pick(frames, d.columns))


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
    d = _Demo(load_animator(checkpoint, device), samples, out, num_frames, columns)
    # the "photo" of franck: one validation frame, cropped on its own
    franck_photo = load_driving_frames(samples.franck, d.size, start=VALIDATION_SPLIT[0].start + 400,
                                       max_frames=1)[0][0]
    # held-out stills (data.fetch.HELD_OUT_STILLS): faces the model never saw in training
    still_a, still_b = (load_source_image(p, d.size) for p in samples.held_out_stills()[:2])
    steps = [("reconstruction", lambda: _reconstruction(d)),
             ("cross-identity", lambda: _cross_identity(d, still_a)),
             ("yaw sweep", lambda: _yaw_sweep(d, franck_photo, "yaw_sweep.mp4", "free view: yaw -30..+30")),
             ("yaw sweep (unseen face)", lambda: _yaw_sweep(d, still_b, "yaw_sweep_unseen.mp4",
                                                            "free view of a face never trained on")),
             ("frontalization", lambda: _frontalize(d))]
    parts: list[DemoPart] = []
    with torch.inference_mode():
        for name, make in steps:
            start = time.perf_counter()
            part = make()
            part.seconds = time.perf_counter() - start
            log(f"{name}: wrote {part.path} in {part.seconds:.1f} s")
            parts.append(part)
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
