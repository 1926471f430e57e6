"""128-D face descriptors from dlib's ResNet model (identity, for the AED metric).

Faces are aligned by dlib from landmarks (the 5-point predictor by default, or
given 68 landmarks); descriptors of the same person lie within ~0.6 of each other.
"""
from __future__ import annotations

import dlib
import numpy as np

from facevid2vid.errors import InputError
from facevid2vid.face import dlib_models
from facevid2vid.face.detect import Box, _as_rgb, box_to_rect, largest_face

SAME_PERSON_DISTANCE = 0.6  # dlib's suggested threshold


def _shape_from_landmarks(landmarks: np.ndarray) -> dlib.full_object_detection:
    lm = np.asarray(landmarks, dtype=np.float64)
    x0, y0 = lm.min(axis=0)
    x1, y1 = lm.max(axis=0)
    rect = dlib.rectangle(int(x0), int(y0), int(np.ceil(x1)), int(np.ceil(y1)))
    return dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in lm])


def face_embedding(frame: np.ndarray, landmarks: np.ndarray | None = None, box: Box | None = None,
                   jitter: int = 0) -> np.ndarray | None:
    """The 128-D descriptor (float64) of the largest face (or the one given by 68/5 ``landmarks``
    or ``box``); None when no face is found. ``jitter`` > 0 averages over jittered crops."""
    frame = _as_rgb(frame)
    if landmarks is not None:
        if np.asarray(landmarks).shape not in ((68, 2), (5, 2)):
            raise InputError(f"face embedding needs (68, 2) or (5, 2) landmarks, got {np.asarray(landmarks).shape}")
        shape = _shape_from_landmarks(landmarks)
    else:
        if box is None:
            box = largest_face(frame)
            if box is None:
                return None
        shape = dlib_models.shape_predictor_5()(frame, box_to_rect(box))
    desc = dlib_models.face_encoder().compute_face_descriptor(frame, shape, int(jitter))
    return np.asarray(desc, dtype=np.float64)


def embedding_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two descriptors (smaller = more alike)."""
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))
