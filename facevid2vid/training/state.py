"""Trainer state (optimizers, schedules, step, RNG) as one ``.safetensors`` file.

The project keeps pickles out of its own files: tensors go into safetensors, the rest of a
nested state (dicts with int keys, tuples, numbers, strings) into its JSON metadata, with
each tensor replaced by a reference. Reading it back rebuilds the same Python structure.
The metadata also holds the sha256 of the tensor data (``facevid2vid_sha256``), checked on load.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from facevid2vid.errors import CheckpointError
from facevid2vid.outputs import atomic_path
from facevid2vid.weights_io import CHECKSUM_KEY, read_weights, tensor_checksum

_META_KEY = "facevid2vid_trainer_state"


def _encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous()
        return {"T": key}
    if isinstance(obj, dict):
        return {"D": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"U": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return {"N": obj.tolist()}
    raise TypeError(f"cannot store {type(obj).__name__} in a trainer state")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "T" in obj:
            return tensors[obj["T"]]
        if "D" in obj:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["D"]}
        if "U" in obj:
            return tuple(_decode(v, tensors) for v in obj["U"])
        if "N" in obj:
            return obj["N"]
    return obj


def save_state(path: str | Path, state: dict) -> None:
    """Write ``state`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    meta = json.dumps(_encode(state, tensors))
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={_META_KEY: meta, CHECKSUM_KEY: tensor_checksum(tensors)})


def load_state(path: str | Path) -> dict:
    """Read a file written by :func:`save_state` (checksum and finiteness checked); else CheckpointError."""
    weights = read_weights(path, "trainer state")
    path = weights.path
    meta = weights.metadata.get(_META_KEY)
    if meta is None:
        raise CheckpointError(f"{path} is not a facevid2vid trainer state")
    weights.verify()
    try:
        return _decode(json.loads(meta), weights.tensors)
    except (ValueError, KeyError, TypeError) as exc:  # bad JSON, a missing tensor, a wrong shape of entry
        raise CheckpointError(f"{path}: the trainer state's structure is damaged ({_first_line(exc)})") from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
