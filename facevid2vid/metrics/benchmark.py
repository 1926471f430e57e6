"""Protocol runner: the paper's evaluation on one clip, with a no-motion baseline.

- ``reconstruction``: the clip is face-cropped with one steady box; its first frame
  is the source and every frame drives it with absolute motion (same identity, as
  in the paper and the codec). Generated frames are compared with the cropped
  reference frames by every metric of ``evaluate``.
- ``redirect``: the first frame is the source; each frame of the clip drives it
  with an extra user yaw ``R_d <- R_u(yaw) R_d`` for each requested yaw of a
  sweep. Achieved yaw per frame = landmark-pose yaw of the generated frame minus
  that of the reference frame it was driven by; the table gives its mean, the
  mean |achieved - requested|, pitch/roll drift and the identity distance of the
  generated frames to the source.

Every task also scores a **no-motion baseline**: the source frame repeated for
every frame (and for every requested yaw), the floor a model has to beat.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from facevid2vid.errors import CheckpointError, InputError, NoFaceError
from facevid2vid.metrics.evaluate import EvaluateOptions, EvaluationResult, Evaluator
from facevid2vid.metrics.face import FaceAnalyzer, FaceObservation, angle_difference, embedding_distance

TASKS = ("reconstruction", "redirect")
DEFAULT_YAWS = (-30.0, -20.0, -10.0, 0.0, 10.0, 20.0, 30.0)
MODEL = "model"
BASELINE = "no-motion baseline"


@dataclass
class RedirectRow:
    """One requested yaw for one system (the model or the baseline)."""

    requested_yaw: float
    frames: int
    frames_measured: int  # frames where both generated and reference have a pose
    achieved_yaw: float | None  # mean of yaw(generated) - yaw(reference), degrees
    yaw_error: float | None  # mean |achieved - requested|, degrees
    pitch_drift: float | None  # mean |pitch(generated) - pitch(reference)|, degrees
    roll_drift: float | None
    id_distance: float | None  # mean L2 of dlib embeddings, generated vs source
    frames_identity: int


@dataclass
class BenchmarkResult:
    task: str
    video: str
    checkpoint: str | None
    frames: int
    image_size: int
    synthesis_seconds: float
    rows: dict[str, EvaluationResult] = field(default_factory=dict)  # reconstruction
    redirect: dict[str, list[RedirectRow]] = field(default_factory=dict)  # redirect

    def to_dict(self) -> dict:
        return asdict(self)


def run_benchmark(checkpoint: str | None, video: str | os.PathLike, task: str = "reconstruction",
                  max_frames: int | None = None, start: int = 0, yaws=DEFAULT_YAWS, crop: bool = True,
                  device: str | None = None, batch_size: int = 8,
                  options: EvaluateOptions | None = None) -> BenchmarkResult:
    """Run one protocol on a clip; see the module docstring."""
    from facevid2vid.pipeline import load_animator, load_driving_frames

    from facevid2vid.checkpoint import default_checkpoint

    if task not in TASKS:
        raise InputError(f"unknown benchmark task {task!r}; choose from {', '.join(TASKS)}")
    if checkpoint is None and default_checkpoint() is None:
        # never benchmark the random-weight fallback of resolve_model
        raise CheckpointError("benchmark needs a trained model: pass --checkpoint FILE (no bundled model installed)")
    animator = load_animator(checkpoint, device, batch_size=batch_size)
    frames, _ = load_driving_frames(video, animator.image_size, crop=crop, start=start, max_frames=max_frames)
    options = replace(options or EvaluateOptions(), device=str(animator.device))
    result = BenchmarkResult(task=task, video=str(video), checkpoint=checkpoint, frames=len(frames),
                             image_size=animator.image_size, synthesis_seconds=0.0)
    if task == "reconstruction":
        _reconstruction(animator, frames, Evaluator(options), result)
    else:
        _redirect(animator, frames, list(yaws), FaceAnalyzer(), result, options.progress)
    return result


def _generated_stream(animator, frames: np.ndarray, result: BenchmarkResult, **controls):
    """uint8 frames synthesized batch by batch (absolute motion), timing the synthesis."""
    from facevid2vid.video_io import to_tensor, to_uint8

    batches = (to_tensor(frames[i:i + animator.batch_size]) for i in range(0, len(frames), animator.batch_size))
    it = animator.animate_iter(batches, mode="absolute", **controls)
    while True:
        t0 = time.perf_counter()
        out = next(it, None)
        result.synthesis_seconds += time.perf_counter() - t0
        if out is None:
            return
        yield from to_uint8(out)


def _reconstruction(animator, frames: np.ndarray, evaluator: Evaluator, result: BenchmarkResult) -> None:
    from facevid2vid.video_io import to_tensor

    source = frames[0]
    animator.set_source(to_tensor(source))
    generated = _generated_stream(animator, frames, result)
    result.rows[MODEL] = evaluator.evaluate(iter(frames), generated, total=len(frames), source=source,
                                            names=("reference", "generated"), desc="reconstruction")
    baseline = (source for _ in range(len(frames)))
    result.rows[BASELINE] = evaluator.evaluate(iter(frames), baseline, total=len(frames), source=source,
                                               names=("reference", "baseline"), desc="baseline")


def _redirect(animator, frames: np.ndarray, yaws: list[float], analyzer: FaceAnalyzer, result: BenchmarkResult,
              progress: bool) -> None:
    from tqdm import tqdm

    from facevid2vid.video_io import to_tensor, to_uint8

    source = frames[0]
    src_obs = analyzer(source)
    if src_obs.embedding is None:
        raise NoFaceError("no face found in the first frame of the clip (the redirect source)")
    refs = [analyzer(f) for f in tqdm(frames, desc="reference poses", unit="frame", disable=not progress,
                                      leave=False)]
    animator.set_source(to_tensor(source))
    t0 = time.perf_counter()
    motion = animator.estimate_motion(to_tensor(frames))  # H/Delta once for all yaws
    result.synthesis_seconds += time.perf_counter() - t0
    result.redirect = {MODEL: [], BASELINE: []}
    with tqdm(total=len(yaws) * len(frames), desc="redirect", unit="frame", disable=not progress,
              leave=False) as bar:
        for yaw in yaws:
            t0 = time.perf_counter()
            out = to_uint8(animator.render(motion, yaw=yaw))  # (N, S, S, 3)
            result.synthesis_seconds += time.perf_counter() - t0
            gen = [analyzer(f) for f in out]
            bar.update(len(frames))
            result.redirect[MODEL].append(redirect_row(yaw, refs, gen, src_obs))
            result.redirect[BASELINE].append(redirect_row(yaw, refs, [src_obs] * len(frames), src_obs))


def redirect_row(requested: float, refs: list[FaceObservation], gens: list[FaceObservation],
                 source: FaceObservation) -> RedirectRow:
    """Statistics of one requested yaw over frames (reference i drove generated i)."""
    achieved, pitch, roll, ident = [], [], [], []
    for ref, gen in zip(refs, gens):
        if ref.pose is not None and gen.pose is not None:
            d = gen.pose[0] - ref.pose[0]
            achieved.append((d + 180.0) % 360.0 - 180.0)
            pitch.append(angle_difference(gen.pose[1], ref.pose[1]))
            roll.append(angle_difference(gen.pose[2], ref.pose[2]))
        if gen.embedding is not None:
            ident.append(embedding_distance(gen.embedding, source.embedding))

    def mean(values):
        return float(np.mean(values)) if values else None

    return RedirectRow(
        requested_yaw=float(requested), frames=len(gens), frames_measured=len(achieved),
        achieved_yaw=mean(achieved), yaw_error=mean([abs(a - requested) for a in achieved]),
        pitch_drift=mean(pitch), roll_drift=mean(roll), id_distance=mean(ident), frames_identity=len(ident))


# ----------------------------------------------------------------------------- reporting


def _f(value: float | None, fmt: str = ".2f") -> str:
    return "n/a (no face)" if value is None else format(value, fmt)


def redirect_table_rows(result: BenchmarkResult) -> tuple[list[str], list[list[str]]]:
    header = ["requested yaw", "system", "achieved yaw", "|yaw error|", "pitch drift", "roll drift",
              "ID dist. to source", "faces (pose/id)"]
    rows = []
    for i, yaw in enumerate(r.requested_yaw for r in result.redirect.get(MODEL, [])):
        for name in (MODEL, BASELINE):
            r = result.redirect[name][i]
            rows.append([f"{yaw:+.0f}", name, _f(r.achieved_yaw), _f(r.yaw_error), _f(r.pitch_drift),
                         _f(r.roll_drift), _f(r.id_distance, ".4f"), f"{r.frames_measured}/{r.frames_identity}"
                         f" of {r.frames}"])
    for name in (MODEL, BASELINE):
        rs = [r for r in result.redirect.get(name, []) if r.yaw_error is not None]
        if rs:
            rows.append(["mean", name, "", _f(float(np.mean([r.yaw_error for r in rs]))), "", "",
                         _f(_mean_or_none([r.id_distance for r in rs]), ".4f"), ""])
    return header, rows


def _mean_or_none(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _plain(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                      *("| " + " | ".join(r) + " |" for r in rows)])


def _title(result: BenchmarkResult) -> str:
    return (f"{result.task} on {result.video}: {result.frames} frames at {result.image_size}x{result.image_size}, "
            f"checkpoint {result.checkpoint or 'bundled'}, synthesis {result.synthesis_seconds:.1f} s")


def format_benchmark(result: BenchmarkResult) -> str:
    from facevid2vid.metrics.evaluate import format_table

    body = format_table(result.rows) if result.task == "reconstruction" else _plain(*redirect_table_rows(result))
    return _title(result) + "\n" + body


def format_benchmark_markdown(result: BenchmarkResult) -> str:
    from facevid2vid.metrics.evaluate import format_markdown

    body = (format_markdown(result.rows) if result.task == "reconstruction"
            else _markdown(*redirect_table_rows(result)))
    return f"**{_title(result)}**\n\n{body}\n"


def write_benchmark(result: BenchmarkResult, json_path: str | None = None, markdown_path: str | None = None) -> None:
    from facevid2vid.metrics.evaluate import write_json

    if json_path:
        write_json(json_path, result.to_dict())
    if markdown_path:
        Path(markdown_path).parent.mkdir(parents=True, exist_ok=True)
        Path(markdown_path).write_text(format_benchmark_markdown(result))
