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
