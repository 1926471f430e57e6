"""The synthesis commands end to end on a real clip, and one clear line for each kind of bad input."""
import numpy as np
import pytest
import torch

from facevid2vid.checkpoint import save_checkpoint
from facevid2vid.cli import main
from facevid2vid.config import model_preset
from facevid2vid.models import FaceVid2Vid
from facevid2vid.video_io import read_video, video_info, write_image, write_video


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(path, FaceVid2Vid(model_preset("tiny")))
    return str(path)


@pytest.fixture(scope="module")
def short_clip(samples, tmp_path_factory):
    """The first 20 frames of carphone (a real face video), re-encoded."""
    frames, fps = read_video(samples.carphone, max_frames=20)
    path = tmp_path_factory.mktemp("clip") / "carphone20.mp4"
    write_video(path, frames, fps)
    return path, fps


def test_reconstruct_animate_redirect_end_to_end(tiny_ckpt, short_clip, samples, tmp_path, capsys):
    clip, fps = short_clip
    rec, ref = tmp_path / "rec.mp4", tmp_path / "ref.mp4"
    assert main(["reconstruct", "--video", str(clip), "--output", str(rec), "--reference-output", str(ref),
                 "--checkpoint", tiny_ckpt]) == 0
    for path in (rec, ref):
        info = video_info(path)
        assert info.num_frames == 20 and abs(info.fps - fps) < 1e-3 and info.width == 64
    anim = tmp_path / "anim.mp4"
    assert main(["animate", "--source", str(samples.astronaut), "--driving", str(clip), "--output", str(anim),
                 "--checkpoint", tiny_ckpt, "--mode", "absolute", "--yaw", "10"]) == 0
    assert video_info(anim).num_frames == 20
    png = tmp_path / "turned.png"
    assert main(["redirect", "--source", str(samples.astronaut), "--output", str(png), "--yaw", "-20",
                 "--checkpoint", tiny_ckpt]) == 0
    assert png.exists()
    vid = tmp_path / "front.mp4"
    assert main(["redirect", "--source", str(clip), "--output", str(vid), "--frontalize",
                 "--checkpoint", tiny_ckpt]) == 0
    assert video_info(vid).num_frames == 20
    assert "wrote" in capsys.readouterr().out


def _one_line_error(capsys, argv, *needles):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and "Traceback" not in err[0], err
    for needle in needles:
        assert needle in err[0], err[0]
    return err[0]


@pytest.fixture
def bad_files(tmp_path):
    noise = np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    files = {
        "noface_png": tmp_path / "noise.png",
        "noface_mp4": tmp_path / "noise.mp4",
        "empty_mp4": tmp_path / "empty.mp4",
        "garbage_mp4": tmp_path / "garbage.mp4",
    }
    write_image(files["noface_png"], noise)
    write_video(files["noface_mp4"], [np.full((96, 96, 3), 40, np.uint8)] * 5, 25)
    files["empty_mp4"].write_bytes(b"")
    files["garbage_mp4"].write_bytes(b"this is not a video" * 50)
    return files


def test_no_face_in_source(capsys, bad_files, short_clip, tiny_ckpt, tmp_path):
    _one_line_error(capsys, ["animate", "--source", str(bad_files["noface_png"]), "--driving", str(short_clip[0]),
                             "--output", str(tmp_path / "o.mp4"), "--checkpoint", tiny_ckpt], "no face", "source")


def test_no_face_in_driving(capsys, bad_files, samples, tiny_ckpt, tmp_path):
    _one_line_error(capsys, ["animate", "--source", str(samples.astronaut), "--driving", str(bad_files["noface_mp4"]),
                             "--output", str(tmp_path / "o.mp4"), "--checkpoint", tiny_ckpt], "no face", "driving")


@pytest.mark.parametrize("kind", ["empty_mp4", "garbage_mp4"])
def test_unreadable_or_empty_video(capsys, bad_files, tiny_ckpt, tmp_path, kind):
    _one_line_error(capsys, ["reconstruct", "--video", str(bad_files[kind]), "--output", str(tmp_path / "o.mp4"),
                             "--checkpoint", tiny_ckpt], bad_files[kind].name)


def test_image_where_video_needed(capsys, samples, tiny_ckpt, tmp_path):
    _one_line_error(capsys, ["reconstruct", "--video", str(samples.astronaut), "--output", str(tmp_path / "o.mp4"),
                             "--checkpoint", tiny_ckpt], "image")


def test_missing_input_file(capsys, tiny_ckpt, tmp_path):
    _one_line_error(capsys, ["redirect", "--source", str(tmp_path / "nope.png"), "--output", str(tmp_path / "o.png"),
                             "--checkpoint", tiny_ckpt], "nope.png")


def test_missing_checkpoint(capsys, samples, tmp_path):
    _one_line_error(capsys, ["redirect", "--source", str(samples.astronaut), "--output", str(tmp_path / "o.png"),
                             "--checkpoint", str(tmp_path / "missing.safetensors")], "missing.safetensors")


def test_inspect_tiny(capsys):
    assert main(["inspect", "--preset", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "output 3x64x64" in out and "GMAC" in out and "keypoints K = 5" in out


@pytest.mark.slow  # counting paper-256's MACs takes ~7 s; test_inspect_tiny covers the command
def test_inspect_paper_256(capsys):
    assert main(["inspect", "--preset", "paper-256"]) == 0
    out = capsys.readouterr().out
    assert "32x16x64x64" in out and "output 3x256x256" in out


def test_decode_size_option_is_checked(tmp_path, capsys):
    """Bad --size values are refused before anything is read (a real decode at --size: test_codec.py)."""
    stream, out = str(tmp_path / "a.fv2v"), str(tmp_path / "o.mp4")
    for bad in ("0", "2048", "x"):
        _one_line_error(capsys, ["decode", "--input", stream, "--output", out, "--size", bad], "--size")
    capsys.readouterr()
    assert "the size of the encoded input" in _help(capsys, ["decode", "--help"])


def _help(capsys, argv) -> str:
    assert main(argv) == 0
    return " ".join(capsys.readouterr().out.split())
