"""Outputs are atomic and inputs are never overwritten (issue 16, items 1, 2 and 7's output messages).

Every file is written to a temporary name next to it and renamed into place once complete;
an interruption (exception, Ctrl-C, SIGTERM) removes only that temporary file. Outputs are
checked against the inputs, and their format and folder, before any work.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from facevid2vid import outputs
from facevid2vid.checkpoint import save_checkpoint
from facevid2vid.cli import main
from facevid2vid.config import model_preset
from facevid2vid.errors import InputError, OutputError
from facevid2vid.models import FaceVid2Vid
from facevid2vid.outputs import (Terminated, atomic_path, check_distinct, check_output, check_outputs, write_text)
from facevid2vid.video_io import read_image, read_video, write_video


def _frames(n: int, size: int = 64) -> list[np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size]
    return [np.stack([(xx + i) % 256, yy * 4 % 256, np.full_like(xx, i * 7 % 256)], -1).astype(np.uint8)
            for i in range(n)]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny random model, a short clip and its stream, and a long clip (1200 frames, for the kill tests)."""
    root = tmp_path_factory.mktemp("inputs")
    torch.manual_seed(0)
    save_checkpoint(root / "tiny.safetensors", FaceVid2Vid(model_preset("tiny")))
    write_video(root / "short.mp4", _frames(6), 25)
    write_video(root / "long.mp4", _frames(1200), 25)
    from facevid2vid.pipeline import encode_file

    encode_file(root / "short.mp4", root / "short.fv2v", checkpoint=str(root / "tiny.safetensors"), crop=False)
    return root


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name)


def _refused(capsys, argv, *needles) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "Traceback" not in err[0], err
    for needle in needles:
        assert needle in err[0], err[0]
    return err[0]


# ----------------------------------------------------------------------------- the helper


def test_interrupted_writes_keep_the_previous_file(tmp_path):
    out = write_text(tmp_path / "r.json", "old")
    for exc in (RuntimeError("disk on fire"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            with atomic_path(out) as tmp:
                assert tmp.parent == tmp_path and tmp.name.startswith(".r.json.") and tmp.suffix == ".json"
                tmp.write_text("half")
                raise exc
        assert out.read_text() == "old" and _leftovers(tmp_path) == []

    def frames():
        yield from _frames(3)
        raise KeyboardInterrupt

    video = write_video(tmp_path / "v.mp4", _frames(4), 25)
    before = video.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        write_video(video, frames(), 25)
    assert video.read_bytes() == before and _leftovers(tmp_path) == []
    write_text(out, "new")
    assert out.read_text() == "new" and oct(out.stat().st_mode & 0o777) == oct(0o666 & ~outputs._UMASK)


def test_sigterm_during_a_write_becomes_an_exception_and_cleans_up(tmp_path):
    video = write_video(tmp_path / "v.mp4", _frames(4), 25)
    before, handler = video.read_bytes(), signal.getsignal(signal.SIGTERM)

    def frames():
        yield from _frames(3)
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)  # the guard's, not a kill
        signal.raise_signal(signal.SIGTERM)
        yield from _frames(3)

    with pytest.raises(Terminated):
        write_video(video, frames(), 25)
    assert video.read_bytes() == before and _leftovers(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) == handler  # restored


def test_never_removes_a_file_it_did_not_create(tmp_path, monkeypatch):
    """A temporary name already taken is skipped (exclusive create), and left alone on failure."""
    names = iter(["aaaaaaaa", "bbbbbbbb"])
    monkeypatch.setattr(outputs.secrets, "token_hex", lambda n: next(names))
    theirs = tmp_path / f".o.txt.{os.getpid()}.aaaaaaaa.part.txt"
    theirs.write_text("someone else's")
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "o.txt") as tmp:
            assert tmp.name.endswith("bbbbbbbb.part.txt")
            raise RuntimeError
    assert theirs.read_text() == "someone else's" and not (tmp_path / "o.txt").exists()
    assert _leftovers(tmp_path) == [theirs.name]


def test_frame_patterns_are_lossless_and_appear_at_once(tmp_path):
    frames = _frames(5, 33)
    pattern = write_video(tmp_path / "new" / "%05d.png", frames, 25)
    assert sorted(p.name for p in pattern.parent.iterdir()) == [f"{i:05d}.png" for i in range(1, 6)]
    np.testing.assert_array_equal(read_image(tmp_path / "new" / "00003.png"), frames[2])

    def broken():
        yield from frames[:3]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # a folder that did not exist is not created
        write_video(tmp_path / "never" / "%03d.png", broken(), 25)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new"]
    before = (tmp_path / "new" / "00001.png").read_bytes()
    with pytest.raises(KeyboardInterrupt):  # an existing folder keeps its frames
        write_video(pattern, (255 - f for f in broken()), 25)
    assert (tmp_path / "new" / "00001.png").read_bytes() == before and len(list(pattern.parent.iterdir())) == 5


# ----------------------------------------------------------------------------- format and folder


@pytest.mark.parametrize("name, kind, needles", [
    ("out.png", "video", ["is an image name", ".mp4, .mkv, .webm, .avi, .mov", "%05d.png"]),
    ("out.foo", "video", ["extension '.foo'", ".mp4"]),
    ("out", "video", ["no extension"]),
    ("frames/%05d.jpg", "video", ["one %d-style field", ".png"]),
    ("frames/%d_%d.png", "video", ["one %d-style field"]),
    ("out.mp4", "image", ["is a video name", ".png, .jpg"]),
    ("out.mp4", "fv2v", ["extension '.mp4'", "take .fv2v"]),
    ("report.txt", "json", ["take .json"]),
    ("afile/out.mp4", "video", ["cannot create the folder", "is not a folder"]),
    ("dir", "video", ["is a folder: give a file name like", "out.mp4"]),
    ("afile", "folder", ["is a file: give a folder"]),
])
def test_bad_outputs_are_refused_with_the_fix(tmp_path, name, kind, needles):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "dir").mkdir()
    with pytest.raises(OutputError) as info:
        check_output(tmp_path / name, kind)
    for needle in needles:
        assert needle in str(info.value), str(info.value)
    assert isinstance(info.value, InputError)


def test_good_outputs_pass(tmp_path):
    for name, kind in (("a/b/c.mkv", "video"), ("x/%04d.png", "video"), ("r.webm", "video"), ("s.fv2v", "fv2v"),
                       ("m.md", "markdown"), ("p.jpeg", "image"), ("new/data", "folder")):
        assert check_output(tmp_path / name, kind) == tmp_path / name
    assert not (tmp_path / "a").exists()  # checking creates nothing


def test_same_file_through_links_and_patterns(tmp_path):
    video = write_video(tmp_path / "in.mp4", _frames(2), 25)
    (tmp_path / "link.mp4").symlink_to(video)
    os.link(video, tmp_path / "hard.mp4")
    (tmp_path / "00001.png").write_bytes(b"")
    for out, needle in (("link.mp4", "same file"), ("hard.mp4", "same file"), ("./in.mp4", "same file")):
        with pytest.raises(OutputError, match=needle):
            check_distinct({"--output": tmp_path / out}, {"--video": video})
    with pytest.raises(OutputError, match="would overwrite"):
        check_distinct({"--output": tmp_path / "%05d.png"}, {"--source": tmp_path / "00001.png"})
    with pytest.raises(OutputError, match="give each output its own name"):
        check_outputs({"--output": (tmp_path / "a.mp4", "video"), "--reference-output": (tmp_path / "a.mp4", "video")},
                      {"--video": video})
    check_distinct({"--output": tmp_path / "x" / "%05d.png"}, {"--source": tmp_path / "00001.png", "--c": None})


# ----------------------------------------------------------------------------- commands


def test_commands_refuse_to_overwrite_an_input(files, tmp_path, capsys):
    video = tmp_path / "X.mp4"
    video.write_bytes((files / "short.mp4").read_bytes())
    before = video.read_bytes()
    (tmp_path / "link.mp4").symlink_to(video)
    (tmp_path / "link.json").symlink_to(video)
    (tmp_path / "link.md").symlink_to(video)
    stream = tmp_path / "S.mp4"  # a .fv2v stream under a video's name: decode S.mp4 -> S.mp4
    stream.write_bytes((files / "short.fv2v").read_bytes())
    ckpt = str(files / "tiny.safetensors")
    cases = [
        (["decode", "--input", str(stream), "--output", str(stream)], "--input"),
        (["reconstruct", "--video", str(video), "--output", str(tmp_path / "link.mp4")], "--video"),
        (["reconstruct", "--video", str(video), "--output", str(tmp_path / "r.mp4"),
          "--reference-output", str(video)], "--video"),
        (["redirect", "--source", str(video), "--output", str(video)], "--source"),
        (["animate", "--source", str(video), "--driving", str(files / "short.mp4"), "--output", str(video)],
         "--source"),
        (["encode", "--input", str(video), "--output", str(tmp_path / "l.fv2v")], "--input"),
        (["evaluate", "--reference", str(video), "--generated", str(files / "short.mp4"),
          "--json", str(tmp_path / "link.json")], "--reference"),
        (["benchmark", "--video", str(video), "--markdown", str(tmp_path / "link.md")], "--video"),
        (["prepare", "--input", str(tmp_path), "--output", str(tmp_path)], "--input"),
    ]
    (tmp_path / "l.fv2v").symlink_to(video)
    for argv, option in cases:
        extra = ["--checkpoint", ckpt] if argv[0] not in ("evaluate", "prepare") else []
        line = _refused(capsys, argv + extra)
        assert ("same file" in line or "same folder" in line) and option in line, line
        assert video.read_bytes() == before
    assert stream.read_bytes() == (files / "short.fv2v").read_bytes() and _leftovers(tmp_path) == []


def test_outputs_are_checked_before_any_work(files, tmp_path, capsys):
    """A bad output is reported, not the missing checkpoint that loading would hit first."""
    missing = str(tmp_path / "missing.safetensors")
    (tmp_path / "d").mkdir()
    clip = str(files / "short.mp4")
    _refused(capsys, ["reconstruct", "--video", clip, "--output", str(tmp_path / "o.png"), "--checkpoint", missing],
             "is an image name", "--output", ".mp4")
    _refused(capsys, ["animate", "--source", clip, "--driving", clip, "--output", str(tmp_path / "d"),
                      "--checkpoint", missing], "is a folder: give a file name like")
    _refused(capsys, ["encode", "--input", clip, "--output", str(tmp_path / "o.mp4"), "--checkpoint", missing],
             ".fv2v")
    _refused(capsys, ["reconstruct", "--video", clip, "--output", str(tmp_path / "o.mp4"), "--reference-output",
                      str(tmp_path / "r.avi.txt"), "--checkpoint", missing], "--reference-output", "'.txt'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_pattern_outputs_from_the_commands(files, tmp_path, capsys):
    ckpt = str(files / "tiny.safetensors")
    assert main(["reconstruct", "--video", str(files / "short.mp4"), "--output", str(tmp_path / "rec" / "%04d.png"),
                 "--reference-output", str(tmp_path / "ref" / "%04d.png"), "--no-crop", "--checkpoint", ckpt]) == 0
    for name in ("rec", "ref"):
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == [f"{i:04d}.png" for i in range(1, 7)]
    ref, _ = read_video(files / "short.mp4")
    assert read_image(tmp_path / "ref" / "0001.png").shape == (64, 64, 3)
    assert np.abs(read_image(tmp_path / "ref" / "0002.png").astype(int) - ref[1].astype(int)).mean() < 4
    capsys.readouterr()


# ----------------------------------------------------------------------------- real signals


def _kill_while_writing(jobs: list[tuple[list[str], Path, int]]) -> list[subprocess.CompletedProcess]:
    """Run commands in subprocesses; send each its signal once its temporary output appears."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "facevid2vid", *argv], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for argv, _, _ in jobs]
    pending, deadline = set(range(len(jobs))), time.monotonic() + 60
    while pending and time.monotonic() < deadline:
        for i in list(pending):
            out, signum = jobs[i][1], jobs[i][2]
            if procs[i].poll() is not None:
                pending.discard(i)  # finished before it was killed: caught below
            elif list(out.parent.glob(f".{out.name}.*.part*")):
                time.sleep(0.1)  # let it write part of the file
                procs[i].send_signal(signum)
                pending.discard(i)
        time.sleep(0.02)
    results = []
    for p, (argv, _, _) in zip(procs, jobs):
        stdout, stderr = p.communicate(timeout=60)
        results.append(subprocess.CompletedProcess(argv, p.returncode, stdout, stderr))
    return results


@pytest.mark.parametrize("command", ["reconstruct", "encode"])
def test_ctrl_c_and_sigterm_leave_no_output_or_the_previous_one(files, tmp_path, command):
    ext = ".mp4" if command == "reconstruct" else ".fv2v"
    option = "--video" if command == "reconstruct" else "--input"
    jobs, previous = [], {}
    for signum, existing in ((signal.SIGINT, False), (signal.SIGTERM, True)):
        folder = tmp_path / signum.name
        folder.mkdir()
        out = folder / f"out{ext}"
        if existing:
            previous[out] = out.write_bytes(b"the previous output")
        argv = [command, option, str(files / "long.mp4"), "--output", str(out), "--no-crop",
                "--checkpoint", str(files / "tiny.safetensors")]
        jobs.append((argv, out, signum))
    for result, (_, out, signum) in zip(_kill_while_writing(jobs), jobs):
        assert result.returncode != 0, f"{command} finished before {signum.name} came: lengthen the clip"
        assert result.returncode > 0 and "Traceback" not in result.stderr, result.stderr  # cleaned up, not killed
        if out in previous:
            assert out.read_bytes() == b"the previous output"
        else:
            assert not out.exists()
        assert _leftovers(out.parent) == []
