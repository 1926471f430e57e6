"""The codec's motion layouts per model family (codec.layout), without the families' networks.

FOMM codes 10 keypoints x 6 numbers (x, y, Jacobian row-major), Monkey-Net keypoints only;
X2Face has no codec. The layouts are tested against KeypointMotion directly: array round
trips, quantisation within half a step, bit-exact dequantisation, entropy coding, the header's
family byte, and a hand-built stream through the packet-level decoder.
"""
import importlib
import io
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from facevid2vid.codec import bitstream as bs
from facevid2vid.codec.decoder import MotionStreamDecoder, StreamDecoder, check_model, iter_decoded
from facevid2vid.codec.encoder import Encoder, EncoderSettings
from facevid2vid.codec.entropy import GROUP_EXPRESSION, GROUP_TRANSLATION, MotionEntropyCoder
from facevid2vid.codec.keyframe import CODEC_WEBP, encode_image
from facevid2vid.codec.layout import (JACOBIAN_LIMIT, JACOBIAN_STEP, KEYPOINT_LIMIT, KEYPOINT_STEP, HeadLayout,
                                      KeypointLayout, layout_for, model_layout)
from facevid2vid.codec.quantize import BASE_STEPS, Quantizer, QuantizerSteps, steps_for_quality
from facevid2vid.config import model_preset
from facevid2vid.errors import BitstreamError, InputError
from facevid2vid.inference import Animator
from facevid2vid.models import FaceVid2Vid
from facevid2vid.smoothing import SmoothingSettings
from facevid2vid.structures import HeadMotion, KeypointMotion

K = 10


def keypoint_motion(n, jacobian=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    kp = torch.rand(n, K, 2, generator=g) * 1.8 - 0.9
    jac = torch.eye(2) + 0.3 * torch.randn(n, K, 2, 2, generator=g) if jacobian else None
    return KeypointMotion(kp, jac)


def header_for(layout, quality=50, **kw):
    steps = layout.default_steps(quality)
    fields = dict(model_hash=bytes(range(16)), width=64, height=64, fps_num=25, fps_den=1,
                  num_keypoints=layout.num_keypoints, quality=quality, steps=steps.as_tuple(),
                  family=bs.FAMILY_IDS[layout.family], scale_step=steps.scale_step or 0.0)
    fields.update(kw)
    return bs.StreamHeader(**fields)


@pytest.mark.parametrize("family, jacobian", [("fomm", True), ("monkeynet", False)])
def test_layout_parameters_steps_groups_and_limits(family, jacobian):
    layout = layout_for(family, K)
    assert layout == KeypointLayout(family, K, jacobian) and not layout.uses_scale
    assert layout.num_parameters == (6 if jacobian else 2) * K  # FOMM: 10 keypoints x 6 numbers
    steps = QuantizerSteps(1, 2, 3, 4, 5, 6, 7)
    per_keypoint = [4, 5] + [7] * 4 * jacobian  # x: tx step, y: ty step, J: expression step
    assert np.array_equal(layout.step_vector(steps), np.tile(np.float32(per_keypoint), K))
    groups = [GROUP_TRANSLATION] * 2 + [GROUP_EXPRESSION] * 4 * jacobian
    assert np.array_equal(layout.groups(), np.tile(groups, K))
    limits = [KEYPOINT_LIMIT] * 2 + [JACOBIAN_LIMIT] * 4 * jacobian
    assert np.array_equal(layout.value_limits(), np.tile(np.float32(limits), K))


def test_default_steps_of_the_keypoint_families():
    fomm, monkeynet = layout_for("fomm", K).default_steps(50), layout_for("monkeynet", K).default_steps(50)
    assert (KEYPOINT_STEP, JACOBIAN_STEP) == (0.003, 0.015)
    assert (fomm.tx, fomm.ty, fomm.expression) == pytest.approx((KEYPOINT_STEP, KEYPOINT_STEP, JACOBIAN_STEP))
    unused = (fomm.yaw, fomm.pitch, fomm.roll, fomm.tz)  # written as face-vid2vid's
    assert unused == pytest.approx((BASE_STEPS.yaw, BASE_STEPS.pitch, BASE_STEPS.roll, BASE_STEPS.tz))
    assert monkeynet.expression == pytest.approx(BASE_STEPS.expression) and monkeynet.scale is None
    assert layout_for("fomm", K).default_steps(75).expression == pytest.approx(JACOBIAN_STEP / 2)
    # the head families are unchanged
    assert layout_for("facevid2vid", K).default_steps(60) == steps_for_quality(60)
    assert layout_for("liveportrait", K).default_steps(50) == steps_for_quality(50, with_scale=True)


@pytest.mark.parametrize("family, jacobian", [("fomm", True), ("monkeynet", False)])
def test_motion_round_trips_through_indices(family, jacobian):
    layout = layout_for(family, K)
    motion = keypoint_motion(6, jacobian)
    values = layout.to_array(motion)
    assert values.dtype == np.float32 and values.shape == (6, layout.num_parameters)
    assert np.array_equal(values, motion.vector().numpy())
    back = layout.from_array(values)
    assert torch.equal(back.kp, motion.kp) and (back.jacobian is None) == (not jacobian)
    if jacobian:
        assert torch.equal(back.jacobian, motion.jacobian)
    q = Quantizer(QuantizerSteps.from_tuple(layout.default_steps(50).as_tuple()), layout, hysteresis=0.3)
    indices = np.stack([q.quantize(v) for v in values])
    decoded = q.dequantize(indices)
    assert decoded.dtype == np.float32
    assert np.array_equal(decoded, indices.astype(np.float32) * q.step_vector)  # one float32 product each
    assert np.all(np.abs(decoded - values) <= 0.5 * q.step_vector + 1e-7)  # plain rounding: half a step
    pixels = np.abs(decoded - values)[:, 0::layout.per_keypoint] * 256 / 2  # x error in pixels at 256 px
    assert pixels.max() < 0.25
    far = np.full(layout.num_parameters, 100.0)
    assert np.array_equal(q.dequantize(q.quantize(far)), np.float32(q.limits) * q.step_vector)  # clipped
    assert np.all(q.dequantize(q.limits) >= layout.value_limits())


@pytest.mark.parametrize("family", ["fomm", "monkeynet"])
def test_entropy_coding_round_trip_with_the_layout_groups(family):
    layout = layout_for(family, K)
    q = Quantizer(layout.default_steps(50), layout, hysteresis=0.3)
    motion = keypoint_motion(30, layout.jacobian, seed=1)
    walk = motion.vector().numpy()[:1] + 0.01 * np.cumsum(np.random.default_rng(0).normal(
        size=(30, layout.num_parameters)), axis=0)
    frames, previous = [], None
    for row in walk:
        previous = q.quantize(row, previous)
        frames.append(previous)
    frames = np.stack(frames)
    enc, dec = (MotionEntropyCoder(q.limits, layout.groups()) for _ in range(2))
    for coder in (enc, dec):
        coder.reset(frames[0])
    for start, stop in ((1, 2), (2, 10), (10, 11), (11, 30)):
        assert np.array_equal(dec.decode(enc.encode(frames[start:stop]), stop - start), frames[start:stop])
    with pytest.raises(ValueError, match="group"):
        MotionEntropyCoder(q.limits, layout.groups()[:-1])


@pytest.mark.parametrize("family, fid", [("facevid2vid", 0), ("liveportrait", 1), ("fomm", 2), ("monkeynet", 3)])
def test_header_family_ids_round_trip(family, fid):
    assert bs.FAMILY_IDS[family] == fid  # a fixed table: old streams keep their ids
    layout = layout_for(family, K)
    header = header_for(layout)
    data = header.to_bytes()
    assert len(data) == bs.HEADER_SIZE and data[69] == fid
    back = bs.parse_header(data)
    assert back == header and back.family_name == family and back.has_scale == (family == "liveportrait")
    assert MotionStreamDecoder(back).layout == layout


def test_header_validates_each_step_against_what_the_family_quantises():
    fine = 5e-6  # 4 / 5e-6 levels fit in 2^20 (expression deltas); 8 / 5e-6 do not (Jacobian entries)
    steps = BASE_STEPS.as_tuple()[:6] + (fine,)
    bs.StreamHeader(**{**header_for(layout_for("facevid2vid", K)).__dict__, "steps": steps}).validate()
    with pytest.raises(BitstreamError, match="step 6 .* too fine"):
        bs.StreamHeader(**{**header_for(layout_for("fomm", K)).__dict__, "steps": steps}).validate()
    with pytest.raises(BitstreamError, match="scale_step at byte 70: must be 0 for family fomm"):
        header_for(layout_for("fomm", K), scale_step=0.004).validate()


@pytest.mark.parametrize("family", ["fomm", "monkeynet"])
def test_a_hand_built_stream_decodes_to_the_sent_indices(family):
    layout = layout_for(family, K)
    header = bs.parse_header(header_for(layout, quality=40).to_bytes())
    q = Quantizer(QuantizerSteps.from_tuple(header.steps, header.scale_step), layout)
    indices = np.stack([q.quantize(v) for v in layout.to_array(keypoint_motion(5, layout.jacobian, seed=3))])
    coder = MotionEntropyCoder(q.limits, layout.groups())
    image = encode_image(np.full((64, 64, 3), 128, np.uint8), 50, CODEC_WEBP)
    key = bs.KeyPayload(CODEC_WEBP, image, coder.encode(indices[:1])).to_bytes()
    coder.reset(indices[0])
    packets = [bs.encode_packet(bs.PACKET_KEY, 0, key),
               bs.encode_packet(bs.PACKET_MOTION, 1, coder.encode(indices[1:2])),
               bs.encode_packet(bs.PACKET_MOTION_RUN, 2, bs.motion_run_payload(3, coder.encode(indices[2:]))),
               bs.encode_packet(bs.PACKET_END, 5, bs.end_payload(5))]
    decoder = MotionStreamDecoder(header)
    frames = [f for data in packets for f in decoder.decode_packet(bs.parse_packet(data)[0])]
    assert np.array_equal(np.stack([f.indices for f in frames]), indices) and decoder.ended
    motion = layout.from_array(np.stack([f.motion for f in frames]))
    assert isinstance(motion, KeypointMotion) and motion.kp.shape == (5, K, 2)
    assert np.array_equal(layout.to_array(motion), q.dequantize(indices))


class FakeModel(torch.nn.Module):
    def __init__(self, family, **cfg):
        super().__init__()
        self.family = family
        self.cfg = SimpleNamespace(image_size=64, **cfg)


def test_model_layouts_and_refusals():
    assert model_layout(FakeModel("fomm", num_keypoints=10, estimate_jacobian=True)) == KeypointLayout("fomm", 10, True)
    assert model_layout(FakeModel("monkeynet", num_keypoints=7)) == KeypointLayout("monkeynet", 7)
    with pytest.raises(InputError, match="X2Face's motion is a learned code, not keypoints: the codec supports "
                                         "face-vid2vid, LivePortrait, FOMM and Monkey-Net"):
        model_layout(FakeModel("x2face", code_size=128))
    with pytest.raises(InputError, match="estimate_jacobian"):
        model_layout(FakeModel("fomm", num_keypoints=10, estimate_jacobian=False))
    with pytest.raises(InputError, match="X2Face"):
        Encoder(SimpleNamespace(model=FakeModel("x2face")), 25)
    with pytest.raises(ValueError, match="KeypointMotion with Jacobians"):
        layout_for("fomm", K).to_array(keypoint_motion(2, jacobian=False))
    head = HeadMotion(torch.zeros(2), torch.zeros(2), torch.zeros(2), torch.zeros(2, 3), torch.zeros(2, K, 3))
    with pytest.raises(ValueError):
        layout_for("monkeynet", K).to_array(head)
    assert layout_for("facevid2vid", K) == HeadLayout("facevid2vid", K)


def test_the_decoder_refuses_a_stream_of_another_family():
    header = header_for(layout_for("fomm", K))
    with pytest.raises(BitstreamError, match="the stream is for a fomm model; this one is monkeynet"):
        check_model(header, FakeModel("monkeynet", num_keypoints=K))
    with pytest.raises(BitstreamError, match="for a fomm model; this one is x2face"):
        check_model(header, FakeModel("x2face"))


# -- end to end with the keypoint families' tiny presets (random weights) -------------------------

@pytest.mark.parametrize("family, preset", [("monkeynet", "monkeynet-tiny"), ("fomm", "fomm-tiny")])
def test_encode_decode_round_trip_with_a_keypoint_family(family, preset, one_thread):
    try:
        package = importlib.import_module(f"facevid2vid.families.{family}")
        model_class, presets = package.Model, package.PRESETS
    except (ImportError, AttributeError):
        pytest.skip(f"the {family} package is not there yet")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = model_class(presets[preset]()).eval()
    size = model.cfg.image_size
    rng = np.random.default_rng(0)
    frames = np.clip(rng.integers(0, 255, (1, size, size, 3)) + rng.normal(0, 6, (6, size, size, 3)).cumsum(0),
                     0, 255).astype(np.uint8)
    settings = EncoderSettings(keyframe_codec="webp", keep_reconstruction=True, frames_per_packet=2,
                               smoothing=SmoothingSettings(enabled=True))
    encoder = Encoder(Animator(model, batch_size=4), 25, settings)
    stream = b"".join([encoder.header_bytes(), *encoder.encode(frames[:4]), *encoder.encode(frames[4:]),
                       *encoder.finish()])
    header = bs.parse_header(stream)
    layout = model_layout(model)
    assert (header.family_name, header.num_keypoints) == (family, model.cfg.num_keypoints)
    decoded = list(iter_decoded(io.BytesIO(stream)))
    assert len(decoded) == 6 and decoded[0].indices.shape == (layout.num_parameters,)
    assert np.array_equal(np.stack([f.indices for f in decoded]), np.stack(encoder.indices))  # bit exact
    out = StreamDecoder(Animator(model), header).render(decoded)
    assert out.shape == (6, size, size, 3)
    assert np.abs(out.astype(int) - np.stack(encoder.reconstruction)).max() <= 2
    with pytest.raises(BitstreamError, match=f"the stream is for a {family} model; this one is facevid2vid"):
        StreamDecoder(Animator(FaceVid2Vid(model_preset("tiny")).eval()), header)
