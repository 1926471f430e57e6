"""One face tracker for clips read from files (offline, one pass) and for live video (causal).

Offline, for a clip read from a file::

    track = track_frames(frames, every=1)  # any iterable of uint8 (H, W, 3) frames; one pass, frames not kept
    track.width, track.height              # frame size in pixels
    track.boxes                            # float32 (N, 4) face box per frame (x0, y0, x1, y1), NaN rows: no face
    track.present                          # bool (N,) a face in that frame (detected, or carried: see below)
    track.detected                         # bool (N,) the detector ran on that frame and found the face
    track.crop_box(margin=1.8, shift=0.1, photo=False) -> CropBox | None   # one steady box for the clip
    track.faces(min_size=0) -> list[Box | None]                            # per-frame boxes as tuples

Live video, past frames only::

    tracker = CausalTracker(width, height, margin=1.8, shift=0.1, lag=LIVE_LAG, detect_size=MAX_DETECT_SIDE)
    state = tracker.update(frame)          # TrackState(box: CropBox | None, present: bool, face: Box | None)

The rules, shared by both:

- **Detection** (``face.detect.detect_faces``, dlib HOG) runs on every ``every``-th frame (the key
  frames; offline the last frame too) on a copy whose longer side is capped at ``detect_size``
  (``MAX_DETECT_SIDE`` = 640: 1080p is detected at 1/3 size, boxes scaled back to frame pixels;
  the sample clips, at most 400 x 300, at full size as before).
- **Which face**: the one whose centre is nearest the previous face's; the largest while there is none.
- **Consistency** (:func:`consistent`): face ``b`` follows face ``a`` when its centre moved at most
  ``max_shift`` face sizes (of ``a``) along x and along y and its size changed by at most ``max_zoom``;
  otherwise the face *jumped* (a cut, another person).
- **Presence offline**: a key frame is present when the detector found a face there. A frame between
  two key frames is present, its box interpolated linearly, when both key frames found a face and
  the two are consistent; otherwise it has no face (NaN box). With ``every=1`` every frame is a key frame.
- **Presence live**: a key frame as offline; between key frames the last key frame's state is held.
- **Steady box offline** (:meth:`Track.crop_box`): the boxes of the detected frames, interpolated
  over the others (the nearest one before the first / after the last), go through
  ``face.crop.box_around`` (the median face enlarged ``margin`` times, moved up by ``shift``, grown
  to hold where the face goes).
- **Steady box live** (:class:`CausalTracker`): the per-frame square (the same margin and shift) is
  smoothed by a running median over the last ``2 * lag - 1`` key frames with a face, and the box only
  moves when that median leaves it by more than ``tolerance`` of its size. After a step the median is
  at the new place on the ``lag``-th key frame (the step's frame counted): the box trails by at most
  ``lag - 1`` key frames, and a wrong detection on fewer than ``lag`` frames does not move it. When
  the face comes back after frames without one, the median restarts from it.
- :func:`steady_runs`: frame ranges where the face is present and consistent with the range's first
  box; ``data.prepare`` cuts its training clips from them.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from facevid2vid.errors import InputError
from facevid2vid.face.crop import PHOTO_MIN_MARGIN, CropBox, box_around, fit_inside
from facevid2vid.face.detect import MAX_DETECT_SIDE, Box, detect_faces

MAX_SHIFT = 0.35  # a face may move this many face sizes between two key frames and still be "the same"
MAX_ZOOM = 0.3  # and change its size by this fraction
LIVE_LAG = 4  # the live box reaches a moved face on the 4th key frame (at 25 fps: 0.16 s)
LIVE_TOLERANCE = 0.05  # the live box stays put while the median square is within 5% of its size


def centre_size(box: Box) -> tuple[float, float, float]:
    """(centre x, centre y, longer side) of a face box."""
    x0, y0, x1, y1 = box
    return (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0)


def consistent(a: Box, b: Box, max_shift: float = MAX_SHIFT, max_zoom: float = MAX_ZOOM) -> bool:
    """Whether face box ``b`` is the face of ``a`` moved (True) rather than a jump to another face."""
    ax, ay, asz = centre_size(a)
    bx, by, bsz = centre_size(b)
    shift = max(abs(ax - bx), abs(ay - by)) / asz
    return shift <= max_shift and abs(bsz / asz - 1.0) <= max_zoom


def pick_face(boxes: Sequence[Box], previous: Box | None) -> Box | None:
    """The face to follow: the one nearest the previous one, else the largest (``boxes`` come largest first)."""
    if not boxes:
        return None
    if previous is None:
        return boxes[0]
    px, py, _ = centre_size(previous)
    return min(boxes, key=lambda b: (centre_size(b)[0] - px) ** 2 + (centre_size(b)[1] - py) ** 2)


def _as_faces(faces) -> list[Box | None]:
    """A list of boxes or None, or a (N, 4) array with NaN rows -> list of tuples or None."""
    if isinstance(faces, np.ndarray):
        return [None if np.isnan(row).any() else tuple(float(v) for v in row) for row in faces.reshape(-1, 4)]
    return list(faces)


def steady_runs(faces, max_shift: float = MAX_SHIFT, max_zoom: float = MAX_ZOOM) -> list[tuple[int, int]]:
    """Frame ranges [a, b) with a face in every frame, each consistent with the range's first box.

    ``faces``: per-frame boxes (None: no face) or a (N, 4) array with NaN rows. A frame without a
    face ends a range; a face that jumped away from the first box ends it and starts the next.
    """
    runs: list[tuple[int, int]] = []
    start, anchor = None, None
    for i, box in enumerate(_as_faces(faces) + [None]):
        ok = box is not None and anchor is not None and consistent(anchor, box, max_shift, max_zoom)
        if start is not None and not ok:
            runs.append((start, i))
            start, anchor = None, None
        if start is None and box is not None:
            start, anchor = i, box
    return runs


class _Follower:
    """Detects faces on a frame and keeps following the same one (state: the previous face)."""

    def __init__(self, detect_size: int | None, upsample: int | None):
        if detect_size is not None and detect_size < 32:
            raise InputError(f"detect_size must be at least 32 pixels (or None), got {detect_size}")
        self.detect_size = detect_size
        self.upsample = upsample
        self.previous: Box | None = None

    def __call__(self, frame: np.ndarray) -> Box | None:
        face = pick_face(detect_faces(frame, upsample=self.upsample, max_side=self.detect_size), self.previous)
        self.previous = face or self.previous
        return face


def _check_frame(frame, size: tuple[int, int] | None) -> tuple[int, int]:
    """(width, height) of a uint8 (H, W, 3) frame, which must match ``size`` when given."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise InputError(f"face tracking needs uint8 (H, W, 3) frames, got {got}")
    wh = (frame.shape[1], frame.shape[0])
    if size is not None and wh != size:
        raise InputError(f"frame size {wh[0]}x{wh[1]} differs from the first frame's {size[0]}x{size[1]}")
    return wh


@dataclass
class Track:
    """Result of one pass over a clip (see the module docstring for the rules)."""

    width: int  # frame size in pixels
    height: int
    boxes: np.ndarray  # float32 (N, 4) face box per frame (x0, y0, x1, y1) in frame pixels, NaN rows: no face
    present: np.ndarray  # bool (N,) a face in that frame (detected, or interpolated between consistent key frames)
    detected: np.ndarray  # bool (N,) the detector ran on that frame and found the face

    def __len__(self) -> int:
        return len(self.present)

    def faces(self, min_size: float = 0.0) -> list[Box | None]:
        """Per-frame face boxes as tuples; None where there is no face or it is smaller than ``min_size`` pixels."""
        out: list[Box | None] = []
        for row, ok in zip(self.boxes.astype(np.float64), self.present):
            box = tuple(float(v) for v in row) if ok else None
            out.append(box if box is not None and centre_size(box)[2] >= min_size else None)
        return out

    def crop_box(self, margin: float = 1.8, shift: float = 0.1, photo: bool = False) -> CropBox | None:
        """The one steady square crop box for the whole clip, or None when no frame has a face.

        The detected boxes are interpolated over every other frame (held before the first and after
        the last) and given to ``face.crop.box_around``. A ``photo`` has its box fitted inside the
        picture (``face.crop.fit_inside``, down to ``PHOTO_MIN_MARGIN`` face sizes).
        """
        t = np.flatnonzero(self.detected)
        if len(t) == 0:
            return None
        keys = self.boxes[t].astype(np.float64)  # (M, 4)
        every = np.arange(len(self))
        filled = np.stack([np.interp(every, t, keys[:, k]) for k in range(4)], axis=1)  # (N, 4)
        box = box_around(filled, margin=margin, shift=shift)
        if photo:
            box = fit_inside(box, self.width, self.height, box.size * PHOTO_MIN_MARGIN / margin)
        return box


def _track_from_keys(keys: dict[int, Box | None], n: int, size: tuple[int, int],
                     max_shift: float, max_zoom: float) -> Track:
    """Per-frame boxes from the key frames' faces: interpolated between consistent neighbours."""
    boxes = np.full((n, 4), np.nan)  # (N, 4) float64 while interpolating
    detected = np.zeros(n, dtype=bool)
    idx = sorted(keys)
    for i, j in zip(idx, idx[1:] + [None]):
        a = keys[i]
        if a is None:
            continue
        boxes[i], detected[i] = a, True
        b = None if j is None else keys[j]
        if b is None or not consistent(a, b, max_shift, max_zoom):
            continue  # no face at j, or the face jumped (cut, another person): the frames between have none
        w = ((np.arange(i + 1, j) - i) / (j - i))[:, None]  # (j - i - 1, 1)
        boxes[i + 1:j] = (1 - w) * np.asarray(a) + w * np.asarray(b)
    present = ~np.isnan(boxes[:, 0])
    return Track(size[0], size[1], boxes.astype(np.float32), present, detected)


def track_frames(frames: Iterable[np.ndarray], every: int = 1, detect_size: int | None = MAX_DETECT_SIDE,
                 upsample: int | None = None, max_shift: float = MAX_SHIFT, max_zoom: float = MAX_ZOOM) -> Track:
    """Track the face over uint8 (H, W, 3) frames in ONE streaming pass.

    The frames are not kept (only the last one, until the next arrives, for the final key frame),
    so a long high-resolution clip read lazily costs a few frames of memory. ``every``: detect on
    every n-th frame (and the last), interpolating between; ``detect_size``: the longer side of the
    detection copy (None: detect at full size); ``upsample`` as in ``face.detect.detect_faces``.
    An empty iterable gives an empty Track of size 0 x 0.
    """
    if every < 1:
        raise InputError(f"every must be at least 1, got {every}")
    follow = _Follower(detect_size, upsample)
    keys: dict[int, Box | None] = {}
    n, size, last = 0, None, None
    for i, frame in enumerate(frames):
        size = _check_frame(frame, size)
        if i % every == 0:
            keys[i], last = follow(frame), None
        else:
            last = frame
        n = i + 1
    if last is not None:
        keys[n - 1] = follow(last)
    return _track_from_keys(keys, n, size or (0, 0), max_shift, max_zoom)


@dataclass(frozen=True)
class TrackState:
    """The live tracker's answer for one frame."""

    box: CropBox | None  # square crop box for this frame (past frames only); None until a face was seen
    present: bool  # a face in this frame (between key frames: held from the last one)
    face: Box | None  # the face box followed in this frame, frame pixels (None where absent)


class CausalTracker:
    """Face presence and a smoothed square crop box for live video, frame by frame, past frames only.

    ``update`` never waits for later frames: the box of frame t depends on frames 0..t alone. The
    box is the running median (over the last ``2 * lag - 1`` key frames with a face) of the
    per-frame square ``margin`` face sizes wide, centred ``shift`` face sizes above the face; it
    moves only when the median leaves it by more than ``tolerance`` of its size, and it reaches a
    face that stepped to a new place on the ``lag``-th key frame after the step. ``every``: detect
    on every n-th frame (the key frames), holding the state in between; ``detect_size`` as in
    :func:`track_frames`.
    """

    def __init__(self, width: int, height: int, margin: float = 1.8, shift: float = 0.1, lag: int = LIVE_LAG,
                 detect_size: int | None = MAX_DETECT_SIDE, every: int = 1, tolerance: float = LIVE_TOLERANCE,
                 upsample: int | None = None):
        if width < 1 or height < 1:
            raise InputError(f"frame size must be positive, got {width}x{height}")
        if lag < 1 or every < 1 or margin <= 0 or tolerance < 0:
            raise InputError(f"need lag >= 1, every >= 1, margin > 0, tolerance >= 0; got {lag}, {every}, "
                             f"{margin}, {tolerance}")
        self.width, self.height = int(width), int(height)
        self.margin, self.shift, self.lag = float(margin), float(shift), int(lag)
        self.every, self.tolerance = int(every), float(tolerance)
        self._follow = _Follower(detect_size, upsample)
        self._squares: deque[tuple[float, float, float]] = deque(maxlen=2 * self.lag - 1)  # (cx, cy, side)
        self._state = TrackState(None, False, None)
        self._count = 0

    def reset(self) -> None:
        """Forget the past (a new stream)."""
        self._follow.previous = None
        self._squares.clear()
        self._state = TrackState(None, False, None)
        self._count = 0

    def update(self, frame: np.ndarray) -> TrackState:
        """The state for the next frame, a uint8 (height, width, 3) array."""
        _check_frame(frame, (self.width, self.height))
        i, self._count = self._count, self._count + 1
        if i % self.every:
            return self._state  # between key frames: held
        face = self._follow(frame)
        if face is None:
            self._state = TrackState(self._state.box, False, None)
            return self._state
        if not self._state.present:
            self._squares.clear()  # the face is back: start from where it is, not from where it was
        cx, cy, side = centre_size(face)
        self._squares.append((cx, cy - self.shift * side, self.margin * side))
        self._state = TrackState(self._smoothed_box(), True, face)
        return self._state

    def _smoothed_box(self) -> CropBox:
        cx, cy, side = np.median(np.asarray(self._squares), axis=0)  # (3,)
        size = max(2, int(math.ceil(side)))
        target = CropBox(int(round(cx - size / 2)), int(round(cy - size / 2)), size)
        box = self._state.box
        if box is None or len(self._squares) == 1:
            return target
        moved = max(abs(target.x0 + target.size / 2 - box.x0 - box.size / 2),
                    abs(target.y0 + target.size / 2 - box.y0 - box.size / 2), abs(target.size - box.size))
        return target if moved > self.tolerance * box.size else box
