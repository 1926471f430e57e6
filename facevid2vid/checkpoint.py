"""Checkpoints: one ``.safetensors`` file holding every network and the config that built it.

Keys are the modules' state-dict keys prefixed by the module letter
("F.", "L.", "H.", "M.", "G.", and "D." for the optional discriminator). The header
metadata carries the :class:`ModelConfig` as JSON, so a checkpoint alone rebuilds its
model. ``half=True`` stores floating tensors as float16 (half the size); loading always
returns the model's own dtype (float32).

Model families: the metadata key ``facevid2vid_family`` names the family ("facevid2vid", or
"liveportrait" for LivePortrait's networks converted by :mod:`facevid2vid.convert.liveportrait`,
whose prefixes are "F.", "M.", "W.", "G.", "S."); files without it are face-vid2vid checkpoints.
:func:`load_checkpoint` and :func:`resolve_model` return the family's model class, and
:func:`model_fingerprint` covers both.

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
from .families import FACEVID2VID, LIVEPORTRAIT
from .families.registry import SPECS, TABLE_FAMILIES, family_of_config
from .families.registry import family_presets as table_presets
from .families.registry import spec as family_spec
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
FAMILY_KEY = "facevid2vid_family"
DEFAULT_PRESET = "lite-256"  # architecture used with random weights when no checkpoint exists
RANDOM_SEED = 0  # random-weight models are seeded, so two processes build the same one


def _unwrap(model: nn.Module) -> nn.Module:
    """Accept DistributedDataParallel / DataParallel wrappers."""
    return getattr(model, "module", model) if not isinstance(model, FaceVid2Vid) else model


def model_family(model: nn.Module) -> str:
    """"facevid2vid" or the ``family`` a model class declares (e.g. "liveportrait")."""
    return getattr(_unwrap(model), "family", FACEVID2VID)


def _module_table(family: str) -> dict[str, str]:
    if family == LIVEPORTRAIT:
        from .families.liveportrait import MODULES as LIVEPORTRAIT_MODULES

        return LIVEPORTRAIT_MODULES
    if family in TABLE_FAMILIES:
        return family_spec(family).module().Model.NETWORKS
    return MODULES


def _named_modules(model: nn.Module, discriminator: nn.Module | None = None) -> dict[str, nn.Module]:
    model = _unwrap(model)
    mods = {p: getattr(model, attr) for p, attr in _module_table(model_family(model)).items()}
    if discriminator is not None:
        mods["D"] = _unwrap(discriminator)
    return mods


# later fields that fingerprints have always included (they were in every config when the codec shipped)
ALWAYS_FINGERPRINTED = ("volume_downsample", "appearance_max_features")


def canonical_config_json(cfg) -> str:
    """The config as compact, key-sorted JSON: the same bytes for the same architecture.

    Fields added later (``config.BACKWARD_COMPATIBLE_DEFAULTS``) are left out while they hold the
    value an older config would get, so adding an option does not change existing models'
    fingerprints (and the streams encoded for them stay decodable). Other families' configs are
    written whole.
    """
    from .config import BACKWARD_COMPATIBLE_DEFAULTS

    data = cfg.to_dict()
    for name, default in BACKWARD_COMPATIBLE_DEFAULTS.items() if isinstance(cfg, ModelConfig) else ():
        if name not in ALWAYS_FINGERPRINTED and name in data and data[name] == default(data):
            del data[name]
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def save_checkpoint(path: str | os.PathLike, model: nn.Module, discriminator: nn.Module | None = None,
                    half: bool = False, metadata: dict | None = None) -> Path:
    """Write F, L, H/Delta, M, G (and D) with their config into one safetensors file (atomically).

    A LivePortrait model writes its F, M, W, G, S (and has no discriminator).
    """
    model = _unwrap(model)
    if discriminator is not None and model_family(model) != FACEVID2VID:
        raise ValueError(f"a {model_family(model)} checkpoint holds no discriminator")
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
        FAMILY_KEY: model_family(model),
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


def checkpoint_family(path: str | os.PathLike) -> str:
    """The model family a checkpoint holds ("facevid2vid" when its metadata names none)."""
    path = Path(path)
    family = _open_metadata(path).get(FAMILY_KEY, FACEVID2VID)
    if family not in SPECS:
        raise CheckpointError(f"{path}: model family {family!r} is unknown to this version "
                              f"(it reads {', '.join(map(repr, SPECS))})")
    return family


def _stored_config(path: Path, meta: dict[str, str]) -> dict:
    version = meta.get(FORMAT_KEY, "?")
    if version != str(FORMAT_VERSION):
        raise CheckpointError(f"{path}: checkpoint format {version!r}, this version reads format {FORMAT_VERSION}")
    try:
        data = json.loads(meta[CONFIG_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: config metadata is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: config metadata is not a JSON object")
    return data


def _family_config(path: Path, data: dict, family: str):
    """The stored config of a LivePortrait or table-family checkpoint, complete and within bounds."""
    if family == LIVEPORTRAIT:
        from .families.liveportrait import LivePortraitConfig as config_class
    else:
        config_class = family_spec(family).module().Config
    label = family_spec(family).label
    missing = config_class.missing_fields(data)
    if missing:
        raise CheckpointError(f"{path}: the {label} config lacks field{'s' if len(missing) > 1 else ''} "
                              f"{few(missing)}: refusing to guess the architecture")
    try:
        return config_class.from_dict(data).validate()
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: {label} config does not match this version: {exc}") from None


def read_checkpoint_config(path: str | os.PathLike):
    """The config stored in a checkpoint, without loading its weights.

    A :class:`ModelConfig`, or a :class:`~facevid2vid.families.liveportrait.LivePortraitConfig` for a
    LivePortrait checkpoint.
    """
    path = Path(path)
    family = checkpoint_family(path)
    data = _stored_config(path, _open_metadata(path))
    if family != FACEVID2VID:
        return _family_config(path, data, family)
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


def build_model(cfg, initialise: bool = True) -> nn.Module:
    """The model of a config of either family: randomly initialised, or (``initialise=False``, for
    LivePortrait's 130 M parameters) with uninitialised memory that loading a state dict fills."""
    from .families.liveportrait import LivePortrait, LivePortraitConfig

    family = family_of_config(cfg)
    if family in TABLE_FAMILIES:
        return family_spec(family).module().Model(cfg)
    if not isinstance(cfg, LivePortraitConfig):
        return FaceVid2Vid(cfg)
    if initialise:
        return LivePortrait(cfg)
    with torch.device("meta"):  # no allocation, no random init
        model = LivePortrait(cfg)
    for module in model.modules():  # plain torch.empty: Module.to_empty is ten times slower here
        for name, p in module.named_parameters(recurse=False):
            module.register_parameter(name, nn.Parameter(torch.empty(p.shape, dtype=p.dtype), p.requires_grad))
        for name, b in module.named_buffers(recurse=False):
            module.register_buffer(name, torch.empty(b.shape, dtype=b.dtype))
    return model


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu", with_discriminator: bool = False):
    """Rebuild the model from the checkpoint's own config and load its weights (eval mode, float32).

    Returns the :class:`FaceVid2Vid` (or the family's model, e.g. ``LivePortrait``), or
    ``(model, discriminator)`` with ``with_discriminator``.
    """
    path = Path(path)
    cfg = read_checkpoint_config(path)
    model = build_model(cfg, initialise=False)  # every tensor is loaded below (strictly)
    family = model_family(model)
    if with_discriminator and family != FACEVID2VID:
        raise CheckpointError(f"{path}: a {family} checkpoint holds no discriminator")
    table = _module_table(family)
    groups: dict[str, dict[str, torch.Tensor]] = {}
    weights = read_weights(path, "checkpoint")
    for key, value in weights.tensors.items():
        prefix, _, rest = key.partition(".")
        if prefix == "D" and not with_discriminator:
            continue
        groups.setdefault(prefix, {})[rest] = value
    unknown = set(groups) - set(table) - {"D"}
    if unknown:
        raise CheckpointError(f"{path}: unexpected module prefixes {few(p + '.' for p in unknown)}")
    disc = MultiScaleDiscriminator(cfg) if with_discriminator else None
    if with_discriminator and "D" not in groups:
        raise CheckpointError(f"{path}: holds no discriminator weights (D.*)")
    load_modules(path, _named_modules(model, disc), groups, "the config", verify=weights.verify)
    model.to(device).eval()
    if disc is not None:
        return model, disc.to(device).eval()
    return model


def model_fingerprint(model: nn.Module) -> bytes:
    """16 bytes identifying a model: sha256 of its canonical config JSON and weights.

    Floating tensors are hashed as float16 (rounded first), so a model, its float32
    checkpoint and its ``half=True`` checkpoint reloaded all give the same fingerprint.
    Covers F, L, H/Delta, M, G state dicts (parameters, BatchNorm statistics, spectral-norm
    vectors) in sorted key order; BatchNorm ``num_batches_tracked`` counters are skipped as
    they do not affect the output. The discriminator is not part of it. Other families (LivePortrait:
    F, M, W, G, S) also hash their family's name, so two families never share a fingerprint.
    """
    model = _unwrap(model)
    h = hashlib.sha256()
    h.update(b"facevid2vid-fingerprint-v1\0")
    if model_family(model) != FACEVID2VID:
        h.update(f"family:{model_family(model)}\0".encode())
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
    return _bundled_file("facevid2vid.safetensors")


def realtime_checkpoint() -> Path | None:
    """The bundled real-time model of the live call (``weights/realtime-thin-128.safetensors``), if present.

    ``weights/realtime-128.safetensors``, its warm start with twice G's width, stays in the package as the
    slower choice that keeps identity better (docs/call.md)."""
    return _bundled_file("realtime-thin-128.safetensors")


def _bundled_file(name: str) -> Path | None:
    path = Path(__file__).resolve().parent / "weights" / name
    return path if path.is_file() else None


def _preset_config(name: str):
    """A face-vid2vid preset, a LivePortrait architecture ("liveportrait", "liveportrait-tiny") or a table
    family's preset (e.g. "fomm-256")."""
    from .config import PRESETS
    from .families.liveportrait import liveportrait_config, tiny_liveportrait_config

    if name in PRESETS:
        return model_preset(name)
    family_presets = {"liveportrait": liveportrait_config, "liveportrait-tiny": tiny_liveportrait_config,
                      **{k: factory for k, (_, factory) in table_presets().items()}}
    if name not in family_presets:
        raise CheckpointError(f"unknown preset {name!r}; choose one of: {', '.join([*PRESETS, *family_presets])}")
    return family_presets[name]()


def resolve_model(checkpoint: str | os.PathLike | None, preset: str | None = None,
                  device: str | torch.device = "cpu") -> nn.Module:
    """The model a command should use (a FaceVid2Vid, or a LivePortrait for such a checkpoint).

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
    cfg = _preset_config(name)
    log.warning("facevid2vid: no checkpoint given%s; using preset %r with RANDOM weights "
                "(outputs are not meaningful)", "" if bundled is None else " for this preset", name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        model = build_model(cfg)
    return model.to(device).eval()
