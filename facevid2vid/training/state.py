"""Trainer state (optimizers, schedules, step, RNG) as one ``.safetensors`` file.

The project keeps pickles out of its own files: tensors go into safetensors, the rest of a
nested state (dicts with int keys, tuples, numbers, strings) into its JSON metadata, with
each tensor replaced by a reference. Reading it back rebuilds the same Python structure.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from facevid2vid.errors import CheckpointError

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
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={_META_KEY: meta})
    os.replace(tmp, path)


def load_state(path: str | Path) -> dict:
    """Read a file written by :func:`save_state`; CheckpointError when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"trainer state not found: {path}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = (f.metadata() or {}).get(_META_KEY)
        tensors = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - any reader failure means a bad file
        raise CheckpointError(f"cannot read trainer state {path}: {exc}") from None
    if meta is None:
        raise CheckpointError(f"{path} is not a facevid2vid trainer state")
    return _decode(json.loads(meta), tensors)
