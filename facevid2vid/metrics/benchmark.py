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

The reconstruction task also measures **jitter** on a still stretch of the clip (found
automatically, or given): the frame-to-frame change of the model's driving keypoints and
output pixels, without and with the One Euro filter on the driving motion, and the pixel
change of the driving frames themselves (``metrics/jitter.py``).
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from facevid2vid.errors import CheckpointError, InputError, NoFaceError
from facevid2vid.metrics.cross_identity import CrossIdentityRow, run_cross_identity
from facevid2vid.metrics.evaluate import EvaluateOptions, EvaluationResult, Evaluator
from facevid2vid.metrics.face import FaceAnalyzer, FaceObservation, angle_difference, embedding_distance
from facevid2vid.metrics.jitter import STILL_WINDOW, find_still_window, keypoint_jitter, pixel_jitter
from facevid2vid.smoothing import SmoothingSettings
from facevid2vid.structures import KeypointMotion, View

TASKS = ("reconstruction", "redirect", "cross-identity")
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
class JitterOptions:
    """Where and how the reconstruction task measures jitter."""

    still: tuple[int, int] | None = None  # (START, END) video frame numbers, END exclusive; None: find it
    length: int = STILL_WINDOW  # frames of the window found automatically
    smoothing: SmoothingSettings = field(default_factory=lambda: SmoothingSettings(enabled=True))


@dataclass
class JitterResult:
    """Mean frame-to-frame change on a still window (docs/metrics.md, "Temporal stability")."""

    start: int  # first frame of the window, numbered as in the video
    stop: int  # one past its last frame
    found: str  # "auto": least pixel change of the driving crops; "given": --still
    smoothing: dict  # the SmoothingSettings of the smoothed rows
    driving_pixels: float  # mean |x_{t+1} - x_t| of the cropped driving frames, [0, 1]
    model_keypoints: float  # mean ||kp_{t+1} - kp_t|| of the model's driving keypoints, normalised units
    model_pixels: float  # mean |y_{t+1} - y_t| of the synthesized frames, [0, 1]
    smoothed_keypoints: float  # the same with the driving motion smoothed
    smoothed_pixels: float


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
    jitter: JitterResult | None = None  # reconstruction, clips of 2 frames or more
    cross_identity: list[CrossIdentityRow] = field(default_factory=list)  # cross-identity
    model_size: int | None = None  # the model's own size when frames are evaluated at another

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Resizer:
    """Frames are evaluated at ``size``; the model sees and makes them at ``model_size``.

    Down to the model: antialiased bilinear; up from it: bicubic, clamped (one documented filter).
    """

    size: int
    model_size: int

    def to_model(self, frames: np.ndarray):
        import torch.nn.functional as F

        from facevid2vid.video_io import to_tensor

        x = to_tensor(frames)
        if self.size == self.model_size:
            return x
        return F.interpolate(x, size=(self.model_size,) * 2, mode="bilinear", antialias=True, align_corners=False)

    def from_model(self, images) -> np.ndarray:
        import torch.nn.functional as F

        from facevid2vid.video_io import to_uint8

        if images.shape[-1] != self.size:  # a model of another size, or one that renders larger (LivePortrait)
            images = F.interpolate(images, size=(self.size,) * 2, mode="bicubic", align_corners=False,
                                   antialias=images.shape[-1] > self.size).clamp(0, 1)
        return to_uint8(images)


def run_benchmark(checkpoint: str | None, video: str | os.PathLike, task: str = "reconstruction",
                  max_frames: int | None = None, start: int = 0, yaws=DEFAULT_YAWS, crop: bool = True,
                  device: str | None = None, batch_size: int = 8, options: EvaluateOptions | None = None,
                  jitter: JitterOptions | None = None, sources: list[str] | None = None,
                  eval_size: int | None = None) -> BenchmarkResult:
    """Run one protocol on a clip; see the module docstring."""
    from facevid2vid.pipeline import load_animator, load_driving_frames

    from facevid2vid.checkpoint import default_checkpoint

    if task not in TASKS:
        raise InputError(f"unknown benchmark task {task!r}; choose from {', '.join(TASKS)}")
    if checkpoint is None and default_checkpoint() is None:
        # never benchmark the random-weight fallback of resolve_model
        raise CheckpointError("benchmark needs a trained model: pass --checkpoint FILE (no bundled model installed)")
    jitter = jitter or JitterOptions()
    if jitter.still is not None and task != "reconstruction":
        raise InputError("--still applies to the reconstruction task only")
    if (task == "cross-identity") != bool(sources):
        raise InputError("--source IMAGE is needed by the cross-identity task, and only by it")
    jitter.smoothing.validate()
    animator = load_animator(checkpoint, device, batch_size=batch_size)
    rs = Resizer(eval_size or animator.image_size, animator.image_size)
    frames, fps = load_driving_frames(video, rs.size, crop=crop, start=start, max_frames=max_frames)
    options = replace(options or EvaluateOptions(), device=str(animator.device))
    result = BenchmarkResult(task=task, video=str(video), checkpoint=checkpoint, frames=len(frames),
                             image_size=rs.size, synthesis_seconds=0.0,
                             model_size=animator.image_size if rs.size != animator.image_size else None)
    if task == "reconstruction":
        window = _still_window(jitter, frames, start)
        kept = _reconstruction(animator, frames, Evaluator(options), result, window, rs)
        if window is not None:
            result.jitter = _jitter(animator, frames, window, kept, fps, jitter.smoothing, start, rs)
    elif task == "redirect":
        _redirect(animator, frames, list(yaws), FaceAnalyzer(), result, options.progress, rs)
    else:
        from facevid2vid.pipeline import load_source_image

        photos = {Path(s).name: load_source_image(s, rs.size) for s in sources}
        result.cross_identity, result.synthesis_seconds = run_cross_identity(
            animator, frames, photos, FaceAnalyzer(), rs.to_model, rs.from_model, options.progress)
    return result


def _generated_stream(animator, source, frames: np.ndarray, result: BenchmarkResult, rs: Resizer):
    """uint8 frames synthesized batch by batch (absolute motion), timing the synthesis."""
    batches = (rs.to_model(frames[i:i + animator.batch_size]) for i in range(0, len(frames), animator.batch_size))
    it = animator.animate_iter(source, batches, mode="absolute")
    while True:
        t0 = time.perf_counter()
        out = next(it, None)
        result.synthesis_seconds += time.perf_counter() - t0
        if out is None:
            return
        yield from rs.from_model(out)


def _reconstruction(animator, frames: np.ndarray, evaluator: Evaluator, result: BenchmarkResult,
                    window: tuple[int, int, str] | None, rs: Resizer) -> list[np.ndarray]:
    """Score the model and the baseline; returns the model's frames of the still ``window`` (if any)."""
    source = frames[0]
    encoded = animator.encode_source(rs.to_model(source[None]))
    kept: list[np.ndarray] = []
    generated = _generated_stream(animator, encoded, frames, result, rs)
    if window is not None:
        generated = _keep(generated, window[0], window[1], kept)
    result.rows[MODEL] = evaluator.evaluate(iter(frames), generated, total=len(frames), source=source,
                                            names=("reference", "generated"), desc="reconstruction")
    baseline = (source for _ in range(len(frames)))
    result.rows[BASELINE] = evaluator.evaluate(iter(frames), baseline, total=len(frames), source=source,
                                               names=("reference", "baseline"), desc="baseline")
    return kept


def _keep(stream, lo: int, hi: int, kept: list):
    """Pass a stream of frames through, appending frames ``lo .. hi - 1`` to ``kept``."""
    for i, frame in enumerate(stream):
        if lo <= i < hi:
            kept.append(frame)
        yield frame


def _still_window(options: JitterOptions, frames: np.ndarray, start: int) -> tuple[int, int, str] | None:
    """(lo, hi, how) of the still window in clip frame indices; None for a clip of one frame."""
    if options.still is None:
        if len(frames) < 2:
            return None
        return (*find_still_window(frames, options.length), "auto")
    lo, hi = options.still[0] - start, options.still[1] - start
    if lo < 0 or hi > len(frames) or hi - lo < 2:
        raise InputError(f"--still {options.still[0]}:{options.still[1]} must hold 2 or more of the benchmarked "
                         f"frames {start}:{start + len(frames)}")
    return lo, hi, "given"


def _jitter(animator, frames: np.ndarray, window: tuple[int, int, str], model_frames: list[np.ndarray],
            fps: float, settings: SmoothingSettings, start: int, rs: Resizer) -> JitterResult:
    """Jitter on the window; ``model_frames``: the model's (unsmoothed) frames of it, as scored."""
    import torch

    from facevid2vid.smoothing import smooth_motion

    lo, hi, found = window
    settings = replace(settings, enabled=True)
    parts = [animator.estimate_motion(rs.to_model(frames[i:min(i + animator.batch_size, hi)]))
             for i in range(0, hi, animator.batch_size)]  # causal filter: frames < hi suffice
    motion = type(parts[0]).cat(parts)
    smoothed = smooth_motion(motion, fps, settings).index(slice(lo, hi))
    source = animator.encode_source(rs.to_model(frames[:1]))  # the reconstruction's source
    with torch.inference_mode():
        kp_raw = driving_keypoints(animator.model, source, motion.index(slice(lo, hi)))
        kp_smooth = driving_keypoints(animator.model, source, smoothed)
    smoothed_frames = rs.from_model(animator.render(source, smoothed))
    return JitterResult(start=start + lo, stop=start + hi, found=found, smoothing=asdict(settings),
                        driving_pixels=pixel_jitter(frames[lo:hi]), model_keypoints=keypoint_jitter(kp_raw),
                        model_pixels=pixel_jitter(np.stack(model_frames)),
                        smoothed_keypoints=keypoint_jitter(kp_smooth), smoothed_pixels=pixel_jitter(smoothed_frames))


def driving_keypoints(model, source, motion):
    """The keypoints a model drives with for ``motion`` (N, K, 2 or 3); a code's values for X2Face (N, 1, D)."""
    if hasattr(model, "driving_keypoints"):
        kp = model.driving_keypoints(source, motion)
        return kp[0] if isinstance(kp, tuple) else kp
    if isinstance(motion, KeypointMotion):
        return motion.kp
    return motion.vector()[:, None, :]


def _redirect(animator, frames: np.ndarray, yaws: list[float], analyzer: FaceAnalyzer, result: BenchmarkResult,
              progress: bool, rs: Resizer) -> None:
    from tqdm import tqdm

    source = frames[0]
    src_obs = analyzer(source)
    if src_obs.embedding is None:
        raise NoFaceError("no face found in the first frame of the clip (the redirect source)")
    refs = [analyzer(f) for f in tqdm(frames, desc="reference poses", unit="frame", disable=not progress,
                                      leave=False)]
    encoded = animator.encode_source(rs.to_model(source[None]))
    t0 = time.perf_counter()
    motion = animator.estimate_motion(rs.to_model(frames))  # H/Delta once for all yaws
    result.synthesis_seconds += time.perf_counter() - t0
    result.redirect = {MODEL: [], BASELINE: []}
    with tqdm(total=len(yaws) * len(frames), desc="redirect", unit="frame", disable=not progress,
              leave=False) as bar:
        for yaw in yaws:
            t0 = time.perf_counter()
            out = rs.from_model(animator.render(encoded, motion, View(yaw=yaw)))  # (N, S, S, 3)
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
    size = f"{result.image_size}x{result.image_size}"
    if result.model_size:
        size += f" (model at {result.model_size}, output upscaled bicubic)"
    return (f"{result.task} on {result.video}: {result.frames} frames at {size}, "
            f"checkpoint {result.checkpoint or 'bundled'}, synthesis {result.synthesis_seconds:.1f} s")


def cross_identity_table_rows(result: BenchmarkResult) -> tuple[list[str], list[list[str]]]:
    header = ["source", "ID dist. to source", "faces (id)", "yaw corr.", "pitch corr.", "|yaw change error|",
              "faces (pose)"]
    rows = [[r.source, _f(r.id_distance, ".4f"), f"{r.frames_identity}/{r.frames}", _f(r.yaw_correlation, ".3f"),
             _f(r.pitch_correlation, ".3f"), _f(r.yaw_change_error), f"{r.frames_pose}/{r.frames}"]
            for r in result.cross_identity]
    return header, rows


def _body(result: BenchmarkResult, markdown: bool) -> str:
    from facevid2vid.metrics.evaluate import format_markdown, format_table

    table = _markdown if markdown else _plain
    if result.task == "reconstruction":
        return format_markdown(result.rows) if markdown else format_table(result.rows)
    if result.task == "redirect":
        return table(*redirect_table_rows(result))
    return table(*cross_identity_table_rows(result))


def jitter_title(j: JitterResult) -> str:
    how = "least pixel change of the driving crops" if j.found == "auto" else "given with --still"
    return f"jitter on still frames {j.start}:{j.stop} ({j.stop - j.start} frames, {how}), mean change per frame"


def jitter_table_rows(j: JitterResult) -> tuple[list[str], list[list[str]]]:
    """Rows: driving video, model, model with smoothing; columns: keypoint and pixel change per frame."""
    s = j.smoothing
    smoothed = f"model, smoothed (min_cutoff {s['min_cutoff']:g} Hz, beta {s['beta']:g}, d_cutoff {s['d_cutoff']:g} Hz)"

    def ratio(pixels: float) -> str:
        return f"{pixels / j.driving_pixels:.2f}x" if j.driving_pixels > 0 else "n/a"

    header = ["system", "keypoints (normalised)", "pixels [0,1]", "pixels vs driving"]
    rows = [["driving video", "n/a", f"{j.driving_pixels:.5f}", "1.00x" if j.driving_pixels > 0 else "n/a"],
            ["model", f"{j.model_keypoints:.5f}", f"{j.model_pixels:.5f}", ratio(j.model_pixels)],
            [smoothed, f"{j.smoothed_keypoints:.5f}", f"{j.smoothed_pixels:.5f}", ratio(j.smoothed_pixels)]]
    return header, rows


def format_benchmark(result: BenchmarkResult) -> str:
    body = _body(result, markdown=False)
    if result.jitter is not None:
        body += f"\n\n{jitter_title(result.jitter)}\n{_plain(*jitter_table_rows(result.jitter))}"
    return _title(result) + "\n" + body


def format_benchmark_markdown(result: BenchmarkResult) -> str:
    body = _body(result, markdown=True)
    if result.jitter is not None:
        body += f"\n\n{jitter_title(result.jitter)}:\n\n{_markdown(*jitter_table_rows(result.jitter))}"
    return f"**{_title(result)}**\n\n{body}\n"


def write_benchmark(result: BenchmarkResult, json_path: str | None = None, markdown_path: str | None = None) -> None:
    from facevid2vid.metrics.evaluate import write_json
    from facevid2vid.outputs import write_text

    if json_path:
        write_json(json_path, result.to_dict())
    if markdown_path:
        write_text(markdown_path, format_benchmark_markdown(result))
