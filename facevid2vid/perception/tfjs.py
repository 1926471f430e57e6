"""Readers for TensorFlow.js weight files: a weights manifest plus binary shard data.

A manifest is a list of groups ``{"paths": [...], "weights": [{"name", "shape", "dtype",
"quantization"?}, ...]}``; the group's shards, concatenated, hold the tensors in manifest order.
Quantized tensors store ``q`` as uint8 (or uint16) with ``value = q * scale + min`` (computed
in double precision, then rounded to the weight's dtype, as TF.js' ``decodeWeights`` does), or
as float16.

``read_layers_model`` reads a whole layers model (Keras config + weights) out of the JS
modules nsfwjs wraps them in; ``keras_layers`` and ``take_layer`` help converters walk and
check that config.
"""
from __future__ import annotations

import base64
import json
import re

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
            # in float64, rounded once at the end, as TF.js does (Math.round for int32 weights)
            values = values.astype(np.float64) * float(quant["scale"]) + float(quant["min"])
            if entry["dtype"] == "int32":
                values = np.floor(values + 0.5)
        out[entry["name"]] = values.astype(_DTYPES[entry["dtype"]]).reshape(shape)
    if offset != len(data):
        raise CheckpointError(f"TF.js weights: {len(data) - offset} bytes left over after the manifest's tensors")
    return out


# --- layers models wrapped in JS modules (nsfwjs' model.min.js + group1-shardXofN.min.js) ----------
#
# nsfwjs bundles each TF.js layers model as browserify "standalone" modules: ``model.min.js``
# exports the model.json object as a minified JS object literal (bare keys, ``!0``/``!1`` for
# true/false, numbers like ``.5``), each shard file exports its binary data as one base64
# string. ``read_layers_model`` pulls out both without running any JS.

_MODULE = re.compile(r"\{1:\[function\(\w+,(\w+),\w+\)\{\1\.exports=")
_TOKEN = re.compile(r"""\s*(?:(?P<str>"[^"\\]*(?:\\.[^"\\]*)*")|(?P<num>-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"""
                    r"""|(?P<lit>!0|!1|(?:true|false|null)\b)|(?P<name>[A-Za-z_$][\w$]*)|(?P<punct>[{}\[\]:,]))""")
_LITERALS = {"!0": True, "!1": False, "true": True, "false": False, "null": None}


class _Literal:
    """Recursive-descent reader of one JS literal value (the JSON subset minifiers emit)."""

    def __init__(self, text: str, pos: int):
        self.text, self.pos = text, pos

    def _next(self) -> tuple[str, str]:
        m = _TOKEN.match(self.text, self.pos)
        if m is None:
            snippet = self.text[self.pos:self.pos + 40]
            raise CheckpointError(f"JS literal: cannot read at offset {self.pos}: {snippet!r}")
        self.pos = m.end()
        return m.lastgroup, m.group(m.lastgroup)

    def _expect(self, punct: str) -> None:
        _, tok = self._next()
        if tok != punct:
            raise CheckpointError(f"JS literal: expected {punct!r} at offset {self.pos}, got {tok!r}")

    def value(self, token: tuple[str, str] | None = None):
        kind, tok = token or self._next()
        if kind == "str":
            return json.loads(tok)
        if kind == "num":
            return float(tok) if any(c in tok for c in ".eE") else int(tok)
        if kind == "lit":
            return _LITERALS[tok]
        if tok == "[":
            return self._items("]", self.value)
        if tok == "{":
            return dict(self._items("}", self._pair))
        raise CheckpointError(f"JS literal: unexpected {tok!r} at offset {self.pos}")

    def _pair(self, token: tuple[str, str]) -> tuple[str, object]:
        kind, tok = token
        if kind not in ("str", "name", "num"):
            raise CheckpointError(f"JS literal: bad object key {tok!r} at offset {self.pos}")
        key = json.loads(tok) if kind == "str" else tok
        self._expect(":")
        return key, self.value()

    def _items(self, close: str, item) -> list:
        out = []
        token = self._next()
        if token[1] == close:
            return out
        while True:
            out.append(item(token))
            _, tok = self._next()
            if tok == close:
                return out
            if tok != ",":
                raise CheckpointError(f"JS literal: expected ',' or {close!r} at offset {self.pos}, got {tok!r}")
            token = self._next()


def module_export(source: bytes | str, what: str = "JS module"):
    """The value a browserify-bundled module 1 assigns to ``module.exports`` (a JS literal)."""
    text = source.decode("utf-8") if isinstance(source, bytes) else source
    m = _MODULE.search(text)
    if m is None:
        raise CheckpointError(f"{what}: no bundled module exporting a literal")
    return _Literal(text, m.end()).value()


def read_layers_model(read, folder: str) -> tuple[dict, dict[str, np.ndarray]]:
    """A JS-wrapped TF.js layers model: (Keras model config, {weight name: array}).

    ``read(path) -> bytes`` reads package files; ``folder`` holds ``model.min.js`` and the
    ``<path>.min.js`` shard of every path its weights manifest names. The config is
    ``modelTopology["model_config"]`` (``class_name`` + ``config`` with the layer list).
    """
    folder = folder.rstrip("/") + "/"
    model = module_export(read(folder + "model.min.js"), folder + "model.min.js")
    weights: dict[str, np.ndarray] = {}
    for group in model["weightsManifest"]:
        data = b"".join(_shard(read, folder + path + ".min.js") for path in group["paths"])
        weights.update(decode_weights(group["weights"], data))
    return model["modelTopology"]["model_config"], weights


def _shard(read, path: str) -> bytes:
    text = module_export(read(path), path)
    if not isinstance(text, str):
        raise CheckpointError(f"{path}: expected a base64 string export")
    return base64.b64decode(text, validate=True)


def keras_layers(config: dict) -> dict[str, dict]:
    """``{name: layer}`` of a Keras functional model config (``read_layers_model``'s first value).

    Each layer is ``{"class_name", "config", "inbound": [names of its inputs]}``.
    """
    out = {}
    for layer in config["config"]["layers"]:
        nodes = layer.get("inbound_nodes") or [[]]
        if len(nodes) > 1:
            raise CheckpointError(f"Keras layer {layer['name']} is shared ({len(nodes)} calls): not supported")
        out[layer["name"]] = {"class_name": layer["class_name"], "config": layer["config"],
                              "inbound": [n[0] for n in nodes[0]]}
    return out


def take_layer(layers: dict[str, dict], name: str, class_name: str, **expect) -> dict:
    """The Keras layer ``name``, checked to be a ``class_name`` marked ``trainable: false``
    whose config has the ``expect``-ed values (tuples compare equal to JSON lists)."""
    layer = layers.get(name)
    if layer is None:
        raise CheckpointError(f"Keras model has no layer {name}")
    if layer["class_name"] != class_name:
        raise CheckpointError(f"Keras layer {name} is a {layer['class_name']}, expected {class_name}")
    cfg = layer["config"]
    if cfg.get("trainable") is not False:
        raise CheckpointError(f"Keras layer {name} is not marked trainable: false (it may have been fine-tuned)")
    for key, want in expect.items():
        got = cfg.get(key)
        if got != json.loads(json.dumps(want)):  # tuples -> lists, as in the JSON config
            raise CheckpointError(f"Keras layer {name}: {key} is {got!r}, expected {want!r}")
    return layer
