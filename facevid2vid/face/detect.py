"""Face detection with dlib: the HOG frontal detector (fast) or the MMOD CNN detector.

Boxes are ``(x0, y0, x1, y1)`` floats in pixels of the given frame, largest first.
"""
from __future__ import annotations

import cv2
import dlib
import numpy as np

from facevid2vid.errors import InputError
from facevid2vid.face import dlib_models

Box = tuple[float, float, float, float]

# frames are shrunk to this long side before detection (speed; faces stay large enough): 1080p
# (1920 x 1080) is detected at 1/3 size, 720p at 1/2; the sample clips (at most 400 x 300) at full size
MAX_DETECT_SIDE = 640


def _as_rgb(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise InputError(f"face detection needs a uint8 (H, W, 3) RGB frame, got {frame.dtype} {frame.shape}")
    return np.ascontiguousarray(frame)


def rect_to_box(rect: dlib.rectangle, scale: float = 1.0) -> Box:
    """dlib's inclusive integer rectangle -> (x0, y0, x1, y1) floats, divided by ``scale``."""
    return (rect.left() / scale, rect.top() / scale, (rect.right() + 1) / scale, (rect.bottom() + 1) / scale)


def box_to_rect(box: Box) -> dlib.rectangle:
    x0, y0, x1, y1 = box
    return dlib.rectangle(int(round(x0)), int(round(y0)), int(round(x1)) - 1, int(round(y1)) - 1)


def box_area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def detect_faces(frame: np.ndarray, upsample: int | None = None, method: str = "hog",
                 max_side: int | None = MAX_DETECT_SIDE) -> list[Box]:
    """Faces in a uint8 RGB frame, largest first, in pixels of ``frame``.

    ``upsample`` is how many times dlib doubles the image first (finds smaller faces,
    ~4x slower each); None tries 0 and, if nothing is found in a small frame, 1.
    ``method`` is "hog" (fast) or "cnn" (the MMOD detector: slow on CPU, better at angles).
    A frame with a longer side over ``max_side`` is detected on a copy shrunk to it (None: never).
    """
    frame = _as_rgb(frame)
    h, w = frame.shape[:2]
    scale = 1.0
    if max_side is not None and max(h, w) > max_side:
        scale = max_side / max(h, w)
        frame = cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))),
                           interpolation=cv2.INTER_AREA)
    if method == "hog":
        detector = dlib_models.face_detector()
        if upsample is None:
            rects = detector(frame, 0)
            if len(rects) == 0 and max(frame.shape[:2]) < MAX_DETECT_SIDE:
                rects = detector(frame, 1)
        else:
            rects = detector(frame, int(upsample))
    elif method == "cnn":
        rects = [d.rect for d in dlib_models.cnn_face_detector()(frame, 0 if upsample is None else int(upsample))]
    else:
        raise InputError(f"unknown face detector {method!r}: expected 'hog' or 'cnn'")
    boxes = [rect_to_box(r, scale) for r in rects]
    return sorted(boxes, key=box_area, reverse=True)


def largest_face(frame: np.ndarray, upsample: int | None = None, method: str = "hog") -> Box | None:
    """The largest face's box, or None."""
    boxes = detect_faces(frame, upsample=upsample, method=method)
    return boxes[0] if boxes else None
