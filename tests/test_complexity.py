"""`facevid2vid inspect` and the speed benchmark's per-network split, for every model family (tiny configs)."""
import importlib.util
from pathlib import Path

import pytest
import torch

from facevid2vid.checkpoint import build_model, save_checkpoint
from facevid2vid.cli import main
from facevid2vid.complexity import (count_parameters, describe_model, macs_per_frame, network_meter, networks,
                                    preset_config)
from facevid2vid.config import model_preset
from facevid2vid.families.liveportrait import tiny_liveportrait_config
from facevid2vid.models import MODULES, FaceVid2Vid


def _speed():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py"
    spec = importlib.util.spec_from_file_location("benchmarks_speed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_models():
    torch.manual_seed(0)
    return {"tiny": FaceVid2Vid(model_preset("tiny")).eval(),
            "liveportrait-tiny": build_model(tiny_liveportrait_config()).eval()}


def test_every_model_class_lists_its_networks():
    from facevid2vid.families.liveportrait import MODULES as LP_MODULES
    from facevid2vid.families.liveportrait import LivePortrait

    assert FaceVid2Vid.NETWORKS is MODULES and LivePortrait.NETWORKS is LP_MODULES
    assert list(LivePortrait.NETWORKS) == ["F", "M", "W", "G", "S"]


@pytest.mark.parametrize("name", ["tiny", "liveportrait-tiny"])
def test_counts_per_network_add_up(tiny_models, name):
    model = tiny_models[name]
    params = count_parameters(model)
    assert params["total"] == sum(p.numel() for p in model.parameters())
    for prefix, attr in networks(model).items():
        assert params[prefix] == sum(p.numel() for p in getattr(model, attr).parameters())
    macs = macs_per_frame(model)
    for column in macs.values():
        assert column["other"] >= 0
        assert column["total"] == sum(v for k, v in column.items() if k != "total")
        assert set(column) - {"other", "total"} <= set(networks(model))
    assert {"F"} <= set(macs["source"]) and macs["source"]["F"] > 0  # F runs on the source only
    assert "F" not in macs["frame"] and macs["frame"]["G"] > 0  # G (the decoder) only per frame
    if name == "liveportrait-tiny":
        assert macs["frame"]["S"] > 0 and macs["frame"]["W"] > 0  # stitching's MLP runs outside S.forward


def test_meta_counts_equal_a_real_forward(tiny_models):
    """The meta-device copy counts what the real model computes.

    With autograd on: without it our Conv3d calls oneDNN directly, an op FlopCounterMode does not count.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from facevid2vid.complexity import _CUSTOM

    model = tiny_models["liveportrait-tiny"]
    x = torch.rand(1, 3, 64, 64)
    with FlopCounterMode(display=False, custom_mapping=_CUSTOM) as counter:
        model.render(model.encode_source(x), model.estimate_motion(x))
    macs = macs_per_frame(model)
    assert counter.get_total_flops() // 2 == macs["source"]["total"] + macs["frame"]["total"]


@pytest.mark.parametrize("preset, rows, lines", [
    ("tiny", ["F", "L", "H", "M", "G"], ["keypoints K = 5, flow mode rotation",
                                         "input 3x64x64 -> appearance volume 4x4x16x16 -> output 3x64x64"]),
    ("liveportrait-tiny", ["F", "M", "W", "G", "S"], ["keypoints K = 21, stitching on",
                                                      "input 3x64x64 -> appearance volume 4x4x16x16 -> output 3x128x128"]),
])
def test_inspect_preset(capsys, preset, rows, lines):
    assert main(["inspect", "--preset", preset]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"preset {preset} (random weights)"
    assert [line.split()[0] for line in out[3:3 + len(rows)]] == rows
    assert out[-3].startswith("total") and out[-2:] == lines
    cfg = preset_config(preset)
    assert out[1] == f"model {cfg.name} ({cfg.image_size}x{cfg.image_size})"


def test_inspect_liveportrait_checkpoint(tiny_models, tmp_path):
    path = save_checkpoint(tmp_path / "lp.safetensors", tiny_models["liveportrait-tiny"])
    lines = describe_model(checkpoint=str(path)).splitlines()
    assert lines[:2] == [f"checkpoint {path}", "model liveportrait-tiny (64x64)"]
    params = count_parameters(tiny_models["liveportrait-tiny"])
    assert [(r.split()[0], r.split()[1]) for r in lines[3:9]] == [(k, f"{params[k] / 1e6:.2f}") for k in
                                                                   ("F", "M", "W", "G", "S", "total")]


def test_unknown_preset_is_one_line(capsys):
    assert main(["inspect", "--preset", "no-such"]) != 0
    err = capsys.readouterr().err
    assert "no-such" in err and "liveportrait-tiny" in err and "tiny" in err


def test_network_meter_attributes_direct_submodule_calls(tiny_models):
    """A submodule called outside its network's forward (M's compress in prepare_source) counts for it."""
    model = tiny_models["tiny"]
    calls = iter(range(1000))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad(), network_meter(model, lambda: next(calls)) as seen:
        model.dense_motion.prepare_source(model.appearance_feature_extractor(x), torch.zeros(1, 5, 3))
    assert set(seen) == {"F", "M"} and seen["F"] == seen["M"] == 1  # one entry and one exit reading each
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())  # hooks removed


@pytest.mark.parametrize("name", ["tiny", "liveportrait-tiny"])
def test_speed_per_module_split(tiny_models, name):
    model = tiny_models[name]
    split = _speed().module_seconds(model, batch=2, repeats=1)
    for phase in ("source", "frame"):
        times = split[phase]
        parts = [v for k, v in times.items() if k not in ("other", "total")]
        assert set(times) - {"other", "total"} <= set(networks(model)) and all(v >= 0 for v in parts)
        assert sum(parts) <= times["total"] + 1e-12 and times["other"] >= 0
    assert "F" in split["source"] and "G" in split["frame"]
