"""`prepare` on the real carphone clip, a frame folder, a face-less video and corrupt files."""
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from facevid2vid.cli import main
from facevid2vid.data.dataset import PairDataset, load_index
from facevid2vid.data.prepare import (PrepareOptions, cut_clips, find_sources, parse_frame_range, prepare,
                                      process_source)
from facevid2vid.errors import InputError
from facevid2vid.video_io import read_video, write_video


@pytest.fixture(scope="module")
def raw_dir(samples, tmp_path_factory):
    """RAW/personA/carphone.mp4, RAW/id7/take1/*.png (frames), RAW/noface.mp4, RAW/broken.mp4, RAW/junk.avi."""
    raw = tmp_path_factory.mktemp("raw")
    (raw / "personA").mkdir()
    shutil.copy(samples.carphone, raw / "personA" / "carphone.mp4")
    frames, _ = read_video(samples.carphone, start=30, max_frames=40)
    take = raw / "id7" / "take1"
    take.mkdir(parents=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(take / f"{i:04d}.png")
    ys, xs = np.mgrid[0:96, 0:128]
    write_video(raw / "noface.mp4", [np.stack([xs * 2 % 256, ys * 2 % 256, np.full_like(xs, 8 * t)], -1)
                                     .astype(np.uint8) for t in range(40)], fps=25)
    data = samples.carphone.read_bytes()
    (raw / "broken.mp4").write_bytes(data[: len(data) // 50])  # truncated: header only
    (raw / "junk.avi").write_text("not a video at all\n")
    return raw


@pytest.fixture(scope="module")
def prepared(raw_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "data"
    rc = main(["prepare", "--input", str(raw_dir), "--output", str(out), "--size", "96", "--no-progress"])
    assert rc == 0
    return out


def test_real_video_gives_clips_and_index(prepared):
    index = load_index(prepared)
    assert index.size == 96
    carphone = [c for c in index.clips if "carphone" in c.source]
    assert carphone, "carphone produced no clip"
    for c in carphone:
        assert c.identity == "personA" and c.id.startswith("personA__carphone_")
        assert 32 <= c.num_frames <= 256 and 0 <= c.start < c.end <= 120 and c.fps == pytest.approx(15, abs=16)
        files = sorted((prepared / "clips" / c.id).glob("*.jpg"))
        assert len(files) == c.num_frames
        with Image.open(files[0]) as im:
            assert im.size == (96, 96)
        # the teacher pose is stored for (nearly) every frame, in degrees
        poses = [p for p in c.poses if p is not None]
        assert len(c.poses) == c.num_frames and len(poses) >= 0.8 * c.num_frames
        assert all(len(p) == 3 and max(abs(v) for v in p) < 90 for p in poses)
    # clips never overlap
    spans = sorted((c.start, c.end) for c in carphone)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    # the training loader reads them
    item = PairDataset(prepared, image_size=64)[0]
    assert item.source.shape == (3, 64, 64)


def test_frame_folders_and_identity_from_the_layout(prepared):
    frames = [c for c in load_index(prepared).clips if c.source.endswith("take1")]
    assert len(frames) == 1 and frames[0].identity == "id7" and frames[0].num_frames >= 32
    assert frames[0].fps == 25.0


def test_bad_inputs_are_reported_and_skipped(prepared):
    report = json.loads((prepared / "report.json").read_text())
    reasons = {r["source"].split("/")[-1]: r["reason"] for r in report["skipped"]}
    assert set(reasons) == {"broken.mp4", "junk.avi", "noface.mp4"}
    assert "cannot read video" in reasons["junk.avi"]
    assert "broken.mp4" in reasons["broken.mp4"]
    assert reasons["noface.mp4"] == "no usable face"
    assert report["totals"]["sources"] == 5 and report["totals"]["skipped"] == 3
    assert report["totals"]["clips"] == len(load_index(prepared).clips)


def test_rerun_skips_what_is_done(prepared, raw_dir):
    index_before = (prepared / "index.json").read_text()
    clip_dir = next((prepared / "clips").iterdir())
    stamp = clip_dir.stat().st_mtime_ns
    report = prepare(raw_dir, prepared, PrepareOptions(size=96), progress=False)
    assert {r.status for r in report.results if r.clips} == {"reused"}
    assert (prepared / "index.json").read_text() == index_before
    assert clip_dir.stat().st_mtime_ns == stamp


def test_frame_range_and_too_short(raw_dir, tmp_path):
    src = find_sources(raw_dir / "personA" / "carphone.mp4")[0]
    res = process_source(src, tmp_path, PrepareOptions(size=64, start=30, end=90, poses=False))
    assert res.status == "done" and res.clips
    assert all(30 <= c.start and c.end <= 90 for c in res.clips)
    # an interrupted input is picked up clip by clip: finished clips are not written again
    again = process_source(src, tmp_path, PrepareOptions(size=64, start=30, end=90, poses=False))
    assert again.status == "reused" and [c.id for c in again.clips] == [c.id for c in res.clips]
    short = process_source(src, tmp_path, PrepareOptions(size=64, start=30, end=60, poses=False))
    assert short.status == "skipped" and short.reason.startswith("too short")


def test_mixing_sizes_in_one_folder_is_refused(prepared, raw_dir):
    with pytest.raises(InputError, match="96px"):
        prepare(raw_dir, prepared, PrepareOptions(size=128), progress=False)


def test_cut_clips_on_constructed_tracks():
    opts = PrepareOptions(min_frames=4, max_frames=6, max_shift=0.2, max_zoom=0.2)
    face = (10.0, 10.0, 60.0, 60.0)
    moved = (40.0, 10.0, 90.0, 60.0)  # jumped by 0.6 face sizes
    boxes = [face] * 5 + [None] + [face] * 3 + [moved] * 13
    # a gap cuts; 3 frames are too short; the jump starts a new run that is split into pieces <= 6
    assert cut_clips(boxes, opts) == [(0, 5), (9, 13), (13, 18), (18, 22)]


def test_parse_frame_range():
    assert parse_frame_range("0:3600") == (0, 3600)
    assert parse_frame_range("100:") == (100, None)
    assert parse_frame_range(None) == (0, None)
    for bad in ("10", "5:5", "a:b"):
        with pytest.raises(InputError):
            parse_frame_range(bad)


@pytest.mark.slow  # spawning the worker processes costs ~10 s
def test_worker_processes_give_the_same_result(raw_dir, prepared, tmp_path):
    sub = tmp_path / "raw"
    shutil.copytree(raw_dir / "id7", sub / "id7")
    shutil.copy(raw_dir / "noface.mp4", sub / "noface.mp4")
    report = prepare(sub, tmp_path / "out", PrepareOptions(size=96), workers=2, progress=False)
    status = {r.source.split("/")[-1]: r for r in report.results}
    assert status["noface.mp4"].status == "skipped" and status["take1"].status == "done"
    clip = status["take1"].clips[0]
    ref = next(c for c in load_index(prepared).clips if c.id == clip.id)
    assert (clip.start, clip.end, clip.box, clip.poses) == (ref.start, ref.end, ref.box, ref.poses)
