"""Checkpoints: round trips (float32 and half), fingerprints, and clear errors for bad files."""
import dataclasses
import json
import logging

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from facevid2vid.checkpoint import (
    load_checkpoint, model_fingerprint, read_checkpoint_config, resolve_model, save_checkpoint,
)
from facevid2vid.config import model_preset
from facevid2vid.errors import CheckpointError
from facevid2vid.models import FaceVid2Vid, MultiScaleDiscriminator


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = FaceVid2Vid(model_preset("tiny"))
    # give BatchNorm non-trivial statistics so they are part of what round-trips
    m.train()
    with torch.no_grad():
        m(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64))
    return m.eval()


def _render(m):
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    y = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        return m(x, y).generated.image


def _read_all(path):
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def test_round_trip_float32(model, tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", model, metadata={"step": 12})
    loaded = load_checkpoint(path)
    assert loaded.cfg == model.cfg and not loaded.training
    assert read_checkpoint_config(path) == model.cfg
    assert torch.equal(_render(loaded), _render(model))
    assert model_fingerprint(loaded) == model_fingerprint(model)
    assert len(model_fingerprint(model)) == 16
    tensors, meta = _read_all(path)
    assert meta["step"] == "12" and meta["facevid2vid_format"] == "1"
    assert {k.split(".")[0] for k in tensors} == {"F", "L", "H", "M", "G"}


def test_round_trip_half(model, tmp_path):
    path = save_checkpoint(tmp_path / "h.safetensors", model, half=True)
    tensors, _ = _read_all(path)
    assert tensors["G.final.parametrizations.weight.original"].dtype == torch.float16
    loaded = load_checkpoint(path)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert torch.allclose(_render(loaded), _render(model), atol=2e-2)
    assert model_fingerprint(loaded) == model_fingerprint(model)
    # saving the reloaded half model again gives the same fingerprint and weights
    again = load_checkpoint(save_checkpoint(tmp_path / "h2.safetensors", loaded, half=True))
    assert model_fingerprint(again) == model_fingerprint(model)


def test_fingerprint_changes_with_weights_and_config(model):
    other = FaceVid2Vid(model.cfg).eval()
    other.load_state_dict(model.state_dict())
    assert model_fingerprint(other) == model_fingerprint(model)
    with torch.no_grad():
        other.generator.final.parametrizations.weight.original[0, 0, 0, 0] += 0.01
    assert model_fingerprint(other) != model_fingerprint(model)
    renamed = FaceVid2Vid(dataclasses.replace(model.cfg, kp_temperature=0.2)).eval()
    renamed.load_state_dict(model.state_dict())
    assert model_fingerprint(renamed) != model_fingerprint(model)


def test_discriminator_round_trip(model, tmp_path):
    disc = MultiScaleDiscriminator(model.cfg)
    path = save_checkpoint(tmp_path / "d.safetensors", model, discriminator=disc)
    m2, d2 = load_checkpoint(path, with_discriminator=True)
    for a, b in zip(disc.state_dict().values(), d2.state_dict().values()):
        assert torch.equal(a, b)
    assert isinstance(load_checkpoint(path), FaceVid2Vid)
    plain = save_checkpoint(tmp_path / "nod.safetensors", model)
    with pytest.raises(CheckpointError, match="discriminator"):
        load_checkpoint(plain, with_discriminator=True)


def test_missing_and_corrupt_files(model, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!" + bytes(100))
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(junk)
    good = save_checkpoint(tmp_path / "good.safetensors", model)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(truncated)
    bare = tmp_path / "bare.safetensors"
    save_file({"x": torch.zeros(2)}, str(bare))
    with pytest.raises(CheckpointError, match="metadata"):
        load_checkpoint(bare)


def _rewrite(src, dst, tensors=None, config=None, **meta_changes):
    t, meta = _read_all(src)
    if tensors is not None:
        t = tensors(t)
    if config is not None:
        meta["facevid2vid_config"] = json.dumps(config(json.loads(meta["facevid2vid_config"])))
    meta.update(meta_changes)
    save_file(t, str(dst), metadata=meta)
    return dst


def test_config_and_key_mismatches(model, tmp_path):
    good = save_checkpoint(tmp_path / "good.safetensors", model)
    bad = _rewrite(good, tmp_path / "a.safetensors", config=lambda c: {**c, "bogus_field": 3})
    with pytest.raises(CheckpointError, match="bogus_field"):
        load_checkpoint(bad)
    bad = _rewrite(good, tmp_path / "b.safetensors", config=lambda c: {**c, "num_keypoints": 7})
    mismatch = r"shape mismatch L.heatmap.weight \(5, 8, 7, 7, 7\) vs \(7, 8, 7, 7, 7\).*H.delta.weight"
    with pytest.raises(CheckpointError, match=mismatch):
        load_checkpoint(bad)
    bad = _rewrite(good, tmp_path / "c.safetensors",
                   tensors=lambda t: {k: v for k, v in t.items() if not k.startswith("G.final.")})
    with pytest.raises(CheckpointError, match="missing keys G.final.bias"):
        load_checkpoint(bad)
    bad = _rewrite(good, tmp_path / "d.safetensors", tensors=lambda t: {**t, "F.extra.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="unexpected keys F.extra.weight"):
        load_checkpoint(bad)
    bad = _rewrite(good, tmp_path / "e.safetensors", facevid2vid_format="99")
    with pytest.raises(CheckpointError, match="format"):
        read_checkpoint_config(bad)
    bad = _rewrite(good, tmp_path / "f.safetensors", config=lambda c: {**c, "flow_mode": "sideways"})
    with pytest.raises(CheckpointError, match="flow_mode"):
        load_checkpoint(bad)


def test_resolve_model(model, tmp_path, caplog):
    with pytest.raises(CheckpointError, match="not found"):
        resolve_model(str(tmp_path / "nope.safetensors"))
    path = save_checkpoint(tmp_path / "m.safetensors", model)
    assert model_fingerprint(resolve_model(str(path))) == model_fingerprint(model)
    with caplog.at_level(logging.WARNING):
        a = resolve_model(None, preset="tiny")
    assert "RANDOM" in caplog.text
    b = resolve_model(None, preset="tiny")
    assert a.cfg.name == "tiny" and model_fingerprint(a) == model_fingerprint(b)  # seeded: reproducible
    with pytest.raises(CheckpointError, match="unknown preset"):
        resolve_model(None, preset="huge")


# ----------------------------------------------------------------------------- stored config completeness


@pytest.mark.parametrize("dropped", [["num_keypoints"], ["image_size", "feature_channels", "flow_mode"], ["name"]])
def test_a_config_lacking_a_field_is_an_error_naming_it_and_the_file(model, tmp_path, dropped):
    """Never the dataclass (paper-256) defaults for a field the checkpoint does not store."""
    good = save_checkpoint(tmp_path / "good.safetensors", model)
    bad = _rewrite(good, tmp_path / "lacking.safetensors",
                   config=lambda c: {k: v for k, v in c.items() if k not in dropped})
    for read in (read_checkpoint_config, load_checkpoint):
        with pytest.raises(CheckpointError) as err:
            read(bad)
        message = str(err.value)
        assert "lacking.safetensors" in message and "lacks field" in message
        assert all(name in message for name in dropped)


def test_fields_added_later_take_the_value_that_rebuilds_older_checkpoints(model, tmp_path):
    from facevid2vid.config import BACKWARD_COMPATIBLE_DEFAULTS, ModelConfig

    assert set(BACKWARD_COMPATIBLE_DEFAULTS) >= {"volume_downsample", "appearance_max_features"}
    good = save_checkpoint(tmp_path / "good.safetensors", model)
    old = _rewrite(good, tmp_path / "old.safetensors",
                   config=lambda c: {k: v for k, v in c.items() if k not in BACKWARD_COMPATIBLE_DEFAULTS})
    assert read_checkpoint_config(old) == model.cfg  # tiny: volume 1/4, F capped at 8 * 4 -> 256
    assert model_fingerprint(load_checkpoint(old)) == model_fingerprint(model)
    with pytest.raises(ValueError, match="missing field kp_depth"):
        ModelConfig.from_stored({k: v for k, v in model.cfg.to_dict().items() if k != "kp_depth"})
    assert ModelConfig.from_dict({"name": "x"}).image_size == 256  # presets and YAML overrides: defaults stay


@pytest.mark.parametrize("path", ["facevid2vid/weights/facevid2vid.safetensors",
                                  "checkpoints/bundled-v2-wip.safetensors"])
def test_the_bundled_checkpoints_still_load(path):
    from pathlib import Path

    from facevid2vid.config import BACKWARD_COMPATIBLE_DEFAULTS

    file = Path(__file__).resolve().parent.parent / path
    if not file.is_file():
        pytest.skip(f"{path} is not in this checkout")
    stored = set(json.loads(_read_all(file)[1]["facevid2vid_config"]))
    assert {f.name for f in dataclasses.fields(model_preset("tiny"))} - stored <= set(BACKWARD_COMPATIBLE_DEFAULTS)
    model, disc = (load_checkpoint(file, with_discriminator=True) if "v2" in path else (load_checkpoint(file), None))
    assert model.cfg == read_checkpoint_config(file) and (disc is None or isinstance(disc, MultiScaleDiscriminator))


# ----------------------------------------------------------------------------- one weight loader


def test_one_loader_names_the_file_and_every_kind_of_key_problem(tmp_path):
    from facevid2vid.weights_io import load_module, read_state_dict, read_weights

    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    path = tmp_path / "w.safetensors"
    save_file({**{k: v for k, v in state.items() if k != "1.bias"}, "extra": torch.zeros(1),
               "0.weight": torch.zeros(3, 4)}, str(path))
    with pytest.raises(CheckpointError) as err:
        load_module(net, read_state_dict(path), path, "a test net")
    message = str(err.value)
    assert str(path) in message and "missing keys 1.bias" in message and "unexpected keys extra" in message
    assert "shape mismatch 0.weight (3, 4) vs (3, 2)" in message
    # a torch file only where asked for, and then only weights_only; half precision converts
    torch.save({"state_dict": {f"module.{k}": v.half() for k, v in state.items()}}, tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        read_weights(tmp_path / "w.pth")
    load_module(net, read_state_dict(tmp_path / "w.pth"), tmp_path / "w.pth")
    assert net[0].weight.dtype == torch.float32
    save_file({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, str(path))
    load_module(net, read_state_dict(path), path, keep_own=("num_batches_tracked",))
