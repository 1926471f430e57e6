"""Parameter and multiply-accumulate counts per network (for ``inspect`` and the codec's cost tables).

Works for every model family: a model class lists its networks in ``NETWORKS`` (checkpoint
prefix -> attribute, e.g. face-vid2vid's F, L, H, M, G or LivePortrait's F, M, W, G, S).

MACs are measured with :class:`torch.utils.flop_counter.FlopCounterMode` (MACs = FLOPs / 2)
on a copy of the architecture built on the ``meta`` device: shapes only, no arithmetic,
so even paper-512 takes a second or two. Two calls are measured, as the model is used: the
source column is ``encode_source(image)`` (once per source, including the source-only part of
the motion network that the encoding caches), the frame column is
``render(encoded, estimate_motion(image))`` (what each driving frame costs). Each count is
attributed to the top-level network whose forward (or one of whose submodules' forward) was
running (:func:`network_meter`); what ran outside every network (the keypoint transform,
stitching glue) is the "other" row. Counted: convolutions and matrix products (as torch counts
them) plus trilinear/bilinear grid sampling at 8/4 MACs per output value. Not counted:
normalisation, activations, pooling, resizing, softmax.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

aten = torch.ops.aten


def networks(model: nn.Module) -> dict[str, str]:
    """The model's top-level networks, checkpoint prefix -> attribute (its class's ``NETWORKS``)."""
    model = getattr(model, "module", model)  # DistributedDataParallel / DataParallel
    table = getattr(type(model), "NETWORKS", None)
    if not isinstance(table, dict):
        raise TypeError(f"{type(model).__name__} declares no NETWORKS table (checkpoint prefix -> attribute)")
    return table


def count_parameters(model: nn.Module, discriminator: nn.Module | None = None) -> dict[str, int]:
    """Parameter counts per network (e.g. {"F", "L", "H", "M", "G", ("D"), "total"} for face-vid2vid)."""
    inner = getattr(model, "module", model)
    counts = {p: sum(t.numel() for t in getattr(inner, attr).parameters()) for p, attr in networks(model).items()}
    if discriminator is not None:
        counts["D"] = sum(t.numel() for t in discriminator.parameters())
    counts["total"] = sum(counts.values())
    return counts


@contextmanager
def network_meter(model: nn.Module, reading: Callable[[], float]) -> Iterator[dict[str, float]]:
    """Within it, the yielded dict gets, per network prefix, the increase of ``reading()`` over the calls into it.

    ``reading`` is any meter that only grows (``time.perf_counter``, a FLOP counter's total). A call
    into a network is the outermost forward of the network or of any of its submodules (a submodule
    called directly, as ``dense_motion.prepare_source`` calls ``compress``, counts for its network);
    calls nested inside a running network belong to that network. Networks never called have no key.
    """
    inner = getattr(model, "module", model)
    owner: dict[nn.Module, str] = {}
    for prefix, attr in networks(model).items():
        for module in getattr(inner, attr).modules():
            owner.setdefault(module, prefix)
    totals: dict[str, float] = {}
    active: list = [None, 0, 0.0]  # module, depth, reading at its entry

    def enter(module, args) -> None:
        if active[0] is None:
            active[:] = [module, 1, reading()]
        elif active[0] is module:
            active[1] += 1

    def leave(module, args, output) -> None:
        if active[0] is module:
            active[1] -= 1
            if active[1] == 0:
                prefix = owner[module]
                totals[prefix] = totals.get(prefix, 0) + reading() - active[2]
                active[0] = None

    handles = [h for m in owner for h in (m.register_forward_pre_hook(enter), m.register_forward_hook(leave))]
    try:
        yield totals
    finally:
        for handle in handles:
            handle.remove()


def _grid_sample_flops(input_shape, grid_shape, *args, out_shape=None, **kwargs) -> int:
    # one weighted tap per corner: 8 for trilinear (5D), 4 for bilinear (4D); 2 FLOPs per MAC
    taps = 8 if len(input_shape) == 5 else 4
    return 2 * taps * _numel(out_shape)


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


_CUSTOM = {aten.grid_sampler_3d: _grid_sample_flops, aten.grid_sampler_2d: _grid_sample_flops}


def _macs(fn, *args):
    """(MACs, result) of one call."""
    with FlopCounterMode(display=False, custom_mapping=_CUSTOM) as counter:
        result = fn(*args)
    return counter.get_total_flops() // 2, result


def _column(model: nn.Module, fn, *args) -> tuple[dict[str, int], object]:
    """({network prefix: MACs for the networks called, "other", "total"}, result) of one call."""
    with FlopCounterMode(display=False, custom_mapping=_CUSTOM) as counter:
        with network_meter(model, counter.get_total_flops) as flops:
            result = fn(*args)
    column = {p: int(flops[p]) // 2 for p in networks(model) if p in flops}
    total = counter.get_total_flops() // 2
    column["other"] = total - sum(column.values())
    column["total"] = total
    return column, result


def meta_model(cfg) -> nn.Module:
    """The architecture of ``cfg`` (any family) on the meta device, in eval mode: shapes, no memory."""
    from facevid2vid.checkpoint import build_model

    with torch.device("meta"):
        return build_model(cfg, initialise=False).eval()


def macs_per_frame(model: nn.Module) -> dict[str, dict[str, int]]:
    """Multiply-accumulates at batch 1, per network of ``model``'s architecture.

    Returns ``{"source": {...}, "frame": {...}}``: the one-off ``encode_source`` and what each
    driving frame costs (``estimate_motion`` then ``render`` with the source's cache). Each column
    has the networks that ran (by prefix), ``"other"`` (ops outside every network) and ``"total"``
    (their sum).
    """
    cfg = model.cfg
    with torch.no_grad():
        shadow = meta_model(cfg)
        image = torch.empty(1, 3, cfg.image_size, cfg.image_size, device="meta")
        source, encoded = _column(shadow, shadow.encode_source, image)
        frame, _ = _column(shadow, lambda x: shadow.render(encoded, shadow.estimate_motion(x)), image)
    return {"source": source, "frame": frame}


def _gmac(value: int | None) -> str:
    return "" if value is None else f"{value / 1e9:.2f}"


def complexity_report(model: nn.Module) -> str:
    """A small text table of parameters and GMACs per network.

    An "other" row (ops outside every network) is shown where it reaches 0.01 GMAC; the totals include it.
    """
    params = count_parameters(model)
    macs = macs_per_frame(model)
    s = model.cfg.image_size
    lines = [f"model {model.cfg.name} ({s}x{s})",
             f"{'net':<6}{'params (M)':>12}{'source GMAC':>14}{'frame GMAC':>13}"]
    rows = list(networks(model))
    if max(macs["source"]["other"], macs["frame"]["other"]) >= 5e6:  # shown where it reaches 0.01 GMAC
        rows.append("other")
    for key in (*rows, "total"):
        param = "" if key == "other" else f"{params[key] / 1e6:.2f}"
        lines.append(f"{key:<6}{param:>12}{_gmac(macs['source'].get(key)):>14}{_gmac(macs['frame'].get(key)):>13}")
    return "\n".join(lines)


def _volume_shape(cfg) -> tuple[int, ...] | None:
    """(C, D, H, W) of a 3D family's appearance volume, None for the 2D families."""
    if hasattr(cfg, "volume_shape"):
        return tuple(cfg.volume_shape)
    if all(hasattr(cfg, f) for f in ("feature_channels", "feature_depth", "volume_size")):  # LivePortrait
        return (cfg.feature_channels, cfg.feature_depth, cfg.volume_size, cfg.volume_size)
    return None


def shape_lines(cfg) -> list[str]:
    """The keypoint count (and flow mode, stitching where the config has them) and the sizes."""
    lines = []
    if hasattr(cfg, "num_keypoints"):
        extras = [f"flow mode {cfg.flow_mode}"] if hasattr(cfg, "flow_mode") else []
        if isinstance(getattr(cfg, "stitching", None), bool):
            extras.append(f"stitching {'on' if cfg.stitching else 'off'}")
        lines.append(", ".join([f"keypoints K = {cfg.num_keypoints}", *extras]))
    s, o = cfg.image_size, getattr(cfg, "output_size", cfg.image_size)
    volume = _volume_shape(cfg)
    middle = "" if volume is None else f" -> appearance volume {'x'.join(map(str, volume))}"
    lines.append(f"input 3x{s}x{s}{middle} -> output 3x{o}x{o}")
    return lines


def preset_config(name: str):
    """The config of a preset of any family (face-vid2vid, "liveportrait", "liveportrait-tiny", table families')."""
    from facevid2vid.checkpoint import _preset_config
    from facevid2vid.config import PRESETS
    from facevid2vid.errors import CheckpointError
    from facevid2vid.families.liveportrait import liveportrait_config, tiny_liveportrait_config

    own = {"liveportrait": liveportrait_config, "liveportrait-tiny": tiny_liveportrait_config}
    if name in own and name not in PRESETS:  # without importing the table families (one may be missing)
        return own[name]()
    try:
        return _preset_config(name)
    except ImportError as exc:
        raise CheckpointError(f"unknown preset {name!r} (the table families' presets could not be read: {exc}); "
                              f"choose one of: {', '.join([*PRESETS, *own])}") from None


def describe_model(checkpoint: str | None = None, preset: str | None = None) -> str:
    """What `facevid2vid inspect` prints: per-network parameters, shapes and MACs per frame (any family)."""
    from facevid2vid.checkpoint import load_checkpoint

    if checkpoint is not None:
        model = load_checkpoint(checkpoint)
        origin = f"checkpoint {checkpoint}"
    else:
        model = meta_model(preset_config(preset))  # parameters and MACs need the shapes only
        origin = f"preset {preset} (random weights)"
    return "\n".join([origin, complexity_report(model), *shape_lines(model.cfg)])
