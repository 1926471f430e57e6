"""Convert first-order-model's released checkpoints (``vox-cpk.pth.tar``, ...) into our FOMM checkpoints.

Source: github.com/AliaksandrSiarohin/first-order-model (code MIT; its weights carry no license of their
own: load them, do not redistribute them). A checkpoint is a ``torch.save`` dict of state dicts:
``kp_detector`` and ``generator`` (which holds the dense motion network as ``dense_motion_network.*``),
plus ``discriminator``, ``optimizer_*`` and ``epoch``, which are ignored.

The file is read with ``torch.load(weights_only=True)`` only: one that needs any other unpickling is
refused, never unpickled. The mapping is by prefix (every key below it is the reference's own):

- ``K.<key>`` <- ``kp_detector.<key>``;
- ``M.<key>`` <- ``generator.dense_motion_network.<key>``;
- ``G.<key>`` <- ``generator.<key>`` (the keys not under ``dense_motion_network.``).

The anti-alias kernels (``kp_detector.down.weight``, ``generator.dense_motion_network.down.weight``)
are buffers our networks recompute: they are checked and give the scale factors. The architecture is
``config/vox-256.yaml``'s (every released config shares it) with K, the Jacobians (none, one map per
keypoint or one shared, as mgif's), the occlusion map and the two scale factors read off the file;
every other number is checked through the tensors' shapes.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ..checkpoint import save_checkpoint
from ..data.fetch import sha256_file
from ..errors import CheckpointError
from ..families.fomm import FOMM, FOMMConfig
from ..models.keypoints import gaussian_kernel
from ..weights_io import few, read_state_dicts

FAMILY = "fomm"
SOURCE_REPOSITORY = "github.com/AliaksandrSiarohin/first-order-model"
LICENSE_NOTE = "code MIT (c) Aliaksandr Siarohin; the weights carry no license of their own: do not redistribute"
NETWORKS = ("kp_detector", "generator")
DENSE_MOTION = "dense_motion_network."
# our prefix -> (the reference's state dict, the prefix of its keys there)
SOURCES = {"K": ("kp_detector", ""), "M": ("generator", DENSE_MOTION), "G": ("generator", "")}
# the anti-alias kernel buffers: (state dict, key) -> the config field of its scale
KERNELS = {("kp_detector", "down.weight"): "kp_scale_factor",
           ("generator", DENSE_MOTION + "down.weight"): "dense_motion_scale_factor"}
MAX_DOWNSCALE = 8  # kernels of scales 1/2 .. 1/8 are recognised


def reference_name(prefix: str, key: str) -> tuple[str, str]:
    """(the reference's state dict, its key) holding our network ``prefix``'s ``key``."""
    network, head = SOURCES[prefix]
    return network, head + key


def read_reference_checkpoint(path: str | Path) -> dict[str, dict[str, torch.Tensor]]:
    """The ``kp_detector`` and ``generator`` state dicts of a reference checkpoint (weights-only load)."""
    return read_state_dicts(path, NETWORKS, "a first-order-model")


def _kernel_scale(stored: torch.Tensor | None, what: str, path: Path) -> float:
    """The scale 1/n whose anti-alias kernel (3, 1, k, k) ``stored`` is, 1.0 when there is none."""
    if stored is None:
        return 1.0
    for n in range(2, MAX_DOWNSCALE + 1):
        kernel = gaussian_kernel(1.0 / n)
        if stored.shape == (3, 1, *kernel.shape) and torch.allclose(stored.float(), kernel.expand_as(stored),
                                                                      atol=1e-6):
            return 1.0 / n
    raise CheckpointError(f"{path}: {what} {tuple(stored.shape)} is not the anti-alias kernel of any scale 1/2 .. "
                          f"1/{MAX_DOWNSCALE} (first-order-model's AntiAliasInterpolation2d of 3 channels)")


def _variant_name(cfg: FOMMConfig) -> str:
    """"fomm-256" for vox-256.yaml's architecture, else with what differs (e.g. "fomm-256-15kp-zero-order")."""
    default = FOMMConfig()
    parts = [f"{cfg.num_keypoints}kp" if cfg.num_keypoints != default.num_keypoints else "",
             "" if cfg.estimate_jacobian else "zero-order", "single-jacobian" if cfg.single_jacobian_map else "",
             "" if cfg.estimate_occlusion_map else "no-occlusion",
             "" if cfg.kp_scale_factor == default.kp_scale_factor else f"kp-1to{round(1 / cfg.kp_scale_factor)}",
             "" if cfg.dense_motion_scale_factor == default.dense_motion_scale_factor
             else f"motion-1to{round(1 / cfg.dense_motion_scale_factor)}"]
    return "-".join([default.name, *filter(None, parts)])


def detect_config(ckpt: dict[str, dict[str, torch.Tensor]], path: str | Path = "checkpoint") -> FOMMConfig:
    """vox-256.yaml's architecture with K, the Jacobian head, the occlusion map and the scales of the file."""
    path = Path(path)
    kp, gen = ckpt["kp_detector"], ckpt["generator"]
    if "kp.weight" not in kp or not any(k.startswith(DENSE_MOTION) for k in gen):
        raise CheckpointError(f"{path}: no kp_detector.kp.weight or no generator.{DENSE_MOTION}*: not a "
                              f"first-order-model keypoint detector and occlusion-aware generator")
    k = int(kp["kp.weight"].shape[0])
    jacobian = kp.get("jacobian.weight")
    scales = {field: _kernel_scale(ckpt[network].get(key), f"{network}.{key}", path)
              for (network, key), field in KERNELS.items()}
    cfg = FOMMConfig(num_keypoints=k, estimate_jacobian=jacobian is not None,
                     single_jacobian_map=jacobian is not None and jacobian.shape[0] == 4 and k > 1,
                     estimate_occlusion_map=DENSE_MOTION + "occlusion.weight" in gen, **scales)
    cfg = dataclasses.replace(cfg, name=_variant_name(cfg))
    try:
        return cfg.validate()
    except ValueError as exc:
        raise CheckpointError(f"{path}: its architecture is not one this version builds: {exc}") from None


def map_state_dicts(ckpt: dict[str, dict[str, torch.Tensor]], model: FOMM,
                    path: str | Path = "checkpoint") -> dict[str, dict[str, torch.Tensor]]:
    """Our state dicts per network prefix from the reference's, every shape checked.

    One CheckpointError names (by the reference's names) every missing, mismatched and unexpected
    tensor. BatchNorm ``num_batches_tracked`` counters may be missing (ours are kept).
    """
    used = {name: {key for network, key in KERNELS if network == name} for name in ckpt}  # kernels: checked already
    groups: dict[str, dict[str, torch.Tensor]] = {}
    missing, mismatched = [], []
    for prefix, attr in FOMM.NETWORKS.items():
        groups[prefix] = {}
        for key, own in getattr(model, attr).state_dict().items():
            network, ref = reference_name(prefix, key)
            value = ckpt[network].get(ref)
            if value is not None:
                used[network].add(ref)
                if value.shape == own.shape:
                    groups[prefix][key] = value.to(own.dtype).contiguous()
                else:
                    mismatched.append(f"{network}.{ref} {tuple(value.shape)} vs {tuple(own.shape)}")
            elif key.endswith("num_batches_tracked"):
                groups[prefix][key] = torch.zeros((), dtype=torch.long)
            else:
                missing.append(f"{network}.{ref}")
    unexpected = [f"{network}.{k}" for network, state in ckpt.items() for k in state if k not in used[network]]
    problems = [f"{kind} {few(names)}" for kind, names in (("missing", missing), ("shape mismatch", mismatched),
                                                           ("unexpected", unexpected)) if names]
    if problems:
        raise CheckpointError(f"{path}: does not match the {model.cfg.name} architecture: {'; '.join(problems)}")
    return groups


def load_reference(path: str | Path) -> FOMM:
    """Our FOMM with the checkpoint's weights, in eval mode (its config: :func:`detect_config`)."""
    path = Path(path)
    ckpt = read_reference_checkpoint(path)
    cfg = detect_config(ckpt, path)
    with torch.device("meta"):  # no random initialisation of ~60 M values that are replaced anyway
        model = FOMM(cfg)
    for prefix, state in map_state_dicts(ckpt, model, path).items():
        getattr(model, FOMM.NETWORKS[prefix]).load_state_dict(state, strict=True, assign=True)
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:  # a tensor no state dict sets (a bug here, not in the file)
        raise CheckpointError(f"{path}: no value for {few(left)}")
    return model.eval()


def convert_fomm(source: str | Path, output: str | Path) -> Path:
    """Convert ``source`` (the reference's .pth.tar) into our checkpoint ``output`` (.safetensors)."""
    from ..outputs import check_output

    source, output = Path(source), check_output(output, "checkpoint")
    model = load_reference(source)
    metadata = {"family": FAMILY, "source_file": source.name, "source_sha256": sha256_file(source),
                "source_code": SOURCE_REPOSITORY, "license": LICENSE_NOTE}
    return save_checkpoint(output, model, metadata=metadata)
