"""face.track: one offline pass (per-frame boxes, presence, steady box), the causal live tracker,
downscaled detection of large frames, and memory that does not grow with the clip."""
from __future__ import annotations

import tracemalloc

import cv2
import numpy as np
import pytest

from facevid2vid.errors import InputError
from facevid2vid.face import dlib_models
from facevid2vid.face.crop import prepare_frames, steady_crop_box
from facevid2vid.face.detect import MAX_DETECT_SIDE
from facevid2vid.face.track import CausalTracker, centre_size, consistent, steady_runs, track_frames
from facevid2vid.video_io import read_video

GREY = 128


@pytest.fixture(scope="module")
def franck(samples):
    frames, _ = read_video(samples.franck, max_frames=24)
    return frames  # (24, 288, 360, 3), one face


@pytest.fixture(scope="module")
def face_patch(franck):
    """uint8 (200, 200, 3): the face of the first frame with some surroundings."""
    return np.ascontiguousarray(franck[0][50:250, 100:300])


def _placed(patch: np.ndarray, x: int, y: int, size=(360, 480)) -> np.ndarray:
    canvas = np.full((*size, 3), GREY, np.uint8)
    canvas[y:y + patch.shape[0], x:x + patch.shape[1]] = patch
    return canvas


def _canvas(frame: np.ndarray) -> np.ndarray:
    """uint8 (360, 640, 3): a 288 x 360 ``frame`` on a grey 640 x 360 canvas."""
    canvas = np.full((360, 640, 3), GREY, np.uint8)
    canvas[36:324, 140:500] = frame
    return canvas


def _big_frame(frame: np.ndarray) -> np.ndarray:
    """uint8 (1080, 1920, 3): the canvas of ``frame`` upscaled 3x, as a 1080p camera would see it."""
    return cv2.resize(_canvas(frame), (1920, 1080), interpolation=cv2.INTER_CUBIC)


def test_offline_pass_gives_per_frame_boxes_and_presence(franck):
    every1 = track_frames(franck[:12])
    assert (every1.width, every1.height) == (360, 288) and len(every1) == 12
    assert every1.boxes.shape == (12, 4) and every1.boxes.dtype == np.float32
    assert every1.present.all() and every1.detected.all() and np.isfinite(every1.boxes).all()
    sparse = track_frames(iter(franck), every=5)  # any iterator, one pass
    assert sparse.present.all() and np.flatnonzero(sparse.detected).tolist() == [0, 5, 10, 15, 20, 23]
    # interpolated between key frames, exact at them
    np.testing.assert_array_equal(sparse.boxes[5], track_frames(franck[5:6]).boxes[0])
    np.testing.assert_allclose(sparse.boxes[7], 0.6 * sparse.boxes[5] + 0.4 * sparse.boxes[10], atol=1e-3)
    # the steady box of crop.py is this tracker's
    assert sparse.crop_box() == steady_crop_box(franck) == prepare_frames(franck, 64)[1]
    assert track_frames(np.full((3, 50, 60, 3), GREY, np.uint8)).crop_box() is None
    empty = track_frames(iter([]))
    assert len(empty) == 0 and empty.boxes.shape == (0, 4) and empty.crop_box() is None
    with pytest.raises(InputError, match="differs from the first frame"):
        track_frames([franck[0], franck[0][:100]])


def test_presence_drops_where_the_face_is_blanked_and_comes_back(franck):
    frames = franck[:16].copy()
    gone = np.zeros(16, dtype=bool)
    gone[6:10] = True
    frames[gone] = GREY
    dense = track_frames(frames)
    np.testing.assert_array_equal(dense.present, ~gone)
    assert np.isnan(dense.boxes[gone]).all() and np.isfinite(dense.boxes[~gone]).all()
    assert dense.faces()[7] is None and dense.faces()[12] is not None
    sparse = track_frames(frames, every=4)  # key frames 0, 4, 8, 12, 15: key frame 8 finds nothing
    assert not sparse.present[gone].any()
    assert sparse.present[:5].all() and sparse.present[12:].all() and not sparse.present[5:8].any()
    # the steady box ignores the empty frames: about the box of the clip without them
    a, b = dense.crop_box(), track_frames(frames[~gone]).crop_box()
    assert max(abs(a.x0 - b.x0), abs(a.y0 - b.y0), abs(a.size - b.size)) <= 0.03 * b.size


def test_consistency_rule_and_steady_runs():
    face = (10.0, 10.0, 60.0, 60.0)
    assert consistent(face, (20.0, 10.0, 70.0, 60.0))  # moved 0.2 face sizes
    assert not consistent(face, (40.0, 10.0, 90.0, 60.0))  # jumped 0.6
    assert not consistent(face, (0.0, 0.0, 80.0, 80.0))  # grew by 60%
    assert centre_size(face) == (35.0, 35.0, 50.0)
    boxes = np.array([face] * 3 + [[np.nan] * 4] + [face] * 2 + [(40.0, 10.0, 90.0, 60.0)] * 2, np.float32)
    assert steady_runs(boxes) == [(0, 3), (4, 6), (6, 8)]


def test_causal_tracker_never_looks_ahead(franck):
    frames = np.concatenate([franck[:10], np.full((2, 288, 360, 3), GREY, np.uint8), franck[10:16]])
    tracker = CausalTracker(360, 288)
    full = [tracker.update(f) for f in frames]
    prefix_tracker = CausalTracker(360, 288)
    prefix = [prefix_tracker.update(f) for f in frames[:7]]
    assert prefix == full[:7]
    assert [s.present for s in full] == [True] * 10 + [False] * 2 + [True] * 6
    assert full[10].box == full[9].box and full[10].face is None  # no face: the last box is held
    assert all(s.box is not None and s.box.contains(np.array(s.face).reshape(2, 2)) for s in full if s.present)
    with pytest.raises(InputError, match="differs"):
        tracker.update(franck[0][:, :200])


def test_causal_box_reaches_a_step_within_the_lag(face_patch):
    lag = 3
    tracker = CausalTracker(480, 360, lag=lag)
    here, there = _placed(face_patch, 40, 40), _placed(face_patch, 240, 120)
    before = [tracker.update(here) for _ in range(5)]
    assert len({s.box for s in before}) == 1  # a still face: a still box
    outlier = tracker.update(there)  # one frame elsewhere does not move it
    assert outlier.present and outlier.box == before[-1].box
    for _ in range(5):
        tracker.update(here)
    target = CausalTracker(480, 360).update(there).box
    after = [tracker.update(there) for _ in range(lag + 1)]
    assert all(s.box == before[-1].box for s in after[:lag - 1])  # smoothed: not at once ...
    assert after[lag - 1].box == target and after[lag].box == target  # ... but on the lag-th frame


def test_large_frames_are_detected_downscaled(franck, monkeypatch):
    small = track_frames([_canvas(franck[0])]).boxes[0]
    seen = []
    real = dlib_models.face_detector()
    monkeypatch.setattr(dlib_models, "face_detector", lambda: lambda img, up: seen.append(img.shape) or real(img, up))
    big = track_frames([_big_frame(franck[0])]).boxes[0]
    assert seen and max(seen[0][:2]) == MAX_DETECT_SIDE  # 1920 x 1080 detected at 640 x 360
    side = small[2] - small[0]
    assert np.abs(big / 3 - small).max() <= 0.03 * side  # back in 1080p pixels: the same face box
    seen.clear()
    track_frames(franck[:1])
    assert seen[0][:2] == (288, 360)  # the sample clips: detected at full size, as before


def test_memory_does_not_grow_with_the_clip(franck):
    big = _big_frame(franck[0])
    n = 20

    def frames():
        for _ in range(n):
            yield big.copy()  # a fresh 6 MB frame each time, as a decoder gives

    tracemalloc.start()
    try:
        track = track_frames(frames(), every=50)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(track) == n and track.present.all()
    assert peak < 3 * big.nbytes < n * big.nbytes / 6  # at most two frames alive, of 20
