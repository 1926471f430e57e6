"""The file layer streams: peak memory of reconstruct does not grow with the clip's length."""
import tracemalloc

import numpy as np
import pytest
import torch

from facevid2vid.checkpoint import save_checkpoint
from facevid2vid.config import model_preset
from facevid2vid.models import FaceVid2Vid
from facevid2vid.pipeline import FaceVideo, reconstruct_files
from facevid2vid.video_io import read_video, write_video


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = FaceVid2Vid(model_preset("tiny")).eval()
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", model)


def _clip(path, n, width, height, fps=25):
    """A moving gradient clip (no face: used with crop=False)."""
    y, x = np.mgrid[0:height, 0:width]

    def frames():
        for t in range(n):
            yield np.stack([(x + 3 * t) % 256, (y + t) % 256, np.full_like(x, 128)], axis=-1).astype(np.uint8)

    write_video(path, frames(), fps, options={"preset": "ultrafast"})
    return path


def _peak_numpy_bytes(fn) -> int:
    """Peak of memory traced by tracemalloc (numpy arrays register there; torch tensors do not)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_reconstruct_memory_does_not_grow_with_clip_length(tiny_ckpt, tmp_path):
    short = _clip(tmp_path / "short.mp4", 24, 320, 240)
    long = _clip(tmp_path / "long.mp4", 144, 320, 240)
    clip_bytes = 144 * 320 * 240 * 3  # the long clip decoded at once: 33 MB

    def run(src):
        return lambda: reconstruct_files(src, tmp_path / f"out-{src.stem}.mp4", checkpoint=str(tiny_ckpt),
                                         crop=False, device="cpu")

    peak_short, peak_long = _peak_numpy_bytes(run(short)), _peak_numpy_bytes(run(long))
    assert read_video(tmp_path / "out-long.mp4")[0].shape[0] == 144
    assert peak_long < clip_bytes / 4, f"peak {peak_long / 1e6:.1f} MB for a {clip_bytes / 1e6:.0f} MB clip"
    print(f"peak {peak_short / 1e6:.1f} MB (24 frames), {peak_long / 1e6:.1f} MB (144 frames)")
    assert peak_long < 1.5 * peak_short + 2e6  # 6x the frames, about the same peak


def test_face_video_streams_batches_of_the_clip(tmp_path):
    clip = _clip(tmp_path / "c.mp4", 10, 96, 80)
    video = FaceVideo(clip, 32, crop=False, start=2, max_frames=5)
    batches = list(video.batches(2))
    assert [len(b) for b in batches] == [2, 2, 1] and batches[0].shape[1:] == (32, 32, 3)
    assert video.num_frames == 5 and video.crop_size == 80 and video.face_present is None
    assert np.array_equal(np.concatenate(batches), np.stack(list(video.frames())))
