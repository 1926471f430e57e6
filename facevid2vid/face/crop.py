"""Steady per-clip face crops: one square box for a whole clip, then crop and resize.

The face is tracked by ``face.track`` (one pass over the clip); this module holds the box
rules (:func:`box_around`, :func:`fit_inside`) and the cropping.

A box that follows the face frame by frame makes the background jitter; face-vid2vid
(like FOMM) works on clips cropped with one fixed box that holds the head throughout,
so the model sees the head move. The box is the face box enlarged by ``margin``,
shifted up to include hair, and grown to cover where the face goes in the clip.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from facevid2vid.errors import InputError, NoFaceError
from facevid2vid.video_io import resize_square


PHOTO_MIN_MARGIN = 1.3  # a photo's crop may shrink from 1.8 to 1.3 face sizes to stay inside the picture
DETECT_EVERY = 5  # the steady box of a clip comes from detections on every 5th frame (and the last)


@dataclass(frozen=True)
class CropBox:
    """A square ``size`` x ``size`` window at (x0, y0) in source pixels; it may extend past the frame."""

    x0: int
    y0: int
    size: int

    @property
    def x1(self) -> int:
        return self.x0 + self.size

    @property
    def y1(self) -> int:
        return self.y0 + self.size

    def contains(self, points: np.ndarray) -> bool:
        """Whether all (x, y) points lie inside the box."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return bool(np.all((p[:, 0] >= self.x0) & (p[:, 0] <= self.x1) & (p[:, 1] >= self.y0) & (p[:, 1] <= self.y1)))

    def to_crop(self, points: np.ndarray, out_size: int) -> np.ndarray:
        """Map (x, y) source pixels to pixels of the ``out_size`` crop."""
        p = np.asarray(points, dtype=np.float64)
        return (p - np.array([self.x0, self.y0])) * (out_size / self.size)

    def to_dict(self) -> dict:
        return {"x0": self.x0, "y0": self.y0, "size": self.size}

    @classmethod
    def from_dict(cls, d: dict) -> "CropBox":
        return cls(int(d["x0"]), int(d["y0"]), int(d["size"]))


def _frames_array(frames) -> np.ndarray:
    arr = np.asarray(frames)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3 or len(arr) == 0:
        raise InputError(f"frames must be uint8 (N, H, W, 3) with N > 0, got {arr.dtype} {arr.shape}")
    return arr


def box_around(face_boxes: np.ndarray, margin: float = 1.8, shift: float = 0.1,
               coverage: float = 0.9, max_growth: float = 1.5) -> CropBox:
    """One steady square box for face boxes (N, 4) of a clip.

    The base square is centred on the median face centre (moved up by ``shift`` face
    sizes, for hair) with side ``margin`` x the median face size. It then grows to hold
    the enlarged faces of the central ``coverage`` fraction of frames (a robust union:
    a few bad detections do not blow it up), by at most ``max_growth``.
    """
    fb = np.asarray(face_boxes, dtype=np.float64).reshape(-1, 4)
    cx = (fb[:, 0] + fb[:, 2]) / 2
    cy = (fb[:, 1] + fb[:, 3]) / 2
    s = np.maximum(fb[:, 2] - fb[:, 0], fb[:, 3] - fb[:, 1])
    face = float(np.median(s))
    cy = cy - shift * s
    mx, my = float(np.median(cx)), float(np.median(cy))
    half = margin * face / 2
    # where the enlarged per-frame squares reach, robust to outliers
    lo, hi = (1 - coverage) / 2 * 100, (1 + coverage) / 2 * 100
    reach = max(
        mx - np.percentile(cx - margin * s / 2, lo), np.percentile(cx + margin * s / 2, hi) - mx,
        my - np.percentile(cy - margin * s / 2, lo), np.percentile(cy + margin * s / 2, hi) - my,
    )
    half = min(max(half, float(reach)), max_growth * half)
    size = max(2, int(math.ceil(2 * half)))
    return CropBox(int(round(mx - size / 2)), int(round(my - size / 2)), size)


def fit_inside(box: CropBox, width: int, height: int, min_side: float) -> CropBox:
    """Move a square box inside a ``width`` x ``height`` photo, shrinking it (to no less than
    ``min_side``) where the photo is too small.

    For still photos cropped tight around a face (press crops): replicating the border over a
    third of the crop makes streaks that no camera shows, while a slightly closer crop is
    within what the model sees in training (zoomed still pairs, moving heads).
    """
    size = int(round(max(min(box.size, width, height), min(box.size, min_side))))
    cx, cy = box.x0 + box.size / 2, box.y0 + box.size / 2

    def place(centre: float, extent: int) -> int:
        if size >= extent:
            return int(round((extent - size) / 2))  # still too big: pad both sides evenly
        return int(round(min(max(centre - size / 2, 0), extent - size)))

    return CropBox(place(cx, width), place(cy, height), size)


def steady_crop_box(frames, margin: float = 1.8, shift: float = 0.1, every: int = DETECT_EVERY,
                    upsample: int | None = None, name: str = "the frames") -> CropBox:
    """One smoothed square crop box for a clip (``face.track``: ``track_frames(...).crop_box(...)``).

    NoFaceError("no face found in <name>") when no frame has a face.
    """
    from facevid2vid.face.track import track_frames  # track builds on this module

    box = track_frames(frames, every=every, upsample=upsample).crop_box(margin=margin, shift=shift)
    if box is None:
        raise NoFaceError(f"no face found in {name}")
    return box


def crop_frames(frames, box: CropBox, size: int, pad: str = "edge") -> np.ndarray:
    """Cut ``box`` out of every frame (padding outside the image) and resize to (N, size, size, 3).

    ``pad`` is "edge" (replicate the border) or "black". Shrinking uses area averaging,
    enlarging bicubic interpolation.
    """
    frames = _frames_array(frames)
    if size <= 0:
        raise InputError(f"crop size must be positive, got {size}")
    n, h, w, _ = frames.shape
    # the part of the box inside the image, and the padding around it
    ix0, iy0 = max(box.x0, 0), max(box.y0, 0)
    ix1, iy1 = min(box.x1, w), min(box.y1, h)
    if ix0 >= ix1 or iy0 >= iy1:
        raise InputError(f"crop box {box} lies outside the {w}x{h} frames")
    pads = ((0, 0), (iy0 - box.y0, box.y1 - iy1), (ix0 - box.x0, box.x1 - ix1), (0, 0))
    region = frames[:, iy0:iy1, ix0:ix1]
    if any(p != (0, 0) for p in pads):
        if pad == "edge":
            region = np.pad(region, pads, mode="edge")
        elif pad == "black":
            region = np.pad(region, pads, mode="constant")
        else:
            raise InputError(f"unknown padding {pad!r}: expected 'edge' or 'black'")
    return resize_square(region, size)


def center_square(frames) -> np.ndarray:
    """The largest centred square of every frame (N, s, s, 3)."""
    frames = _frames_array(frames)
    h, w = frames.shape[1:3]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    return frames[:, y0:y0 + s, x0:x0 + s]


def prepare_frames(frames, size: int, crop: bool = True, name: str = "the frames",
                   box: CropBox | None = None, photo: bool = False) -> tuple[np.ndarray, CropBox | None]:
    """Frames ready for the model: uint8 (N, size, size, 3) and the crop box used.

    With ``crop`` the steady face box of the clip is used (or ``box`` if given);
    without, the centred square of each frame is resized (the frames are taken to be
    face crops already) and the box is None. A ``photo`` (one still image) has its box
    fitted inside the picture (:func:`fit_inside`, down to ``PHOTO_MIN_MARGIN`` face sizes).
    """
    frames = _frames_array(frames)
    if not crop:
        sq = center_square(frames)
        return resize_square(sq, size), None
    if box is None:
        from facevid2vid.face.track import track_frames  # track builds on this module

        box = track_frames(frames, every=DETECT_EVERY).crop_box(photo=photo)
        if box is None:
            raise NoFaceError(f"no face found in {name}")
    return crop_frames(frames, box, size), box
