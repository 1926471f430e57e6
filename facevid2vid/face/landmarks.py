"""dlib's 68-point facial landmarks (iBUG 300-W layout: jaw 0-16, brows 17-26, nose 27-35,
eyes 36-47, mouth 48-67), used for pose, cropping checks and the AKD metric."""
from __future__ import annotations

import numpy as np

from facevid2vid.face import dlib_models
from facevid2vid.face.detect import Box, _as_rgb, box_to_rect, largest_face


def shape_to_array(shape) -> np.ndarray:
    """A dlib full_object_detection -> float (P, 2) pixel coordinates (x, y)."""
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def landmarks_68(frame: np.ndarray, box: Box | None = None) -> np.ndarray | None:
    """68 landmarks (68, 2) of the face in ``box`` (default: the largest detected face), or None."""
    frame = _as_rgb(frame)
    if box is None:
        box = largest_face(frame)
        if box is None:
            return None
    shape = dlib_models.shape_predictor()(frame, box_to_rect(box))
    return shape_to_array(shape)


def landmarks_clip(frames: np.ndarray, boxes: np.ndarray | None = None) -> list[np.ndarray | None]:
    """Landmarks of every frame; ``boxes`` (N, 4) skips the detector (e.g. tracked boxes)."""
    if boxes is None:
        return [landmarks_68(f) for f in frames]
    return [landmarks_68(f, tuple(map(float, b))) for f, b in zip(frames, boxes)]
