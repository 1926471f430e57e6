"""Compare a generated video with its aligned reference: every metric, one table.

The :class:`Evaluator` loads dlib and any user-supplied networks once, then streams
both videos in batches (progress bar on stderr): pixel metrics on float tensors,
face metrics per frame, frames appended for one libvmaf run at the end.
Definitions of every number are in docs/metrics.md.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from facevid2vid.devices import resolve_device
from facevid2vid.errors import InputError
from facevid2vid.metrics import image as image_metrics
from facevid2vid.metrics import vmaf as vmaf_metric
from facevid2vid.metrics.face import FaceAnalyzer, FaceMetricAccumulator
from facevid2vid.metrics.learned import (UNAVAILABLE_NO_WEIGHTS, FidAccumulator, load_inception, load_lpips)
from facevid2vid.metrics.perception import (PerceptionAccumulator, PerceptionChoice, load_perception,
                                            metric_labels)
from facevid2vid.video_io import iter_video, to_tensor, video_info


@dataclass
class EvaluateOptions:
    batch_size: int = 16
    faces: bool = True  # AKD, AED, pose error (dlib)
    perception: bool = True  # PD, AED and pose error from the ported networks, when fetched
    vmaf: bool = True
    lpips_backbone: str | None = None  # torchvision alexnet/vgg16 state dict
    lpips_heads: str | None = None  # lpips v0.1 linear heads (alex.pth / vgg.pth)
    fid_weights: str | None = None  # InceptionV3, torchvision key layout
    device: str = "cpu"  # cpu, cuda, cuda:N or auto (facevid2vid.devices)
    progress: bool = True
    vmaf_threads: int | None = None


@dataclass
class EvaluationResult:
    """Averages over all frames; a metric is None when ``unavailable`` says why."""

    frames: int
    width: int
    height: int
    l1: float | None = None
    psnr: float | None = None
    ssim: float | None = None
    ms_ssim: float | None = None
    akd: float | None = None
    aed: float | None = None
    aed_source: float | None = None
    pose_error: float | None = None
    pose_error_yaw: float | None = None
    pose_error_pitch: float | None = None
    pose_error_roll: float | None = None
    vmaf: float | None = None
    pd: float | None = None
    aed_net: float | None = None
    pose_error_net: float | None = None
    lpips: float | None = None
    fid: float | None = None
    frames_compared: int = 0
    frames_no_face_reference: int = 0
    frames_no_face_generated: int = 0
    frames_no_embedding: int = 0
    frames_compared_source: int = 0
    unavailable: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


_LABELS = metric_labels(PerceptionChoice())
PERCEPTION_KEYS = ("pd", "aed_net", "pose_error_net")
# (key, label, unit, better) in table order
METRIC_ROWS: list[tuple[str, str, str, str]] = [
    ("l1", "L1", "[0,1]", "lower"),
    ("psnr", "PSNR", "dB", "higher"),
    ("ssim", "SSIM", "", "higher"),
    ("ms_ssim", "MS-SSIM", "", "higher"),
    ("akd", "AKD", "px", "lower"),
    ("aed", "AED", "L2", "lower"),
    ("aed_source", "ID dist. to source", "L2", "lower"),
    ("pose_error", "pose error", "deg", "lower"),
    ("pose_error_yaw", "  yaw", "deg", "lower"),
    ("pose_error_pitch", "  pitch", "deg", "lower"),
    ("pose_error_roll", "  roll", "deg", "lower"),
    ("vmaf", "VMAF", "0-100", "higher"),
    ("pd", _LABELS["pd"], "", "lower"),
    ("aed_net", _LABELS["aed_net"], "1-cos", "lower"),
    ("pose_error_net", _LABELS["pose_error_net"], "deg", "lower"),
    ("lpips", "LPIPS", "", "lower"),
    ("fid", "FID", "", "lower"),
]
FACE_KEYS = ("akd", "aed", "pose_error", "pose_error_yaw", "pose_error_pitch", "pose_error_roll")


def _batches(reference: Iterable[np.ndarray], generated: Iterable[np.ndarray], size: int,
             names: tuple[str, str]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Pairs of uint8 batches (B, H, W, 3); InputError when the streams differ in length or size."""
    ref_it, gen_it = iter(reference), iter(generated)
    shape = None
    count = 0
    while True:
        refs, gens = [], []
        for _ in range(size):
            r, g = next(ref_it, None), next(gen_it, None)
            if r is None and g is None:
                break
            if r is None or g is None:
                short, longer = (names[0], names[1]) if r is None else (names[1], names[0])
                raise InputError(f"{short} has {count} frames but {longer} has more: videos must be aligned")
            r, g = np.asarray(r), np.asarray(g)
            if shape is None:
                shape = r.shape
            if r.shape != shape or g.shape != shape:
                raise InputError(f"frame {count}: {names[0]} is {r.shape[1]}x{r.shape[0]}, "
                                 f"{names[1]} is {g.shape[1]}x{g.shape[0]} (expected {shape[1]}x{shape[0]})")
            refs.append(r)
            gens.append(g)
            count += 1
        if not refs:
            return
        yield np.stack(refs), np.stack(gens)
        if len(refs) < size:
            return


class Evaluator:
    """Holds the loaded models; ``evaluate`` can run many times (e.g. model and baseline)."""

    def __init__(self, options: EvaluateOptions | None = None):
        opt = options or EvaluateOptions()
        self.options = opt = replace(opt, device=resolve_device(opt.device))
        if opt.batch_size < 1:
            raise InputError(f"batch size must be >= 1, got {opt.batch_size}")
        self.analyzer = FaceAnalyzer() if opt.faces else None
        if (opt.lpips_backbone is None) != (opt.lpips_heads is None):
            raise InputError("LPIPS needs both a backbone file and the linear heads file")
        self.lpips = load_lpips(opt.lpips_backbone, opt.lpips_heads, opt.device) if opt.lpips_backbone else None
        self.inception = load_inception(opt.fid_weights, opt.device) if opt.fid_weights else None
        self.vmaf_reason = vmaf_metric.unavailable_reason() if opt.vmaf else "unavailable (disabled)"
        self.perception, self.perception_reason = (load_perception(PerceptionChoice(), opt.device)
                                                   if opt.perception else (None, "unavailable (disabled)"))

    def evaluate(self, reference: Iterable[np.ndarray], generated: Iterable[np.ndarray], total: int | None = None,
                 source: np.ndarray | None = None, names: tuple[str, str] = ("reference", "generated"),
                 desc: str = "evaluate") -> EvaluationResult:
        """Metrics of two aligned streams of uint8 (H, W, 3) frames.

        source: the source image (uint8) for the identity distance of generated frames.
        """
        opt = self.options
        sums = {"l1": 0.0, "psnr": 0.0, "ssim": 0.0, "ms_ssim": 0.0, "lpips": 0.0}
        faces = FaceMetricAccumulator(self.analyzer) if self.analyzer is not None else None
        if faces is not None and source is not None:
            faces.set_source(np.asarray(source))
        vmaf_acc = vmaf_metric.VmafAccumulator(opt.vmaf_threads) if self.vmaf_reason is None else None
        fid_acc = FidAccumulator(self.inception) if self.inception is not None else None
        perception = PerceptionAccumulator(self.perception) if self.perception is not None else None
        ms_settings = None
        n, height, width = 0, 0, 0
        try:
            with tqdm(total=total, desc=desc, unit="frame", disable=not opt.progress, leave=False) as bar:
                for ref, gen in _batches(reference, generated, opt.batch_size, names):
                    if n == 0:
                        height, width = ref.shape[1:3]
                        ms_settings = image_metrics.ms_ssim_settings(height, width)
                    rt, gt = to_tensor(ref).to(opt.device), to_tensor(gen).to(opt.device)  # (B, 3, H, W)
                    sums["l1"] += image_metrics.l1_error(rt, gt).sum().item()
                    sums["psnr"] += image_metrics.psnr(rt, gt).sum().item()
                    sums["ssim"] += image_metrics.ssim(rt, gt).sum().item()
                    if ms_settings is not None:
                        sums["ms_ssim"] += image_metrics.ms_ssim(rt, gt).sum().item()
                    if self.lpips is not None:
                        sums["lpips"] += self.lpips(rt, gt).sum().item()
                    if fid_acc is not None:
                        fid_acc.add(rt, gt)
                    if vmaf_acc is not None:
                        vmaf_acc.add(ref, gen)
                    observations = None
                    if faces is not None:
                        observations = [(self.analyzer(r), self.analyzer(g)) for r, g in zip(ref, gen)]
                        for ro, go in observations:
                            faces.add_pair(ro, go)
                    if perception is not None:
                        perception.add(rt, gt, observations)
                    n += ref.shape[0]
                    bar.update(ref.shape[0])
            if n == 0:
                raise InputError(f"{names[0]} and {names[1]} have no frames")
            result = EvaluationResult(frames=n, width=width, height=height,
                                      l1=sums["l1"] / n, psnr=sums["psnr"] / n, ssim=sums["ssim"] / n)
            self._finish_ms_ssim(result, sums, ms_settings)
            self._finish_learned(result, sums, fid_acc)
            self._finish_vmaf(result, vmaf_acc)
            vmaf_acc = None
            self._finish_faces(result, faces, source is not None)
            self._finish_perception(result, perception)
        finally:
            if vmaf_acc is not None:
                vmaf_acc.close()
        return result

    @staticmethod
    def _finish_ms_ssim(result: EvaluationResult, sums: dict, settings) -> None:
        if settings is None:
            result.unavailable["ms_ssim"] = "unavailable (frames of 32 px or less)"
            return
        result.ms_ssim = sums["ms_ssim"] / result.frames
        if not settings.standard:
            result.notes.append(f"MS-SSIM window {settings.window} (frames under 161 px; standard is 11)")

    def _finish_learned(self, result: EvaluationResult, sums: dict, fid_acc: FidAccumulator | None) -> None:
        if self.lpips is None:
            result.unavailable["lpips"] = UNAVAILABLE_NO_WEIGHTS
        else:
            result.lpips = sums["lpips"] / result.frames
            result.notes.append(f"LPIPS v0.1 with the {self.lpips.backbone} backbone")
        if fid_acc is None:
            result.unavailable["fid"] = UNAVAILABLE_NO_WEIGHTS
        elif result.frames < 2:
            result.unavailable["fid"] = "unavailable (needs 2 frames or more)"
        else:
            result.fid = fid_acc.compute()
            result.notes.append(f"FID ({self.inception.variant} Inception) over {result.frames} frames per video"
                                + ("; fewer than 2049 frames: covariance rank-deficient, biased" if result.frames
                                   < 2049 else ""))

    def _finish_vmaf(self, result: EvaluationResult, acc) -> None:
        if acc is None:
            reason = self.vmaf_reason
            result.unavailable["vmaf"] = reason if reason.startswith("unavailable") else f"unavailable ({reason})"
            return
        try:
            result.vmaf = acc.score().mean
        except vmaf_metric.VmafError as exc:
            result.unavailable["vmaf"] = f"unavailable ({exc})"

    def _finish_perception(self, result: EvaluationResult, acc: PerceptionAccumulator | None) -> None:
        if acc is None:
            for key in PERCEPTION_KEYS:
                result.unavailable[key] = self.perception_reason
            return
        for key, value in acc.result().items():
            setattr(result, key, value)
            if value is None and key == "pd":
                result.unavailable[key] = f"unavailable (frames under {self.perception['features'].min_size} px)"
            elif value is None:
                result.unavailable[key] = ("unavailable (face metrics disabled)" if self.analyzer is None
                                           else "unavailable (no frame with a face in both videos)")
        result.notes.append(f"{_LABELS['pd']}: {_LABELS['_features']} (not LPIPS); {_LABELS['aed_net']}: "
                            f"{_LABELS['_identity']}; {_LABELS['pose_error_net']}: {_LABELS['_pose']}")

    def _finish_faces(self, result: EvaluationResult, faces: FaceMetricAccumulator | None, has_source: bool) -> None:
        if faces is None:
            for key in (*FACE_KEYS, "aed_source"):
                result.unavailable[key] = "unavailable (disabled)"
            return
        fm = faces.result()
        for key in (*FACE_KEYS, "aed_source"):
            setattr(result, key, getattr(fm, key))
        result.frames_compared = fm.frames_compared
        result.frames_no_face_reference = fm.frames_no_face_reference
        result.frames_no_face_generated = fm.frames_no_face_generated
        result.frames_no_embedding = fm.frames_no_embedding
        result.frames_compared_source = fm.frames_compared_source
        for key in FACE_KEYS:
            if getattr(result, key) is None:
                result.unavailable[key] = "unavailable (no frame with a face in both videos)"
        if not has_source:
            result.unavailable["aed_source"] = "n/a (no source image)"
        elif result.aed_source is None:
            result.unavailable["aed_source"] = "unavailable (no face in any generated frame)"


def evaluate_videos(reference: str | os.PathLike, generated: str | os.PathLike, source: np.ndarray | None = None,
                    options: EvaluateOptions | None = None, evaluator: Evaluator | None = None) -> EvaluationResult:
    """Evaluate two aligned video files (same frame count and size, else InputError)."""
    ref_info, gen_info = video_info(reference), video_info(generated)
    if (ref_info.width, ref_info.height) != (gen_info.width, gen_info.height):
        raise InputError(f"frame sizes differ: {reference} is {ref_info.width}x{ref_info.height}, "
                         f"{generated} is {gen_info.width}x{gen_info.height}")
    if ref_info.num_frames != gen_info.num_frames:
        raise InputError(f"frame counts differ: {reference} has {ref_info.num_frames}, "
                         f"{generated} has {gen_info.num_frames}")
    evaluator = evaluator or Evaluator(options)
    return evaluator.evaluate(iter_video(reference), iter_video(generated), total=ref_info.num_frames,
                              source=source, names=(str(reference), str(generated)))


# ----------------------------------------------------------------------------- reporting


def _format_value(key: str, value: float) -> str:
    if key == "l1":
        return f"{value:.4f}"
    if key in ("ssim", "ms_ssim", "aed", "aed_source", "lpips", "pd", "aed_net"):
        return f"{value:.4f}"
    if key == "akd":
        return f"{value:.3f}"
    return f"{value:.2f}"


def _cell(result: EvaluationResult, key: str) -> str:
    value = getattr(result, key)
    if value is None:
        return result.unavailable.get(key, "n/a")
    return _format_value(key, value)


def _face_count_cell(r: EvaluationResult) -> str:
    if r.unavailable.get("akd") == "unavailable (disabled)":
        return "n/a (disabled)"
    return (f"{r.frames_compared}/{r.frames} (no face: ref {r.frames_no_face_reference}, "
            f"gen {r.frames_no_face_generated})")


def table_rows(results: dict[str, EvaluationResult]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per metric, one column per evaluated system."""
    header = ["metric", "unit", "better", *results]
    rows = [[label, unit, better, *(_cell(r, key) for r in results.values())]
            for key, label, unit, better in METRIC_ROWS]
    rows.append(["face frames compared", "frames", "", *(_face_count_cell(r) for r in results.values())])
    return header, rows


def format_table(results: dict[str, EvaluationResult]) -> str:
    """Plain-text table for the terminal, notes underneath."""
    header, rows = table_rows(results)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    line = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()  # noqa: E731
    out = [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    out += _notes(results)
    return "\n".join(out)


def format_markdown(results: dict[str, EvaluationResult]) -> str:
    header, rows = table_rows(results)
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    # sub-rows are indented in plain text; Markdown would drop the indent, so name them
    out += ["| " + " | ".join(("pose " + c.strip()) if j == 0 and c.startswith("  ") else c.strip()
                              for j, c in enumerate(row)) + " |" for row in rows]
    notes = _notes(results)
    return "\n".join(out + ([""] + notes if notes else []))


def _notes(results: dict[str, EvaluationResult]) -> list[str]:
    notes: list[str] = []
    for name, r in results.items():
        for note in r.notes:
            text = f"note ({name}): {note}" if len(results) > 1 else f"note: {note}"
            if text not in notes:
                notes.append(text)
    return notes


def write_json(path: str | os.PathLike, payload: dict) -> Path:
    """Write ``payload`` as JSON, atomically."""
    from facevid2vid.outputs import write_text

    return write_text(path, json.dumps(payload, indent=2, allow_nan=False))
