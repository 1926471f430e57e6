"""Reading photos and videos as model-sized face crops, streamed in bounded batches.

A video is never held in memory: :class:`FaceVideo` makes one light pass with the face
tracker (boxes and face presence only, downscaled detection for large frames) to fix the
clip's steady crop box, then decodes the video again and crops it a batch at a time. So
peak memory does not grow with the clip's length (docs/reliability.md).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from facevid2vid.errors import InputError, NoFaceError
from facevid2vid.face.crop import DETECT_EVERY, CropBox, center_square, crop_frames, prepare_frames
from facevid2vid.face.track import Track, track_frames
from facevid2vid.video_io import is_image_path, iter_video, load_source, resize_square, video_info


def load_source_image(path: str | Path, size: int, crop: bool = True) -> np.ndarray:
    """The source photo (or a video's first frame), face-cropped and resized: uint8 (size, size, 3)."""
    frame = load_source(path)[None]
    try:
        return prepare_frames(frame, size, crop=crop, photo=is_image_path(path))[0][0]
    except NoFaceError as exc:
        raise NoFaceError(f"no face found in source {path} ({exc}); pass --no-crop to use the frames as they "
                          f"are") from None


def batched(frames: Iterator[np.ndarray], n: int) -> Iterator[np.ndarray]:
    """Stack an iterator of uint8 (H, W, 3) frames into arrays of at most n frames."""
    chunk: list[np.ndarray] = []
    for frame in frames:
        chunk.append(frame)
        if len(chunk) == n:
            yield np.stack(chunk)
            chunk = []
    if chunk:
        yield np.stack(chunk)


class FaceVideo:
    """A video as uint8 (n, size, size, 3) face crops, read in batches as often as needed.

    Args:
        path: the video file.
        size: side of the crops (the model's size).
        crop: find the face and cut one steady box for the whole clip (else each frame's
            centred square is resized: the frames are taken to be face crops already).
        start, max_frames: the frames used.
        what: how messages name the video ("driving video ...").
    """

    def __init__(self, path: str | Path, size: int, crop: bool = True, start: int = 0,
                 max_frames: int | None = None, what: str = "driving video"):
        if is_image_path(path):
            raise InputError(f"{path} is an image; a {what.split()[-1]} is needed")
        self.path, self.size, self.start, self.max_frames = Path(path), int(size), int(start), max_frames
        info = video_info(path)
        self.fps = info.fps
        self.width, self.height = info.width, info.height
        self.track: Track | None = None
        self.box: CropBox | None = None
        if crop:
            self.track = track_frames(self.raw_frames(), every=DETECT_EVERY)
            self._check_frames(len(self.track.present))
            self.box = self.track.crop_box()
            if self.box is None:
                raise NoFaceError(f"no face found in {what} {path}; pass --no-crop to use the frames as they are")
        self.num_frames = len(self.track.present) if self.track is not None else self._count(info.num_frames)

    def _count(self, total: int) -> int:
        n = max(0, total - self.start)
        n = n if self.max_frames is None else min(n, self.max_frames)
        self._check_frames(n if n else sum(1 for _ in self.raw_frames()))
        return n

    def _check_frames(self, n: int) -> None:
        if n == 0:
            if self.start > 0:
                raise InputError(f"{self.path} has no frames from frame {self.start} on")
            raise InputError(f"{self.path} has no video frames")

    @property
    def crop_size(self) -> int:
        """Side in input pixels of the face crops (the box, or each frame's centred square)."""
        return self.box.size if self.box is not None else min(self.width, self.height)

    @property
    def face_present(self) -> np.ndarray | None:
        """bool (N,): the tracker's per-frame face presence (None without face tracking)."""
        return None if self.track is None else self.track.present

    def raw_frames(self) -> Iterator[np.ndarray]:
        return iter_video(self.path, start=self.start, max_frames=self.max_frames)

    def crop(self, frames: np.ndarray, size: int | None = None) -> np.ndarray:
        """Face crops (n, size, size, 3) of raw frames (n, H, W, 3) (``size`` defaults to the model's)."""
        size = size or self.size
        if self.box is not None:
            return crop_frames(frames, self.box, size)
        return resize_square(center_square(frames), size)

    def batches(self, n: int, size: int | None = None) -> Iterator[np.ndarray]:
        """The clip's face crops, n frames at a time."""
        for raw in batched(self.raw_frames(), n):
            yield self.crop(raw, size)

    def first_frame(self) -> np.ndarray:
        """The first face crop uint8 (size, size, 3)."""
        with contextlib.closing(self.batches(1)) as batches:
            return next(batches)[0]

    def frames(self, size: int | None = None) -> Iterator[np.ndarray]:
        """The clip's face crops one frame at a time."""
        for batch in self.batches(16, size):
            yield from batch


def load_driving_frames(path: str | Path, size: int, crop: bool = True, start: int = 0,
                        max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """All face crops of a (short) clip in memory: uint8 (N, size, size, 3) and fps.

    For benchmarks and notebooks; the commands stream with :class:`FaceVideo` instead.
    """
    video = FaceVideo(path, size, crop=crop, start=start, max_frames=max_frames)
    return np.concatenate(list(video.batches(64))), video.fps
