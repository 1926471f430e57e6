"""nsfwjs' ImageNet feature networks (InceptionV3 stem..mixed5, MobileNetV2 stem..block_10) in torch.

Parity with TF.js: the fixtures ``tests/data/perception/{inception_v3,mobilenet_v2}.npz`` come
from ``scripts/fixtures/perception_nsfwjs.py`` (TF.js 4.22, pure-JS CPU backend, running the
package's own model files on the sample face crops); the slow test reruns TF.js live. Also:
the converter takes only layers marked ``trainable: false``, the input scaling agrees with the
stored BN statistics, and the perceptual distance grows with every step of blur, noise and JPEG.
"""
from __future__ import annotations

import importlib.util
import io
import itertools
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from facevid2vid.errors import CheckpointError
from tests.perception_faces import face_crops

DATA = Path(__file__).parent / "data" / "perception"
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fixtures" / "perception_nsfwjs.py"
NETS = ("inception_v3", "mobilenet_v2")
TOL = 1e-4
BEHAVIOUR_FACES = (0, 3)  # a video frame and a still


def _script():
    spec = importlib.util.spec_from_file_location("perception_nsfwjs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


script = _script()


def rel(a, b, scale=None) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / (np.abs(b).max() if scale is None else scale))


@pytest.fixture(scope="module")
def nets(one_thread):
    from facevid2vid.perception import load_network
    from facevid2vid.perception.fetch import fetch_weights

    fetch_weights(names=list(NETS), quiet=True)
    return {n: load_network(n) for n in NETS}


@pytest.fixture(scope="module")
def crops(samples):
    return face_crops(samples)


def run(net, x: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        return [f.numpy() for f in net(torch.from_numpy(x))]


@pytest.mark.parametrize("name", NETS)
def test_matches_tfjs_fixture(nets, crops, name):
    ref = np.load(DATA / f"{name}.npz")
    x = script.body_input(name, crops)  # what the body sees: forward does not rescale (see module docs)
    np.testing.assert_allclose(x.mean(axis=(2, 3), dtype=np.float64), ref["input_mean"], atol=1e-6)
    np.testing.assert_allclose(x[:, :, ::37, ::37], ref["input_sub"], atol=1e-5)
    net = nets[name]
    ours = script.summarise(list(net.TAPS), run(net, x))
    for tap in net.TAPS:
        scale = float(ref[f"{tap}.absmax"].max())
        np.testing.assert_allclose(ours[f"{tap}.absmax"], ref[f"{tap}.absmax"], rtol=TOL)
        for part in ("channel_mean", "sample"):
            err = rel(ours[f"{tap}.{part}"], ref[f"{tap}.{part}"], scale)
            assert err < TOL, f"{name} {tap} {part}: max|a-b|/max|b| = {err:.2e}"


@pytest.mark.slow
@pytest.mark.parametrize("name", NETS)
def test_matches_live_tfjs(nets, crops, name):
    """Every tap in full against TF.js run now (needs node and ``npm install --prefix
    /tmp/tfjs-ref @tensorflow/tfjs@4.22.0``, or $NSFWJS_TFJS_PREFIX)."""
    if shutil.which("node") is None or not (Path(script.TFJS_PREFIX) / "node_modules/@tensorflow/tfjs").is_dir():
        pytest.skip(f"TF.js reference not installed (node, {script.TFJS_PREFIX})")
    x = script.body_input(name, crops[:2])
    with tempfile.TemporaryDirectory() as tmp:
        files = script.model_files(script.package_reader(os.environ.get("NSFWJS_PKGS"), Path(tmp)), name)
    ref = script.reference(name, x, files)
    for tap, a, b in zip(nets[name].TAPS, run(nets[name], x), ref):
        assert a.shape == b.shape, tap
        assert rel(a, b) < TOL, f"{name} {tap}: {rel(a, b):.2e}"


@pytest.mark.parametrize("name", NETS)
def test_taps_and_sizes(nets, name):
    net = nets[name]
    cls = type(net)
    side = cls.min_size
    out = net(torch.rand(1, 3, side, side + 3))
    assert len(out) == len(cls.TAPS) == len(cls.CHANNELS)
    assert [f.shape[1] for f in out] == list(cls.CHANNELS)
    assert all(f.shape[-1] >= 1 and f.shape[-2] >= 1 for f in out)
    with pytest.raises(ValueError, match="at least"):
        net(torch.rand(1, 3, side - 1, 100))


def test_inception_map_sizes(nets):
    sizes = [f.shape[-1] for f in nets["inception_v3"](torch.rand(1, 3, 299, 299))]
    assert sizes == [147, 71, 35, 17]


@pytest.mark.parametrize("name,conv", [("inception_v3", "stem1.0"), ("mobilenet_v2", "conv1")])
def test_bn_statistics_match_unit_range_input(nets, name, conv):
    """The stem BN's moving mean is what [0, 1] input gives, not [-1, 1] (module docstrings).

    By linearity the stem conv's mean over a data set is sum(kernel) . mean colour; ImageNet's
    mean colour stands in for the training data's.
    """
    unit = nets[name].get_submodule(conv)
    taps = unit.conv.weight.sum((2, 3))  # (out, 3)
    mean01 = torch.tensor([0.485, 0.456, 0.406])

    def corr(pred):
        return float(torch.corrcoef(torch.stack([pred, unit.bn.running_mean]))[0, 1])

    assert corr(taps @ mean01) > 0.99
    assert corr(taps @ (2 * mean01 - 1)) < 0.0


def test_take_layer_checks_flag_and_config():
    from facevid2vid.perception.tfjs import take_layer

    layers = {"c": {"class_name": "Conv2D", "inbound": ["x"],
                    "config": {"trainable": False, "strides": [2, 2], "padding": "valid"}},
              "t": {"class_name": "Conv2D", "inbound": ["c"], "config": {"trainable": True}}}
    assert take_layer(layers, "c", "Conv2D", strides=(2, 2), padding="valid") is layers["c"]
    for name, kind, expect, match in (("t", "Conv2D", {}, "trainable"), ("c", "Dense", {}, "Dense"),
                                      ("c", "Conv2D", {"padding": "same"}, "padding"), ("z", "Conv2D", {}, "no layer")):
        with pytest.raises(CheckpointError, match=match):
            take_layer(layers, name, kind, **expect)


def test_read_layers_model_from_js_modules():
    """A tiny package in nsfwjs' format: minified literal, base64 shards, uint8 quantization."""
    import base64

    from facevid2vid.perception.tfjs import read_layers_model

    wrap = ('!function(e){{module.exports=e()}}(function(){{return function e(a,n,i){{}}'
            '({{1:[function(e,a,n){{a.exports={}}},{{}}]}},{{}},[1])(1)}});')
    model = ('{modelTopology:{model_config:{class_name:"Model",config:{layers:[{name:"d",trainable:!1,'
             'eps:.001,big:-1.5e3}]}}},weightsManifest:[{paths:["group1-shard1of2","group1-shard2of2"],'
             'weights:[{name:"w",shape:[2,2],dtype:"float32",quantization:{min:-.1,scale:.1,dtype:"uint8"}},'
             '{name:"b",shape:[1],dtype:"float32"}]}]}')
    data = bytes([0, 1, 2, 255]) + np.float32(0.25).tobytes()
    files = {"m/model.min.js": wrap.format(model).encode(),
             "m/group1-shard1of2.min.js": wrap.format(f'"{base64.b64encode(data[:3]).decode()}"').encode(),
             "m/group1-shard2of2.min.js": wrap.format(f'"{base64.b64encode(data[3:]).decode()}"').encode()}
    config, weights = read_layers_model(files.__getitem__, "m")
    assert config["config"]["layers"][0] == {"name": "d", "trainable": False, "eps": 0.001, "big": -1500.0}
    # dequantised in double precision, then rounded (as TF.js does)
    np.testing.assert_array_equal(weights["w"], np.float32(np.array([[0, 1], [2, 255]]) * 0.1 - 0.1))
    assert weights["b"].tolist() == [0.25]


@pytest.mark.slow
@pytest.mark.parametrize("name,layer,changes,match", [
    ("mobilenet_v2", "block_7_depthwise", {"trainable": True}, "trainable"),
    ("mobilenet_v2", "block_6_pad", {"padding": [[1, 1], [1, 1]]}, "padding"),
    ("inception_v3", "batch_normalization_44", {"trainable": True}, "trainable"),
    ("inception_v3", "average_pooling2d_2", {"padding": "valid"}, "padding"),
])
def test_converter_checks_the_config(monkeypatch, name, layer, changes, match):
    """The converters check every layer they take (slow: reads the package, $NSFWJS_PKGS or npm)."""
    import importlib

    from facevid2vid.perception import tfjs

    module = importlib.import_module({"inception_v3": "facevid2vid.perception.inception",
                                      "mobilenet_v2": "facevid2vid.perception.mobilenet"}[name])
    real = tfjs.read_layers_model

    def patched(read, folder):
        config, weights = real(read, folder)
        for item in config["config"]["layers"]:
            if item["name"] == layer:
                item["config"].update(changes)
        return config, weights

    monkeypatch.setattr(module, "read_layers_model", patched)
    with tempfile.TemporaryDirectory() as tmp:
        read = script.package_reader(os.environ.get("NSFWJS_PKGS"), Path(tmp))
        with pytest.raises(CheckpointError, match=match):
            module.convert(read)


# --- behaviour: LPIPS-like distance against degradations ---------------------------------------

def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = int(np.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = (k / k.sum()).to(x)
    c = x.shape[1]
    x = F.pad(x, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    pixels = (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    back = np.asarray(Image.open(buf).convert("RGB"))
    return torch.from_numpy(back.copy()).permute(2, 0, 1).float() / 255.0


def degradations(face: torch.Tensor) -> dict[str, list[torch.Tensor]]:
    """(3, H, W) -> {kind: copies, each step stronger}."""
    noise = torch.randn(face.shape, generator=torch.Generator().manual_seed(0))
    return {
        "blur": [gaussian_blur(face[None], s)[0] for s in (1, 2, 3, 4)],
        "noise": [(face + std * noise).clamp(0, 1) for std in (0.02, 0.04, 0.06, 0.08, 0.1)],
        "jpeg": [jpeg(face, q) for q in (90, 70, 50, 30, 10)],
    }


def distances(net, face: torch.Tensor) -> dict[str, list[float]]:
    """perceptual_distance(net, face, copy) for every degraded copy (the face's features computed once)."""
    from facevid2vid.perception.distance import feature_distance

    steps = degradations(face)
    copies = torch.stack([c for kind in steps.values() for c in kind])
    with torch.no_grad():
        fa = [f.expand(len(copies), -1, -1, -1) for f in net(face[None])]
        d = feature_distance(fa, net(copies)).tolist()
    out, i = {}, 0
    for kind, seq in steps.items():
        out[kind], i = d[i:i + len(seq)], i + len(seq)
    return out


@pytest.mark.parametrize("name", NETS)
def test_distance_grows_with_degradation(nets, crops, name):
    faces = torch.from_numpy(crops[list(BEHAVIOUR_FACES)]).permute(0, 3, 1, 2).float() / 255.0
    for face in faces:
        for kind, values in distances(nets[name], face).items():
            assert values[0] > 0 and all(b > a for a, b in itertools.pairwise(values)), (name, kind, values)


def test_distance_properties(nets):
    from facevid2vid.perception.distance import perceptual_distance

    net = nets["mobilenet_v2"]
    g = torch.Generator().manual_seed(1)
    a = torch.rand(2, 3, 64, 64, generator=g)
    b = (a + 0.05 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    assert torch.allclose(perceptual_distance(net, a, a), torch.zeros(2), atol=1e-6)
    d = perceptual_distance(net, a, b)
    assert d.shape == (2,) and torch.allclose(d, perceptual_distance(net, b, a), rtol=1e-5)
    p = b.clone().requires_grad_(True)
    perceptual_distance(net, p, a).sum().backward()
    assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        perceptual_distance(net, a, b[..., :32])
