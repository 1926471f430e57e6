"""dlib ResNet-34 face descriptor (from face-api's TF.js weights) against face-api and dlib itself."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from perception_faces import FACES, face_crops, sample_frame

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "perception" / "dlib_resnet34.npz"
TOL = 1e-4  # max|a - b| / max|b| per output
FRANCK_A, FRANCK_B, CAP12 = 0, 1, 2  # indices into FACES


def _script():
    spec = importlib.util.spec_from_file_location("perception_faceapi", ROOT / "scripts/fixtures/perception_faceapi.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def net(one_thread):
    from facevid2vid.perception import load_network
    from facevid2vid.perception.fetch import fetch_weights

    fetch_weights(names=["dlib_resnet34"], quiet=True)
    return load_network("dlib_resnet34")


@pytest.fixture(scope="module")
def crops(samples):
    """(N,3,224,224) in [0,1]: the shared sample face crops (dlib box x 1.5, not aligned)."""
    return torch.from_numpy(face_crops(samples)).permute(0, 3, 1, 2).float() / 255.0


@pytest.fixture(scope="module")
def chips(samples):
    """uint8 (N,150,150,3) chips aligned by dlib (5-point shape, padding 0.25), as dlib's encoder takes them."""
    import dlib

    from facevid2vid.face import dlib_models
    from facevid2vid.face.detect import box_to_rect, largest_face

    predictor = dlib_models.shape_predictor_5()
    out = []
    for name, index in FACES:
        frame = sample_frame(samples, name, index)
        shape = predictor(frame, box_to_rect(largest_face(frame)))
        out.append(dlib.get_face_chip(frame, shape, size=150, padding=0.25))
    return np.stack(out)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def _pairwise(d: np.ndarray) -> np.ndarray:
    return np.linalg.norm(d[:, None] - d[None], axis=-1)


def _compare(net, x: torch.Tensor, ref: dict, subsample) -> dict[str, float]:
    with torch.no_grad():
        taps = net.taps(x)
    errors = {}
    for name, want in ref.items():
        got = taps[name].numpy()
        errors[name] = _rel(subsample(name, got), want)
    return errors


def test_parity_with_faceapi_fixture(net, crops):
    fix = np.load(FIXTURE)
    with torch.no_grad():
        x = net.preprocess(crops)
    xs = x.numpy()
    # the crops must be the ones the fixture was made from (a changed decoder or detector shows here)
    np.testing.assert_allclose(xs.mean(axis=(2, 3)), fix["input_mean"], atol=2e-3)
    np.testing.assert_allclose(xs[:, :, ::15, ::15], fix["input_sub"], atol=2e-2)
    names = ["descriptor"] + [k for k in fix.files if f"{k}__strides" in fix.files]
    ref = {k: fix[k] for k in names}

    def sub(name, a):
        if name == "descriptor":
            return a
        c, h, w = fix[f"{name}__strides"]
        return a[:, ::c, ::h, ::w]

    errors = _compare(net, x, ref, sub)
    assert len(errors) == 7
    assert max(errors.values()) < TOL, errors


def test_close_to_dlib_on_aligned_chips(net, chips):
    """Same chip into dlib's own encoder: the gap is the uint8 quantization of face-api's weights.

    Measured: 0.035-0.041 Euclidean (2.5-2.8 % of the descriptor norm); re-quantization noise of
    the same size (uniform, +-scale/2 per tensor) moves the port's descriptors by 0.034-0.046.
    """
    from facevid2vid.face import dlib_models

    encoder = dlib_models.face_encoder()
    want = np.stack([np.asarray(encoder.compute_face_descriptor(c)) for c in chips])
    with torch.no_grad():
        got = net(torch.from_numpy(chips).permute(0, 3, 1, 2).float() / 255.0).double().numpy()
    gap = np.linalg.norm(got - want, axis=1)
    assert gap.max() < 0.08, gap
    assert (gap / np.linalg.norm(want, axis=1)).max() < 0.05, gap
    # the pairwise distances dlib would threshold agree closely (measured within 0.007)
    assert np.abs(_pairwise(got) - _pairwise(want)).max() < 0.03


def test_identity(net, chips, crops):
    """Two franck frames are one person under dlib's 0.6 threshold, franck and cap12 are not."""
    x = torch.from_numpy(chips).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        for faces in (x, crops):  # aligned chips (measured 0.22 vs 0.89) and plain crops (0.35 vs 0.73)
            d = net(faces)
            same = float(net.distance(d[FRANCK_A], d[FRANCK_B]))
            other = float(torch.minimum(net.distance(d[FRANCK_A], d[CAP12]), net.distance(d[FRANCK_B], d[CAP12])))
            assert same < net.same_person_distance < other, (same, other)
            assert same < 0.6 * other, (same, other)


def test_raw_descriptor_and_gradients(net, crops):
    """forward is dlib's raw descriptor (norm ~1.3, not 1); gradients reach the input (for losses)."""
    faces = crops[:2].clone().requires_grad_(True)
    d = net(faces)
    assert d.shape == (2, 128)
    norms = d.detach().norm(dim=1)
    assert ((norms - 1).abs() > 0.05).all(), norms
    assert torch.allclose(net.distance(d[0], d[1]), (d[0] - d[1]).norm())
    net.distance(d[0], d[1]).backward()
    assert faces.grad is not None and faces.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in net.parameters())


@pytest.mark.slow
def test_live_faceapi_reference(net, crops, tmp_path):
    """face-api's FaceRecognitionNet on TF.js (Node) against the port, on the same body input."""
    script = _script()
    if not script.reference_available():
        pytest.skip(f"face-api reference runtime not installed under {script.PREFIX} (see {script.__file__})")
    from facevid2vid.data.fetch import _download
    from facevid2vid.perception.fetch import PACKAGES, checked_reader

    archive = Path("/tmp/pkgs") / script.ARCHIVE  # the package, else fetched with npm
    if not archive.is_file():
        archive = _download(PACKAGES["face-api"], tmp_path, quiet=True)
    with torch.no_grad():
        x = net.preprocess(crops)
    out = script.run_reference(x.numpy(), checked_reader(PACKAGES["face-api"], archive))
    ref = {"descriptor": out["descriptor"], **{k: out[f"relu{i}"] for k, (i, _) in script.TAPS.items()}}
    errors = _compare(net, x, ref, lambda name, a: a)
    assert max(errors.values()) < TOL, errors
