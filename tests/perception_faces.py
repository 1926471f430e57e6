"""Real face crops from the sample data, the same for parity fixtures and tests.

Each crop is the dlib face box of one frame, enlarged by ``MARGIN`` about its centre, cut out
and resized to ``SIZE`` (``face.crop.crop_frames``): deterministic for a given sample file.
"""
from __future__ import annotations

import numpy as np

from facevid2vid.face.crop import CropBox, crop_frames
from facevid2vid.face.detect import largest_face
from facevid2vid.video_io import read_image, read_video

SIZE = 224
MARGIN = 1.5
# (sample, frame index or None for a still)
FACES = (("franck", 3600), ("franck", 4200), ("cap12", 200), ("stills/audrey.jpg", None),
         ("stills/obama4_crop.jpg", None))


def face_box(frame: np.ndarray, margin: float = MARGIN) -> CropBox:
    box = largest_face(frame)
    assert box is not None, "no face in a sample frame"
    x0, y0, x1, y1 = box
    size = int(round(max(x1 - x0, y1 - y0) * margin))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return CropBox(int(round(cx - size / 2)), int(round(cy - size / 2)), size)


def sample_frame(samples, name: str, index: int | None) -> np.ndarray:
    if index is None:
        return read_image(samples.franck.parent / name)
    frames, _ = read_video(getattr(samples, name), start=index, max_frames=1)
    return frames[0]


def face_crops(samples, faces=FACES, size: int = SIZE) -> np.ndarray:
    """uint8 (N, size, size, 3) face crops, one per entry of ``faces``."""
    out = []
    for name, index in faces:
        frame = sample_frame(samples, name, index)
        out.append(crop_frames(frame, face_box(frame), size)[0])
    return np.stack(out)
