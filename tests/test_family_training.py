"""The 2D families through the trainer and the commands: resume equals an uninterrupted run, and
every command a family supports runs on a checkpoint it trained (tiny presets, synthetic data)."""
import json

import pytest
import torch

from facevid2vid.checkpoint import load_checkpoint
from facevid2vid.cli import main
from test_dataset import make_synthetic_dataset

pytestmark = pytest.mark.usefixtures("one_thread")
FAMILY_PRESETS = ["fomm-tiny", "monkeynet-tiny", "x2face-tiny"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("family") / "data", clips=3, frames=8, size=64)


def _train(preset, data_dir, out, steps, *extra):
    return main(["train", "--preset", preset, "--data", str(data_dir), "--output", str(out), "--batch-size", "2",
                 "--workers", "0", "--device", "cpu", "--no-progress", "--max-steps", str(steps), *extra])


@pytest.mark.parametrize("preset", FAMILY_PRESETS)
def test_stopped_and_resumed_equals_uninterrupted(preset, data_dir, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _train(preset, data_dir, straight, 3) == 0
    assert _train(preset, data_dir, split, 1) == 0
    assert _train(preset, data_dir, split, 3, "--resume") == 0
    a = load_checkpoint(straight / "checkpoints" / "step_00000003.safetensors")
    b = load_checkpoint(split / "checkpoints" / "step_00000003.safetensors")
    assert a.family == b.family == preset.split("-")[0]
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(x.float(), y.float(), atol=1e-6, rtol=1e-5), name
    mid = load_checkpoint(split / "checkpoints" / "step_00000001.safetensors")
    assert any(not torch.equal(x, y) for x, y in zip(mid.state_dict().values(), b.state_dict().values()))
    log = (split / "train.log").read_text()
    assert "resumed from" in log and "losses:" in log and "GAN" not in log


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    """A one-step checkpoint of each family."""
    out = {}
    for preset in FAMILY_PRESETS:
        run = tmp_path_factory.mktemp(preset)
        assert _train(preset, data_dir, run, 1) == 0
        out[preset] = run / "checkpoints" / "step_00000001.safetensors"
    return out


@pytest.mark.parametrize("preset", FAMILY_PRESETS)
def test_commands_run_on_a_trained_family(preset, trained, data_dir, tmp_path, capsys):
    from facevid2vid.video_io import read_video

    ckpt = str(trained[preset])
    clip = next((data_dir / "clips").iterdir())
    frames = sorted(clip.glob("*.png")) or sorted(clip.glob("*.jpg"))
    video = tmp_path / "drive.mp4"
    _write_clip(frames, video)
    common = ["--checkpoint", ckpt, "--no-crop"]
    mode = ["--mode", "absolute"] if preset.startswith("x2face") else []
    assert main(["animate", *common, "--source", str(frames[0]), "--driving", str(video),
                 "--output", str(tmp_path / "a.mp4"), *mode]) == 0
    assert len(read_video(tmp_path / "a.mp4")[0]) == len(frames)
    assert main(["reconstruct", *common, "--video", str(video), "--output", str(tmp_path / "r.mp4")]) == 0
    # free view is face-vid2vid's alone: a clear one-line error, exit 1, nothing written
    assert main(["animate", *common, "--source", str(frames[0]), "--driving", str(video),
                 "--output", str(tmp_path / "y.mp4"), "--yaw", "10", *mode]) == 1
    assert "free view needs face-vid2vid's 3D keypoints" in capsys.readouterr().err
    assert not (tmp_path / "y.mp4").exists()
    assert main(["inspect", "--checkpoint", ckpt]) == 0
    assert "total" in capsys.readouterr().out


def test_x2face_refuses_relative_mode_and_the_codec(trained, data_dir, tmp_path, capsys):
    ckpt = str(trained["x2face-tiny"])
    clip = next((data_dir / "clips").iterdir())
    frames = sorted(clip.glob("*.png")) or sorted(clip.glob("*.jpg"))
    video = tmp_path / "drive.mp4"
    _write_clip(frames, video)
    assert main(["animate", "--checkpoint", ckpt, "--no-crop", "--source", str(frames[0]), "--driving", str(video),
                 "--output", str(tmp_path / "a.mp4"), "--mode", "relative"]) == 1
    assert "X2Face has no relative mode" in capsys.readouterr().err
    assert main(["encode", "--checkpoint", ckpt, "--no-crop", "--input", str(video),
                 "--output", str(tmp_path / "c.fv2v")]) == 1
    assert "X2Face" in capsys.readouterr().err and not (tmp_path / "c.fv2v").exists()


def _write_clip(frames, path):
    import numpy as np
    from PIL import Image

    from facevid2vid.video_io import write_video

    write_video(path, np.stack([np.asarray(Image.open(f).convert("RGB")) for f in frames]), fps=25)
