"""Converted open face-vid2vid checkpoints reproduce the reference (tests/data/parity/open_fv2v).

The fixtures hold what the reimplementation's own code computed (scripts/fixtures/parity_open_fv2v.py)
with seeded random weights whose recipe is stored beside them: here the reference-format checkpoint is
rebuilt from that recipe (no reference code), converted by ``facevid2vid convert --from open-fv2v``
and run. Default suite: 128 px (the networks are fully convolutional: same weights, a quarter of
the work); ``-m slow``: 256 px. Variants: "spade" (today's code, vox-256.yaml) and "beta" (the code
of 2021-09-18, the original generator).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facevid2vid.checkpoint import read_metadata, save_checkpoint
from facevid2vid.cli import main as cli
from facevid2vid.errors import CheckpointError
from facevid2vid.geometry import rotation_from_angles
from facevid2vid.models import FaceVid2Vid
from facevid2vid.structures import SourceEncoding

from parity_helpers import (ROOT, animate_cli, check_pickle_refused_unrun, fixture_script, image_diff, max_diff, npz,
                            to_images)

DATA = ROOT / "tests" / "data" / "parity" / "open_fv2v"
VARIANTS = ("spade", "beta")
NETWORK_TOL = 1e-4  # per network, max abs difference
IMAGE_TOL = 2  # end to end, uint8 levels per pixel


recipes = fixture_script("parity_open_fv2v")


@dataclasses.dataclass
class Converted:
    """One variant: the rebuilt reference checkpoint, the converter's model of it and the reference's outputs."""

    variant: str
    reference: Path  # the rebuilt .pth.tar
    model: FaceVid2Vid  # what the converter writes, kept in memory
    networks: dict[str, np.ndarray]
    e2e: dict[str, np.ndarray]
    crops: dict[int, np.ndarray]
    folder: Path


@pytest.fixture(scope="module")
def crops() -> dict[int, np.ndarray]:
    return {int(k.split("_")[1]): v for k, v in npz(DATA / "inputs.npz").items() if k.startswith("crops_")}


@pytest.fixture(scope="module", params=VARIANTS)
def converted(request, tmp_path_factory, crops, one_thread) -> Converted:
    from facevid2vid.convert.open_fv2v import load_reference

    variant = request.param
    folder = tmp_path_factory.mktemp(f"open-fv2v-{variant}")
    recipe = json.loads((DATA / variant / "recipe.json").read_text())
    reference = recipes.save_reference_checkpoint(recipe, folder / "checkpoint.pth.tar")
    model, _, _ = load_reference(reference)
    return Converted(variant, reference, model, npz(DATA / variant / "networks.npz"),
                     npz(DATA / variant / "end_to_end.npz"), crops, folder)


@pytest.fixture(scope="module")
def converted_file(converted) -> Path:
    """``facevid2vid convert --from open-fv2v`` of the variant's reference checkpoint (generator and config found)."""
    output = converted.folder / "converted.safetensors"
    assert cli(["convert", "--from", "open-fv2v", str(converted.reference), "--output", str(output)]) == 0
    return output


@torch.no_grad()
def network_diffs(c: Converted, size: int) -> dict[str, float]:
    """Max abs difference of each network's outputs to the reference's on the crops of ``size``."""
    from facevid2vid.models.pose_expression import motion_from_heads

    ref, m = {k.split("_", 1)[1]: v for k, v in c.networks.items() if k.startswith(f"{size}_")}, c.model
    x = to_images(c.crops[size])
    n = 1 if m.cfg.kp_scale_factor == 1 else len(x)  # L at full size (beta) is slow: the source only
    kp = m.kp_detector(x[:n])  # (n, K, 3)
    heads = m.he_estimator.heads(x)
    motion = motion_from_heads(heads, m.cfg.angle_convention)
    rotation = rotation_from_angles(motion.yaw, motion.pitch, motion.roll)  # ours, from HeadMotion's angles
    diffs = {"L kp": max_diff(kp, ref["kp"][:n]), "H t": max_diff(heads.translation, ref["t"]),
             "H exp": max_diff(heads.delta.flatten(1), ref["exp"]), "H rotation": max_diff(rotation, ref["rotation"])}
    for angle in ("yaw", "pitch", "roll"):
        diffs[f"H {angle} bins"] = max_diff(getattr(heads, f"{angle}_logits"), ref[f"{angle}_logits"])
    kp_source, kp_driving = torch.from_numpy(ref["kp_source"]), torch.from_numpy(ref["kp_driving"])
    ours_source = m.encode_source(x[:1]) if size == m.cfg.image_size else None
    if ours_source is not None:  # our own x_s = R_s x_c + t_s + d_s, with R_s from our angles
        diffs["x_s"] = max_diff(ours_source.kp, ref["kp_source"])
    features = m.appearance_feature_extractor(x[:1])
    eye = torch.eye(3).unsqueeze(0)
    source = SourceEncoding(features, kp[:1], motion.index(slice(0, 1)), kp_source, eye,
                            m.dense_motion.prepare_source(features, kp_source))
    step = 1 if size <= 128 else recipes.G_STEP_256
    image = m.synthesize(source, kp_driving, eye).image[..., ::step, ::step]
    diffs["F+M+G image"] = max_diff(image, ref["prediction"])
    return diffs


def test_every_network_matches_the_reference_at_128px(converted):
    diffs = network_diffs(converted, 128)
    print(converted.variant, {k: f"{v:.1e}" for k, v in diffs.items()})
    assert diffs.pop("H rotation") <= 1e-5, "rotation order / angle mapping"
    assert max(diffs.values()) <= NETWORK_TOL, diffs


def _animate(checkpoint: Path, crops: np.ndarray, folder: Path) -> np.ndarray:
    """``facevid2vid animate --mode absolute --no-crop`` on crops[0] driven by crops[1:] (a lossless video)."""
    return animate_cli(checkpoint, crops[0], crops[1:], "absolute", folder)


def _at_size(c: Converted, size: int, folder: Path) -> Path:
    """The converted model saved with ``image_size`` changed (the same weights: every network is convolutional)."""
    with torch.device("meta"):
        model = FaceVid2Vid(dataclasses.replace(c.model.cfg, image_size=size, name=f"{c.model.cfg.name}-{size}"))
    model.load_state_dict(c.model.state_dict(), assign=True)
    return save_checkpoint(folder / f"converted-{size}.safetensors", model)


def test_animate_reproduces_the_reference_demo_at_128px(converted, tmp_path):
    """One driving frame (frames are independent in absolute mode; -m slow runs two at 256 px)."""
    frames = _animate(_at_size(converted, 128, tmp_path), converted.crops[128][:2], tmp_path / "run")
    worst, mean = image_diff(frames, converted.e2e["e2e_128"][:1])
    print(converted.variant, "max", worst, "mean", mean)
    assert worst <= IMAGE_TOL


@pytest.mark.slow
def test_every_network_and_animate_match_the_reference_at_256px(converted, converted_file, tmp_path):
    diffs = network_diffs(converted, 256)
    print(converted.variant, {k: f"{v:.1e}" for k, v in diffs.items()})
    assert diffs.pop("H rotation") <= 1e-5
    assert max(diffs.values()) <= NETWORK_TOL, diffs
    frames = _animate(converted_file, converted.crops[256], tmp_path / "run")
    worst, mean = image_diff(frames, converted.e2e["e2e_256"])
    print(converted.variant, "end to end max", worst, "mean", mean)
    assert worst <= IMAGE_TOL


def test_the_converted_checkpoint_says_where_it_comes_from(converted, converted_file):
    from facevid2vid.data.fetch import sha256_file

    from facevid2vid.checkpoint import read_checkpoint_config, tensor_checksum
    from facevid2vid.models import MODULES

    meta = read_metadata(converted_file, "checkpoint")
    generator = {"spade": "spade", "beta": "original"}[converted.variant]
    assert meta["family"] == "open-fv2v" and meta["generator"] == generator
    assert meta["source_sha256"] == sha256_file(converted.reference)
    assert meta["source_config"] == {"spade": "vox-256.yaml", "beta": "vox-256-beta.yaml"}[converted.variant]
    cfg = read_checkpoint_config(converted_file)
    assert cfg == converted.model.cfg and cfg.name == {"spade": "open-fv2v-256", "beta": "open-fv2v-256-beta"}[
        converted.variant]
    # the file holds exactly the tensors of the model the parity tests run (checked without loading 0.5 GB)
    tensors = {f"{p}.{k}": v for p, attr in MODULES.items()
               for k, v in getattr(converted.model, attr).state_dict().items()}
    assert meta["facevid2vid_sha256"] == tensor_checksum(tensors)
    assert not any(m.training for m in converted.model.modules())  # batch norm in eval mode: running statistics


# ----------------------------------------------------------------------------- what the converter refuses


def test_a_pickle_that_would_run_code_is_refused_unrun(tmp_path, capsys):
    check_pickle_refused_unrun(tmp_path, capsys, "open-fv2v", "evil.pth.tar", ("kp_detector", "he_estimator"))


def test_a_git_lfs_pointer_is_recognised(tmp_path, capsys):
    pointer = tmp_path / "00000189-checkpoint.pth.tar"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 123\n")
    assert cli(["convert", "--from", "open-fv2v", str(pointer), "--output", str(tmp_path / "o.safetensors")]) == 1
    err = capsys.readouterr().err
    assert "Git LFS pointer" in err and len(err.strip().splitlines()) == 1


def test_other_files_are_refused_in_one_line(tmp_path, capsys):
    torch.save([torch.zeros(1)], tmp_path / "list.pth.tar")
    (tmp_path / "noise.pth.tar").write_bytes(b"not a checkpoint at all " * 10)
    torch.save({"generator": {}, "kp_detector": {}}, tmp_path / "partial.pth.tar")
    for name, words in (("noise.pth.tar", "not"), ("list.pth.tar", "not a dict"),
                        ("partial.pth.tar", "no he_estimator"), ("absent.pth.tar", "not found")):
        assert cli(["convert", "--from", "open-fv2v", str(tmp_path / name), "--output",
                    str(tmp_path / "o.safetensors")]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err and name in err, err


def test_missing_and_mismatched_tensors_are_named(converted):
    from facevid2vid.convert.open_fv2v import map_state_dicts, read_reference_checkpoint

    if converted.variant != "spade":
        pytest.skip("one variant is enough")
    ckpt = read_reference_checkpoint(converted.reference)
    ckpt["he_estimator"].pop("fc_roll.weight")  # our yaw head
    ckpt["generator"]["decoder.G_middle_2.conv_0.weight_orig"] = torch.zeros(512, 512, 1, 1)
    ckpt["kp_detector"]["jacobian.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as err:
        map_state_dicts(ckpt, converted.model, converted.reference)
    message = str(err.value)
    assert "missing he_estimator.fc_roll.weight" in message
    assert "generator.decoder.G_middle_2.conv_0.weight (512, 512, 1, 1) vs (512, 512, 3, 3)" in message
    assert "unexpected kp_detector.jacobian.weight" in message and "\n" not in message


def test_generator_and_config_must_match_the_file(converted, tmp_path, capsys):
    other = {"spade": ["--generator", "original"], "beta": ["--config", "vox-256.yaml"]}[converted.variant]
    out = tmp_path / "o.safetensors"
    assert cli(["convert", "--from", "open-fv2v", str(converted.reference), "--output", str(out), *other]) == 1
    err = capsys.readouterr().err
    expected = "spade generator, not the original" if converted.variant == "spade" else "--config vox-256-beta.yaml"
    assert expected in err
    assert not out.exists()


def test_liveportrait_takes_no_open_fv2v_options(tmp_path, capsys):
    assert cli(["convert", "--from", "liveportrait", str(tmp_path), "--generator", "spade",
                "--output", str(tmp_path / "o.safetensors")]) == 2
    assert "open-fv2v option" in capsys.readouterr().err


# ----------------------------------------------------------------------------- easy to get wrong


def _explicit(a: torch.Tensor, axis: str) -> torch.Tensor:
    """A rotation by ``a`` radians about one axis, written out (x right, y down, z away)."""
    c, s = float(torch.cos(a)), float(torch.sin(a))
    return torch.tensor({"x": [[1, 0, 0], [0, c, -s], [0, s, c]], "y": [[c, 0, s], [0, 1, 0], [-s, 0, c]],
                         "z": [[c, -s, 0], [s, c, 0], [0, 0, 1]]}[axis], dtype=torch.float64)


def test_angle_conventions_map_onto_ours_with_the_same_rotation():
    from facevid2vid.models.conventions import our_angles, reference_rotation

    yaw, pitch, roll = (torch.tensor(v) for v in ([14.2, -30.0, 5.0], [-9.3, 12.0, 0.0], [17.8, 8.0, -25.0]))
    r = 3.14 / 180  # the reference's own degrees -> radians
    for convention, order in (("open-fv2v", (("x", pitch), ("y", yaw), ("z", roll))),
                              ("open-fv2v-beta", (("x", roll), ("y", pitch), ("z", yaw)))):
        theirs = reference_rotation(yaw, pitch, roll, convention)
        for i in range(3):
            explicit = torch.linalg.multi_dot([_explicit(a[i] * r, axis) for axis, a in order])
            assert torch.allclose(theirs[i].double(), explicit, atol=1e-6)
        ours = our_angles(yaw, pitch, roll, convention)
        assert torch.allclose(rotation_from_angles(*ours), theirs.float(), atol=1e-6)
        # small angles stay close to the reference's own numbers, but the orders differ
        assert not torch.allclose(rotation_from_angles(yaw * 3.14 / torch.pi, pitch * 3.14 / torch.pi,
                                                       roll * 3.14 / torch.pi), theirs.float(), atol=1e-3)
    small = (torch.tensor([5.0]), torch.tensor([3.0]), torch.tensor([4.0]))  # yaw stays yaw, roll stays roll
    assert all(abs(float(o) - float(t)) < 0.5 for o, t in zip(our_angles(*small, "open-fv2v"), small))


def test_yaw_and_roll_heads_come_from_the_swapped_layers():
    from facevid2vid.convert.open_fv2v import reference_name

    assert reference_name("H", "yaw.weight") == ("he_estimator", "fc_roll.weight")
    assert reference_name("H", "roll.bias") == ("he_estimator", "fc_yaw.bias")
    assert reference_name("H", "pitch.weight") == ("he_estimator", "fc_pitch.weight")
    assert reference_name("H", "stages.2.blocks.3.spatial.conv.weight") == ("he_estimator", "block5.b5_2.conv2.weight")
    assert reference_name("H", "stages.3.blocks.0.shortcut.norm.running_var") == (
        "he_estimator", "block6.norm4.running_var")
    assert reference_name("G", "decoder.up.1.shortcut_norm.shared.weight") == (
        "generator", "decoder.up_1.norm_s.mlp_shared.0.weight")
    assert reference_name("G", "resblocks.0.conv1.weight") == ("generator", "resblocks_2d.2dr0.conv1.weight")
    assert reference_name("M", "hourglass.final_norm.bias") == (
        "generator", "dense_motion_network.hourglass.decoder.norm.bias")


def test_warps_sample_as_grid_sample_defaults_with_zero_padding():
    from facevid2vid.geometry import make_coordinate_grid
    from facevid2vid.models.blocks import warp_3d

    torch.manual_seed(0)
    volume = torch.randn(2, 3, 4, 6, 6)
    flow = make_coordinate_grid(4, 6, 6).expand(2, -1, -1, -1, -1) * 1.2  # partly outside the volume
    ours = warp_3d(volume, flow, align_corners=False, padding="zeros")
    assert torch.equal(ours, F.grid_sample(volume, flow, align_corners=False))
    identity = make_coordinate_grid(4, 6, 6).expand(2, -1, -1, -1, -1)
    assert torch.allclose(warp_3d(volume, identity), volume, atol=1e-6)  # ours: align_corners=True
    assert not torch.allclose(warp_3d(volume, identity, align_corners=False, padding="zeros"), volume, atol=1e-2)


def test_the_anti_alias_filter_is_a_13_tap_gaussian_of_sigma_1_5():
    from facevid2vid.models.keypoints import GaussianDownsample, gaussian_kernel

    kernel = gaussian_kernel(0.25)
    taps = torch.arange(13, dtype=torch.float64) - 6
    one = torch.exp(-taps**2 / (2 * 1.5**2))
    assert kernel.shape == (13, 13) and torch.allclose(kernel.double(), torch.outer(one, one) / one.sum()**2, atol=1e-7)
    image = torch.rand(1, 3, 128, 128)
    expected = F.conv2d(F.pad(image, (6, 6, 6, 6)), kernel.expand(3, 1, 13, 13), groups=3)[:, :, ::4, ::4]
    assert torch.allclose(GaussianDownsample(0.25)(image), expected, atol=1e-6)
    assert GaussianDownsample(0.25)(image).shape == (1, 3, 32, 32)
    assert torch.allclose(torch.from_numpy(recipes._gaussian(0.25, 3)), kernel.expand(3, 1, 13, 13), atol=1e-7)


def test_spectral_norm_folds_to_the_weight_eval_mode_uses():
    from facevid2vid.weights_io import fold_spectral_norm

    torch.manual_seed(1)
    conv = torch.nn.utils.spectral_norm(torch.nn.Conv2d(8, 6, 3, padding=1))
    conv.train()
    for _ in range(3):
        conv(torch.randn(1, 8, 5, 5))  # power iterations move u and v
    conv.eval()
    state = conv.state_dict()
    plain = torch.nn.Conv2d(8, 6, 3, padding=1)
    plain.load_state_dict({"weight": fold_spectral_norm(state["weight_orig"], state["weight_u"], state["weight_v"]),
                           "bias": state["bias"]})
    x = torch.randn(2, 8, 5, 5)
    assert torch.allclose(plain(x), conv(x), atol=1e-6)


def test_batch_norm_runs_on_running_statistics(converted):
    """A converted network's output for one image does not depend on the rest of the batch (eval mode)."""
    x = to_images(converted.crops[128])
    with torch.no_grad():
        alone, batch = converted.model.he_estimator.heads(x[:1]), converted.model.he_estimator.heads(x)
    assert torch.allclose(alone.delta, batch.delta[:1], atol=1e-6)
    assert torch.allclose(alone.yaw_logits, batch.yaw_logits[:1], atol=1e-5)


def test_new_config_fields_default_to_the_existing_design():
    from facevid2vid.config import BACKWARD_COMPATIBLE_DEFAULTS, ModelConfig, model_preset

    new = ("appearance_first_kernel", "kp_heatmap_kernel", "kp_downsample", "he_trunk", "angle_convention",
           "upsample_3d", "downsample_3d", "motion_final_conv", "warp_align_corners", "warp_padding",
           "generator_decoder", "generator_spectral_norm", "generator_activation", "spade_hidden")
    tiny = model_preset("tiny")
    old = {k: v for k, v in tiny.to_dict().items() if k not in new}
    assert set(new) <= set(BACKWARD_COMPATIBLE_DEFAULTS) and ModelConfig.from_stored(old) == tiny
    assert all(getattr(ModelConfig(), k) == BACKWARD_COMPATIBLE_DEFAULTS[k]({}) for k in new)
    for name in ("open-fv2v-256", "open-fv2v-256-beta"):
        cfg = model_preset(name)
        assert cfg.flow_mode == "identity" and not cfg.generator_spectral_norm and cfg.num_keypoints == 15
    with pytest.raises(ValueError, match="warp_padding must be one of"):
        dataclasses.replace(tiny, warp_padding="reflect").validate()
