"""Codec round trips with the tiny model: bit-exact motion, matching frames, live recovery, CLI."""
import numpy as np
import pytest
import torch

from facevid2vid.codec import bitstream as bs
from facevid2vid.codec.decoder import (STATUS_CORRUPT, STATUS_LATE, STATUS_MISSING, STATUS_OK, STATUS_SKIPPED,
                                       MotionStreamDecoder, StreamDecoder)
from facevid2vid.codec.encoder import Encoder, EncoderSettings
from facevid2vid.config import model_preset
from facevid2vid.errors import BitstreamError, InputError
from facevid2vid.inference import Animator
from facevid2vid.models import FaceVid2Vid

N_FRAMES = 10


def tiny_model(seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return FaceVid2Vid(model_preset("tiny")).eval()


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def face_frames(samples):
    """The first frames of franck.mp4, face-cropped to the tiny model's 64x64."""
    from facevid2vid.face.crop import prepare_frames
    from facevid2vid.video_io import read_video

    raw, fps = read_video(samples.franck, max_frames=N_FRAMES)
    frames, _ = prepare_frames(raw, 64)
    return frames, fps


def encode(model, frames, fps, **settings):
    settings.setdefault("keep_reconstruction", True)
    encoder = Encoder(Animator(model, batch_size=4), fps, EncoderSettings(**settings))
    packets = encoder.encode(frames[:5]) + encoder.encode(frames[5:]) + encoder.finish()
    return encoder, packets


def decode_all(header, packets):
    decoder = MotionStreamDecoder(header, strict=True)
    frames = []
    for number, data in enumerate(packets):
        packet, _ = bs.parse_packet(data, 0, number)
        frames += decoder.decode_packet(packet)
    assert decoder.ended
    return frames


def test_decoder_motion_is_bit_exact_and_frames_match(model, face_frames):
    frames, fps = face_frames
    # a short interval forces several key frames, so resets are exercised; 3 frames per packet
    # gives motion runs and, before each key frame, a single motion packet
    encoder, packets = encode(model, frames, fps, max_keyframe_interval=4 / fps, frames_per_packet=3)
    assert encoder.stats.key_frames >= 3 and encoder.stats.frames == N_FRAMES
    types = [bs.parse_packet(p)[0].type for p in packets]
    assert bs.PACKET_MOTION in types and bs.PACKET_MOTION_RUN in types
    decoded = decode_all(encoder.header, packets)
    assert [f.index for f in decoded] == list(range(N_FRAMES))
    assert [f.is_key for f in decoded] == [i % 4 == 0 for i in range(N_FRAMES)]
    for mine, theirs in zip(encoder.indices, decoded):
        assert np.array_equal(mine, theirs.indices)  # integer indices: bit-exact
        assert np.array_equal(encoder.quantizer.dequantize(mine), theirs.motion)  # floats too
    # another animator with another batch size renders what the encoder simulated
    out = StreamDecoder(Animator(model, batch_size=3), encoder.header).render(decoded)
    sim = np.stack(encoder.reconstruction)
    diff = np.abs(out.astype(int) - sim)
    assert diff.max() <= 2 and diff.mean() < 0.05
    for f in decoded:
        if f.is_key:
            assert np.array_equal(out[f.index], f.key_image)


def test_drift_triggers_key_frames(model, face_frames):
    frames, fps = face_frames
    frames = frames.copy()
    # from frame 6 the input turns black (the light goes out): the synthesis no longer resembles it
    frames[6:] = 0
    tight, packets = encode(model, frames, fps, max_keyframe_interval=0, keyframe_threshold=3.0)
    assert tight.stats.key_reasons == {"first": 1, "drift": 1}
    keys = [f.index for f in decode_all(tight.header, packets) if f.is_key]
    assert keys == [0, 6]


def counting_animator(model):
    """An Animator (batch 4) whose render() records how many frames each call synthesizes."""
    animator = Animator(model, batch_size=4)
    rendered = []
    render = animator.render
    animator.render = lambda source, motion, view=None: rendered.append(motion.batch_size) or render(source, motion,
                                                                                                     view)
    return animator, rendered


def test_drift_checked_every_third_frame_renders_a_third_and_finds_drift_late(model, face_frames):
    frames, fps = face_frames
    frames = frames.copy()
    frames[7:] = 0  # the light goes out at frame 7; with checks at frames 0, 3, 6, 9 drift is found at 9
    animator, rendered = counting_animator(model)
    encoder = Encoder(animator, fps, EncoderSettings(max_keyframe_interval=0, keyframe_threshold=3.0,
                                                     drift_check_every=3))
    packets = encoder.encode(frames) + encoder.finish()
    keys = [f.index for f in decode_all(encoder.header, packets) if f.is_key]
    assert keys == [0, 9] and encoder.stats.key_reasons == {"first": 1, "drift": 1}
    # key frames 0 and 9 render once each (their own synthesis); motion frames only at the checked 3, 6 and
    # 9 (which drifted); none of 1, 2, 4, 5, 7, 8, 10, 11 is rendered (every frame checked: 12 + 1)
    assert sum(rendered) == 2 + 3
    with pytest.raises(InputError, match="drift check"):
        EncoderSettings(drift_check_every=2, keep_reconstruction=True).validate()


def test_min_keyframe_interval_holds_back_drift_and_its_checks(model, face_frames):
    frames, fps = face_frames
    frames = frames.copy()
    frames[6:] = 0  # drifts from frame 6 (test_drift_triggers_key_frames); quiet until frame 8
    animator, rendered = counting_animator(model)
    encoder = Encoder(animator, fps, EncoderSettings(max_keyframe_interval=0, keyframe_threshold=3.0,
                                                     min_keyframe_interval=8 / float(fps)))
    packets = encoder.encode(frames) + encoder.finish()
    keys = [f.index for f in decode_all(encoder.header, packets) if f.is_key]
    assert keys == [0, 8] and encoder.stats.key_reasons == {"first": 1, "drift": 1}
    # the key frames render once each; of the motion frames only 8 (drifted), none of the quiet 1-7 and 9
    assert sum(rendered) == 2 + 1
    with pytest.raises(InputError, match="min-keyframe-interval"):
        EncoderSettings(min_keyframe_interval=-1).validate()


def test_face_lost_and_found_trigger_key_frames(model, face_frames):
    frames, fps = face_frames
    present = np.ones(N_FRAMES, dtype=bool)
    present[3:7] = False  # lost from frame 3: counts after 3 frames (5); found again at 7: counts at 9
    encoder = Encoder(Animator(model), fps, EncoderSettings(max_keyframe_interval=0, keyframe_threshold=50.0,
                                                            keep_reconstruction=True))
    packets = encoder.encode(frames, present) + encoder.finish()
    keys = [f.index for f in decode_all(encoder.header, packets) if f.is_key]
    assert keys == [0, 5, 9]
    assert encoder.stats.key_reasons == {"first": 1, "face-lost": 1, "face-found": 1}


def test_stats_add_up(model, face_frames):
    frames, fps = face_frames
    encoder, packets = encode(model, frames[:7], fps, measure_quantization=True)
    total = bs.HEADER_SIZE + sum(len(p) for p in packets)
    assert encoder.stats.total_bytes == total
    assert len(encoder.stats.quantization_psnr) == encoder.stats.motion_frames
    assert "bits per motion frame" in encoder.stats.summary()


def test_live_decoder_reports_and_resumes_at_key_frame(model, face_frames):
    frames, fps = face_frames
    encoder, packets = encode(model, frames, fps, max_keyframe_interval=5 / fps)
    reference = StreamDecoder(Animator(model), encoder.header).render(decode_all(encoder.header, packets))
    # packets: key 0, motion 1..4, key 5, motion 6..9, end
    assert [bs.parse_packet(p)[0].type for p in (packets[0], packets[5])] == [bs.PACKET_KEY] * 2
    live = StreamDecoder(Animator(model), encoder.header_bytes())
    corrupt = bytearray(packets[7])
    corrupt[-1] ^= 0xFF
    # lose packet 2, deliver packet 1 again late, corrupt packet 7
    order = [packets[0], packets[1], packets[3], packets[1], packets[4], packets[5], packets[6], bytes(corrupt),
             packets[8], packets[9], packets[10]]
    statuses, shown = [], {}
    for data in order:
        report, out = live.push(data)
        statuses.append(report.status)
        assert report.status == STATUS_OK or report.message
        for k, frame in enumerate(out):
            shown[report.frame_index + k] = frame
    assert statuses == [STATUS_OK, STATUS_OK, STATUS_MISSING, STATUS_LATE, STATUS_SKIPPED, STATUS_OK, STATUS_OK,
                        STATUS_CORRUPT, STATUS_SKIPPED, STATUS_SKIPPED, "ended"]
    assert sorted(shown) == [0, 1, 5, 6]
    for index, frame in shown.items():
        assert np.abs(frame.astype(int) - reference[index]).max() <= 2


def test_other_model_is_refused(model, face_frames, tmp_path):
    frames, fps = face_frames
    encoder, packets = encode(model, frames[:3], fps)
    with pytest.raises(BitstreamError, match="made for another model"):
        StreamDecoder(Animator(tiny_model(seed=1)), encoder.header_bytes())
    from facevid2vid.pipeline import decode_file

    path = tmp_path / "s.fv2v"
    path.write_bytes(encoder.header_bytes() + b"".join(packets))
    with pytest.raises(BitstreamError, match="made for another model"):
        decode_file(path, tmp_path / "out.mp4", animator=Animator(tiny_model(seed=1)))
    assert not (tmp_path / "out.mp4").exists()


def test_cli_round_trip_on_a_real_video(model, samples, tmp_path, capsys):
    from facevid2vid.checkpoint import save_checkpoint
    from facevid2vid.cli import main
    from facevid2vid.video_io import read_video, write_video

    clip = tmp_path / "clip.mp4"
    raw, fps = read_video(samples.franck, max_frames=10)
    write_video(clip, raw, fps)
    ckpt = save_checkpoint(tmp_path / "tiny.safetensors", model)
    stream, out = tmp_path / "clip.fv2v", tmp_path / "decoded.mp4"
    assert main(["encode", "--input", str(clip), "--output", str(stream), "--checkpoint", str(ckpt),
                 "--quality", "40", "--keyframe-codec", "webp"]) == 0
    printed = capsys.readouterr().out
    assert "key frames:" in printed and "bits per motion frame" in printed and "kbps" in printed
    assert main(["decode", "--input", str(stream), "--output", str(out), "--checkpoint", str(ckpt)]) == 0
    frames, out_fps = read_video(out)
    from facevid2vid.face.track import track_frames
    from facevid2vid.face.crop import DETECT_EVERY

    side = track_frames(iter(read_video(clip)[0]), every=DETECT_EVERY).crop_box().size  # the encoded crops
    assert frames.shape == (10, side, side, 3) and out_fps == pytest.approx(fps)
    assert main(["decode", "--input", str(stream), "--output", str(tmp_path / "d%03d.png"), "--checkpoint",
                 str(ckpt), "--size", "96"]) == 0
    assert sorted(p.name for p in tmp_path.glob("d*.png"))[:2] == ["d001.png", "d002.png"]
    from facevid2vid.video_io import read_image

    assert read_image(tmp_path / "d010.png").shape == (96, 96, 3)

    # a damaged stream: exit code 1 and one line naming where
    data = stream.read_bytes()
    bad = tmp_path / "bad.fv2v"
    bad.write_bytes(data[: len(data) - 30])
    capsys.readouterr()
    assert main(["decode", "--input", str(bad), "--output", str(tmp_path / "bad.mp4"), "--checkpoint", str(ckpt)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "truncated" in err and "byte" in err


def test_decoded_video_has_the_input_size(model, samples, tmp_path):
    """--no-crop: the frames are the face crops, so decode gives back the input's size (not the model's)."""
    from facevid2vid.pipeline import decode_file, encode_file
    from facevid2vid.video_io import read_video, write_video

    raw, fps = read_video(samples.franck, max_frames=4)
    clip = tmp_path / "clip.mp4"
    write_video(clip, raw[:, :200, :200], fps)
    animator = Animator(model)
    encode_file(clip, tmp_path / "c.fv2v", crop=False, animator=animator)
    decode_file(tmp_path / "c.fv2v", tmp_path / "out.mp4", animator=animator)
    frames, _ = read_video(tmp_path / "out.mp4")
    assert frames.shape == (4, 200, 200, 3)
    decode_file(tmp_path / "c.fv2v", tmp_path / "small.mp4", animator=animator, size=64)
    assert read_video(tmp_path / "small.mp4")[0].shape == (4, 64, 64, 3)
