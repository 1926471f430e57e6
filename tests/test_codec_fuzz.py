"""Property-based fuzzing of the .fv2v decoder (hypothesis).

Damaged input must raise BitstreamError (the CLI turns it into one line and exit code 1),
never another exception, never hang. The live decoder must never raise at all.
A longer run: FV2V_FUZZ_EXAMPLES=20000 python -m pytest tests/test_codec_fuzz.py -q
"""
import io
import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facevid2vid.codec import bitstream as bs
from facevid2vid.codec.decoder import MotionStreamDecoder, validate_file
from facevid2vid.codec.encoder import Encoder, EncoderSettings
from facevid2vid.config import model_preset
from facevid2vid.errors import BitstreamError
from facevid2vid.inference import Animator
from facevid2vid.models import FaceVid2Vid

EXAMPLES = int(os.environ.get("FV2V_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=5000, derandomize="FV2V_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def make_stream(frames_per_packet: int) -> tuple[bytes, list[bytes]]:
    """A valid stream of 12 generated frames with 3 key frames: (header bytes, packets)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = FaceVid2Vid(model_preset("tiny")).eval()
    yy, xx = np.mgrid[0:64, 0:64]
    frames = np.stack([np.stack([128 + 90 * np.sin((xx + 3 * t) / 8), 128 + 90 * np.cos((yy - 2 * t) / 6),
                                 128 + 60 * np.sin((xx + yy + t) / 9)], -1) for t in range(12)]).astype(np.uint8)
    encoder = Encoder(Animator(model), 25, EncoderSettings(max_keyframe_interval=0.2, keyframe_codec="webp",
                                                           quality=30, frames_per_packet=frames_per_packet))
    packets = encoder.encode(frames) + encoder.finish()
    return encoder.header_bytes(), packets


STREAMS = {}


def stream(kind: int) -> tuple[bytes, list[bytes]]:
    if kind not in STREAMS:
        STREAMS[kind] = make_stream(kind)
    return STREAMS[kind]


def whole(kind: int) -> bytes:
    header, packets = stream(kind)
    return header + b"".join(packets)


def refused(data: bytes) -> BitstreamError:
    with pytest.raises(BitstreamError) as info:
        validate_file(io.BytesIO(data))
    message = str(info.value)
    assert message and "\n" not in message
    return info.value


@pytest.mark.parametrize("kind", [1, 3])
def test_streams_are_valid(kind):
    header, frames, keys = validate_file(io.BytesIO(whole(kind)))
    assert (frames, keys) == (12, 3)
    types = {bs.parse_packet(p)[0].type for p in stream(kind)[1]}
    assert (bs.PACKET_MOTION_RUN in types) == (kind > 1)


kinds = st.sampled_from([1, 3])


@FUZZ
@given(kind=kinds, data=st.data())
def test_every_truncation_is_refused(kind, data):
    full = whole(kind)
    cut = data.draw(st.integers(0, len(full) - 1))
    message = str(refused(full[:cut]))
    assert "truncated" in message or "header" in message


@FUZZ
@given(kind=kinds, data=st.data())
def test_every_bit_flip_is_refused(kind, data):
    full = bytearray(whole(kind))
    positions = data.draw(st.lists(st.integers(0, 8 * len(full) - 1), min_size=1, max_size=8, unique=True))
    for bit in positions:
        full[bit // 8] ^= 1 << (bit % 8)
    refused(bytes(full))


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_are_refused(blob):
    refused(blob)
    refused(bs.MAGIC + bytes([bs.VERSION]) + blob)


@FUZZ
@given(kind=kinds, blob=st.binary(max_size=2048))
def test_random_packets_after_a_valid_header_are_refused(kind, blob):
    header, packets = stream(kind)
    refused(header + blob)
    refused(header + packets[0] + blob)


@FUZZ
@given(kind=kinds, data=st.data())
def test_reordered_dropped_or_repeated_packets_are_refused(kind, data):
    header, packets = stream(kind)
    order = data.draw(st.lists(st.integers(0, len(packets) - 1), min_size=0, max_size=len(packets) + 3))
    if order == list(range(len(packets))):
        return
    refused(header + b"".join(packets[i] for i in order))


@FUZZ
@given(kind=kinds, data=st.data())
def test_oversized_length_fields_are_refused(kind, data):
    header, packets = stream(kind)
    target = data.draw(st.integers(0, len(packets) - 1))
    packet, _ = bs.parse_packet(packets[target])
    length = data.draw(st.one_of(st.integers(bs.MAX_PAYLOAD[packet.type] + 1, (1 << 28) - 1),
                                 st.integers(len(packet.payload) + 1, len(packet.payload) + 1000)))
    forged = bytes([packet.type]) + bs.encode_varint(packet.frame_index) + bs.encode_varint(length) + packet.payload
    forged += packets[target][-4:]
    rebuilt = packets[:target] + [forged] + packets[target + 1:]
    message = str(refused(header + b"".join(rebuilt)))
    assert "packet" in message


@FUZZ
@given(kind=kinds, data=st.data())
def test_packets_with_recomputed_crc_are_refused_or_decode(kind, data):
    """Payload damage that the CRC cannot see (CRC recomputed): the parsers themselves must hold."""
    header, packets = stream(kind)
    target = data.draw(st.integers(0, len(packets) - 1))
    packet, _ = bs.parse_packet(packets[target])
    payload = bytearray(packet.payload)
    if payload:
        for _ in range(data.draw(st.integers(1, 4))):
            payload[data.draw(st.integers(0, len(payload) - 1))] = data.draw(st.integers(0, 255))
    payload = bytes(payload[:data.draw(st.integers(0, len(payload)))]) + data.draw(st.binary(max_size=8))
    payload = payload[:bs.MAX_PAYLOAD[packet.type]]
    rebuilt = packets[:target] + [bs.encode_packet(packet.type, packet.frame_index, payload)] + packets[target + 1:]
    try:
        validate_file(io.BytesIO(header + b"".join(rebuilt)))
    except BitstreamError as exc:
        assert str(exc) and "\n" not in str(exc)


@FUZZ
@given(kind=kinds, data=st.data())
def test_live_decoder_never_raises(kind, data):
    header, packets = stream(kind)
    decoder = MotionStreamDecoder(bs.parse_header(header), strict=False)
    order = data.draw(st.lists(st.integers(0, len(packets) - 1), max_size=2 * len(packets)))
    for i in order:
        packet = bytearray(packets[i])
        if data.draw(st.booleans()):
            packet[data.draw(st.integers(0, len(packet) - 1))] ^= 1 << data.draw(st.integers(0, 7))
        if data.draw(st.booleans()):
            packet = packet[:data.draw(st.integers(0, len(packet)))]
        report = decoder.push(bytes(packet))
        assert report.status in ("ok", "corrupt", "missing", "skipped", "late", "ended")
        if report.status != "ok":
            assert report.message


def test_cli_refuses_damaged_files_with_one_line(tmp_path, capsys):
    from facevid2vid.checkpoint import save_checkpoint
    from facevid2vid.cli import main

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = FaceVid2Vid(model_preset("tiny")).eval()
    ckpt = save_checkpoint(tmp_path / "tiny.safetensors", model)
    header, packets = stream(1)
    flipped = bytearray(header + b"".join(packets))
    flipped[len(header) + 40] ^= 0x04
    cases = {
        "random": (bytes(range(256)) * 4, "not a .fv2v stream"),
        "truncated": ((header + b"".join(packets))[:-3], "truncated"),
        "flipped": (bytes(flipped), "CRC mismatch"),
        "reordered": (header + b"".join([packets[1], packets[0]] + packets[2:]), "packet 0"),
    }
    for name, (data, expected) in cases.items():
        path = tmp_path / f"{name}.fv2v"
        path.write_bytes(data)
        code = main(["decode", "--input", str(path), "--output", str(tmp_path / f"{name}.mp4"),
                     "--checkpoint", str(ckpt), "--device", "cpu"])
        err = capsys.readouterr().err.strip()
        assert code == 1, name
        assert len(err.splitlines()) == 1 and expected in err, (name, err)
        assert not (tmp_path / f"{name}.mp4").exists()
