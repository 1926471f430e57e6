"""Metrics on real frames (DATA.md samples): agreement with independent formulas,
sanity of identical vs degraded copies, identity and pose behaviour, CLI errors."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from scipy.signal import fftconvolve

from facevid2vid.cli import main
from facevid2vid.errors import CheckpointError, InputError
from facevid2vid.metrics import image as im
from facevid2vid.metrics.evaluate import EvaluateOptions, Evaluator, evaluate_videos
from facevid2vid.metrics.face import FaceAnalyzer
from facevid2vid.metrics.learned import (UNAVAILABLE_NO_WEIGHTS, LPIPS, fid_from_features, frechet_distance,
                                         load_lpips)
from facevid2vid.video_io import read_video, to_tensor, write_video

N_FRAMES = 6


@pytest.fixture(scope="module")
def franck(samples) -> np.ndarray:
    frames, _ = read_video(samples.franck, max_frames=N_FRAMES)
    return frames  # (6, 288, 360, 3)


@pytest.fixture(scope="module")
def evaluator() -> Evaluator:
    return Evaluator(EvaluateOptions(batch_size=4, progress=False, vmaf_threads=1))


def _shifted(frames: np.ndarray, px: int = 6) -> np.ndarray:
    return np.ascontiguousarray(np.roll(frames, px, axis=2))


def _blurred(frames: np.ndarray) -> np.ndarray:
    return np.stack([cv2.GaussianBlur(f, (0, 0), 2.5) for f in frames])


# ----------------------------------------------------------------------------- pixel metrics


def _ssim_reference(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM written out independently: 11x11 Gaussian (sigma 1.5), valid region, mean over RGB."""
    x = np.arange(11) - 5
    g = np.exp(-x ** 2 / (2 * 1.5 ** 2))
    g /= g.sum()
    win = np.outer(g, g)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    values = []
    for ch in range(3):
        x1, x2 = a[..., ch].astype(np.float64) / 255, b[..., ch].astype(np.float64) / 255
        f = lambda z: fftconvolve(z, win, mode="valid")  # noqa: E731
        m1, m2 = f(x1), f(x2)
        s11, s22, s12 = f(x1 * x1) - m1 ** 2, f(x2 * x2) - m2 ** 2, f(x1 * x2) - m1 * m2
        ssim_map = (2 * m1 * m2 + c1) * (2 * s12 + c2) / ((m1 ** 2 + m2 ** 2 + c1) * (s11 + s22 + c2))
        values.append(ssim_map.mean())
    return float(np.mean(values))


def test_psnr_ssim_agree_with_independent_implementations(franck):
    ref, gen = franck[:3], _blurred(franck[:3])
    ours_psnr = im.psnr(to_tensor(ref), to_tensor(gen)).numpy()
    ours_ssim = im.ssim(to_tensor(ref), to_tensor(gen)).numpy()
    for i in range(3):
        assert ours_psnr[i] == pytest.approx(cv2.PSNR(ref[i], gen[i], 255.0), abs=1e-3)
        assert ours_ssim[i] == pytest.approx(_ssim_reference(ref[i], gen[i]), abs=1e-3)
    assert 0.3 < ours_ssim.mean() < 0.99  # a real, non-trivial comparison


def test_l1_is_mean_absolute_error(franck):
    ref, gen = franck[:2], _shifted(franck[:2])
    expected = np.abs(ref.astype(np.float64) - gen.astype(np.float64)).reshape(2, -1).mean(1) / 255
    assert im.l1_error(to_tensor(ref), to_tensor(gen)).numpy() == pytest.approx(expected, abs=1e-6)


def test_ms_ssim_window_shrinks_for_small_frames(franck):
    assert im.ms_ssim_settings(256, 256).window == 11
    assert im.ms_ssim_settings(161, 300).window == 11
    assert im.ms_ssim_settings(160, 160).window == 9
    assert im.ms_ssim_settings(128, 128).window == 7
    assert im.ms_ssim_settings(48, 48).window == 3
    assert im.ms_ssim_settings(32, 64) is None
    small_u8 = np.stack([cv2.resize(f, (128, 128), interpolation=cv2.INTER_AREA) for f in franck[:2]])
    small = to_tensor(small_u8)
    assert im.ms_ssim(small, small).numpy() == pytest.approx([1.0, 1.0], abs=1e-5)
    assert (im.ms_ssim(small, to_tensor(_blurred(small_u8))) < 0.95).all()
    with pytest.raises(InputError):
        im.ms_ssim(small[..., :32, :32], small[..., :32, :32])


# ----------------------------------------------------------------------------- whole evaluation


def test_identical_videos_score_perfectly(franck, evaluator):
    r = evaluator.evaluate(iter(franck), iter(franck.copy()), source=franck[0])
    assert r.frames == N_FRAMES
    assert r.l1 == 0.0 and r.psnr == pytest.approx(im.PSNR_MAX_DB)
    assert r.ssim == pytest.approx(1.0, abs=1e-6) and r.ms_ssim == pytest.approx(1.0, abs=1e-5)
    assert r.frames_compared == N_FRAMES and r.frames_no_face_reference == 0
    assert r.akd == 0.0 and r.aed == 0.0 and r.pose_error == 0.0
    assert r.vmaf > 95.0
    assert r.lpips is None and r.unavailable["lpips"] == UNAVAILABLE_NO_WEIGHTS
    assert r.fid is None and r.unavailable["fid"] == UNAVAILABLE_NO_WEIGHTS
    assert r.aed_source is not None and r.aed_source < 0.4  # same person as the source


@pytest.mark.parametrize("degrade", [_shifted, _blurred], ids=["shifted", "blurred"])
def test_degraded_copy_scores_worse(franck, evaluator, degrade):
    r = evaluator.evaluate(iter(franck), iter(degrade(franck)))
    assert r.l1 > 0.005
    assert r.psnr < 40 and r.ssim < 0.97 and r.ms_ssim < 0.99
    assert r.vmaf < 90
    assert r.frames_compared >= N_FRAMES - 1
    assert r.akd > 0.3 and r.pose_error > 0.0 and r.aed > 0.0
    if degrade is _shifted:
        assert 4.0 < r.akd < 8.0  # landmarks follow the 6 px shift


def test_faces_missing_are_counted_not_dropped(franck, evaluator):
    blank = np.zeros_like(franck[:4])
    blank[2:] = franck[2:4]
    r = evaluator.evaluate(iter(franck[:4]), iter(blank))
    assert r.frames == 4 and r.frames_no_face_generated == 2 and r.frames_compared == 2
    assert r.akd == 0.0


def test_aed_same_person_smaller_than_other_person(samples):
    franck_frames, _ = read_video(samples.franck, start=0, max_frames=1)
    franck_later, _ = read_video(samples.franck, start=2000, max_frames=1)
    cap12, _ = read_video(samples.cap12, max_frames=1)
    analyzer = FaceAnalyzer(poses=False)
    a, b, c = (analyzer(f[0]).embedding for f in (franck_frames, franck_later, cap12))
    assert a is not None and b is not None and c is not None
    same, other = np.linalg.norm(a - b), np.linalg.norm(a - c)
    assert same < 0.5 < other  # dlib's usual same-person threshold is 0.6
    assert same < 0.6 * other


def test_pose_mirror_flips_yaw_and_steady_head_agrees(franck):
    analyzer = FaceAnalyzer(embeddings=False)
    yaw, pitch, roll = analyzer(franck[0]).pose
    yaw_m, pitch_m, roll_m = analyzer(np.ascontiguousarray(franck[0][:, ::-1])).pose
    assert abs(yaw) > 2.0 and np.sign(yaw) == -np.sign(yaw_m)
    assert abs(yaw + yaw_m) < 3.0 and abs(pitch - pitch_m) < 3.0 and abs(roll + roll_m) < 3.0
    yaws = [analyzer(f).pose[0] for f in franck]  # 6 consecutive frames of a still-ish head
    assert max(yaws) - min(yaws) < 3.0


# ----------------------------------------------------------------------------- learned metrics


def test_lpips_needs_both_files_and_real_state_dicts(tmp_path):
    with pytest.raises(InputError):
        Evaluator(EvaluateOptions(lpips_backbone=str(tmp_path / "alex.pth"), faces=False, vmaf=False))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a state dict")
    with pytest.raises(CheckpointError):
        load_lpips(bad, bad)
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 5, 5)}, wrong)
    with pytest.raises(CheckpointError, match="AlexNet or VGG16"):
        load_lpips(wrong, wrong)


def test_lpips_reads_the_documented_file_layouts(tmp_path, franck):
    """The loader maps torchvision + lpips key names (synthetic values: checks parsing, not the metric)."""
    net = LPIPS("alex")
    gen = torch.Generator().manual_seed(0)
    backbone = {f"features.{k}": torch.randn(v.shape, generator=gen) * 0.05
                for k, v in net.features.state_dict().items()}
    backbone["classifier.1.weight"] = torch.zeros(4, 4)  # torchvision files carry a classifier: ignored
    heads = {f"lin{i}.model.1.weight": torch.rand(p.shape, generator=gen) for i, p in enumerate(net.heads)}
    torch.save(backbone, tmp_path / "alexnet.pth")
    torch.save(heads, tmp_path / "alex.pth")
    model = load_lpips(tmp_path / "alexnet.pth", tmp_path / "alex.pth")
    assert model.backbone == "alex"
    assert torch.equal(model.features[3].weight, backbone["features.3.weight"])
    assert torch.equal(model.heads[4], heads["lin4.model.1.weight"])
    x = to_tensor(franck[:2])
    assert model(x, x).abs().max() < 1e-6
    assert (model(x, to_tensor(_blurred(franck[:2]))) > 0).all()
    vgg_heads = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 128, 256, 512, 512))}
    torch.save(vgg_heads, tmp_path / "vgg.pth")
    with pytest.raises(CheckpointError, match="another backbone"):
        load_lpips(tmp_path / "alexnet.pth", tmp_path / "vgg.pth")


def test_frechet_distance_matches_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    a, b = rng.uniform(0.5, 2, size=5), rng.uniform(0.5, 2, size=5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(a + b - 2 * np.sqrt(a * b))
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-6)
    feats = rng.normal(size=(50, 8))
    assert fid_from_features(feats, feats) == pytest.approx(0.0, abs=1e-6)
    assert fid_from_features(feats, feats + 1.0) == pytest.approx(8.0, rel=1e-3)


# ----------------------------------------------------------------------------- files and CLI


@pytest.fixture(scope="module")
def clips(franck, tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    paths = {"ref": folder / "ref.mp4", "short": folder / "short.mp4", "small": folder / "small.mp4"}
    write_video(paths["ref"], franck[:4], 25)
    write_video(paths["short"], franck[:3], 25)
    write_video(paths["small"], [cv2.resize(f, (180, 144)) for f in franck[:4]], 25)
    return paths


def test_evaluate_cli_writes_table_and_json(clips, tmp_path, capsys):
    out = tmp_path / "m.json"
    rc = main(["evaluate", "--reference", str(clips["ref"]), "--generated", str(clips["ref"]),
               "--json", str(out), "--no-progress", "--no-faces"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "PSNR" in text and "unavailable (no weights)" in text
    data = json.loads(out.read_text())["result"]
    assert data["frames"] == 4 and data["l1"] == 0.0 and data["lpips"] is None and data["vmaf"] > 95


@pytest.mark.parametrize("other,message", [("short", "frame counts differ"), ("small", "frame sizes differ")])
def test_mismatched_videos_give_one_clear_error(clips, capsys, other, message):
    rc = main(["evaluate", "--reference", str(clips["ref"]), "--generated", str(clips[other]), "--no-progress"])
    assert rc == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    with pytest.raises(InputError, match=message):
        evaluate_videos(clips["ref"], clips[other], options=EvaluateOptions(progress=False))


def test_streams_of_different_length_are_rejected(franck, evaluator):
    with pytest.raises(InputError, match="aligned"):
        evaluator.evaluate(iter(franck[:3]), iter(franck[:2]))


def test_inception_loader_picks_variant_and_refuses_partial_files(tmp_path):
    """Key-layout parsing of user FID weights (synthetic values: checks parsing, not the metric)."""
    from safetensors.torch import save_file

    from facevid2vid.metrics.inception import InceptionV3Features
    from facevid2vid.metrics.learned import load_inception

    state = {k: v for k, v in InceptionV3Features().state_dict().items() if not k.endswith("num_batches_tracked")}
    for rows, variant in ((1008, "fid"), (1000, "torchvision")):
        path = tmp_path / f"inception{rows}.safetensors"
        save_file({**state, "fc.weight": torch.zeros(rows, 2048), "fc.bias": torch.zeros(rows)}, str(path))
        model = load_inception(path)
        assert model.variant == variant
        assert torch.equal(model.Mixed_7c.branch_pool.bn.running_var, state["Mixed_7c.branch_pool.bn.running_var"])
    partial = {k: v for k, v in state.items() if not k.startswith("Mixed_7c")}
    save_file(partial, str(tmp_path / "partial.safetensors"))
    with pytest.raises(CheckpointError, match="missing"):
        load_inception(tmp_path / "partial.safetensors")
