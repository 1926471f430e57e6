"""Video and image I/O: seeking reads the right frames, writing keeps count and rate, clear errors."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from facevid2vid.errors import InputError
from facevid2vid.video_io import (
    is_image_path, iter_video, load_source, read_image, read_video, to_tensor, to_uint8, video_info,
    write_image, write_video,
)


def _moving_frames(n: int, h: int, w: int) -> list[np.ndarray]:
    """A bright square moving over a gradient: easy to tell frames apart after lossy coding."""
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for i in range(n):
        f = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), np.full_like(xx, 60)], -1)
        x0 = (i * 3) % (w - 8)
        f[4:12, x0:x0 + 8] = 255
        out.append(f.astype(np.uint8))
    return out


def test_sample_info(samples):
    info = video_info(samples.franck)
    assert (info.width, info.height, info.num_frames, info.fps) == (360, 288, 4800, 24.0)
    car = video_info(samples.carphone)
    assert car.num_frames == 120 and abs(car.fps - 30000 / 1001) < 1e-9


@pytest.mark.parametrize("start", [1, 249, 250, 251, 400])
def test_seek_matches_sequential_decoding(samples, start):
    ref = list(iter_video(samples.cap12, max_frames=start + 3))[start:]
    got, fps = read_video(samples.cap12, start=start, max_frames=3)
    assert fps == 25.0 and got.shape == (3, 300, 400, 3)
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)


def test_read_to_the_end_and_past_it(samples):
    tail, _ = read_video(samples.franck, start=4790)
    assert tail.shape == (10, 288, 360, 3)
    with pytest.raises(InputError, match="no frames from frame 4800"):
        read_video(samples.franck, start=4800)


@pytest.mark.parametrize("fps", [24, 25.0, 30000 / 1001, 12.5])
def test_write_read_roundtrip(tmp_path, fps):
    frames = _moving_frames(17, 64, 96)
    path = write_video(tmp_path / "v.mp4", iter(frames), fps)
    info = video_info(path)
    assert (info.width, info.height, info.num_frames) == (96, 64, 17)
    assert abs(info.fps - fps) < 1e-6
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and s.codec_context.pix_fmt == "yuv420p"
    back, got_fps = read_video(path)
    assert back.shape == (17, 64, 96, 3) and abs(got_fps - fps) < 1e-6
    err = np.abs(back.astype(int) - np.stack(frames).astype(int)).mean(axis=(1, 2, 3))
    assert err.max() < 4  # crf 18: close to the input, and each frame matched to its own input
    assert np.abs(back[5].astype(int) - frames[6].astype(int)).mean() > err[5]


def test_odd_size_is_padded_and_fraction_rate(tmp_path):
    frames = _moving_frames(5, 33, 45)
    path = write_video(tmp_path / "odd.mp4", frames, Fraction(30000, 1001))
    back, fps = read_video(path)
    assert back.shape == (5, 34, 46, 3) and abs(fps - 30000 / 1001) < 1e-9
    assert np.abs(back[:, :33, :45].astype(int) - np.stack(frames).astype(int)).mean() < 4


def test_write_errors(tmp_path):
    with pytest.raises(InputError, match="no frames"):
        write_video(tmp_path / "e.mp4", [], 25)
    with pytest.raises(InputError, match="uint8"):
        write_video(tmp_path / "e.mp4", [np.zeros((8, 8, 3), np.float32)], 25)
    with pytest.raises(InputError, match="change size"):
        write_video(tmp_path / "e.mp4", [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 10, 3), np.uint8)], 25)
    assert not (tmp_path / "e.mp4").exists()  # no half-written file left
    with pytest.raises(InputError, match="unknown or unusable codec 'nosuch'"):
        write_video(tmp_path / "e.mp4", [np.zeros((8, 8, 3), np.uint8)], 25, codec="nosuch")
    with pytest.raises(InputError, match="frame rate"):
        write_video(tmp_path / "e.mp4", [np.zeros((8, 8, 3), np.uint8)], 0)


def test_read_errors(tmp_path, samples):
    with pytest.raises(InputError, match="video not found"):
        read_video(tmp_path / "missing.mp4")
    with pytest.raises(InputError, match="is an image"):
        read_video(samples.astronaut)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video at all" * 50)
    with pytest.raises(InputError, match="cannot read video .*junk.mp4"):
        read_video(junk)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty.mp4"):
        video_info(empty)
    # a real video cut short: header kept, most of the data gone
    data = samples.carphone.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 20])
    with pytest.raises(InputError, match="cut.mp4"):
        read_video(cut)
    with pytest.raises(InputError, match="image not found"):
        read_image(tmp_path / "no.png")
    with pytest.raises(InputError, match="cannot read image"):
        read_image(junk.rename(tmp_path / "junk.png"))


def test_images_and_sources(tmp_path, samples):
    img = read_image(samples.astronaut)
    assert img.shape == (512, 512, 3) and img.dtype == np.uint8
    write_image(tmp_path / "a.png", img)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), img)
    assert is_image_path("x.JPG") and not is_image_path("x.mp4")
    np.testing.assert_array_equal(load_source(samples.astronaut), img)
    first, _ = read_video(samples.carphone, max_frames=1)
    np.testing.assert_array_equal(load_source(samples.carphone), first[0])


def test_tensor_conversion():
    frames = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    t = to_tensor(frames)
    assert t.shape == (2, 3, 5, 7) and t.dtype == torch.float32
    assert float(t[1, 2, 3, 4]) == pytest.approx(frames[1, 3, 4, 2] / 255)
    np.testing.assert_array_equal(to_uint8(t), frames)
    assert to_tensor(frames[0]).shape == (1, 3, 5, 7)
    assert to_uint8(torch.full((3, 2, 2), 2.0)).max() == 255


def test_one_list_of_readable_and_one_of_writable_extensions():
    from facevid2vid import outputs, validation, video_io

    assert video_io.IMAGE_EXTENSIONS is validation.READABLE_IMAGE_EXTENSIONS
    assert video_io.VIDEO_EXTENSIONS is validation.READABLE_VIDEO_EXTENSIONS
    assert outputs.IMAGE_EXTENSIONS is validation.WRITABLE_IMAGE_EXTENSIONS
    assert outputs.VIDEO_EXTENSIONS is validation.WRITABLE_VIDEO_EXTENSIONS
    # what is written is read back
    assert set(outputs.IMAGE_EXTENSIONS) <= video_io.IMAGE_EXTENSIONS
    assert set(outputs.VIDEO_EXTENSIONS) <= video_io.VIDEO_EXTENSIONS
    assert not video_io.IMAGE_EXTENSIONS & video_io.VIDEO_EXTENSIONS
    assert video_io.is_image_path("a.TIFF") and not video_io.is_image_path("a.m4v")
