"""Temporal smoothing (One Euro filter), its switches, and the benchmark's jitter figure.

Synthetic tensors for the filter; the tiny preset with random weights for the wiring.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from facevid2vid.checkpoint import save_checkpoint
from facevid2vid.cli import main
from facevid2vid.codec.encoder import Encoder, EncoderSettings
from facevid2vid.codec.quantize import QuantizerSteps
from facevid2vid.config import model_preset
from facevid2vid.errors import InputError
from facevid2vid.inference import Animator
from facevid2vid.metrics.jitter import find_still_window, keypoint_jitter, parse_window, pixel_jitter
from facevid2vid.models import FaceVid2Vid
from facevid2vid.smoothing import (MotionSmoother, OneEuroFilter, SmoothingSettings, motion_smoother,
                                   smooth_motion, smoothing_factor)
from facevid2vid.structures import HeadMotion
from facevid2vid.video_io import read_video, write_video

FPS = 25.0
pytestmark = pytest.mark.usefixtures("one_thread")


def noisy(shape, std=0.01, seed=0, level=0.3):
    g = torch.Generator().manual_seed(seed)
    return level + std * torch.randn(*shape, generator=g, dtype=torch.float64)


# ----------------------------------------------------------------------------- the filter


def test_filter_is_causal_and_streams_across_calls():
    x = noisy((60, 4, 3), std=0.05)
    y = OneEuroFilter(FPS, 0.5, 15.0, 0.5)(x)
    changed = x.clone()
    changed[30:] += 5.0 * torch.randn(30, 4, 3, dtype=torch.float64)
    y2 = OneEuroFilter(FPS, 0.5, 15.0, 0.5)(changed)
    assert torch.equal(y[:30], y2[:30])  # the output at t sees nothing after t
    assert not torch.allclose(y[30:], y2[30:])
    live = OneEuroFilter(FPS, 0.5, 15.0, 0.5)  # frame by frame and in uneven chunks: the same numbers
    chunks = [live(x[:7]), torch.stack([live.step(x[t]) for t in range(7, 8)]), live(x[8:])]
    assert torch.equal(torch.cat(chunks), y)


def test_filter_reduces_the_variance_of_a_noisy_constant():
    x = noisy((250, 30), std=0.005)
    s = SmoothingSettings(enabled=True)
    y = OneEuroFilter(FPS, s.min_cutoff, s.beta, s.d_cutoff)(x)
    settled = y[50:]
    assert float(settled.var(dim=0).mean()) < 0.2 * float(x[50:].var(dim=0).mean())
    assert float((settled.mean() - 0.3).abs()) < 0.002  # no bias


def test_filter_with_beta_zero_is_an_exponential_moving_average():
    x = noisy((40, 3), std=0.1)
    y = OneEuroFilter(FPS, min_cutoff=2.0, beta=0.0)(x)
    a = smoothing_factor(2.0, 1 / FPS)
    ref = [x[0]]
    for t in range(1, 40):
        ref.append(ref[-1] + a * (x[t] - ref[-1]))
    assert torch.allclose(y, torch.stack(ref), atol=1e-12)


@pytest.mark.parametrize("speed", [0.05, 0.5, 2.0])
def test_filter_follows_a_ramp_with_bounded_lag(speed):
    t = torch.arange(150, dtype=torch.float64) / FPS
    ramp = (speed * t)[:, None]
    s = SmoothingSettings(enabled=True)
    y = OneEuroFilter(FPS, s.min_cutoff, s.beta, s.d_cutoff)(ramp)[:, 0]
    lag_frames = (ramp[-20:, 0] - y[-20:]) / (speed / FPS)  # steady state: lag in frames
    # a first-order low-pass whose cutoff never drops below min_cutoff lags at most (1 - a) / a frames
    a = smoothing_factor(s.min_cutoff, 1 / FPS)
    assert torch.all(lag_frames > 0) and torch.all(lag_frames <= (1 - a) / a)
    assert float(lag_frames.std()) < 0.05  # settled
    plain = OneEuroFilter(FPS, s.min_cutoff, 0.0, s.d_cutoff)(ramp)[:, 0]
    assert float(ramp[-1, 0] - y[-1]) < float(ramp[-1, 0] - plain[-1])  # beta cuts the lag
    if speed >= 0.5:  # fast motion: the cutoff has risen, lag under one frame
        assert float(lag_frames.max()) < 1.0


def test_filter_is_identity_like_for_high_cutoff_or_large_beta():
    x = noisy((50, 5, 3), std=0.05)
    assert torch.allclose(OneEuroFilter(FPS, min_cutoff=1e6)(x), x, atol=1e-5)
    y = OneEuroFilter(FPS, min_cutoff=0.5, beta=1e6, d_cutoff=1e3)(x)
    assert torch.allclose(y[2:], x[2:], atol=1e-3)


def test_bad_settings_are_refused():
    for bad in (SmoothingSettings(True, min_cutoff=0), SmoothingSettings(True, beta=-1),
                SmoothingSettings(True, d_cutoff=float("nan"))):
        with pytest.raises(InputError):
            bad.validate()
    with pytest.raises(InputError, match="frame rate"):
        OneEuroFilter(0.0)
    assert motion_smoother(SmoothingSettings(), FPS) is None  # off by default


# ----------------------------------------------------------------------------- head motion


def random_motion(n, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return HeadMotion(10 * r(n), 5 * r(n), 3 * r(n), 0.05 * r(n, 3), 0.05 * r(n, k, 3),
                      r(n, 66), r(n, 66), r(n, 66))


def test_smooth_motion_filters_every_field_in_radians():
    motion = random_motion(20)
    settings = SmoothingSettings(True, min_cutoff=0.7, beta=3.0, d_cutoff=1.0)
    out = smooth_motion(motion, FPS, settings)
    filt = OneEuroFilter(FPS, 0.7, 3.0, 1.0)
    assert torch.allclose(out.yaw, filt(torch.deg2rad(motion.yaw[:, None]))[:, 0].rad2deg(), atol=1e-4)
    filt = OneEuroFilter(FPS, 0.7, 3.0, 1.0)
    assert torch.allclose(out.delta, filt(motion.delta), atol=1e-6)
    assert out.yaw_logits is None and out.delta.shape == motion.delta.shape
    for name in ("yaw", "pitch", "roll", "translation", "delta"):
        assert getattr(out, name)[1:].diff(dim=0).abs().mean() < getattr(motion, name)[1:].diff(dim=0).abs().mean()
    per_frame = smooth_motion([motion.index(slice(i, i + 1)) for i in range(20)], FPS, settings)
    assert torch.allclose(per_frame.delta, out.delta)
    smoother = MotionSmoother(FPS, settings)  # batches in order: state carries over
    parts = HeadMotion.cat([smoother(motion.index(slice(i, i + 6))) for i in range(0, 20, 6)])
    assert torch.allclose(parts.roll, out.roll)
    assert smooth_motion(motion, FPS, SmoothingSettings(enabled=False)) is motion


def test_keypoint_and_code_motion_are_smoothed_as_their_vectors():
    from facevid2vid.structures import CodeMotion, KeypointMotion

    g = torch.Generator().manual_seed(2)
    n, k = 40, 10
    still = KeypointMotion(0.5 * torch.rand(1, k, 2, generator=g) - 0.25, torch.eye(2).expand(1, k, 2, 2))
    noise = KeypointMotion(0.01 * torch.randn(n, k, 2, generator=g), 0.03 * torch.randn(n, k, 2, 2, generator=g))
    motion = KeypointMotion(still.kp + noise.kp, still.jacobian + noise.jacobian)  # a still face, jittery estimates
    settings = SmoothingSettings(True)
    out = smooth_motion(motion, FPS, settings)
    assert isinstance(out, KeypointMotion) and out.kp.shape == (n, k, 2) and out.jacobian.shape == (n, k, 2, 2)
    s = settings
    assert torch.allclose(out.vector(), OneEuroFilter(FPS, s.min_cutoff, s.beta, s.d_cutoff)(motion.vector()))
    for name in ("kp", "jacobian"):  # frame-to-frame change falls
        assert getattr(out, name).diff(dim=0).abs().mean() < 0.5 * getattr(motion, name).diff(dim=0).abs().mean()
    smoother = MotionSmoother(FPS, settings)  # streamed in batches: the same numbers
    parts = KeypointMotion.cat([smoother(motion.index(slice(i, i + 7))) for i in range(0, n, 7)])
    assert torch.allclose(parts.jacobian, out.jacobian) and torch.allclose(parts.kp, out.kp)
    per_frame = smooth_motion([motion.index(slice(i, i + 1)) for i in range(n)], FPS, settings)
    assert torch.allclose(per_frame.kp, out.kp)
    no_jacobian = smooth_motion(KeypointMotion(motion.kp), FPS, settings)  # Monkey-Net: keypoints only
    assert no_jacobian.jacobian is None and torch.allclose(no_jacobian.kp, out.kp)
    assert MotionSmoother(FPS)(motion.index(slice(0, 0))).kp.shape == (0, k, 2)
    code = CodeMotion(0.3 + 0.02 * torch.randn(n, 16, generator=g))  # X2Face
    smoothed = smooth_motion(code, FPS, settings)
    assert isinstance(smoothed, CodeMotion) and smoothed.code.diff(dim=0).abs().mean() < code.code.diff(dim=0).abs().mean()


@pytest.fixture(scope="module")
def tiny_model():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return FaceVid2Vid(model_preset("tiny")).eval()


def test_animator_applies_the_smoother_before_relative_motion(tiny_model):
    animator = Animator(tiny_model, batch_size=3)
    g = torch.Generator().manual_seed(1)
    source = animator.encode_source(torch.rand(1, 3, 64, 64, generator=g))
    driving = torch.rand(7, 3, 64, 64, generator=g)
    plain = animator.animate(source, driving, mode="relative")
    calls = []
    smoother = MotionSmoother(FPS)
    smooth = animator.animate(source, driving, mode="relative", smoother=lambda m: calls.append(len(m.yaw)) or smoother(m))
    assert calls == [3, 3, 1]  # each batch of driving motion, in order
    assert torch.allclose(smooth[:1], plain[:1], atol=1e-5)  # the first frame passes unchanged
    raw = animator.estimate_motion(driving)
    whole = smooth_motion(raw, FPS)
    assert (whole.delta[1:] - raw.delta[1:]).abs().mean() > 1e-4
    expected = animator.render(source, Animator.relative_motion(whole, whole.index(slice(0, 1)), source.motion))
    assert torch.allclose(smooth, expected, atol=1e-5)


# ----------------------------------------------------------------------------- command line and codec


@pytest.fixture(scope="module")
def tiny_ckpt(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(path, tiny_model)
    return str(path)


@pytest.fixture(scope="module")
def short_clip(samples, tmp_path_factory):
    frames, fps = read_video(samples.carphone, max_frames=8)
    path = tmp_path_factory.mktemp("clip") / "carphone8.mp4"
    write_video(path, frames, fps)
    return path


def test_animate_smoothing_switch_is_off_by_default(short_clip, samples, tmp_path, monkeypatch):
    from facevid2vid.checkpoint import default_checkpoint

    if default_checkpoint() is None:
        pytest.skip("no bundled model (random weights barely react to motion)")
    calls = []
    original = MotionSmoother.__call__
    monkeypatch.setattr(MotionSmoother, "__call__", lambda self, m: calls.append(len(m.yaw)) or original(self, m))
    outputs = {}
    for name, extra in (("default", []), ("smooth", ["--smooth"]), ("beta", ["--smooth-beta", "0"])):
        out = tmp_path / f"{name}.mp4"
        calls.clear()
        assert main(["animate", "--source", str(samples.astronaut), "--driving", str(short_clip), "--output",
                     str(out), "--no-crop", "--device", "cpu", *extra]) == 0
        outputs[name] = (read_video(out)[0].astype(np.float64), sum(calls))
    assert outputs["default"][1] == 0 and outputs["smooth"][1] == 8 and outputs["beta"][1] == 8
    assert np.abs(outputs["smooth"][0] - outputs["default"][0]).mean() > 0.5  # uint8 levels
    assert np.abs(outputs["beta"][0] - outputs["smooth"][0]).mean() > 0.5


def test_reconstruct_and_encode_take_the_switch(tiny_ckpt, short_clip, tmp_path, capsys):
    assert main(["reconstruct", "--video", str(short_clip), "--output", str(tmp_path / "r.mp4"),
                 "--checkpoint", tiny_ckpt, "--no-crop", "--smooth", "--smooth-min-cutoff", "2"]) == 0
    assert main(["encode", "--input", str(short_clip), "--output", str(tmp_path / "s.fv2v"), "--checkpoint",
                 tiny_ckpt, "--no-crop", "--smooth", "--keyframe-codec", "webp"]) == 0
    capsys.readouterr()
    assert main(["reconstruct", "--video", str(short_clip), "--output", str(tmp_path / "bad.mp4"),
                 "--checkpoint", tiny_ckpt, "--smooth-min-cutoff", "-1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "min_cutoff" in err[0]


def test_encoder_smooths_what_it_quantises_causally(tiny_model):
    frames = (np.random.default_rng(0).random((10, 64, 64, 3)) * 255).astype(np.uint8)

    def indices(chunks, smoothing):
        fine = QuantizerSteps(1e-3, 1e-3, 1e-3, 1e-4, 1e-4, 1e-4, 1e-4)  # random weights barely move
        settings = EncoderSettings(keep_reconstruction=True, keyframe_codec="webp", keyframe_threshold=100.0,
                                   hysteresis=0.0, steps=fine, smoothing=smoothing)
        encoder = Encoder(Animator(tiny_model, batch_size=4), FPS, settings)
        for a, b in chunks:
            encoder.encode(frames[a:b])
        encoder.finish()
        return np.stack(encoder.indices)

    on = SmoothingSettings(enabled=True)
    whole, split = indices([(0, 10)], on), indices([(0, 3), (3, 10)], on)
    assert np.array_equal(whole, split)  # the filter's state crosses encode() calls
    assert not np.array_equal(whole, indices([(0, 10)], SmoothingSettings()))
    assert not EncoderSettings().smoothing.enabled  # off by default


# ----------------------------------------------------------------------------- jitter figure


def test_still_window_and_jitter_definitions():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (30, 8, 8, 3), dtype=np.uint8)
    frames[10:20] = frames[10]  # a still stretch
    assert find_still_window(frames, 10) == (10, 20)
    assert find_still_window(frames, 50) == (0, 30)
    assert pixel_jitter(frames[10:20]) == 0.0
    two = np.stack([np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 3), 51, np.uint8)])
    assert pixel_jitter(two) == pytest.approx(0.2)
    kp = torch.zeros(3, 2, 3)
    kp[1, :, 0], kp[2, :, 0] = 0.3, 0.3
    kp[2, 1, 1] = 0.4
    assert keypoint_jitter(kp) == pytest.approx((0.3 + 0.3 + 0.0 + 0.4) / 4)
    assert parse_window("5:12") == (5, 12)
    for bad in ("5", "a:b", "5:6", "-1:4"):
        with pytest.raises(InputError):
            parse_window(bad)


def test_benchmark_reports_jitter_rows(samples, tiny_ckpt, tmp_path, capsys):
    out, md = tmp_path / "bench.json", tmp_path / "bench.md"
    common = ["benchmark", "--checkpoint", tiny_ckpt, "--video", str(samples.franck), "--max-frames", "6",
              "--start", "10", "--no-faces", "--no-vmaf", "--no-progress"]
    assert main([*common, "--still-length", "4", "--json", str(out), "--markdown", str(md)]) == 0
    printed = capsys.readouterr().out
    assert "jitter on still frames" in printed and "driving video" in printed and "model, smoothed" in printed
    assert "| driving video |" in md.read_text()
    j = json.loads(out.read_text())["jitter"]
    assert j["found"] == "auto" and j["stop"] - j["start"] == 4 and 10 <= j["start"] <= 12
    assert j["smoothing"]["enabled"] and j["smoothing"]["beta"] == SmoothingSettings().beta
    for key in ("driving_pixels", "model_keypoints", "model_pixels", "smoothed_keypoints", "smoothed_pixels"):
        assert math.isfinite(j[key]) and j[key] >= 0
    assert j["smoothed_keypoints"] < j["model_keypoints"]
    assert main([*common, "--still", "11:15", "--smooth-beta", "0", "--json", str(out)]) == 0
    j = json.loads(out.read_text())["jitter"]
    assert (j["start"], j["stop"], j["found"], j["smoothing"]["beta"]) == (11, 15, "given", 0.0)
    capsys.readouterr()
    assert main([*common, "--still", "0:4"]) == 1  # outside the benchmarked frames
    assert "--still" in capsys.readouterr().err
