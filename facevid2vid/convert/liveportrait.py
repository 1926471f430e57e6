"""LivePortrait's released ``.pth`` files -> one facevid2vid safetensors checkpoint (family "liveportrait").

Input: the folder ``pretrained_weights/liveportrait`` of LivePortrait's weights (or any folder) holding
``appearance_feature_extractor.pth``, ``motion_extractor.pth``, ``warping_module.pth``,
``spade_generator.pth`` and ``stitching_retargeting_module.pth``, directly or under
``base_models/`` and ``retargeting_models/`` as released.

Each file is read with ``torch.load(path, map_location="cpu", weights_only=True)`` only: a file
that needs anything beyond plain tensors and containers to unpickle is refused, never unpickled.
A Git LFS pointer (a clone without ``git lfs pull``) is recognised and named. Every key is mapped
to our modules (:mod:`facevid2vid.families.liveportrait.reference_format`) and every shape
checked; one CheckpointError names the missing, unexpected and mismatched keys. Spectral norm is
folded into the decoder's weights. The checkpoint's metadata records the family, the config and
the sha256 of each source file.
"""
from __future__ import annotations

from pathlib import Path

import torch

from facevid2vid.errors import CheckpointError
from facevid2vid.families.liveportrait import MODULES, LivePortraitConfig, liveportrait_config
from facevid2vid.families.liveportrait.reference_format import (FILES, SPECTRAL_SUFFIXES, STITCHING_FILE,
                                                                 STITCHING_PARTS, reference_layout, to_ours)
from facevid2vid.data.fetch import sha256_file
from facevid2vid.weights_io import few, fold_spectral_norm, load_torch_file

SUBFOLDERS = ("", "base_models", "retargeting_models", "liveportrait/base_models", "liveportrait/retargeting_models")
SOURCES_KEY = "liveportrait_sources"  # metadata: {file name: sha256 of the file}


def find_files(source_dir: str | Path) -> dict[str, Path]:
    """file name -> path of each of the five files under ``source_dir`` (CheckpointError naming those missing)."""
    source_dir = Path(source_dir)
    if not source_dir.is_dir():
        raise CheckpointError(f"{source_dir}: not a folder (give LivePortrait's pretrained_weights/liveportrait)")
    found, missing = {}, []
    for name in FILES:
        path = next((source_dir / sub / name for sub in SUBFOLDERS if (source_dir / sub / name).is_file()), None)
        if path is None:
            missing.append(name)
        else:
            found[name] = path
    if missing:
        raise CheckpointError(f"{source_dir}: LivePortrait weight file{'s' if len(missing) > 1 else ''} "
                              f"{few(missing)} not found (here, or under base_models/ or retargeting_models/)")
    return found


def _flatten(path: Path, data) -> dict[str, torch.Tensor]:
    """A state dict (or, for the stitching file, a dict of three) as flat ``{key: tensor}``."""
    def tensors(d, what):
        if not isinstance(d, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items()):
            raise CheckpointError(f"{path}: {what} is not a state dict of tensors")
        return d

    if path.name != STITCHING_FILE:
        return dict(tensors(data, "the file"))
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: not a dict of the stitching and retargeting state dicts")
    missing = [k for k in STITCHING_PARTS if k not in data]
    if missing:
        raise CheckpointError(f"{path}: no {few(missing)} entr{'ies' if len(missing) > 1 else 'y'} "
                              f"(expected {', '.join(STITCHING_PARTS)})")
    # other top-level entries are not weights the reference loads; they are ignored as it does
    return {f"{part}/module.{k.removeprefix('module.')}": v for part in STITCHING_PARTS
            for k, v in tensors(data[part], f"its {part!r} entry").items()}


def read_reference_file(path: str | Path) -> dict[str, torch.Tensor]:
    """One LivePortrait ``.pth`` file as flat ``{reference key: tensor}``, read as weights only."""
    path = Path(path)
    data = load_torch_file(path, "LivePortrait weights file")
    return _flatten(path, data)


def _problems(name: str, stored: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]]) -> list[str]:
    problems = []
    missing = [k for k in expected if k not in stored]
    unexpected = [k for k in stored if k not in expected]
    shapes = [f"{k} {tuple(stored[k].shape)} vs {expected[k]}" for k in expected
              if k in stored and tuple(stored[k].shape) != expected[k]]
    for kind, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch", shapes)):
        if keys:
            problems.append(f"{name}: {kind} {few(keys)}")
    return problems


def map_state(name: str, stored: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our module's state dict from a checked reference file: keys mapped, spectral norm folded, float32."""
    prefix = FILES[name]
    out = {}
    for key, value in stored.items():
        if key.endswith(SPECTRAL_SUFFIXES[1:]):
            continue  # folded with its weight_orig
        if key.endswith("weight_orig"):
            base = key[:-len("_orig")]
            value = fold_spectral_norm(value, stored[base + "_u"], stored[base + "_v"])
            key = base
        out[to_ours(prefix, key)] = value.float() if value.is_floating_point() else value
    return out


def convert_liveportrait(source_dir: str | Path, output: str | Path,
                         config: LivePortraitConfig | None = None) -> Path:
    """Convert LivePortrait's five weight files in ``source_dir`` into the checkpoint ``output``.

    ``config`` defaults to the released model's (``liveportrait_config()``); the files must match it.
    """
    from facevid2vid.checkpoint import build_model, save_checkpoint
    from facevid2vid.weights_io import check_tensors

    cfg = (config or liveportrait_config()).validate()
    paths = find_files(source_dir)
    stored = {name: read_reference_file(path) for name, path in paths.items()}
    model = build_model(cfg, initialise=False)  # every tensor is loaded below (strictly)
    modules = {p: getattr(model, attr) for p, attr in MODULES.items()}
    layout = reference_layout(modules)
    problems = [p for name in FILES for p in _problems(name, stored[name], layout[name])]
    if problems:
        raise CheckpointError(f"{source_dir}: the files do not match LivePortrait model {cfg.name!r}: "
                              + "; ".join(problems))
    for name, path in paths.items():
        check_tensors(path, stored[name], None)  # every floating tensor finite
        modules[FILES[name]].load_state_dict(map_state(name, stored[name]), strict=True)
    sources = {name: sha256_file(path) for name, path in paths.items()}
    return save_checkpoint(output, model.eval(), metadata={SOURCES_KEY: sources,
                                                          "converted_from": "KwaiVGI/LivePortrait"})
