"""Readers for TensorFlow.js weight files: a weights manifest plus binary shard data.

A manifest is a list of groups ``{"paths": [...], "weights": [{"name", "shape", "dtype",
"quantization"?}, ...]}``; the group's shards, concatenated, hold the tensors in manifest order.
Quantized tensors store ``q`` as uint8 (or uint16) with ``value = q * scale + min``, or as
float16.
"""
from __future__ import annotations

import numpy as np

from facevid2vid.errors import CheckpointError

_DTYPES = {"float32": np.float32, "int32": np.int32, "uint8": np.uint8, "uint16": np.uint16,
           "float16": np.float16, "bool": np.bool_}


def decode_weights(entries: list[dict], data: bytes) -> dict[str, np.ndarray]:
    """Tensors of one weight group: ``entries`` from the manifest, ``data`` its shards concatenated."""
    out: dict[str, np.ndarray] = {}
    offset = 0
    for entry in entries:
        shape = tuple(int(s) for s in entry["shape"])
        count = int(np.prod(shape)) if shape else 1
        quant = entry.get("quantization")
        stored = quant["dtype"] if quant else entry["dtype"]
        if stored not in _DTYPES:
            raise CheckpointError(f"TF.js weight {entry['name']}: unsupported dtype {stored}")
        dtype = np.dtype(_DTYPES[stored])
        size = count * dtype.itemsize
        if offset + size > len(data):
            raise CheckpointError(f"TF.js weights end early at {entry['name']} "
                                  f"({len(data)} bytes, need {offset + size})")
        values = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
        offset += size
        if quant and stored in ("uint8", "uint16"):
            values = values.astype(np.float32) * np.float32(quant["scale"]) + np.float32(quant["min"])
        out[entry["name"]] = values.astype(_DTYPES[entry["dtype"]]).reshape(shape)
    if offset != len(data):
        raise CheckpointError(f"TF.js weights: {len(data) - offset} bytes left over after the manifest's tensors")
    return out
