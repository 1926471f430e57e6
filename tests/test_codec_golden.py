"""A golden .fv2v stream the decoder must keep decoding bit-exactly.

``tests/data/golden/`` holds a stream of a few generated frames made by a seeded tiny model
(stored beside it, so the test does not depend on how torch initialises weights), and what
the decoder gave for it: the motion indices of every frame, the key frame images and the
rendered frames. If the format changes on purpose, bump ``bitstream.VERSION`` and regenerate:

    FV2V_REGENERATE_GOLDEN=1 python -m pytest tests/test_codec_golden.py
"""
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from facevid2vid.checkpoint import load_checkpoint, save_checkpoint
from facevid2vid.codec import bitstream as bs
from facevid2vid.codec.decoder import StreamDecoder, iter_decoded
from facevid2vid.codec.encoder import Encoder, EncoderSettings
from facevid2vid.config import model_preset
from facevid2vid.inference import Animator
from facevid2vid.models import FaceVid2Vid

GOLDEN = Path(__file__).parent / "data" / "golden"
REGENERATE = os.environ.get("FV2V_REGENERATE_GOLDEN") == "1"
N_FRAMES = 8


def generated_frames(n: int = N_FRAMES, size: int = 96) -> np.ndarray:
    """A bright disc ("head") with two dark dots drifting over a gradient: uint8 (n, size, size, 3)."""
    y, x = np.mgrid[0:size, 0:size] / size
    frames = []
    for t in range(n):
        cx, cy = 0.5 + 0.04 * np.sin(t / 2), 0.5 + 0.02 * t / n
        img = np.stack([0.3 + 0.4 * x, 0.2 + 0.3 * y, 0.5 * np.ones_like(x)], axis=-1)
        img[(x - cx) ** 2 + (y - cy) ** 2 < 0.09] = (0.85, 0.7, 0.6)
        for dx in (-0.1, 0.1):
            img[(x - cx - dx) ** 2 + (y - cy + 0.05) ** 2 < 0.002] = (0.1, 0.1, 0.1)
        frames.append((img * 255).round().astype(np.uint8))
    return np.stack(frames)


def regenerate() -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = FaceVid2Vid(model_preset("tiny")).eval()
    save_checkpoint(GOLDEN / "tiny.safetensors", model, half=True)
    model = load_checkpoint(GOLDEN / "tiny.safetensors")  # what the test decodes with
    encoder = Encoder(Animator(model), 25, EncoderSettings(keyframe_codec="webp", max_keyframe_interval=0.2,
                                                           frames_per_packet=2), frame_size=96)
    packets = [encoder.header_bytes()] + encoder.encode(generated_frames(), np.ones(N_FRAMES, bool)) \
        + encoder.finish()
    (GOLDEN / "stream.fv2v").write_bytes(b"".join(packets))
    decoded = list(iter_decoded(GOLDEN / "stream.fv2v"))
    frames = StreamDecoder(Animator(model), encoder.header).render(decoded)
    np.savez_compressed(GOLDEN / "expected.npz", version=bs.VERSION, indices=np.stack([f.indices for f in decoded]),
                        is_key=np.array([f.is_key for f in decoded]),
                        key_images=np.stack([f.key_image for f in decoded if f.is_key]), frames=frames)


@pytest.fixture(scope="module")
def golden():
    if REGENERATE:
        regenerate()
    if not (GOLDEN / "stream.fv2v").exists():
        pytest.fail("tests/data/golden is missing: run FV2V_REGENERATE_GOLDEN=1 pytest tests/test_codec_golden.py")
    return np.load(GOLDEN / "expected.npz")


def test_golden_stream_is_of_the_current_version(golden):
    data = (GOLDEN / "stream.fv2v").read_bytes()
    assert data[4] == bs.VERSION == int(golden["version"]), (
        "the golden stream is of another format version: if the format changed on purpose, bump "
        "bitstream.VERSION and regenerate with FV2V_REGENERATE_GOLDEN=1")
    header = bs.parse_header(data)
    assert header.output_size == (96, 96) and header.width == 64


def test_golden_stream_decodes_bit_exactly(golden):
    decoded = list(iter_decoded(GOLDEN / "stream.fv2v"))
    assert len(decoded) == N_FRAMES
    assert np.array_equal(np.stack([f.indices for f in decoded]), golden["indices"])
    assert np.array_equal(np.array([f.is_key for f in decoded]), golden["is_key"])
    keys = np.stack([f.key_image for f in decoded if f.is_key])
    assert np.array_equal(keys, golden["key_images"])  # the key frame codec's decoder is exact too


def test_golden_stream_renders_the_same_frames(golden):
    model = load_checkpoint(GOLDEN / "tiny.safetensors")
    decoder = StreamDecoder(Animator(model, batch_size=3), (GOLDEN / "stream.fv2v").read_bytes()[:bs.HEADER_SIZE])
    frames = decoder.render(list(iter_decoded(GOLDEN / "stream.fv2v")))
    assert frames.shape == (N_FRAMES, 96, 96, 3)
    diff = np.abs(frames.astype(int) - golden["frames"])
    assert diff.max() <= 2 and diff.mean() < 0.05  # float synthesis: within rounding across machines
