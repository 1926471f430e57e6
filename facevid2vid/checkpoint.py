"""Checkpoints: one ``.safetensors`` file holding every network and the config that built it.

Keys are the modules' state-dict keys prefixed by the module letter
("F.", "L.", "H.", "M.", "G.", and "D." for the optional discriminator). The header
metadata carries the :class:`ModelConfig` as JSON, so a checkpoint alone rebuilds its
model. ``half=True`` stores floating tensors as float16 (half the size); loading always
returns the model's own dtype (float32).

Loading checks, before building anything, that the config is complete (a missing field is an
error naming it, except those listed in :data:`facevid2vid.config.BACKWARD_COMPATIBLE_DEFAULTS`,
added after the first checkpoints were written) and within its documented bounds
(:meth:`ModelConfig.validate`); then (:mod:`facevid2vid.weights_io`) that the tensor data matches the
sha256 in the metadata (``facevid2vid_sha256``, written by every save; files from before it
existed have none and still load) and that every floating tensor is finite.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from .config import BACKWARD_COMPATIBLE_DEFAULTS, ModelConfig, model_preset  # noqa: F401 - defined in config
from .errors import CheckpointError
from .models import MODULES, FaceVid2Vid, MultiScaleDiscriminator
from .outputs import atomic_path
# the checksum and tensor checks live with the one weight reader; imported here under their old names
from .weights_io import (CHECKSUM_KEY, check_tensors, few, load_modules, read_metadata,  # noqa: F401
                         read_weights, tensor_checksum)

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CONFIG_KEY = "facevid2vid_config"
FORMAT_KEY = "facevid2vid_format"
DTYPE_KEY = "facevid2vid_dtype"
MODULES_KEY = "facevid2vid_modules"
DEFAULT_PRESET = "lite-256"  # architecture used with random weights when no checkpoint exists
RANDOM_SEED = 0  # random-weight models are seeded, so two processes build the same one


def _unwrap(model: nn.Module) -> nn.Module:
    """Accept DistributedDataParallel / DataParallel wrappers."""
    return getattr(model, "module", model) if not isinstance(model, FaceVid2Vid) else model


def _named_modules(model: FaceVid2Vid, discriminator: nn.Module | None = None) -> dict[str, nn.Module]:
    mods = {p: getattr(model, attr) for p, attr in MODULES.items()}
    if discriminator is not None:
        mods["D"] = _unwrap(discriminator)
    return mods


# later fields that fingerprints have always included (they were in every config when the codec shipped)
ALWAYS_FINGERPRINTED = ("volume_downsample", "appearance_max_features")


def canonical_config_json(cfg: ModelConfig) -> str:
    """The config as compact, key-sorted JSON: the same bytes for the same architecture.

    Fields added later (``config.BACKWARD_COMPATIBLE_DEFAULTS``) are left out while they hold the
    value an older config would get, so adding an option does not change existing models'
    fingerprints (and the streams encoded for them stay decodable).
    """
    from .config import BACKWARD_COMPATIBLE_DEFAULTS

    data = cfg.to_dict()
    for name, default in BACKWARD_COMPATIBLE_DEFAULTS.items():
        if name not in ALWAYS_FINGERPRINTED and name in data and data[name] == default(data):
            del data[name]
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def save_checkpoint(path: str | os.PathLike, model: FaceVid2Vid, discriminator: nn.Module | None = None,
                    half: bool = False, metadata: dict | None = None) -> Path:
    """Write F, L, H/Delta, M, G (and D) with their config into one safetensors file (atomically)."""
    model = _unwrap(model)
    path = Path(path)
    tensors = {}
    for prefix, module in _named_modules(model, discriminator).items():
        for key, value in module.state_dict().items():
            value = value.detach().to("cpu")
            if half and value.is_floating_point():
                value = value.to(torch.float16)
            tensors[f"{prefix}.{key}"] = value.contiguous()
    meta = {}
    for key, value in (metadata or {}).items():
        if str(key).startswith("facevid2vid_"):
            raise ValueError(f"metadata key {key!r} is reserved")
        meta[str(key)] = value if isinstance(value, str) else json.dumps(value)
    meta.update({
        FORMAT_KEY: str(FORMAT_VERSION),
        CONFIG_KEY: canonical_config_json(model.cfg),
        DTYPE_KEY: "float16" if half else "float32",
        MODULES_KEY: ",".join(_named_modules(model, discriminator)),
        CHECKSUM_KEY: tensor_checksum(tensors),
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def _open_metadata(path: Path) -> dict[str, str]:
    meta = read_metadata(path, "checkpoint")
    if not meta or CONFIG_KEY not in meta:
        raise CheckpointError(f"{path}: no '{CONFIG_KEY}' in the safetensors metadata (not a facevid2vid checkpoint)")
    return meta


def read_checkpoint_config(path: str | os.PathLike) -> ModelConfig:
    """The :class:`ModelConfig` stored in a checkpoint, without loading its weights."""
    path = Path(path)
    meta = _open_metadata(path)
    version = meta.get(FORMAT_KEY, "?")
    if version != str(FORMAT_VERSION):
        raise CheckpointError(f"{path}: checkpoint format {version!r}, this version reads format {FORMAT_VERSION}")
    try:
        data = json.loads(meta[CONFIG_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: config metadata is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: config metadata is not a JSON object")
    missing = ModelConfig.missing_fields(data)
    if missing:
        raise CheckpointError(f"{path}: the config lacks field{'s' if len(missing) > 1 else ''} {few(missing)} "
                              f"(not written by facevid2vid, or damaged): refusing to guess the architecture")
    try:
        cfg = ModelConfig.from_stored(data)
        cfg.validate()
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: config does not match this version: {exc}") from None
    return cfg


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu", with_discriminator: bool = False):
    """Rebuild the model from the checkpoint's own config and load its weights (eval mode, float32).

    Returns the :class:`FaceVid2Vid`, or ``(model, discriminator)`` with ``with_discriminator``.
    """
    path = Path(path)
    cfg = read_checkpoint_config(path)
    groups: dict[str, dict[str, torch.Tensor]] = {}
    weights = read_weights(path, "checkpoint")
    for key, value in weights.tensors.items():
        prefix, _, rest = key.partition(".")
        if prefix == "D" and not with_discriminator:
            continue
        groups.setdefault(prefix, {})[rest] = value
    unknown = set(groups) - set(MODULES) - {"D"}
    if unknown:
        raise CheckpointError(f"{path}: unexpected module prefixes {few(p + '.' for p in unknown)}")
    model = FaceVid2Vid(cfg)
    disc = MultiScaleDiscriminator(cfg) if with_discriminator else None
    if with_discriminator and "D" not in groups:
        raise CheckpointError(f"{path}: holds no discriminator weights (D.*)")
    load_modules(path, _named_modules(model, disc), groups, "the config", verify=weights.verify)
    model.to(device).eval()
    if disc is not None:
        return model, disc.to(device).eval()
    return model


def model_fingerprint(model: FaceVid2Vid) -> bytes:
    """16 bytes identifying a model: sha256 of its canonical config JSON and weights.

    Floating tensors are hashed as float16 (rounded first), so a model, its float32
    checkpoint and its ``half=True`` checkpoint reloaded all give the same fingerprint.
    Covers F, L, H/Delta, M, G state dicts (parameters, BatchNorm statistics, spectral-norm
    vectors) in sorted key order; BatchNorm ``num_batches_tracked`` counters are skipped as
    they do not affect the output. The discriminator is not part of it.
    """
    model = _unwrap(model)
    h = hashlib.sha256()
    h.update(b"facevid2vid-fingerprint-v1\0")
    h.update(canonical_config_json(model.cfg).encode())
    for prefix, module in _named_modules(model).items():
        state = module.state_dict()
        for key in sorted(state):
            if key.endswith("num_batches_tracked"):
                continue
            value = state[key].detach().to("cpu")
            if value.is_floating_point():
                value = value.to(torch.float16)
            value = value.contiguous()
            h.update(f"\0{prefix}.{key}:{value.dtype}:{tuple(value.shape)}\0".encode())
            h.update(value.view(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return h.digest()[:16]


def default_checkpoint() -> Path | None:
    """The bundled model (``facevid2vid/weights/facevid2vid.safetensors``), if present."""
    path = Path(__file__).resolve().parent / "weights" / "facevid2vid.safetensors"
    return path if path.is_file() else None


def resolve_model(checkpoint: str | os.PathLike | None, preset: str | None = None,
                  device: str | torch.device = "cpu") -> FaceVid2Vid:
    """The model a command should use.

    A named checkpoint is loaded (CheckpointError if missing). Otherwise the bundled
    checkpoint is used when present and its preset matches ``preset`` (or none was asked
    for). Otherwise the preset (default ``DEFAULT_PRESET``) is built with seeded random
    weights, with a warning on stderr.
    """
    if checkpoint is not None:
        return load_checkpoint(checkpoint, device=device)
    bundled = default_checkpoint()
    if bundled is not None and (preset is None or read_checkpoint_config(bundled).name == preset):
        return load_checkpoint(bundled, device=device)
    name = preset or DEFAULT_PRESET
    try:
        cfg = model_preset(name)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    log.warning("facevid2vid: no checkpoint given%s; using preset %r with RANDOM weights "
                "(outputs are not meaningful)", "" if bundled is None else " for this preset", name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        model = FaceVid2Vid(cfg)
    return model.to(device).eval()
