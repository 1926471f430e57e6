"""LivePortrait as a model family: its file format converted, parity with its own code, the codec with it.

The fixtures (tests/data/parity/liveportrait/, made by scripts/fixtures/parity_liveportrait.py with
LivePortrait's own code) hold a recipe of seeded random weights at the released architecture and
what the reference computed with them on three face crops of franck.mp4. Here the five ``.pth``
files are rebuilt from the recipe (no reference code), converted, loaded, and every network is
compared. W and G are compared on reduced spatial sizes (a 128x128 crop's volume, a 16x16 window)
to keep the default suite fast; the full 256 -> 512 renders in four modes are the slow test.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from facevid2vid.checkpoint import (checkpoint_family, load_checkpoint, model_fingerprint, read_checkpoint_config,
                                    resolve_model, save_checkpoint)
from facevid2vid.convert.liveportrait import SOURCES_KEY, convert_liveportrait
from facevid2vid.errors import CheckpointError, InputError
from facevid2vid.families.liveportrait import (MODULES, LivePortrait, LivePortraitConfig, liveportrait_config,
                                               tiny_liveportrait_config)
from facevid2vid.families.liveportrait.reference_format import reference_layout
from facevid2vid.families.liveportrait.synthetic import load_recipe, make_recipe, write_reference_files
from facevid2vid.structures import HeadMotion, View
from facevid2vid.weights_io import read_metadata

FIXTURES = Path(__file__).parent / "data" / "parity" / "liveportrait"
TOL = 1e-4  # per-network max abs difference
FILES = ("appearance_feature_extractor.pth", "motion_extractor.pth", "warping_module.pth", "spade_generator.pth",
         "stitching_retargeting_module.pth")


def images(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array).permute(0, 3, 1, 2).float() / 255.0


def max_diff(ours: torch.Tensor, ref: np.ndarray) -> float:
    ours = ours.detach().numpy()
    assert ours.shape == ref.shape
    return float(np.abs(ours - ref).max())


@pytest.fixture(scope="module")
def fx():
    return SimpleNamespace(inputs=np.load(FIXTURES / "inputs.npz"), ref=np.load(FIXTURES / "networks.npz"))


@pytest.fixture(scope="module")
def converted(tmp_path_factory, one_thread):
    """The recipe's five reference-format files, converted and loaded."""
    tmp = tmp_path_factory.mktemp("liveportrait")
    weights = write_reference_files(load_recipe(FIXTURES / "recipe.json"), tmp / "weights")
    checkpoint = convert_liveportrait(weights, tmp / "liveportrait.safetensors")
    return SimpleNamespace(weights=weights, checkpoint=checkpoint, model=load_checkpoint(checkpoint))


@pytest.fixture(scope="module")
def encoded(converted, fx):
    """Our source encoding of crop 0 and motion of all three crops."""
    with torch.no_grad():
        crops = images(fx.inputs["crops"])
        return SimpleNamespace(source=converted.model.encode_source(crops[:1]),
                               motion=converted.model.estimate_motion(crops))


# -- the file format ----------------------------------------------------------------------------

def test_the_converter_expects_exactly_the_reference_keys(converted):
    """The recipe lists the reference networks' own state-dict keys and shapes (read from its code)."""
    model = converted.model
    expected = reference_layout({p: getattr(model, a) for p, a in MODULES.items()})
    recipe = load_recipe(FIXTURES / "recipe.json")
    assert {f: {k: tuple(v["shape"]) for k, v in keys.items()} for f, keys in recipe["files"].items()} == expected


def test_the_checkpoint_records_family_config_and_sources(converted):
    path = converted.checkpoint
    assert checkpoint_family(path) == "liveportrait"
    cfg = read_checkpoint_config(path)
    assert isinstance(cfg, LivePortraitConfig) and cfg == liveportrait_config()
    assert (cfg.image_size, cfg.output_size, cfg.num_keypoints) == (256, 512, 21)
    sources = json.loads(read_metadata(path)[SOURCES_KEY])
    assert set(sources) == set(FILES)
    for name, digest in sources.items():
        assert hashlib.sha256((converted.weights / name).read_bytes()).hexdigest() == digest
    assert isinstance(converted.model, LivePortrait)


def _weights_copy(converted, tmp_path, replace: str, data: bytes):
    folder = tmp_path / "weights"
    folder.mkdir()
    for name in FILES:
        (folder / name).symlink_to(converted.weights / name)
    (folder / replace).unlink()
    (folder / replace).write_bytes(data)
    return folder


class _RunsCode:
    def __reduce__(self):
        import os

        return os.system, ("touch pwned-by-pickle",)


def test_a_pickle_that_would_run_code_is_refused(converted, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = _weights_copy(converted, tmp_path, "warping_module.pth", pickle.dumps({"x": _RunsCode()}, protocol=2))
    with pytest.raises(CheckpointError, match="warping_module.pth: refused: loading it would unpickle more than tensors"):
        convert_liveportrait(folder, tmp_path / "out.safetensors")
    assert not (tmp_path / "pwned-by-pickle").exists() and not (tmp_path / "out.safetensors").exists()


def test_a_git_lfs_pointer_is_recognised(converted, tmp_path):
    pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 1234\n"
    folder = _weights_copy(converted, tmp_path, "spade_generator.pth", pointer)
    with pytest.raises(CheckpointError, match="spade_generator.pth is a Git LFS pointer"):
        convert_liveportrait(folder, tmp_path / "out.safetensors")


def test_missing_unexpected_and_mismatched_keys_are_named(tmp_path):
    cfg = tiny_liveportrait_config()
    model = LivePortrait(cfg)
    weights = write_reference_files(make_recipe(reference_layout({p: getattr(model, a) for p, a in MODULES.items()}),
                                                cfg.num_keypoints), tmp_path / "w")
    state = torch.load(weights / "motion_extractor.pth", weights_only=True)
    del state["detector.fc_t.bias"]
    state["detector.extra"] = torch.zeros(1)
    state["detector.fc_kp.weight"] = torch.zeros(5, 5)
    torch.save(state, weights / "motion_extractor.pth")
    with pytest.raises(CheckpointError) as err:
        convert_liveportrait(weights, tmp_path / "out.safetensors", tiny_liveportrait_config())
    message = str(err.value)
    assert "missing keys detector.fc_t.bias" in message and "unexpected keys detector.extra" in message
    assert "shape mismatch detector.fc_kp.weight (5, 5)" in message and "\n" not in message
    (weights / "eye.pth").touch()
    (weights / "motion_extractor.pth").unlink()
    with pytest.raises(CheckpointError, match="motion_extractor.pth not found"):
        convert_liveportrait(weights, tmp_path / "out.safetensors", cfg)


# -- per-network parity (the reference's outputs on the same weights and crops) --------------------

def test_motion_extractor_parity(converted, encoded, fx):
    with torch.no_grad():
        raw = converted.model.motion_extractor(images(fx.inputs["crops"]))
    ref = fx.ref
    assert max_diff(raw.kp, ref["m_kp"]) <= TOL and max_diff(raw.expression, ref["m_exp"]) <= TOL
    assert max_diff(raw.translation, ref["m_t"]) <= TOL and max_diff(raw.scale, ref["m_scale"][:, 0]) <= TOL
    for name in ("yaw", "pitch", "roll"):  # degrees: 3 E[bin] - 97.5
        assert max_diff(getattr(raw, f"{name}_logits"), ref[f"m_{name}_raw"]) <= TOL
        assert max_diff(getattr(encoded.motion, name), ref[f"m_{name}"][:, 0]) <= TOL
    assert max_diff(encoded.motion.scale, ref["m_scale"][:, 0]) <= TOL


def test_appearance_parity(encoded, fx):
    features, step = encoded.source.features, int(fx.inputs["f_step"])
    assert max_diff(features[:, :, :, ::step, ::step], fx.ref["f_sub"]) <= TOL
    assert max_diff(features.mean(dim=(2, 3, 4)), fx.ref["f_mean"]) <= TOL
    assert max_diff(features.std(dim=(2, 3, 4)), fx.ref["f_std"]) <= TOL


@pytest.mark.parametrize("mode", ["absolute", "relative", "pipeline_absolute"])
@pytest.mark.parametrize("stitching", [False, True])
def test_driving_keypoints_parity(converted, encoded, fx, mode, stitching):
    """x_s and x_d: our motion handling and stitching against the reference's, driving crop 2, reference crop 1."""
    model, source = converted.model, encoded.source
    driving, reference = encoded.motion.index(slice(2, 3)), encoded.motion.index(slice(1, 2))
    motion = {"absolute": driving, "relative": model.relative_motion(driving, reference, source.motion),
              "pipeline_absolute": model.absolute_motion(driving, source.motion)}[mode]
    with torch.no_grad():
        kp = model.driving_keypoints(source, motion, stitching=stitching)
    assert max_diff(source.kp, fx.ref["x_s"]) <= TOL
    assert max_diff(kp, fx.ref[f"x_d_{mode}" + ("_stitched" if stitching else "")]) <= TOL


def test_warping_parity(converted, fx):
    model, ref = converted.model, fx.ref
    with torch.no_grad():
        volume = model.appearance_feature_extractor(images(fx.inputs["reduced"]))  # (1, 32, 16, 32, 32)
        out = model.warping_module(volume, torch.from_numpy(ref["x_s"]), torch.from_numpy(ref["x_d_absolute_stitched"]))
    assert max_diff(out.features, ref["w_out"]) <= TOL
    assert max_diff(out.deformation, ref["w_deformation"]) <= TOL and max_diff(out.occlusion, ref["w_occlusion"]) <= TOL


def test_decoder_and_retargeting_parity(converted, fx):
    model, ref = converted.model, fx.ref
    s, x_s = model.stitching_retargeting_module, torch.from_numpy(ref["x_s"])
    with torch.no_grad():
        assert max_diff(model.spade_generator(torch.from_numpy(ref["g_in"])), ref["g_out"]) <= TOL  # folded SN
        assert max_diff(s.retarget_lip(x_s, torch.from_numpy(ref["lip_ratio"])), ref["lip_delta"]) <= TOL
        assert max_diff(s.retarget_eye(x_s, torch.from_numpy(ref["eye_ratio"])), ref["eye_delta"]) <= TOL


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["absolute", "relative"])
@pytest.mark.parametrize("stitching", [False, True])
def test_end_to_end_parity(converted, encoded, mode, stitching):
    """256 -> 512 renders within 2/255 of the reference's (its uint8 output truncates: so does this)."""
    expected = np.load(FIXTURES / "end_to_end.npz")[mode + ("_stitched" if stitching else "")]
    model, source = converted.model, encoded.source
    driving, reference = encoded.motion.index(slice(2, 3)), encoded.motion.index(slice(1, 2))
    motion = driving if mode == "absolute" else model.relative_motion(driving, reference, source.motion)
    with torch.no_grad():
        frame = model.render(source, motion, stitching=stitching)
    assert frame.shape == (1, 3, 512, 512)
    ours = np.clip(frame.permute(0, 2, 3, 1).numpy() * 255, 0, 255).astype(np.uint8)
    assert np.abs(ours.astype(int) - expected).max() <= 2


# -- the synthesis interface ------------------------------------------------------------------------

def _lp_rotation(pitch, yaw, roll):
    """LivePortrait's get_rotation_matrix, written out: (R_z R_y R_x)^T for row vectors (float64)."""
    x, y, z = (math.radians(a) for a in (pitch, yaw, roll))
    rx = np.array([[1, 0, 0], [0, math.cos(x), -math.sin(x)], [0, math.sin(x), math.cos(x)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(z), -math.sin(z), 0], [math.sin(z), math.cos(z), 0], [0, 0, 1]])
    return (rz @ ry @ rx).T


def test_relative_motion_is_liveportraits_on_large_motions():
    """R_d R_d0^T R_s of LivePortrait's row-vector maths, on poses far apart (the fixtures' are close)."""
    rng = np.random.default_rng(0)
    k = 21
    canonical = rng.uniform(-0.6, 0.6, (1, k, 3))
    poses = rng.uniform(-35, 35, (3, 3))  # source, reference, driving: (pitch, yaw, roll)
    exp, t, s = rng.normal(0, 0.03, (3, k, 3)), rng.normal(0, 0.1, (3, 3)), rng.uniform(0.8, 1.3, 3)

    def motion(i):
        def f32(a):
            return torch.tensor(a, dtype=torch.float32)

        return HeadMotion(*(f32([poses[i, j]]) for j in (1, 0, 2)), f32(t[i:i + 1]), f32(exp[i:i + 1]),
                          scale=f32(s[i:i + 1]))

    rel = LivePortrait.relative_motion(motion(2), motion(1), motion(0))
    src = SimpleNamespace(canonical_kp=torch.tensor(canonical, dtype=torch.float32), batch_size=1)
    model = SimpleNamespace(cfg=SimpleNamespace(stitching=False))
    ours = LivePortrait.driving_keypoints(model, src, rel)[0].double().numpy()
    r = [_lp_rotation(*poses[i]) for i in range(3)]
    scale = s[0] * (s[2] / s[1])
    shift = t[0] + (t[2] - t[1])
    expected = scale * (canonical[0] @ (r[2] @ r[1].T @ r[0]) + exp[0] + (exp[2] - exp[1]))
    expected[:, :2] += shift[:2]
    assert np.abs(ours - expected).max() < 2e-5


def test_render_broadcasts_views_and_checks_inputs():
    torch.manual_seed(0)
    model = LivePortrait(tiny_liveportrait_config()).eval()
    frames = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        source, motion = model.encode_source(frames[:1]), model.estimate_motion(frames)
        assert motion.scale.shape == (3,) and source.motion.scale.shape == (1,)
        out = model.render(source, motion, View(yaw=torch.tensor([0.0, 10.0, -10.0])))
        assert out.shape == (3, 3, 128, 128) and 0 <= out.min() and out.max() <= 1
        one = model.render(source, motion.index(slice(1, 2)), View(yaw=10.0))
        assert torch.allclose(one, out[1:2], atol=1e-5)
        assert not torch.allclose(model.render(source, motion, stitching=False),
                                  model.render(source, motion, stitching=True))
        with pytest.raises(ValueError, match="needs a scale"):
            model.render(source, HeadMotion(motion.yaw, motion.pitch, motion.roll, motion.translation, motion.delta))
        with pytest.raises(InputError, match=r"\(B, 3, 64, 64\)"):
            model.estimate_motion(torch.rand(1, 3, 32, 32))
    both = HeadMotion.cat([motion.index(slice(0, 1)), motion.detach()])
    assert both.scale.shape == (4,) and torch.equal(both.scale[1:], motion.scale)


def test_checkpoint_round_trip_and_fingerprints(tmp_path):
    torch.manual_seed(1)
    model = LivePortrait(tiny_liveportrait_config()).eval()
    path = save_checkpoint(tmp_path / "tiny-lp.safetensors", model, half=True)
    again = load_checkpoint(path)
    assert isinstance(again, LivePortrait) and again.cfg == model.cfg
    assert model_fingerprint(again) == model_fingerprint(model)
    assert isinstance(resolve_model(str(path)), LivePortrait)
    assert model_fingerprint(resolve_model(None, preset="liveportrait-tiny")) != model_fingerprint(model)
    with pytest.raises(CheckpointError, match="holds no discriminator"):
        load_checkpoint(path, with_discriminator=True)


# -- the codec with a converted LivePortrait model -----------------------------------------------

def test_codec_round_trip_with_a_converted_model(tmp_path, one_thread):
    from facevid2vid.codec import bitstream as bs
    from facevid2vid.codec.decoder import StreamDecoder, check_model, iter_decoded
    from facevid2vid.codec.encoder import Encoder, EncoderSettings
    from facevid2vid.errors import BitstreamError
    from facevid2vid.inference import Animator

    cfg = tiny_liveportrait_config()
    layout = reference_layout({p: getattr(LivePortrait(cfg), a) for p, a in MODULES.items()})
    weights = write_reference_files(make_recipe(layout, cfg.num_keypoints, seed=3), tmp_path / "w")
    model = load_checkpoint(convert_liveportrait(weights, tmp_path / "lp.safetensors", cfg))
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (1, 64, 64, 3))
    frames = np.clip(base + rng.normal(0, 6, (6, 64, 64, 3)).cumsum(0), 0, 255).astype(np.uint8)
    encoder = Encoder(Animator(model, batch_size=4), 25, EncoderSettings(keyframe_codec="webp",
                                                                         keep_reconstruction=True))
    stream = b"".join([encoder.header_bytes(), *encoder.encode(frames), *encoder.finish()])
    header = bs.parse_header(stream)
    assert (header.family, header.has_scale, len(stream) > bs.HEADER_SIZE) == (bs.FAMILY_LIVEPORTRAIT, True, True)
    decoded = list(iter_decoded(io.BytesIO(stream)))
    assert len(decoded) == 6 and decoded[0].indices.shape == (7 + 3 * cfg.num_keypoints,)
    assert np.array_equal(np.stack([f.indices for f in decoded]), np.stack(encoder.indices))
    out = StreamDecoder(Animator(model), header).render(decoded)
    assert out.shape == (6, 64, 64, 3)  # rendered at 128, shown at the encoded size
    assert np.abs(out.astype(int) - np.stack(encoder.reconstruction)).max() <= 2
    with pytest.raises(BitstreamError, match="for a facevid2vid model"):
        check_model(bs.StreamHeader(**{**header.__dict__, "family": bs.FAMILY_FACEVID2VID, "scale_step": 0.0}),
                    model)
