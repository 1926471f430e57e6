"""Protocol runner on real frames with a small seeded model (checks the protocol, not quality)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from facevid2vid.checkpoint import save_checkpoint
from facevid2vid.cli import main
from facevid2vid.config import model_preset
from facevid2vid.face.crop import prepare_frames
from facevid2vid.metrics.benchmark import BASELINE, MODEL, redirect_row, run_benchmark
from facevid2vid.metrics.evaluate import EvaluateOptions
from facevid2vid.metrics.face import FaceObservation
from facevid2vid.models import FaceVid2Vid
from facevid2vid.video_io import read_video

N = 5


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = FaceVid2Vid(model_preset("tiny"))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(path, model)
    return path


def _options():
    return EvaluateOptions(batch_size=4, progress=False, vmaf_threads=1)


def test_reconstruction_rows_and_baseline_floor(samples, tiny_checkpoint):
    result = run_benchmark(str(tiny_checkpoint), samples.franck, "reconstruction", max_frames=N,
                           device="cpu", batch_size=4, options=_options())
    assert result.frames == N and result.image_size == 64 and set(result.rows) == {MODEL, BASELINE}
    # the baseline is the first cropped frame repeated: its L1 is computable by hand
    frames, _ = read_video(samples.franck, max_frames=N)
    crops, _ = prepare_frames(frames, 64)
    expected = np.mean(np.abs(crops.astype(np.float64) - crops[:1].astype(np.float64))) / 255
    base = result.rows[BASELINE]
    assert base.l1 == pytest.approx(expected, abs=1e-6)
    assert base.frames == N and base.aed_source == pytest.approx(0.0, abs=1e-9)
    model = result.rows[MODEL]
    assert model.frames == N and 0.0 < model.l1 < 1.0 and model.vmaf is not None
    assert model.frames_no_face_generated + model.frames_compared <= N
    assert result.synthesis_seconds > 0


def test_redirect_sweep_and_cli(samples, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "redirect.json"
    md = tmp_path / "redirect.md"
    rc = main(["benchmark", "--checkpoint", str(tiny_checkpoint), "--video", str(samples.franck),
               "--task", "redirect", "--max-frames", "3", "--yaws=-20,0,20", "--device", "cpu",
               "--json", str(out), "--markdown", str(md), "--no-progress"])
    assert rc == 0
    assert "no-motion baseline" in capsys.readouterr().out and "| requested yaw |" in md.read_text()
    data = json.loads(out.read_text())
    assert data["task"] == "redirect" and data["frames"] == 3
    base = data["redirect"][BASELINE]
    assert [r["requested_yaw"] for r in base] == [-20.0, 0.0, 20.0]
    assert len(data["redirect"][MODEL]) == 3
    # the repeated source never turns: achieved yaw is the same whatever was asked
    assert base[0]["frames_measured"] == 3
    assert base[0]["achieved_yaw"] == pytest.approx(base[2]["achieved_yaw"])
    assert base[2]["yaw_error"] == pytest.approx(abs(20.0 - base[2]["achieved_yaw"]))
    assert base[0]["achieved_yaw"] == pytest.approx(0.0, abs=5.0)  # franck barely moves in 3 frames


def test_redirect_row_statistics():
    refs = [FaceObservation(np.zeros((68, 2)), np.zeros(128), (5.0, 0.0, 0.0)),
            FaceObservation(np.zeros((68, 2)), np.zeros(128), (-3.0, 2.0, 0.0)),
            FaceObservation()]
    gens = [FaceObservation(np.zeros((68, 2)), np.full(128, 0.1), (22.0, 1.0, -2.0)),
            FaceObservation(np.zeros((68, 2)), None, (15.0, 2.0, 1.0)),
            FaceObservation(np.zeros((68, 2)), np.zeros(128), (0.0, 0.0, 0.0))]
    row = redirect_row(20.0, refs, gens, FaceObservation(np.zeros((68, 2)), np.zeros(128), (0, 0, 0)))
    assert row.frames == 3 and row.frames_measured == 2 and row.frames_identity == 2
    assert row.achieved_yaw == pytest.approx((17.0 + 18.0) / 2)
    assert row.yaw_error == pytest.approx((3.0 + 2.0) / 2)
    assert row.pitch_drift == pytest.approx(0.5) and row.roll_drift == pytest.approx(1.5)
    assert row.id_distance == pytest.approx((np.sqrt(128) * 0.1 + 0.0) / 2)


def test_benchmark_refuses_bad_inputs(samples, tmp_path, capsys):
    rc = main(["benchmark", "--checkpoint", str(tmp_path / "missing.safetensors"), "--video", str(samples.franck)])
    assert rc == 1 and len(capsys.readouterr().err.strip().splitlines()) == 1


def test_cross_identity_rows_and_eval_size(samples, tiny_checkpoint):
    still = samples.held_out_stills()[0]
    result = run_benchmark(str(tiny_checkpoint), samples.franck, "cross-identity", max_frames=N, device="cpu",
                           batch_size=4, options=_options(), sources=[str(still)], eval_size=96)
    assert result.image_size == 96 and result.model_size == 64
    (row,) = result.cross_identity
    assert row.source == still.name and row.frames == N
    assert row.frames_identity <= N and row.frames_pose <= N
    from facevid2vid.metrics.benchmark import format_benchmark

    text = format_benchmark(result)
    assert "yaw corr." in text and "model at 64, output upscaled bicubic" in text


def test_cross_identity_needs_a_source(samples, tiny_checkpoint):
    from facevid2vid.errors import InputError

    with pytest.raises(InputError, match="--source"):
        run_benchmark(str(tiny_checkpoint), samples.franck, "cross-identity", max_frames=N, options=_options())
    with pytest.raises(InputError, match="--source"):
        run_benchmark(str(tiny_checkpoint), samples.franck, "reconstruction", max_frames=N, options=_options(),
                      sources=["x.jpg"])
