"""Convert the open face-vid2vid reimplementation's Vox-256 checkpoints into our safetensors checkpoints.

Source: github.com/zhanglonghao1992/One-Shot_Free-View_Neural_Talking_Head_Synthesis (code CC BY-NC 4.0;
its weights carry no license of their own: load them, do not redistribute them). Its checkpoints are
``torch.save`` dicts of state dicts: ``generator`` (which holds F and M too), ``kp_detector``,
``he_estimator``, and ``discriminator`` / ``optimizer_*`` / ``epoch``, which are ignored.

The file is read with ``torch.load(weights_only=True)`` only: one that needs any other unpickling is
refused, never unpickled. Every tensor our network has is taken from the reference name the table
below gives it (:func:`reference_name`), its shape checked; old-style spectral norm
(``weight_orig``, ``weight_u``, ``weight_v``) is folded to the weight the reference uses in eval mode,
``weight_orig / (u . W v)``. The architecture is :func:`facevid2vid.config.open_fv2v_config` of the
generator found in the file (SPADE: ``decoder.*``; original: ``resblocks_2d.*``) and of the YAML config,
found from the keypoint detector (an anti-alias kernel ``down.weight`` means vox-256.yaml's
``scale_factor`` 0.25; none means the beta config's full-size input).
"""
from __future__ import annotations

import re
from pathlib import Path
from collections.abc import Callable

import torch

from ..checkpoint import save_checkpoint
from ..config import OPEN_FV2V_CONFIGS, OPEN_FV2V_GENERATORS, ModelConfig, open_fv2v_config
from ..errors import CheckpointError, InputError
from ..models import MODULES, FaceVid2Vid
from ..models.keypoints import gaussian_kernel
from ..data.fetch import sha256_file
from ..weights_io import few, fold_spectral_norm, read_state_dicts

FAMILY = "open-fv2v"
SOURCE_REPOSITORY = "github.com/zhanglonghao1992/One-Shot_Free-View_Neural_Talking_Head_Synthesis"
BETA_COMMIT = "0b8e3a8"  # the code as of 2021-09-18, when the beta checkpoint was published
LICENSE_NOTE = "code CC BY-NC 4.0; the weights carry no license of their own: do not redistribute"
NETWORKS = ("generator", "kp_detector", "he_estimator")
KERNEL_KEY = "down.weight"  # kp_detector's anti-alias kernel: a buffer we recompute and only check

# our module prefix -> (the reference's state dict, the prefix of its keys there)
SOURCES = {"F": ("generator", ""), "L": ("kp_detector", ""), "H": ("he_estimator", ""),
           "M": ("generator", "dense_motion_network."), "G": ("generator", "")}


def _he_block(match: re.Match) -> str:
    """stages.S.blocks.J. -> the reference's block1.b1_J / block{2S} / block{2S+1}.b{2S+1}_{J-1}."""
    stage, block = int(match.group(1)), int(match.group(2))
    if stage == 0:
        return f"block1.b1_{block}."
    return f"block{2 * stage}." if block == 0 else f"block{2 * stage + 1}.b{2 * stage + 1}_{block - 1}."


Rule = tuple[str, str | Callable[[re.Match], str]]
# our state-dict key -> the reference's, per module: every rule is tried in order (re.sub, anchored or not)
RULES: dict[str, list[Rule]] = {
    "F": [(r"^down\.(\d+)\.", r"down_blocks.\1."), (r"^to_volume\.", "second."),
          (r"^resblocks\.(\d+)\.", r"resblocks_3d.3dr\1.")],
    "L": [(r"^encoder\.(\d+)\.", r"predictor.down_blocks.down\1."), (r"^to_volume\.", "predictor.conv."),
          (r"^decoder\.(\d+)\.", r"predictor.up_blocks.up\1."), (r"^heatmap\.", "kp.")],
    "H": [(r"^stem\.conv\.", "conv1."), (r"^stem\.norm\.", "norm1."),
          (r"^stages\.(\d+)\.widen\.conv\.", lambda m: f"conv{int(m.group(1)) + 2}."),
          (r"^stages\.(\d+)\.widen\.norm\.", lambda m: f"norm{int(m.group(1)) + 2}."),
          (r"^stages\.(\d+)\.blocks\.(\d+)\.", _he_block),
          (r"reduce\.conv\.", "conv1."), (r"reduce\.norm\.", "norm1."), (r"spatial\.conv\.", "conv2."),
          (r"spatial\.norm\.", "norm2."), (r"expand\.conv\.", "conv3."), (r"expand\.norm\.", "norm3."),
          (r"shortcut\.conv\.", "skip."), (r"shortcut\.norm\.", "norm4."),
          # the reference's "yaw" output comes from fc_roll and its "roll" from fc_yaw
          (r"^yaw\.", "fc_roll."), (r"^pitch\.", "fc_pitch."), (r"^roll\.", "fc_yaw."),
          (r"^translation\.", "fc_t."), (r"^delta\.", "fc_exp.")],
    "M": [(r"^compress\.0\.", "compress."), (r"^compress\.1\.", "norm."),
          (r"^hourglass\.down\.(\d+)\.", r"hourglass.encoder.down_blocks.\1."),
          (r"^hourglass\.up\.(\d+)\.", r"hourglass.decoder.up_blocks.\1."),
          (r"^hourglass\.final_conv\.", "hourglass.decoder.conv."),
          (r"^hourglass\.final_norm\.", "hourglass.decoder.norm.")],
    "G": [(r"^project\.", "third."), (r"^mix\.", "fourth."), (r"^resblocks\.(\d+)\.", r"resblocks_2d.2dr\1."),
          (r"^up\.(\d+)\.", r"up_blocks.\1."),
          # inside the SPADE blocks (decoder.middle.N., decoder.up.N.) first, then the blocks' names
          *((rf"^(decoder\.(?:middle|up)\.\d+\.){ours}\.", rf"\1{theirs}.") for ours, theirs in (
              ("conv0", "conv_0"), ("conv1", "conv_1"), ("shortcut_norm", "norm_s"), ("shortcut", "conv_s"),
              ("norm0", "norm_0"), ("norm1", "norm_1"))),
          *((rf"^(decoder\.(?:middle|up)\.\d+\.norm_[01s]\.){ours}\.", rf"\1{theirs}.") for ours, theirs in (
              ("shared", "mlp_shared.0"), ("gamma", "mlp_gamma"), ("beta", "mlp_beta"))),
          (r"^decoder\.middle\.(\d+)\.", r"decoder.G_middle_\1."), (r"^decoder\.up\.(\d+)\.", r"decoder.up_\1."),
          (r"^decoder\.to_image\.", "decoder.conv_img.")],
}


def reference_name(prefix: str, key: str) -> tuple[str, str]:
    """(the reference's state dict, its key) holding our module ``prefix``'s ``key``."""
    network, head = SOURCES[prefix]
    for pattern, repl in RULES[prefix]:
        key = re.sub(pattern, repl, key)
    return network, head + key


def read_reference_checkpoint(path: str | Path) -> dict[str, dict[str, torch.Tensor]]:
    """The ``generator``, ``kp_detector`` and ``he_estimator`` state dicts of a reference checkpoint.

    Only ``torch.load(weights_only=True)``: a pickle that would import or call anything beyond
    tensors and plain containers is refused (CheckpointError naming what it asked for).
    """
    return read_state_dicts(path, NETWORKS, "an open face-vid2vid")


def detect_generator(state: dict[str, torch.Tensor], path: Path) -> str:
    """"spade" (``decoder.*`` keys) or "original" (``resblocks_2d.*``)."""
    if any(k.startswith("decoder.") for k in state):
        return "spade"
    if any(k.startswith("resblocks_2d.") for k in state):
        return "original"
    raise CheckpointError(f"{path}: its generator has neither a SPADE decoder (decoder.*) nor 2D residual blocks "
                          f"(resblocks_2d.*): not an open face-vid2vid generator")


def detect_config(kp_state: dict[str, torch.Tensor]) -> str:
    """vox-256.yaml when L has an anti-alias kernel (input downscaled by 4), else vox-256-beta.yaml (full size)."""
    return "vox-256.yaml" if KERNEL_KEY in kp_state else "vox-256-beta.yaml"


def _check_kernel(kp_state: dict[str, torch.Tensor], cfg: ModelConfig, config: str, path: Path) -> None:
    """The checkpoint's anti-alias kernel must be the one ``cfg`` recomputes (or absent when it has none)."""
    stored = kp_state.get(KERNEL_KEY)
    if cfg.kp_scale_factor == 1.0:
        if stored is not None:
            raise CheckpointError(f"{path}: its keypoint detector downscales its input (kp_detector.{KERNEL_KEY}), "
                                  f"but {config} runs it at full size: convert with --config vox-256.yaml")
        return
    if stored is None:
        raise CheckpointError(f"{path}: its keypoint detector was trained at full size (no kp_detector.{KERNEL_KEY}), "
                              f"but {config} downscales by {round(1 / cfg.kp_scale_factor)}: convert with "
                              f"--config vox-256-beta.yaml")
    kernel = gaussian_kernel(cfg.kp_scale_factor)
    expected = kernel.expand(3, 1, *kernel.shape)
    if stored.shape != expected.shape or not torch.allclose(stored.float(), expected, atol=1e-6):
        raise CheckpointError(f"{path}: kp_detector.{KERNEL_KEY} {tuple(stored.shape)} is not the anti-alias kernel "
                              f"of scale {cfg.kp_scale_factor} {tuple(expected.shape)}")


def _take(state: dict[str, torch.Tensor], key: str, used: set[str],
          shape: tuple[int, ...]) -> torch.Tensor | str | None:
    """``state[key]`` of ``shape``, or for a ``.weight`` the spectral-norm fold of ``weight_orig/_u/_v``.

    Returns the tensor, a phrase naming what does not fit ``shape``, or None if absent.
    """
    if key in state:
        used.add(key)
        value = state[key]
    else:
        trio = [key + "_orig", key + "_u", key + "_v"] if key.endswith(".weight") else []
        if not trio or not all(k in state for k in trio):
            return None
        used.update(trio)
        value, u, v = (state[k].float() for k in trio)
        if tuple(value.shape) == shape and (u.shape != (shape[0],) or v.numel() != value[0].numel()):
            return f"{trio[1]} {tuple(u.shape)} / {trio[2]} {tuple(v.shape)} vs weight {shape}"
        if tuple(value.shape) == shape:
            value = fold_spectral_norm(value, u, v.reshape(-1))
    return value if tuple(value.shape) == shape else f"{key} {tuple(value.shape)} vs {shape}"


def map_state_dicts(ckpt: dict[str, dict[str, torch.Tensor]], model: FaceVid2Vid,
                    path: str | Path = "checkpoint") -> dict[str, dict[str, torch.Tensor]]:
    """Our state dicts per module prefix from the reference's, every shape checked.

    One CheckpointError names (by the reference's names) every missing, mismatched and
    unexpected tensor. BatchNorm ``num_batches_tracked`` counters may be missing (ours are kept).
    """
    used: dict[str, set[str]] = {name: set() for name in ckpt}
    groups: dict[str, dict[str, torch.Tensor]] = {}
    missing, mismatched = [], []
    for prefix, attr in MODULES.items():
        groups[prefix] = {}
        for key, own in getattr(model, attr).state_dict().items():
            network, ref = reference_name(prefix, key)
            value = _take(ckpt[network], ref, used[network], tuple(own.shape))
            if isinstance(value, str):
                mismatched.append(f"{network}.{value}")
            elif value is not None:
                groups[prefix][key] = value.to(own.dtype).contiguous()
            elif key.endswith("num_batches_tracked"):
                groups[prefix][key] = torch.zeros((), dtype=torch.long)
            else:
                missing.append(f"{network}.{ref}")
    unexpected = [f"{network}.{k}" for network, state in ckpt.items() for k in state
                  if k not in used[network] and not (network == "kp_detector" and k == KERNEL_KEY)]
    problems = [f"{kind} {few(names)}" for kind, names in (("missing", missing), ("shape mismatch", mismatched),
                                                           ("unexpected", unexpected)) if names]
    if problems:
        raise CheckpointError(f"{path}: does not match the {model.cfg.name} architecture: {'; '.join(problems)}")
    return groups


def load_reference(path: str | Path, generator: str | None = None,
                   config: str | None = None) -> tuple[FaceVid2Vid, str, str]:
    """(our model with the checkpoint's weights, in eval mode; its generator; its config name)."""
    path = Path(path)
    if generator is not None and generator not in OPEN_FV2V_GENERATORS:
        raise InputError(f"generator must be one of {', '.join(OPEN_FV2V_GENERATORS)}, got {generator!r}")
    config = None if config is None else Path(config).name
    if config is not None and config not in OPEN_FV2V_CONFIGS:
        raise InputError(f"config must be one of {', '.join(OPEN_FV2V_CONFIGS)}, got {config!r}")
    ckpt = read_reference_checkpoint(path)
    found = detect_generator(ckpt["generator"], path)
    if generator is not None and generator != found:
        raise CheckpointError(f"{path}: holds the {found} generator, not the {generator} one: "
                              f"convert with --generator {found} (or without --generator)")
    config = config or detect_config(ckpt["kp_detector"])
    cfg = open_fv2v_config(config, found)
    _check_kernel(ckpt["kp_detector"], cfg, config, path)
    with torch.device("meta"):  # no random initialisation of ~170 M values that are replaced anyway
        model = FaceVid2Vid(cfg)
    for prefix, state in map_state_dicts(ckpt, model, path).items():
        getattr(model, MODULES[prefix]).load_state_dict(state, strict=True, assign=True)
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:  # a tensor no state dict sets (a bug here, not in the file)
        raise CheckpointError(f"{path}: no value for {few(left)}")
    return model.eval(), found, config


def convert_open_fv2v(source: str | Path, output: str | Path, generator: str | None = None,
                      config: str | None = None) -> Path:
    """Convert ``source`` (the reference's .pth.tar) into our checkpoint ``output`` (.safetensors)."""
    from ..outputs import check_output

    source, output = Path(source), check_output(output, "checkpoint")
    model, found, config = load_reference(source, generator, config)
    code = SOURCE_REPOSITORY + (f"@{BETA_COMMIT}" if config == "vox-256-beta.yaml" else "")
    metadata = {"family": FAMILY, "generator": found, "source_config": config, "source_file": source.name,
                "source_sha256": sha256_file(source), "source_code": code, "license": LICENSE_NOTE}
    return save_checkpoint(output, model, metadata=metadata)
