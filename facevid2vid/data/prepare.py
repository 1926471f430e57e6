"""Raw talking-head videos -> a training set of steady face clips (as VoxCeleb and TalkingHead-1KH are made).

For every input (a video file, or a folder of frames) :func:`process_source`:

1. tracks the face with ``face.track.track_frames`` (the tracker inference uses too): dlib
   detection every ``detect_every`` frames, the face nearest the previous one kept, boxes
   interpolated between key frames whose faces are consistent (``face.track.consistent``);
2. cuts clips where the face is present, large enough (``min_face`` pixels) and steady (its centre
   and size stay within ``max_shift``/``max_zoom`` of the clip's first box: ``face.track.steady_runs``),
   at most ``max_frames`` long;
3. gives each clip one square crop box (``face.crop.box_around``: the box inference uses too),
   crops and resizes every frame to ``size`` and stores it as a JPEG in ``clips/<clip_id>/``;
4. estimates each frame's head pose with the frozen teacher (dlib 68 landmarks + PnP on a
   generic 3D face, ``face.pose.HeadPoseEstimator``) for the head-pose loss.

A *still* (a photo: an image given as the input, or every image of a folder with ``stills``)
gives one one-frame clip (``kind`` "still") per face of at least ``min_face`` pixels, all
faces of a group photo, cropped with the same box rule; training turns them into pairs by
random warps. Held-out stills and the evaluation clips are refused by name
(``data.fetch.never_train_reason``) and listed as skipped.

:func:`prepare` runs it over a folder tree (in worker processes), keeps ``index.json`` up to date
after every input, skips inputs and clips already done, and writes ``report.json`` listing what
was skipped and why (no usable face, too short, unreadable). A bad input never stops the run.
"""
from __future__ import annotations

import json
import re
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image
from tqdm import tqdm

from facevid2vid.data.dataset import (CLIPS_DIR, REPORT_NAME, ClipRecord, DataIndex, load_index, save_index)
from facevid2vid.data.fetch import never_train_reason
from facevid2vid.errors import FaceVid2VidError, InputError
from facevid2vid.outputs import check_outputs, replace_dir, write_text
from facevid2vid.video_io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

CLIP_META = "clip.json"
FRAMES_FPS = 25.0  # frame folders carry no rate

Box = tuple[float, float, float, float]  # face.detect.Box: (x0, y0, x1, y1) pixels


@dataclass
class PrepareOptions:
    """How clips are cut and stored; every field changes the output (it is part of the done-check)."""

    size: int = 256  # side of the stored square frames
    start: int = 0  # frame range [start, end) of every input (e.g. a train split)
    end: int | None = None
    min_frames: int = 32  # shorter steady segments are dropped
    max_frames: int = 256  # longer ones are split into clips of at most this many frames
    min_face: int = 40  # smallest face box side, in source pixels
    detect_every: int = 4  # detect on every n-th frame, interpolate between
    max_shift: float = 0.35  # face centre may drift this many face sizes from the clip's first box
    max_zoom: float = 0.3  # and its size change by this fraction
    margin: float = 1.8  # crop side / face size (as in face.crop)
    shift: float = 0.1  # crop centre moved up by this many face sizes (hair)
    jpeg_quality: int = 95
    poses: bool = True  # run the pose teacher

    def validate(self) -> None:
        if self.size < 16:
            raise InputError(f"--size must be at least 16, got {self.size}")
        if self.start < 0 or (self.end is not None and self.end <= self.start):
            raise InputError(f"bad frame range {self.start}:{self.end}")
        if self.min_frames < 2 or self.max_frames < self.min_frames:
            raise InputError(f"need 2 <= min_frames <= max_frames, got {self.min_frames}, {self.max_frames}")
        if self.detect_every < 1:
            raise InputError("detect_every must be >= 1")

    def key(self) -> dict:
        return asdict(self)


@dataclass
class Source:
    """One raw input: a video file, a folder of frames, or a still photo."""

    path: Path
    kind: str  # "video" | "frames" | "still"
    name: str  # relative name, used for clip ids
    identity: str | None = None


@dataclass
class SourceResult:
    source: str
    key: str
    status: str  # "done" | "reused" | "skipped"
    clips: list[ClipRecord] = field(default_factory=list)
    reason: str | None = None
    frames_read: int = 0


def parse_frame_range(text: str | None) -> tuple[int, int | None]:
    """``"0:3600"`` -> (0, 3600); ``"100:"`` -> (100, None); None -> (0, None)."""
    if not text:
        return 0, None
    m = re.fullmatch(r"\s*(\d*)\s*:\s*(\d*)\s*", text)
    if not m:
        raise InputError(f"--frames must look like START:END (e.g. 0:3600), got {text!r}")
    start = int(m.group(1)) if m.group(1) else 0
    end = int(m.group(2)) if m.group(2) else None
    if end is not None and end <= start:
        raise InputError(f"--frames {text}: END must be greater than START")
    return start, end


# ---------------------------------------------------------------------------
# finding inputs


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "clip"


def find_sources(root: str | Path, exclude: Path | None = None, stills: bool = False) -> list[Source]:
    """Inputs under ``root``: video files, and folders holding frames (one video each).

    Layout ``root/<identity>/.../<video>`` gives the first folder as the identity label
    (VoxCeleb: ``id10001/<youtube id>/00001.mp4``); a video directly in ``root`` has none.
    With ``stills`` every image is a still photo instead of a frame; an image file given
    as ``root`` always is.
    """
    root = Path(root)
    if not root.exists():
        raise InputError(f"input not found: {root}")
    if root.is_file():
        kind = "still" if root.suffix.lower() in IMAGE_EXTENSIONS else "video"
        return [Source(root, kind, _slug(root.stem))]
    exclude = exclude.resolve() if exclude is not None else None
    sources: list[Source] = []
    for folder in sorted([root, *(p for p in root.rglob("*") if p.is_dir())]):
        if exclude is not None and (folder.resolve() == exclude or exclude in folder.resolve().parents):
            continue
        if any(part.startswith(".") for part in folder.relative_to(root).parts):
            continue
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        rel_folder = folder.relative_to(root)
        if stills:
            sources += _still_sources(root, files)
        elif any(p.suffix.lower() in IMAGE_EXTENSIONS for p in files):
            parts = rel_folder.parts or (folder.name,)
            identity = parts[0] if len(parts) >= 2 else None
            sources.append(Source(folder, "frames", _slug("__".join(parts)), identity))
        for p in files:
            if p.suffix.lower() in VIDEO_EXTENSIONS:
                parts = p.relative_to(root).with_suffix("").parts
                identity = parts[0] if len(parts) >= 2 else None
                sources.append(Source(p, "video", _slug("__".join(parts)), identity))
    return sources


def _still_sources(root: Path, files: list[Path]) -> list[Source]:
    out = []
    for p in files:
        if p.suffix.lower() in IMAGE_EXTENSIONS:
            parts = p.relative_to(root).with_suffix("").parts
            out.append(Source(p, "still", _slug("__".join(parts)), parts[0] if len(parts) >= 2 else None))
    return out


def refusal(src: Source, allow_evaluation: bool = False) -> str | None:
    """Why ``src`` must not be prepared (a held-out still, evaluation data), or None.

    Checked by file name; a frame folder is refused when any of its files is.
    """
    names = [p.name for p in _frame_files(src.path)] if src.kind == "frames" else [src.path.name]
    for name in names:
        reason = never_train_reason(name, allow_evaluation)
        if reason is not None:
            return reason
    return None


def _frame_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def iter_source_frames(src: Source, start: int, end: int | None) -> Iterator[np.ndarray]:
    """uint8 (H, W, 3) frames ``[start, end)`` of a source (InputError when unreadable)."""
    from facevid2vid.video_io import iter_video, read_image

    if src.kind == "video":
        yield from iter_video(src.path, start=start, max_frames=None if end is None else end - start)
        return
    files = _frame_files(src.path)[start:end]
    size = None
    for f in files:
        frame = read_image(f)
        if size is not None and frame.shape != size:
            raise InputError(f"{f}: frame size {frame.shape[1]}x{frame.shape[0]} differs from the folder's first frame")
        size = frame.shape
        yield frame


def source_fps(src: Source) -> float:
    if src.kind == "frames":
        return FRAMES_FPS
    from facevid2vid.video_io import video_info

    return float(video_info(src.path).fps)


# ---------------------------------------------------------------------------
# tracking and cutting


def track_faces(frames: Iterator[np.ndarray], opts: PrepareOptions,
                on_frame: Callable[[], None] | None = None) -> tuple[list[Box | None], tuple[int, int] | None]:
    """Per-frame face boxes (None where there is no usable face) and the frame size (w, h).

    ``face.track.track_frames`` with the options' detection rate and consistency rule; faces
    smaller than ``min_face`` pixels do not count.
    """
    from facevid2vid.face.track import track_frames

    track = track_frames(_counted(frames, on_frame), every=opts.detect_every, max_shift=opts.max_shift,
                         max_zoom=opts.max_zoom)
    return track.faces(min_size=opts.min_face), ((track.width, track.height) if len(track) else None)


def _counted(frames: Iterator[np.ndarray], on_frame: Callable[[], None] | None) -> Iterator[np.ndarray]:
    for frame in frames:
        yield frame
        if on_frame is not None:
            on_frame()


def cut_clips(boxes: list[Box | None], opts: PrepareOptions) -> list[tuple[int, int]]:
    """Frame ranges [a, b) where the face stays present and steady, split to at most ``max_frames``."""
    from facevid2vid.face.track import steady_runs

    clips = []
    for a, b in steady_runs(boxes, opts.max_shift, opts.max_zoom):
        length = b - a
        if length < opts.min_frames:
            continue
        pieces = -(-length // opts.max_frames)  # ceil
        bounds = np.linspace(a, b, pieces + 1).round().astype(int)
        clips += [(int(s), int(e)) for s, e in zip(bounds[:-1], bounds[1:]) if e - s >= opts.min_frames]
    return clips


# ---------------------------------------------------------------------------
# writing clips


def _clip_done(clip_dir: Path, opts_key: dict) -> ClipRecord | None:
    meta = clip_dir / CLIP_META
    if not meta.is_file():
        return None
    try:
        data = json.loads(meta.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if data.get("options") != opts_key:
        return None
    record = ClipRecord.from_dict(data["record"])
    if all(record.frame_path(clip_dir.parent.parent, i).is_file() for i in (0, record.num_frames - 1)):
        return record
    return None


class _ClipWriter:
    """Frames of one clip into a temporary folder, renamed into place once complete."""

    def __init__(self, out_dir: Path, record: ClipRecord, boxes: list[Box], opts: PrepareOptions,
                 photo_size: tuple[int, int] | None = None):
        from facevid2vid.face.crop import PHOTO_MIN_MARGIN, box_around, fit_inside

        self.record = record
        self.opts = opts
        self.face_boxes = boxes
        self.box = box_around(np.asarray(boxes), margin=opts.margin, shift=opts.shift)
        if photo_size is not None:  # (width, height) of a still photo: keep the crop inside it
            self.box = fit_inside(self.box, *photo_size, self.box.size * PHOTO_MIN_MARGIN / opts.margin)
        record.box = [float(self.box.x0), float(self.box.y0), float(self.box.size)]
        self.final = out_dir / CLIPS_DIR / record.id
        self.tmp = out_dir / CLIPS_DIR / f".{record.id}.tmp"
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        self.count = 0
        self._pose = None
        if opts.poses:
            from facevid2vid.face.pose import HeadPoseEstimator

            self._pose = HeadPoseEstimator()

    def add(self, frame: np.ndarray) -> None:
        from facevid2vid.face.crop import crop_frames

        crop = crop_frames(frame[None], self.box, self.opts.size)[0]
        Image.fromarray(crop).save(self.tmp / f"{self.count:06d}.jpg", quality=self.opts.jpeg_quality)
        self.record.poses.append(self._teacher_pose(frame, self.face_boxes[self.count]) if self._pose else None)
        self.count += 1

    def _teacher_pose(self, frame: np.ndarray, face_box: Box) -> list[float] | None:
        from facevid2vid.face.landmarks import landmarks_68

        lm = landmarks_68(frame, face_box)
        if lm is None:
            return None
        lm_crop = self.box.to_crop(lm, self.opts.size)
        try:
            yaw, pitch, roll = self._pose.from_landmarks(lm_crop, (self.opts.size, self.opts.size))
        except FaceVid2VidError:
            return None
        if not all(np.isfinite([yaw, pitch, roll])) or max(abs(yaw), abs(pitch), abs(roll)) > 90:
            return None
        return [round(float(yaw), 3), round(float(pitch), 3), round(float(roll), 3)]

    def finish(self, opts_key: dict) -> ClipRecord:
        if self.count != self.record.num_frames:
            raise InputError(f"{self.record.source}: expected {self.record.num_frames} frames for clip "
                             f"{self.record.id}, read {self.count}")
        write_text(self.tmp / CLIP_META, json.dumps({"options": opts_key, "record": self.record.to_dict()}))
        replace_dir(self.tmp, self.final)  # the previous clip stays until the new one is in place
        return self.record


def process_source(src: Source, out_dir: str | Path, opts: PrepareOptions, progress: bool = False,
                   allow_evaluation: bool = False) -> SourceResult:
    """Track, cut, crop and store one input; failures come back as a skipped result, never raised."""
    out_dir = Path(out_dir)
    key = source_key(src, opts)
    refused = refusal(src, allow_evaluation)
    if refused is not None:
        return SourceResult(str(src.path), key, "skipped", reason=refused)
    try:
        return _process(src, out_dir, opts, key, progress)
    except FaceVid2VidError as exc:
        return SourceResult(str(src.path), key, "skipped", reason=str(exc))
    except Exception as exc:  # noqa: BLE001 - a corrupt file must not stop the whole run
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return SourceResult(str(src.path), key, "skipped", reason=f"unreadable ({type(exc).__name__}: {first})")


def source_key(src: Source, opts: PrepareOptions) -> str:
    if src.kind == "still":
        return f"{src.path.resolve()}#still"
    return f"{src.path.resolve()}#{opts.start}:{'' if opts.end is None else opts.end}"


def detect_still_faces(image: np.ndarray) -> list[Box]:
    """Every face of a photo (H, W, 3), largest first.

    dlib's HOG detector on the (at most 640 px) detection copy upsampled once, so faces of
    about 40 px there are found; twice when that finds none (a small photo).
    """
    from facevid2vid.face.detect import detect_faces

    return detect_faces(image, upsample=1) or detect_faces(image, upsample=2)


def _process_still(src: Source, out_dir: Path, opts: PrepareOptions, key: str) -> SourceResult:
    """One one-frame clip per face of at least ``min_face`` pixels, left to right."""
    from facevid2vid.face.track import centre_size
    from facevid2vid.video_io import read_image

    image = read_image(src.path)  # (H, W, 3) uint8
    boxes = [b for b in detect_still_faces(image) if centre_size(b)[2] >= opts.min_face]
    if not boxes:
        return SourceResult(str(src.path), key, "skipped", frames_read=1,
                            reason=f"no usable face (none of at least {opts.min_face} px)")
    opts_key = opts.key()
    records, wrote = [], False
    for k, box in enumerate(sorted(boxes, key=lambda b: (b[0], b[1]))):
        cid = f"{src.name}_face{k:02d}"
        rec = _clip_done(out_dir / CLIPS_DIR / cid, opts_key)
        if rec is None:
            rec = ClipRecord(id=cid, source=str(src.path), start=0, end=1, fps=0.0, size=opts.size, box=[],
                             identity=src.identity, poses=[], kind="still")
            writer = _ClipWriter(out_dir, rec, [box], opts, photo_size=(image.shape[1], image.shape[0]))
            writer.add(image)
            rec, wrote = writer.finish(opts_key), True
        records.append(rec)
    return SourceResult(str(src.path), key, "done" if wrote else "reused", clips=records, frames_read=1)


def _process(src: Source, out_dir: Path, opts: PrepareOptions, key: str, progress: bool) -> SourceResult:
    if src.kind == "still":
        return _process_still(src, out_dir, opts, key)
    opts_key = opts.key()
    bar = tqdm(desc=src.path.name, unit="frame", leave=False, disable=not progress)
    boxes, _ = track_faces(iter_source_frames(src, opts.start, opts.end), opts, on_frame=lambda: bar.update(1))
    bar.close()
    n = len(boxes)
    if n == 0:
        return SourceResult(str(src.path), key, "skipped", reason="no frames (empty or frame range past the end)")
    ranges = cut_clips(boxes, opts)
    if not ranges:
        found = sum(b is not None for b in boxes)
        why = ("no usable face" if found == 0 else
               f"too short: no steady face segment of at least {opts.min_frames} frames ({found}/{n} frames with a face)")
        return SourceResult(str(src.path), key, "skipped", reason=why, frames_read=n)

    fps = source_fps(src)
    records: dict[int, ClipRecord] = {}
    todo: list[tuple[int, int, ClipRecord]] = []
    for a, b in ranges:
        cid = f"{src.name}_{opts.start + a:06d}"
        done = _clip_done(out_dir / CLIPS_DIR / cid, opts_key)
        if done is not None:
            records[a] = done
            continue
        rec = ClipRecord(id=cid, source=str(src.path), start=opts.start + a, end=opts.start + b, fps=fps,
                         size=opts.size, box=[], identity=src.identity, poses=[])
        todo.append((a, b, rec))

    if todo:  # second pass: crop and store the clips not yet on disk
        writers: dict[int, _ClipWriter] = {}
        last = max(b for _, b, _ in todo)
        for i, frame in enumerate(iter_source_frames(src, opts.start, opts.start + last)):
            for a, b, rec in todo:
                if a <= i < b:
                    if a not in writers:
                        writers[a] = _ClipWriter(out_dir, rec, boxes[a:b], opts)
                    writers[a].add(frame)
                    if i == b - 1:
                        records[a] = writers.pop(a).finish(opts_key)
        missing = [a for a, _ in ranges if a not in records]
        if writers or missing:
            raise InputError(f"{src.path}: ended before frame {opts.start + last} while writing clips")
    clips = [records[a] for a, _ in ranges]
    status = "reused" if not todo else "done"
    return SourceResult(str(src.path), key, status, clips=clips, frames_read=n)


# ---------------------------------------------------------------------------
# the whole run


@dataclass
class PrepareReport:
    output: Path
    results: list[SourceResult]

    @property
    def clips(self) -> int:
        return sum(len(r.clips) for r in self.results)

    @property
    def skipped(self) -> list[SourceResult]:
        return [r for r in self.results if r.status == "skipped"]

    def to_dict(self) -> dict:
        return {
            "output": str(self.output),
            "sources": [{"source": r.source, "status": r.status, "clips": [c.id for c in r.clips],
                         "frames": sum(c.num_frames for c in r.clips), "reason": r.reason} for r in self.results],
            "skipped": [{"source": r.source, "reason": r.reason} for r in self.skipped],
            "totals": {"sources": len(self.results), "clips": self.clips, "skipped": len(self.skipped),
                       "frames": sum(c.num_frames for r in self.results for c in r.clips)},
        }


def _merge(index: DataIndex, result: SourceResult, out_dir: Path, opts: PrepareOptions) -> None:
    """Replace the source's clips in the index with the new result (removing stale clip folders)."""
    old = index.sources.get(result.key, {}).get("clips", [])
    new_ids = {c.id for c in result.clips}
    for cid in old:
        if cid not in new_ids:
            shutil.rmtree(out_dir / CLIPS_DIR / cid, ignore_errors=True)
    drop = set(old) | new_ids
    index.clips = [c for c in index.clips if c.id not in drop] + result.clips
    if result.status == "skipped":
        index.sources.pop(result.key, None)
    else:
        index.sources[result.key] = {"source": result.source, "clips": sorted(new_ids), "options": opts.key()}


def _already_done(index: DataIndex, src: Source, opts: PrepareOptions, out_dir: Path) -> SourceResult | None:
    key = source_key(src, opts)
    entry = index.sources.get(key)
    if entry is None or entry.get("options") != opts.key():
        return None
    by_id = {c.id: c for c in index.clips}
    clips = [by_id.get(cid) for cid in entry.get("clips", [])]
    if any(c is None or not (out_dir / CLIPS_DIR / c.id / CLIP_META).is_file() for c in clips):
        return None
    return SourceResult(str(src.path), key, "reused", clips=clips)


def _split_done(index: DataIndex, sources: list[Source], opts: PrepareOptions, out_dir: Path,
                allow_evaluation: bool) -> tuple[list[SourceResult], list[Source]]:
    """The results of inputs already done, and the inputs to process (refused ones among them)."""
    results: list[SourceResult] = []
    pending: list[Source] = []
    for src in sources:
        done = None if refusal(src, allow_evaluation) else _already_done(index, src, opts, out_dir)
        if done is not None:
            results.append(done)
        else:
            pending.append(src)
    return results, pending


def prepare(input_path: str | Path, output: str | Path, opts: PrepareOptions | None = None, workers: int = 1,
            progress: bool = True, log: Callable[[str], None] | None = None, stills: bool = False,
            allow_evaluation: bool = False) -> PrepareReport:
    """Prepare every input under ``input_path`` into ``output`` (index.json, clips/, report.json).

    ``stills``: every image is a still photo (see :func:`find_sources`); ``allow_evaluation``
    lets the evaluation clips through (tool checks only; held-out stills never are).
    """
    check_outputs({"--output": (output, "folder")}, {"--input": input_path})
    opts = opts or PrepareOptions()
    opts.validate()
    out_dir = Path(output)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / CLIPS_DIR).mkdir(exist_ok=True)
    sources = find_sources(input_path, exclude=out_dir, stills=stills)
    if not sources:
        raise InputError(f"no videos, frame folders or photos found in {input_path}")
    try:
        index = load_index(out_dir)
    except InputError:
        if (out_dir / "index.json").exists():
            raise
        index = DataIndex(size=opts.size)
    if index.size != opts.size:
        raise InputError(f"{out_dir} holds {index.size}px clips; prepare {opts.size}px clips into another folder")

    results, pending = _split_done(index, sources, opts, out_dir, allow_evaluation)
    bar = tqdm(total=len(sources), initial=len(results), desc="prepare", unit="input", disable=not progress)

    def record(result: SourceResult) -> None:
        _merge(index, result, out_dir, opts)
        save_index(out_dir, index)
        results.append(result)
        bar.update(1)
        bar.set_postfix(clips=sum(len(r.clips) for r in results), skipped=sum(r.status == "skipped" for r in results))
        if result.status == "skipped" and log is not None:
            log(f"skipped {result.source}: {result.reason}")

    try:
        if workers <= 1 or len(pending) <= 1:
            for src in pending:
                record(process_source(src, out_dir, opts, progress=progress, allow_evaluation=allow_evaluation))
        else:
            with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
                futures = {pool.submit(process_source, src, out_dir, opts, False, allow_evaluation): src
                           for src in pending}
                for fut in as_completed(futures):
                    record(fut.result())
    finally:
        bar.close()
        order = {str(s.path): i for i, s in enumerate(sources)}
        results.sort(key=lambda r: order.get(r.source, len(order)))
        report = PrepareReport(out_dir, results)
        write_text(out_dir / REPORT_NAME, json.dumps(report.to_dict(), indent=1))
    return report
