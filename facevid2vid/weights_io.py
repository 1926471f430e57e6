"""Weight files in, state dicts into modules: one reader and one loader, one set of checks.

- :func:`read_weights` reads a ``.safetensors`` file (tensors, metadata, the sha256 its metadata
  records under :data:`CHECKSUM_KEY`); with ``torch_files=True`` also a ``.pth``/``.pt`` file,
  through ``torch.load(weights_only=True)`` only (plain tensors, never pickled code). That is
  only for third-party state dicts users supply (LPIPS, FID, VGG19, Hopenet files).
- :meth:`WeightsFile.verify`: the checksum, where the file has one, and that every floating
  tensor is finite.
- :func:`load_modules` / :func:`load_module`: strict loading; one :class:`CheckpointError`
  naming the file and the missing, unexpected and shape-mismatched keys; tensors are converted
  to the module's dtypes.

Every error is a :class:`~facevid2vid.errors.CheckpointError` with one line naming the file.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import nn

from facevid2vid.errors import CheckpointError, InputError
from facevid2vid.validation import regular_file

CHECKSUM_KEY = "facevid2vid_sha256"  # sha256 of the tensor data (tensor_checksum), hex


def few(names, limit: int = 4) -> str:
    """The first ``limit`` names, comma-separated, and how many more there are."""
    names = list(names)
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _with_hint(message: str, hint: str) -> str:
    return f"{message}; {hint}" if hint else message


def tensor_checksum(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 (hex) of every tensor's name, dtype, shape and bytes, in sorted name order."""
    h = hashlib.sha256(b"facevid2vid-tensors-v1\0")
    for key in sorted(tensors):
        value = tensors[key].detach().to("cpu").contiguous()
        h.update(f"{key}\0{value.dtype}\0{tuple(value.shape)}\0".encode())
        if value.numel():
            h.update(value.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def check_tensors(path: Path, tensors: Mapping[str, torch.Tensor], expected: str | None,
                  error: type[Exception] = CheckpointError, hint: str = "") -> None:
    """The checksum (when the file has one) and finiteness of a file's tensors, or ``error``."""
    if expected is not None and tensor_checksum(tensors) != expected:
        raise error(_with_hint(f"{path}: checksum mismatch: the tensor data is not what was saved "
                               f"(a damaged or altered file); copy or fetch it again", hint))
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise error(_with_hint(f"{path}: non-finite values (NaN or inf) in {few(sorted(bad))}; "
                               f"the weights are unusable (a diverged run?)", hint))


@dataclass
class WeightsFile:
    """The tensors of one file, its metadata, and the checksum that metadata records."""

    path: Path
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)
    checksum: str | None = None  # None: none recorded (older files, torch files)
    hint: str = ""  # appended to every error about this file (what to do about it)

    def verify(self) -> None:
        check_tensors(self.path, self.tensors, self.checksum, hint=self.hint)


def read_metadata(path: str | os.PathLike, what: str = "weights file", hint: str = "") -> dict[str, str]:
    """The header metadata of a ``.safetensors`` file, without reading its tensors."""
    from safetensors import safe_open

    path = regular_file(path, what, CheckpointError)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types for bad headers
        raise CheckpointError(_with_hint(f"{path}: not a readable safetensors file ({exc})", hint)) from None


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        return {key: f.get_tensor(key) for key in f.keys()}, dict(f.metadata() or {})


def fold_spectral_norm(weight_orig: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The weight spectral norm uses in eval mode, ``weight_orig / (u . (W v))`` (W as (out, -1)), in float32.

    Converted checkpoints store it folded (plain weights).
    """
    w = weight_orig.float()
    sigma = torch.dot(u.float(), torch.mv(w.reshape(w.shape[0], -1), v.float()))
    return w / sigma


LFS_POINTER = b"version https://git-lfs.github.com/spec/v1"  # what a Git LFS pointer file starts with


def load_torch_file(path: str | os.PathLike, what: str = "checkpoint"):
    """A third-party PyTorch file read with ``torch.load(weights_only=True)`` only, as its raw object.

    A Git LFS pointer, an empty or missing file, a file that is not a PyTorch file, and a pickle
    that would import or call anything beyond tensors and plain containers (refused: nothing in
    it runs) are each a one-line error naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found: {path}" if not path.exists() else f"{path} is not a file")
    with open(path, "rb") as f:
        head = f.read(len(LFS_POINTER))
    if head == LFS_POINTER:
        raise CheckpointError(f"{path} is a Git LFS pointer file, not the {what}: fetch the real file "
                              f"(git lfs pull, or download it again) and use that")
    if not head:
        raise CheckpointError(f"{path} is empty: not a {what}")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure means a file we cannot use
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        if type(exc).__name__ == "UnpicklingError" and "weights only" in str(exc).lower():
            asked = re.search(r"GLOBAL (\S+)|global[: ]+'?([\w.]+)", str(exc))
            needs = f" ({next(g for g in asked.groups() if g)})" if asked else ""
            raise CheckpointError(f"{path}: refused: loading it would unpickle more than tensors and plain "
                                  f"containers{needs}; only weights-only files are read, nothing in it was run") from None
        raise CheckpointError(f"{path}: not a readable PyTorch {what} ({first})") from None


def _read_torch(path: Path):
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a training checkpoint wrapping the weights
    return state


def read_weights(path: str | os.PathLike, what: str = "weights file", torch_files: bool = False,
                 hint: str = "") -> WeightsFile:
    """Read a weight file (not verified yet: call :meth:`WeightsFile.verify` once keys are known to match).

    ``.safetensors`` always; ``torch_files`` also allows a weights-only torch file (any other
    suffix). Without it, any other file is read as safetensors and refused when it is not one.
    """
    path = regular_file(path, what, CheckpointError)
    as_torch = torch_files and path.suffix.lower() != ".safetensors"
    try:
        tensors, metadata = (_read_torch(path), {}) if as_torch else _read_safetensors(path)
    except Exception as exc:  # noqa: BLE001 - every reader failure is a bad file for the user
        first = (str(exc).strip().splitlines() or [""])[0]
        kind = "weights-only torch file" if as_torch else "safetensors file"
        raise CheckpointError(_with_hint(f"cannot read {what} {path}: not a readable {kind} "
                                         f"({type(exc).__name__}: {first})", hint)) from None
    if not isinstance(tensors, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in tensors.items()):
        raise CheckpointError(_with_hint(f"{path} is not a flat state dict of tensors", hint))
    return WeightsFile(path, tensors, metadata, metadata.get(CHECKSUM_KEY), hint)


def read_state_dict(path: str | os.PathLike, what: str = "weights file", hint: str = "") -> dict[str, torch.Tensor]:
    """A user-supplied third-party state dict, verified, ``module.`` prefixes (DataParallel) removed.

    ``.safetensors``, or a ``.pth``/``.pt`` torch file read with ``weights_only=True``.
    """
    weights = read_weights(path, what, torch_files=True, hint=hint)
    weights.verify()
    return {k.removeprefix("module."): v for k, v in weights.tensors.items()}


def _compare(prefix: str, expected: Mapping[str, torch.Tensor], stored: Mapping[str, torch.Tensor],
             ignore_unexpected: bool) -> dict[str, list[str]]:
    """Missing, unexpected and shape-mismatched key names of one module, prefixed."""
    name = (lambda k: f"{prefix}.{k}") if prefix else (lambda k: k)
    return {"missing keys": [name(k) for k in expected if k not in stored],
            "unexpected keys": [] if ignore_unexpected else [name(k) for k in stored if k not in expected],
            "shape mismatch": [f"{name(k)} {tuple(stored[k].shape)} vs {tuple(v.shape)}"
                               for k, v in expected.items() if k in stored and stored[k].shape != v.shape]}


def state_problems(modules: Mapping[str, nn.Module], groups: Mapping[str, Mapping[str, torch.Tensor]],
                   ignore_unexpected: bool = False) -> list[str]:
    """What keeps ``groups[prefix]`` from loading strictly into ``modules[prefix]``: one phrase per kind.

    dtypes are not compared: tensors are converted to the module's own (float16 checkpoints,
    converted networks that store BatchNorm counters as floats).
    """
    found: dict[str, list[str]] = {}
    for prefix, module in modules.items():
        for kind, names in _compare(prefix, module.state_dict(), groups.get(prefix, {}), ignore_unexpected).items():
            found.setdefault(kind, []).extend(names)
    return [f"{kind} {few(names)}" for kind, names in found.items() if names]


def load_modules(path: str | os.PathLike, modules: Mapping[str, nn.Module],
                 groups: Mapping[str, Mapping[str, torch.Tensor]], what: str = "the model",
                 verify: Callable[[], None] | None = None, ignore_unexpected: bool = False,
                 keep_own: tuple[str, ...] = (), hint: str = "") -> None:
    """Strictly load ``groups[prefix]`` into each ``modules[prefix]``, in the modules' own dtypes.

    One CheckpointError names every missing, unexpected and mismatched key. ``verify``
    (checksum and finiteness) runs once keys and shapes are known to match. Keys ending in one
    of ``keep_own`` may be missing: the module keeps its value (e.g. BatchNorm counters
    older files lack). ``ignore_unexpected`` skips stored keys no module has (a classifier
    head a feature extractor does not use).
    """
    groups = {p: {**{k: v for k, v in modules[p].state_dict().items() if keep_own and k.endswith(keep_own)},
                  **groups.get(p, {})} for p in modules}
    problems = state_problems(modules, groups, ignore_unexpected)
    if problems:
        raise CheckpointError(_with_hint(f"{path}: weights do not match {what}: {'; '.join(problems)}", hint))
    if verify is not None:
        verify()
    for prefix, module in modules.items():
        own = module.state_dict()
        module.load_state_dict({k: groups[prefix][k].to(v.dtype) for k, v in own.items()}, strict=True)


def load_module(module: nn.Module, state: Mapping[str, torch.Tensor], path: str | os.PathLike,
                what: str = "the model", **options) -> nn.Module:
    """:func:`load_modules` for one module whose keys carry no prefix; returns the module."""
    load_modules(path, {"": module}, {"": state}, what, **options)
    return module


def read_state_dicts(path: str | os.PathLike, networks: tuple[str, ...], project: str) -> dict[str, dict]:
    """The named state dicts of a reference training checkpoint (a dict of them, as FOMM and the open
    face-vid2vid save), read with :func:`load_torch_file` (weights only); CheckpointError naming what is
    missing or not a tensor, and ``project`` (whose checkpoint the file is not) when a network is absent."""
    path = Path(path)
    data = load_torch_file(path, "checkpoint")
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: holds a {type(data).__name__}, not a dict of state dicts")
    missing = [n for n in networks if not isinstance(data.get(n), dict)]
    if missing:
        raise CheckpointError(f"{path}: no {', '.join(missing)} state dict (keys: {few(map(str, data), 8)}): "
                              f"not {project} checkpoint")
    for name in networks:
        bad = [str(k) for k, v in data[name].items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
        if bad:
            raise CheckpointError(f"{path}: {name} holds non-tensor entries {few(bad)}")
    return {name: dict(data[name]) for name in networks}
