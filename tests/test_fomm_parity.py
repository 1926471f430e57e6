"""Converted first-order-model checkpoints reproduce the reference (tests/data/parity/fomm).

The fixtures hold what first-order-model's own code computed (scripts/fixtures/parity_fomm.py) with
seeded random weights whose recipe is stored beside them: here the ``vox-cpk.pth.tar``-format
checkpoint is rebuilt from that recipe (no reference code), converted by ``facevid2vid convert
--from fomm`` and run. Default suite: 128 px (every network is convolutional: the same weights on
smaller maps); ``-m slow``: 256 px. Both motion modes: absolute (the driving keypoints as they are)
and relative (the demo's ``normalize_kp`` with the movement scale and relative Jacobians).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facevid2vid.cli import main as cli
from facevid2vid.errors import CheckpointError
from facevid2vid.families.fomm import FOMM, FOMMConfig
from facevid2vid.structures import ImageSource, KeypointMotion

from parity_helpers import (ROOT, animate_cli, check_pickle_refused_unrun, fixture_script, image_diff, max_diff, npz,
                            to_images)

DATA = ROOT / "tests" / "data" / "parity" / "fomm"
NETWORK_TOL = 1e-4  # per network, max abs difference
IMAGE_TOL = 2  # end to end, uint8 levels per pixel
MODES = ("absolute", "relative")

recipes = fixture_script("parity_fomm")


@dataclasses.dataclass
class Converted:
    reference: Path  # the rebuilt vox-cpk.pth.tar
    output: Path  # what `facevid2vid convert --from fomm` wrote
    model: FOMM  # that file loaded by load_checkpoint
    frames: dict[int, np.ndarray]
    networks: dict[str, np.ndarray]
    e2e: dict[str, np.ndarray]
    folder: Path


@pytest.fixture(scope="module")
def converted(tmp_path_factory, one_thread) -> Converted:
    from facevid2vid.checkpoint import load_checkpoint

    folder = tmp_path_factory.mktemp("fomm")
    recipe = json.loads((DATA / "recipe.json").read_text())
    reference = recipes.save_reference_checkpoint(recipe, folder / "vox-cpk.pth.tar")
    output = folder / "fomm-256.safetensors"
    assert cli(["convert", "--from", "fomm", str(reference), "--output", str(output)]) == 0
    frames = {int(k.split("_")[1]): v for k, v in npz(DATA / "inputs.npz").items() if k.startswith("frames_")}
    return Converted(reference, output, load_checkpoint(output), frames, npz(DATA / "networks.npz"),
                     npz(DATA / "end_to_end.npz"), folder)


def _at_size(model: FOMM, size: int) -> FOMM:
    """The same weights at another image size (every network is convolutional)."""
    if size == model.cfg.image_size:
        return model
    with torch.device("meta"):
        other = FOMM(dataclasses.replace(model.cfg, image_size=size, name=f"{model.cfg.name}-at-{size}"))
    other.load_state_dict(model.state_dict(), assign=True)
    return other.eval()


def _reference_motion(ref: dict[str, np.ndarray], prefix: str = "") -> KeypointMotion:
    return KeypointMotion(torch.from_numpy(ref[f"{prefix}kp"]), torch.from_numpy(ref[f"{prefix}jacobian"]))


@torch.no_grad()
def network_diffs(c: Converted, size: int) -> dict[str, float]:
    """Max abs difference of each network's outputs to the reference's, given the reference's inputs."""
    ref = {k.split("_", 1)[1]: v for k, v in c.networks.items() if k.startswith(f"{size}_")}
    model, x = _at_size(c.model, size), to_images(c.frames[size])
    ours = model.estimate_motion(x)
    diffs = {"K kp": max_diff(ours.kp, ref["kp"]), "K jacobian": max_diff(ours.jacobian, ref["jacobian"])}
    theirs = _reference_motion(ref)
    source_motion, driving = theirs.index(slice(0, 1)), theirs.index([1, 0])  # driving frames (1, 0)
    rel = model.relative_motion(driving, driving.index(slice(0, 1)), source_motion)
    diffs["relative kp"], diffs["relative jacobian"] = (max_diff(rel.kp, ref["relative_kp"]),
                                                        max_diff(rel.jacobian, ref["relative_jacobian"]))
    if "absolute_prediction" not in ref:  # M and G outputs are stored at 128 px
        return diffs
    encoded = model.encode_source(x[:1])
    source = ImageSource(encoded.image, source_motion, encoded.features)  # the reference's source keypoints
    for mode in MODES:
        image, dense = model.synthesize(source, _reference_motion(ref, f"{mode}_"))
        diffs[f"{mode} M mask"] = max_diff(dense.mask, ref[f"{mode}_mask"])
        diffs[f"{mode} M deformation"] = max_diff(dense.deformation, ref[f"{mode}_deformation"])
        diffs[f"{mode} M occlusion"] = max_diff(dense.occlusion, ref[f"{mode}_occlusion_map"])
        step = recipes.G_STEP_128
        diffs[f"{mode} G prediction"] = max_diff(image[..., ::step, ::step], ref[f"{mode}_prediction"])
    return diffs


def test_every_network_matches_the_reference_at_128px(converted):
    diffs = network_diffs(converted, 128)
    print({k: f"{v:.1e}" for k, v in diffs.items()})
    assert len(diffs) == 12 and max(diffs.values()) <= NETWORK_TOL, diffs


def _png_round_trip(frames: torch.Tensor, folder: Path) -> np.ndarray:
    """Rendered frames (N, 3, S, S) written as 8-bit PNGs and read back: uint8 (N, S, S, 3)."""
    from facevid2vid.video_io import read_image, to_uint8, write_image

    folder.mkdir(parents=True, exist_ok=True)
    return np.stack([read_image(write_image(folder / f"{i:05d}.png", f)) for i, f in enumerate(to_uint8(frames))])


def test_animate_reproduces_the_reference_demo_at_128px(converted, tmp_path):
    """Animator.animate (what `animate` runs) from frame 0 driven by frames (1, 0), both modes."""
    from facevid2vid.inference import Animator

    animator = Animator(_at_size(converted.model, 128), device="cpu")
    images = to_images(converted.frames[128])
    source = animator.encode_source(images[:1])
    found = {}
    for mode in MODES:
        frames = _png_round_trip(animator.animate(source, images[[1, 0]], mode=mode), tmp_path / mode)
        found[mode] = image_diff(frames, converted.e2e[f"e2e_128_{mode}"])
    print(found)
    assert all(worst <= IMAGE_TOL for worst, _ in found.values()), found


@pytest.mark.slow
def test_every_network_and_animate_match_the_reference_at_256px(converted, tmp_path):
    """256 px: K and the relative motion per network; `facevid2vid animate --no-crop` end to end."""
    diffs = network_diffs(converted, 256)
    print({k: f"{v:.1e}" for k, v in diffs.items()})
    assert len(diffs) == 4 and max(diffs.values()) <= NETWORK_TOL, diffs
    frames = converted.frames[256]  # frames[0] driven by frames (1, 0)
    found = {mode: image_diff(animate_cli(converted.output, frames[0], frames[[1, 0]], mode, tmp_path / "run"),
                              converted.e2e[f"e2e_256_{mode}"]) for mode in MODES}
    print(found)
    assert all(worst <= IMAGE_TOL for worst, _ in found.values()), found


def test_the_converted_checkpoint_says_where_it_comes_from(converted):
    from facevid2vid.checkpoint import checkpoint_family, read_checkpoint_config, read_metadata, tensor_checksum
    from facevid2vid.data.fetch import sha256_file

    meta = read_metadata(converted.output, "checkpoint")
    assert meta["family"] == "fomm" and checkpoint_family(converted.output) == "fomm"
    assert meta["source_sha256"] == sha256_file(converted.reference) and meta["source_file"] == "vox-cpk.pth.tar"
    assert "MIT" in meta["license"] and "first-order-model" in meta["source_code"]
    assert read_checkpoint_config(converted.output) == FOMMConfig() == converted.model.cfg
    tensors = {f"{p}.{k}": v for p, attr in FOMM.NETWORKS.items()
               for k, v in getattr(converted.model, attr).state_dict().items()}
    assert meta["facevid2vid_sha256"] == tensor_checksum(tensors)
    assert not any(m.training for m in converted.model.modules())  # batch norm on running statistics


# ----------------------------------------------------------------------------- the mapping and what is refused


def test_the_mapping_is_a_prefix_per_network():
    from facevid2vid.convert.fomm import reference_name

    assert reference_name("K", "predictor.encoder.down_blocks.0.conv.weight") == (
        "kp_detector", "predictor.encoder.down_blocks.0.conv.weight")
    assert reference_name("M", "hourglass.decoder.up_blocks.4.norm.running_var") == (
        "generator", "dense_motion_network.hourglass.decoder.up_blocks.4.norm.running_var")
    assert reference_name("G", "bottleneck.r5.conv2.weight") == ("generator", "bottleneck.r5.conv2.weight")


def _reference_layout(cfg: FOMMConfig) -> dict[str, dict[str, torch.Tensor]]:
    """A reference-format checkpoint of ``cfg``'s shapes (meta tensors, real anti-alias kernels)."""
    from facevid2vid.models.keypoints import gaussian_kernel

    with torch.device("meta"):
        model = FOMM(cfg)
    kp = dict(model.kp_detector.state_dict())
    gen = {**model.generator.state_dict(),
           **{f"dense_motion_network.{k}": v for k, v in model.dense_motion.state_dict().items()}}
    kp["down.weight"] = gaussian_kernel(cfg.kp_scale_factor).expand(3, 1, 13, 13).clone()
    gen["dense_motion_network.down.weight"] = kp["down.weight"].clone()  # both at 1/4
    return {"kp_detector": kp, "generator": gen}


def test_the_architecture_is_read_off_the_file():
    from facevid2vid.convert.fomm import detect_config, map_state_dicts

    for variant in (FOMMConfig(), FOMMConfig(num_keypoints=15, estimate_jacobian=False),
                    FOMMConfig(single_jacobian_map=True, estimate_occlusion_map=False)):
        cfg = detect_config(_reference_layout(variant))
        assert dataclasses.replace(cfg, name=variant.name) == variant
        with torch.device("meta"):
            groups = map_state_dicts(_reference_layout(variant), FOMM(cfg))
        assert set(groups) == {"K", "M", "G"} and "hourglass.encoder.down_blocks.0.conv.weight" in groups["M"]
    assert detect_config(_reference_layout(FOMMConfig())).name == "fomm-256"


def test_missing_mismatched_and_unexpected_tensors_are_named():
    from facevid2vid.convert.fomm import map_state_dicts

    ckpt = _reference_layout(FOMMConfig())
    ckpt["generator"].pop("bottleneck.r2.conv1.weight")
    ckpt["generator"]["dense_motion_network.mask.weight"] = torch.zeros(11, 108, 3, 3)
    ckpt["kp_detector"]["extra.weight"] = torch.zeros(1)
    with torch.device("meta"):
        model = FOMM(FOMMConfig())
    with pytest.raises(CheckpointError) as err:
        map_state_dicts(ckpt, model, "vox-cpk.pth.tar")
    message = str(err.value)
    assert "missing generator.bottleneck.r2.conv1.weight" in message
    assert "generator.dense_motion_network.mask.weight (11, 108, 3, 3) vs (11, 108, 7, 7)" in message
    assert "unexpected kp_detector.extra.weight" in message and "\n" not in message


def test_a_kernel_that_is_no_anti_alias_filter_is_refused():
    from facevid2vid.convert.fomm import detect_config

    ckpt = _reference_layout(FOMMConfig())
    ckpt["kp_detector"]["down.weight"] = torch.full((3, 1, 13, 13), 1 / 169)
    with pytest.raises(CheckpointError, match="kp_detector.down.weight .* not the anti-alias kernel"):
        detect_config(ckpt, "vox-cpk.pth.tar")


def test_a_pickle_that_would_run_code_is_refused_unrun(tmp_path, capsys):
    check_pickle_refused_unrun(tmp_path, capsys, "fomm", "vox-cpk.pth.tar", ("kp_detector",))


def test_other_files_are_refused_in_one_line(tmp_path, capsys):
    torch.save({"generator": {}, "he_estimator": {}}, tmp_path / "open-fv2v.pth.tar")
    torch.save({"generator": {"x": torch.zeros(1)}, "kp_detector": {"kp.weight": 3}}, tmp_path / "odd.pth.tar")
    for name, words in (("open-fv2v.pth.tar", "no kp_detector"), ("odd.pth.tar", "non-tensor"),
                        ("absent.pth.tar", "not found")):
        out = tmp_path / "o.safetensors"
        assert cli(["convert", "--from", "fomm", str(tmp_path / name), "--output", str(out)]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err and name in err, err


def test_fomm_takes_no_open_fv2v_options(tmp_path, capsys):
    assert cli(["convert", "--from", "fomm", str(tmp_path / "x.pth.tar"), "--config", "vox-256.yaml",
                "--output", str(tmp_path / "o.safetensors")]) == 2
    assert "open-fv2v option" in capsys.readouterr().err
