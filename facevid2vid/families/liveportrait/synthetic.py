"""Seeded random weights in LivePortrait's released file format, from a recipe (no reference code needed).

Parity tests cannot ship the real weights, so the fixtures are made with random ones that
both the reference code (scripts/fixtures/parity_liveportrait.py) and our tests rebuild
from the same small JSON recipe: for every key its shape and how to draw it. Each tensor
comes from its own NumPy PCG64 generator seeded from ``sha256(seed / file / key)``, so the
values do not depend on key order or on torch's generators. Draws are uniform with the
recipe's mean and standard deviation (four times faster than normal draws for 130 M values).
Scales keep activations of order 1 (unit-gain convs, BatchNorm statistics near identity with
random running means and positive running variances, small expression and stitching outputs,
plausible keypoints, angles and scale), and spectral-norm ``u``/``v`` vectors come from power
iteration on their weight, as trained ones do.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch

from facevid2vid.weights_io import tensor_checksum

from .reference_format import STITCHING_FILE

RECIPE_FORMAT = "facevid2vid-liveportrait-recipe-2"
POWER_ITERATIONS = 3
# M's output heads: (weight gain, bias mean, bias std); keeps keypoints, angles and scale plausible
HEADS = {"fc_kp": (0.3, 0.0, 0.3), "fc_exp": (0.02, 0.0, 0.01), "fc_t": (0.05, 0.0, 0.02),
         "fc_scale": (0.05, 1.0, 0.02), "fc_pitch": (1.0, 0.0, 0.5), "fc_yaw": (1.0, 0.0, 0.5),
         "fc_roll": (1.0, 0.0, 0.5)}


def _rule(file: str, key: str, shape: tuple[int, ...], num_keypoints: int) -> dict:
    """How to draw one tensor (see module docstring)."""
    name = key.rsplit("/", 1)[-1]
    head = next((h for h in HEADS if f".{h}." in f".{name}"), None)
    if name.endswith("num_batches_tracked"):
        return {"init": "zeros_int"}
    if name.endswith("running_var"):
        return {"init": "loguniform", "mean": 1.0, "std": 0.3}
    if name.endswith("running_mean"):
        return {"init": "uniform", "mean": 0.0, "std": 0.1}
    if name.endswith(("weight_u", "weight_v")):
        return {"init": "power_" + name[-1], "of": key[:-2] + "_orig", "iterations": POWER_ITERATIONS}
    if name.endswith(("gamma", "beta")):  # GRN
        return {"init": "uniform", "mean": 0.0, "std": 0.1}
    if head is not None:
        gain, mean, std = HEADS[head]
        if name.endswith("bias"):
            return {"init": "uniform", "mean": mean, "std": std}
        return {"init": "uniform", "mean": 0.0, "std": gain / math.sqrt(shape[1])}
    if len(shape) == 1:  # norm weights / biases and conv biases
        return {"init": "uniform", "mean": 1.0 if name.endswith("weight") else 0.0,
                "std": 0.1 if name.endswith("weight") else 0.05}
    gain = 1.0  # unit gain: activations stay of order 1 through BatchNorms with random statistics
    if file == STITCHING_FILE:  # ReLU MLPs, whose last layers give small keypoint offsets
        gain = 0.05 if shape[0] in (3 * num_keypoints, 3 * num_keypoints + 2) else math.sqrt(2.0)
    return {"init": "uniform", "mean": 0.0, "std": gain / math.sqrt(math.prod(shape[1:]))}


def make_recipe(layout: dict[str, dict[str, tuple[int, ...]]], num_keypoints: int, seed: int = 0) -> dict:
    """A recipe for every key of ``layout`` (file -> {key: shape}, from reference_format.reference_layout)."""
    files = {}
    for file, keys in layout.items():
        files[file] = {key: {"shape": list(shape), **_rule(file, key, tuple(shape), num_keypoints)}
                       for key, shape in keys.items()}
    recipe = {"format": RECIPE_FORMAT, "seed": seed, "files": files}
    recipe["sha256"] = {file: tensor_checksum(state) for file, state in build_state(recipe).items()}
    return recipe


def _generator(seed: int, file: str, key: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}/{file}/{key}".encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:8], "little")))


def _power(weight: np.ndarray, start: np.ndarray, iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) of a few power iterations on weight (out, -1), float64."""
    w = weight.reshape(weight.shape[0], -1).astype(np.float64)
    v = start / np.linalg.norm(start)
    for _ in range(iterations):
        u = w @ v
        u /= np.linalg.norm(u)
        v = w.T @ u
        v /= np.linalg.norm(v)
    u = w @ v
    return u / np.linalg.norm(u), v


def _unit(rng: np.random.Generator, shape) -> np.ndarray:
    """float32 uniform draws with mean 0 and standard deviation 1."""
    return np.float32(math.sqrt(3.0)) * (np.float32(2.0) * rng.random(shape, dtype=np.float32) - np.float32(1.0))


def _draw(seed: int, file: str, key: str, spec: dict, done: dict[str, np.ndarray]) -> np.ndarray | None:
    rng, shape = _generator(seed, file, key), tuple(spec["shape"])
    init = spec["init"]
    if init == "uniform":
        return np.float32(spec["mean"]) + np.float32(spec["std"]) * _unit(rng, shape)
    if init == "loguniform":
        return np.float32(spec["mean"]) * np.exp(np.float32(spec["std"]) * _unit(rng, shape))
    if init == "zeros_int":
        return np.zeros(shape, dtype=np.int64)
    if init in ("power_u", "power_v"):
        weight = done.get(spec["of"])
        if weight is None:
            return None  # drawn once its weight is
        start = _unit(_generator(seed, file, spec["of"] + "#power"), weight[0].size).astype(np.float64)  # one start
        u, v = _power(weight, start, spec["iterations"])
        return (u if init == "power_u" else v).astype(np.float32)
    raise ValueError(f"unknown init {init!r} for {file} {key}")


def build_state(recipe: dict) -> dict[str, dict[str, torch.Tensor]]:
    """file -> flat {key: tensor} (nested stitching keys as ``outer/inner``)."""
    if recipe.get("format") != RECIPE_FORMAT:
        raise ValueError(f"not a {RECIPE_FORMAT} recipe")
    out = {}
    for file, specs in recipe["files"].items():
        done: dict[str, np.ndarray] = {}
        for _ in range(2):  # power vectors need their weight first
            for key, spec in specs.items():
                if key not in done and (value := _draw(recipe["seed"], file, key, spec, done)) is not None:
                    done[key] = value
        out[file] = {key: torch.from_numpy(done[key]) for key in specs}
    return out


def write_reference_files(recipe: dict, directory: str | Path) -> Path:
    """The five ``.pth`` files of ``recipe`` in LivePortrait's format (plain and nested state dicts)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for file, state in build_state(recipe).items():
        if recipe.get("sha256", {}).get(file) not in (None, tensor_checksum(state)):
            raise ValueError(f"{file}: the recipe's tensors differ from those it was made with "
                             f"(NumPy's generators changed?)")
        if file == STITCHING_FILE:
            nested: dict[str, dict[str, torch.Tensor]] = {}
            for key, value in state.items():
                outer, _, inner = key.partition("/")
                nested.setdefault(outer, {})[inner] = value
            torch.save(nested, directory / file)
        else:
            torch.save(state, directory / file)
    return directory


def save_recipe(recipe: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(recipe, indent=0, sort_keys=True) + "\n")


def load_recipe(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())

