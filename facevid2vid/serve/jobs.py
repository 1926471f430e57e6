"""Animate jobs: a photo driven by an uploaded video, run one at a time in a worker thread.

A job's progress (phase, frames done of total) is polled by the page. Its results, in the
job's own folder, are the result video, a side-by-side video (driving face | result) and a
strip of six frames; they are served by job id and a fixed file name only.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from facevid2vid.errors import FaceVid2VidError
from facevid2vid.serve.uploads import UploadError, Workspace, check_id, clean_message

log = logging.getLogger(__name__)

RESULT_FILES = {"result.mp4": "video/mp4", "side.mp4": "video/mp4", "strip.png": "image/png"}
STRIP_FRAMES = 6


@dataclass
class AnimateOptions:
    """How a job animates (the page's controls)."""

    mode: str = "relative"  # "relative" or "absolute" driving motion
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    frontalize: bool = False
    smooth: bool = False  # One Euro filter on the driving motion

    def validate(self) -> "AnimateOptions":
        from facevid2vid.inference import MOTION_MODES
        from facevid2vid.validation import check_angle

        if self.mode not in MOTION_MODES:
            raise UploadError(f"mode must be one of {', '.join(MOTION_MODES)}, got {self.mode!r}")
        for name in ("yaw", "pitch", "roll"):
            setattr(self, name, check_angle(getattr(self, name), name))
        return self


@dataclass
class Job:
    """One animate job as the page sees it."""

    id: str
    folder: Path
    name: str  # the driving video's shown name
    state: str = "queued"  # queued, running, done, error
    phase: str = "waiting for the model"
    done: int = 0  # frames written
    total: int = 0  # frames to write (known once the face is tracked)
    error: str = ""
    fps: float = 0.0
    seconds: float = 0.0  # time the job ran
    created: float = field(default_factory=time.monotonic)

    def public(self) -> dict:
        out = asdict(self)
        del out["folder"], out["created"]
        out["files"] = sorted(RESULT_FILES) if self.state == "done" else []
        return out


class JobRunner:
    """Runs animate jobs in one worker thread; keeps the last ``keep`` finished ones."""

    def __init__(self, animator, workspace: Workspace, keep: int = 8, queued: int = 4):
        self.animator = animator
        self.workspace = workspace
        self.keep, self.queued = max(1, keep), max(1, queued)
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="animate")

    def submit(self, photo, driving: Path, name: str, ident: str, folder: Path, options: AnimateOptions) -> Job:
        options.validate()
        with self.lock:
            active = sum(job.state in ("queued", "running") for job in self.jobs.values())
            if active >= self.queued:
                raise UploadError(f"{active} animate jobs are waiting already: try again in a while", status=503)
            job = Job(ident, folder, name)
            self.jobs[ident] = job
            self._prune()
        self.pool.submit(self._run, job, photo, driving, options)
        return job

    def _prune(self) -> None:
        finished = [j for j in self.jobs.values() if j.state in ("done", "error")]
        for job in finished[:max(0, len(finished) - self.keep)]:
            del self.jobs[job.id]
            self.workspace.remove(job.folder)

    def get(self, ident: str) -> Job:
        check_id(ident, "job")
        with self.lock:
            job = self.jobs.get(ident)
        if job is None:
            raise UploadError("unknown job (it may have been dropped)", status=404)
        return job

    def file(self, ident: str, name: str) -> Path:
        """The path of a finished job's result ``name`` (one of RESULT_FILES)."""
        job = self.get(ident)
        if name not in RESULT_FILES or job.state != "done":
            raise UploadError(f"job {ident} has no file {name!r}", status=404)
        return job.folder / name

    def _run(self, job: Job, photo, driving: Path, options: AnimateOptions) -> None:
        start = time.monotonic()
        job.state = "running"
        try:
            self._animate(job, photo, driving, options)
            job.state, job.phase = "done", "done"
        except FaceVid2VidError as exc:
            job.state, job.error = "error", clean_message(str(exc), driving, job.name)
        except Exception as exc:  # noqa: BLE001 - one failed job must not stop the server
            log.exception("animate job %s failed", job.id)
            job.state, job.error = "error", f"unexpected {type(exc).__name__}: {exc}"
        finally:
            job.seconds = round(time.monotonic() - start, 2)
            driving.unlink(missing_ok=True)  # the upload is not kept

    def _animate(self, job: Job, photo, driving: Path, options: AnimateOptions) -> None:
        from facevid2vid.errors import NoFaceError
        from facevid2vid.pipeline import FaceVideo
        from facevid2vid.smoothing import SmoothingSettings, motion_smoother
        from facevid2vid.structures import View
        from facevid2vid.video_io import to_tensor, to_uint8, write_video

        job.phase = "finding the face in the driving video"
        try:
            video = FaceVideo(driving, self.animator.image_size, crop=True)
        except NoFaceError:
            raise NoFaceError(f"no face found in the driving video {job.name}") from None
        job.total, job.fps, job.phase = video.num_frames, video.fps, "animating"
        view = View(yaw=options.yaw, pitch=options.pitch, roll=options.roll, frontalize=options.frontalize)
        smoother = motion_smoother(SmoothingSettings(enabled=options.smooth), video.fps)
        batches = (to_tensor(b) for b in video.batches(self.animator.batch_size))
        out = self.animator.animate_iter(photo.source, batches, mode=options.mode, view=view, smoother=smoother)

        def frames():
            for batch in out:
                for frame in to_uint8(batch):
                    yield frame
                    job.done += 1

        write_video(job.folder / "result.mp4", frames(), video.fps)
        job.phase = "side by side"
        self._side_by_side(job, video, photo.crop)

    def _side_by_side(self, job: Job, video, source: np.ndarray) -> None:
        """side.mp4 (driving face | result) and strip.png (source, then six frames of each)."""
        from facevid2vid.video_io import iter_video, write_image, write_video

        picks = set(np.linspace(0, max(0, job.done - 1), STRIP_FRAMES).round().astype(int).tolist())
        top, bottom = [source], [source]

        def pairs():
            for i, (drv, res) in enumerate(zip(video.frames(), iter_video(job.folder / "result.mp4"))):
                if i in picks:
                    top.append(drv)
                    bottom.append(res)
                yield np.concatenate([drv, res], axis=1)

        write_video(job.folder / "side.mp4", pairs(), video.fps)
        write_image(job.folder / "strip.png", np.concatenate([np.concatenate(top, 1), np.concatenate(bottom, 1)], 0))

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
