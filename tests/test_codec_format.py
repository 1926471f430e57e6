"""The .fv2v format without a network: header, packets, quantiser, entropy coder, key frames."""
import io
import struct
import sys
import zlib

import numpy as np
import pytest

from facevid2vid.codec import bitstream as bs
from facevid2vid.codec.entropy import RESIDUAL_RANGE, MotionEntropyCoder
from facevid2vid.codec.keyframe import CODEC_AVIF, CODEC_WEBP, decode_image, encode_image
from facevid2vid.codec.quantize import (Quantizer, QuantizerSteps, array_to_motion, max_indices, motion_to_array,
                                        steps_for_quality)
from facevid2vid.errors import BitstreamError

K = 5


def make_header(**kw):
    fields = dict(model_hash=bytes(range(16)), width=64, height=64, fps_num=25, fps_den=1, num_keypoints=K,
                  quality=50, steps=steps_for_quality(50).as_tuple())
    fields.update(kw)
    return bs.StreamHeader(**fields)


class TestHeader:
    def test_round_trip(self):
        header = make_header(fps_num=30000, fps_den=1001)
        data = header.to_bytes()
        assert len(data) == bs.HEADER_SIZE
        assert bs.parse_header(data) == header
        assert abs(bs.parse_header(data).fps - 29.97) < 0.01

    def test_bad_magic_version_crc(self):
        data = bytearray(make_header().to_bytes())
        with pytest.raises(BitstreamError, match="not a .fv2v stream"):
            bs.parse_header(b"RIFF" + bytes(data[4:]))
        bad_version = bytearray(data)
        bad_version[4] = 9
        with pytest.raises(BitstreamError, match="version 9"):
            bs.parse_header(bytes(bad_version))
        data[30] ^= 0x01
        with pytest.raises(BitstreamError, match="header CRC"):
            bs.parse_header(bytes(data))
        with pytest.raises(BitstreamError, match="truncated header"):
            bs.parse_header(make_header().to_bytes()[:20])

    def test_out_of_range_fields_with_valid_crc(self):
        def forge(**kw):
            h = make_header()
            body = struct.pack("<4sBB16sHHIIBBB7fHHBf", bs.MAGIC, bs.VERSION, 0, h.model_hash,
                               kw.get("width", 64), 64, kw.get("fps_num", 25), 1, kw.get("kp", K), 50, 0,
                               *kw.get("steps", h.steps), kw.get("output_width", 64), 64, kw.get("family", 0),
                               kw.get("scale_step", 0.0))
            return body + struct.pack("<I", zlib.crc32(body))

        with pytest.raises(BitstreamError, match="width"):
            bs.parse_header(forge(width=60000))
        with pytest.raises(BitstreamError, match="fps"):
            bs.parse_header(forge(fps_num=0))
        with pytest.raises(BitstreamError, match="keypoints"):
            bs.parse_header(forge(kp=200))
        with pytest.raises(BitstreamError, match="step"):
            bs.parse_header(forge(steps=(float("nan"),) + (0.1,) * 6))
        with pytest.raises(BitstreamError, match="too fine"):
            bs.parse_header(forge(steps=(1e-5,) + (0.1,) * 6))
        with pytest.raises(BitstreamError, match="output_width at byte 65"):
            bs.parse_header(forge(output_width=5000))
        with pytest.raises(BitstreamError, match="family at byte 69: unknown model family 7"):
            bs.parse_header(forge(family=7))
        with pytest.raises(BitstreamError, match="scale_step at byte 70: must be 0 for family facevid2vid"):
            bs.parse_header(forge(scale_step=0.01))
        with pytest.raises(BitstreamError, match="scale_step at byte 70"):
            bs.parse_header(forge(family=bs.FAMILY_LIVEPORTRAIT))  # LivePortrait needs a scale step
        with pytest.raises(BitstreamError, match="too fine"):
            bs.parse_header(forge(family=bs.FAMILY_LIVEPORTRAIT, scale_step=1e-5))

    def test_family_and_scale_step_round_trip(self):
        header = make_header(family=bs.FAMILY_LIVEPORTRAIT, scale_step=float(np.float32(0.004)))
        data = header.to_bytes()
        assert len(data) == bs.HEADER_SIZE == 78 and data[69] == bs.FAMILY_LIVEPORTRAIT
        back = bs.parse_header(data)
        assert back == header and back.has_scale and not make_header().has_scale

    def test_output_size_round_trips_and_version_1_is_read(self):
        header = make_header(output_width=200, output_height=200)
        assert bs.parse_header(header.to_bytes()).output_size == (200, 200)
        h = make_header()
        body = struct.pack("<4sBB16sHHIIBBB7f", bs.MAGIC, 1, 0, h.model_hash, 64, 64, 25, 1, K, 50, 0, *h.steps)
        old = bs.parse_header(body + struct.pack("<I", zlib.crc32(body)))  # a version-1 stream: no output size
        assert old.output_size == (64, 64) and old.steps == h.steps
        assert old.family == bs.FAMILY_FACEVID2VID and old.scale_step == 0.0
        assert bs.read_header(io.BytesIO(body + struct.pack("<I", zlib.crc32(body)) + b"rest")) == old


class TestPackets:
    def test_round_trip_and_sizes(self):
        for ptype, index, payload in [(bs.PACKET_MOTION, 0, b""), (bs.PACKET_MOTION, 200, b"\x01\x02"),
                                      (bs.PACKET_KEY, 70000, bytes(5000)), (bs.PACKET_END, 3, b"\x03")]:
            data = bs.encode_packet(ptype, index, payload)
            packet, used = bs.parse_packet(data)
            assert used == len(data)
            assert (packet.type, packet.frame_index, packet.payload) == (ptype, index, payload)
        # framing: type + 2-byte index + 1-byte length + CRC32
        assert len(bs.encode_packet(bs.PACKET_MOTION, 1000, b"abc")) == 1 + 2 + 1 + 3 + 4

    def test_varints(self):
        for v in (0, 1, 127, 128, 300, 2**21, bs.MAX_FRAMES - 1):
            enc = bs.encode_varint(v)
            assert bs.decode_varint(enc, 0, 4, "v") == (v, len(enc))
        with pytest.raises(BitstreamError, match="non-canonical"):
            bs.decode_varint(b"\x80\x00", 0, 4, "v")
        with pytest.raises(BitstreamError, match="longer than"):
            bs.decode_varint(b"\xff\xff\xff\xff\x01", 0, 4, "v")
        with pytest.raises(BitstreamError, match="truncated"):
            bs.decode_varint(b"\xff", 0, 4, "v")

    def test_errors_name_packet_and_byte(self):
        good = bs.encode_packet(bs.PACKET_MOTION, 7, b"xyz")
        flipped = bytearray(good)
        flipped[4] ^= 0x10
        with pytest.raises(BitstreamError, match=r"packet 3 at byte 100: CRC mismatch"):
            bs.parse_packet(bytes(flipped), 0, 3, base=100)
        with pytest.raises(BitstreamError, match="unknown packet type 0x7e"):
            bs.parse_packet(b"\x7e" + good[1:])
        oversized = bytes([bs.PACKET_MOTION]) + bs.encode_varint(7) + bs.encode_varint(1 << 27)
        with pytest.raises(BitstreamError, match="exceeds the limit"):
            bs.parse_packet(oversized + bytes(10))
        with pytest.raises(BitstreamError, match="truncated"):
            bs.parse_packet(good[:-1])

    def test_read_packets_needs_end_and_nothing_after(self):
        packets = [bs.encode_packet(bs.PACKET_MOTION, i, bytes([i])) for i in range(3)]
        end = bs.encode_packet(bs.PACKET_END, 3, bs.end_payload(3))
        stream = b"".join(packets) + end
        got = list(bs.read_packets(io.BytesIO(stream), offset=0))
        assert [p.frame_index for p in got] == [0, 1, 2, 3]
        assert [p.offset for p in got[:2]] == [0, len(packets[0])]
        with pytest.raises(BitstreamError, match="before its end packet"):
            list(bs.read_packets(io.BytesIO(b"".join(packets)), offset=0))
        with pytest.raises(BitstreamError, match="after the end packet"):
            list(bs.read_packets(io.BytesIO(stream + b"\x00"), offset=0))


class TestQuantizer:
    def test_steps_follow_quality(self):
        low, mid, high = (steps_for_quality(q) for q in (25, 50, 75))
        assert low.yaw == pytest.approx(2 * mid.yaw) and high.yaw == pytest.approx(mid.yaw / 2)
        with pytest.raises(ValueError):
            steps_for_quality(0)

    def test_dequantize_is_a_single_float32_product(self):
        q = Quantizer(steps_for_quality(50), K)
        idx = np.random.default_rng(0).integers(-q.limits, q.limits + 1)
        out = q.dequantize(idx)
        assert out.dtype == np.float32
        assert np.array_equal(out, np.float32(idx) * q.step_vector)
        # error of plain rounding is at most half a step
        values = np.random.default_rng(1).normal(0, 0.1, q.num_parameters).astype(np.float32)
        err = np.abs(q.dequantize(q.quantize(values)) - values)
        assert np.all(err <= 0.5 * q.step_vector + 1e-7)

    def test_hysteresis_holds_previous_index(self):
        q = Quantizer(QuantizerSteps(1, 1, 1, 1, 1, 1, 1), K, hysteresis=0.3)
        prev = np.zeros(q.num_parameters, dtype=np.int64)
        values = np.full(q.num_parameters, 0.75)
        assert np.all(q.quantize(values, prev) == 0)  # within 0.8 of the previous index
        assert np.all(q.quantize(values) == 1)
        assert np.all(q.quantize(np.full(q.num_parameters, 0.85), prev) == 1)

    def test_motion_array_round_trip(self):
        import torch

        from facevid2vid.structures import HeadMotion

        m = HeadMotion(torch.randn(2), torch.randn(2), torch.randn(2), torch.randn(2, 3), torch.randn(2, K, 3))
        back = array_to_motion(motion_to_array(m), K)
        for name in ("yaw", "pitch", "roll", "translation", "delta"):
            assert torch.equal(getattr(back, name), getattr(m, name))
        assert back.scale is None

    def test_scale_is_the_last_parameter(self):
        import torch

        from facevid2vid.structures import HeadMotion

        m = HeadMotion(torch.randn(2), torch.randn(2), torch.randn(2), torch.randn(2, 3), torch.randn(2, K, 3),
                       scale=torch.rand(2) + 0.5)
        values = motion_to_array(m)
        assert values.shape == (2, 7 + 3 * K) and np.array_equal(values[:, -1], m.scale.numpy())
        back = array_to_motion(values, K, scale=True)
        assert torch.equal(back.scale, m.scale) and torch.equal(back.delta, m.delta)
        steps = steps_for_quality(50, with_scale=True)
        assert steps.scale == pytest.approx(0.004) and steps_for_quality(75, with_scale=True).scale == \
            pytest.approx(0.002)
        q = Quantizer(steps, K)
        assert q.num_parameters == 7 + 3 * K and q.step_vector[-1] == np.float32(0.004)
        err = np.abs(q.dequantize(q.quantize(values[0])) - values[0])
        assert np.all(err <= 0.5 * q.step_vector + 1e-7)
        coder = MotionEntropyCoder(q.limits)
        frames = np.stack([q.quantize(v) for v in values])
        assert np.array_equal(MotionEntropyCoder(q.limits).decode(coder.encode(frames), 2), frames)


def random_walk(n, limits, rng, jump_every=0):
    """Index sequences that mostly stay, sometimes step, and (optionally) sometimes jump far."""
    steps = rng.choice([-2, -1, 0, 0, 0, 0, 1, 2], size=(n, len(limits)))
    if jump_every:
        steps[::jump_every, ::3] = rng.integers(-200, 200, size=steps[::jump_every, ::3].shape)
    return np.clip(np.cumsum(steps, axis=0), -limits, limits)


class TestEntropy:
    def setup_method(self):
        self.limits = max_indices(steps_for_quality(50), K)

    def test_round_trip_runs_escapes_and_resets(self):
        rng = np.random.default_rng(0)
        frames = random_walk(40, self.limits, rng, jump_every=7)
        frames[5, 0] = self.limits[0]  # the extremes of the range
        frames[6, 0] = -self.limits[0]
        enc, dec = MotionEntropyCoder(self.limits), MotionEntropyCoder(self.limits)
        for coder in (enc, dec):
            coder.reset(frames[0])
        pos = 1
        for run in (1, 1, 5, 1, 3, 20, 8):
            if pos == 11:  # as at a key frame: fresh models, prediction from a new base
                for coder in (enc, dec):
                    coder.reset(frames[pos - 1])
            chunk = frames[pos:pos + run]
            payload = enc.encode(chunk)
            assert np.array_equal(dec.decode(payload, len(chunk)), chunk)
            pos += run
        assert pos == len(frames)

    def test_still_motion_costs_almost_nothing(self):
        enc, dec = MotionEntropyCoder(self.limits), MotionEntropyCoder(self.limits)
        base = np.arange(len(self.limits)) - 10
        enc.reset(base)
        dec.reset(base)
        sizes = []
        for _ in range(30):
            payload = enc.encode(base[None])
            sizes.append(len(payload))
            assert np.array_equal(dec.decode(payload, 1)[0], base)
        assert max(sizes[5:]) <= 1  # zero residuals: the shortened payload is (nearly) empty

    def test_shortened_payload_beats_whole_words(self):
        rng = np.random.default_rng(3)
        frames = random_walk(60, self.limits, rng)
        enc = MotionEntropyCoder(self.limits)
        enc.reset(frames[0])
        sizes = [len(enc.encode(f[None])) for f in frames[1:]]
        assert any(s % 4 for s in sizes)  # not padded to 32-bit words

    def test_deterministic(self):
        rng = np.random.default_rng(5)
        frames = random_walk(20, self.limits, rng, jump_every=4)
        out = []
        for _ in range(2):
            enc = MotionEntropyCoder(self.limits)
            enc.reset(frames[0])
            out.append([enc.encode(f[None]) for f in frames[1:]])
        assert out[0] == out[1]

    def test_garbage_raises_bitstream_error_only(self):
        rng = np.random.default_rng(7)
        for trial in range(200):
            dec = MotionEntropyCoder(self.limits)
            dec.reset(np.zeros(len(self.limits), dtype=np.int64))
            payload = rng.bytes(int(rng.integers(0, 40)))
            try:
                out = dec.decode(payload, int(rng.integers(1, 5)))
            except BitstreamError:
                continue
            assert np.all(np.abs(out) <= self.limits)

    def test_residual_range_constant(self):
        assert RESIDUAL_RANGE >= 1


class TestKeyframe:
    @pytest.mark.parametrize("codec", [CODEC_AVIF, CODEC_WEBP])
    def test_round_trip(self, codec):
        yy, xx = np.mgrid[0:64, 0:64]
        img = np.stack([xx * 4, yy * 4, (xx + yy) * 2], -1).astype(np.uint8)
        data = encode_image(img, 60, codec)
        out = decode_image(data, codec, 64, 64)
        assert out.shape == img.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - img).mean() < 4
        assert np.array_equal(out, decode_image(data, codec, 64, 64))  # decoding is deterministic
        with pytest.raises(BitstreamError, match="header says 32x32"):
            decode_image(data, codec, 32, 32)
        with pytest.raises(BitstreamError, match="not a valid"):
            decode_image(b"garbage" * 10, codec, 64, 64)
        with pytest.raises(BitstreamError, match="unknown key frame codec"):
            decode_image(data, 99, 64, 64)

    def test_truncated_image_is_refused(self):
        img = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
        data = encode_image(img, 60, CODEC_WEBP)
        with pytest.raises(BitstreamError):
            decode_image(data[: len(data) // 2], CODEC_WEBP, 64, 64)


def test_bjontegaard_delta_rate_of_the_benchmark():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "codec_rd.py"
    spec = importlib.util.spec_from_file_location("benchmarks_codec_rd", path)
    codec_rd = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = codec_rd  # dataclasses look their module up
    spec.loader.exec_module(codec_rd)
    rates, quality = np.array([10.0, 20.0, 40.0, 80.0]), np.array([30.0, 34.0, 37.0, 39.0])
    half, interval = codec_rd.bd_rate(rates, quality, rates / 2, quality)
    assert half == pytest.approx(-50.0) and interval == (30.0, 39.0)
    assert codec_rd.bd_rate(rates, quality, rates * 1.1, quality)[0] == pytest.approx(10.0)
    # a curve that is better at the same rate needs fewer bits at the same quality
    assert codec_rd.bd_rate(rates, quality, rates, quality + 1)[0] < 0
    assert codec_rd.bd_rate(rates, quality, rates, quality + 50) == (None, None)  # no overlap
