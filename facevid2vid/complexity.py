"""Parameter and multiply-accumulate counts per network (for ``inspect`` and the codec's cost tables).

MACs are measured with :class:`torch.utils.flop_counter.FlopCounterMode` (MACs = FLOPs / 2)
on a copy of the architecture built on the ``meta`` device: shapes only, no arithmetic,
so even paper-512 takes a second or two. Counted: convolutions and matrix products (as
torch counts them) plus trilinear/bilinear grid sampling at 8/4 MACs per output value.
Not counted: normalisation, activations, pooling, resizing, softmax.
"""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from .models import MODULES, FaceVid2Vid

aten = torch.ops.aten


def count_parameters(model: FaceVid2Vid, discriminator: torch.nn.Module | None = None) -> dict[str, int]:
    """Trainable-parameter counts: {"F", "L", "H", "M", "G", ("D"), "total"}."""
    counts = {p: sum(t.numel() for t in getattr(model, attr).parameters()) for p, attr in MODULES.items()}
    if discriminator is not None:
        counts["D"] = sum(t.numel() for t in discriminator.parameters())
    counts["total"] = sum(counts.values())
    return counts


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


def macs_per_frame(model: FaceVid2Vid) -> dict[str, dict[str, int]]:
    """Multiply-accumulates at batch 1.

    Returns ``{"source": {"F", "L", "H", "total"}, "frame": {"H", "M", "G", "total"}}``:
    the one-off source encoding, and what each synthesized driving frame costs
    (H/Delta on the frame, then M and G).
    """
    cfg = model.cfg
    with torch.device("meta"), torch.no_grad():
        shadow = FaceVid2Vid(cfg).eval()
        image = torch.empty(1, 3, cfg.image_size, cfg.image_size)
        source = {}
        source["F"], features = _macs(shadow.appearance_feature_extractor, image)
        source["L"], _ = _macs(shadow.kp_detector, image)
        source["H"], _ = _macs(shadow.he_estimator, image)
        encoded = shadow.encode_source(image)
        frame = {}
        frame["H"], motion = _macs(shadow.he_estimator, image)
        kp_d, rot_d = shadow.driving_keypoints(encoded, motion)
        frame["M"], m = _macs(shadow.dense_motion, encoded.features, encoded.kp, kp_d, encoded.rotation, rot_d)
        frame["G"], _ = _macs(shadow.generator, encoded.features, m.flows, m.mask, m.occlusion)
    source["total"] = sum(source.values())
    frame["total"] = sum(frame.values())
    return {"source": source, "frame": frame}


def complexity_report(model: FaceVid2Vid) -> str:
    """A small text table of parameters and GMACs per network."""
    params = count_parameters(model)
    macs = macs_per_frame(model)
    lines = [f"model {model.cfg.name} ({model.cfg.image_size}x{model.cfg.image_size})",
             f"{'net':<6}{'params (M)':>12}{'source GMAC':>14}{'frame GMAC':>13}"]
    for key in ("F", "L", "H", "M", "G", "total"):
        src = macs["source"].get(key)
        frm = macs["frame"].get(key)
        lines.append(f"{key:<6}{params[key] / 1e6:>12.2f}"
                     f"{'' if src is None else f'{src / 1e9:.2f}':>14}{'' if frm is None else f'{frm / 1e9:.2f}':>13}")
    return "\n".join(lines)


def describe_model(checkpoint: str | None = None, preset: str | None = None) -> str:
    """What `facevid2vid inspect` prints: per-module parameters, shapes and MACs per frame."""
    from facevid2vid.checkpoint import load_checkpoint
    from facevid2vid.config import model_preset
    from facevid2vid.errors import CheckpointError

    if checkpoint is not None:
        model = load_checkpoint(checkpoint)
        origin = f"checkpoint {checkpoint}"
    else:
        try:
            cfg = model_preset(preset)
        except ValueError as exc:
            raise CheckpointError(str(exc)) from None
        model = FaceVid2Vid(cfg)
        origin = f"preset {preset} (random weights)"
    cfg = model.cfg
    c, d, h, w = cfg.volume_shape
    s = cfg.image_size
    return "\n".join([
        origin,
        complexity_report(model),
        f"keypoints K = {cfg.num_keypoints}, flow mode {cfg.flow_mode}",
        f"input 3x{s}x{s} -> appearance volume {c}x{d}x{h}x{w} -> output 3x{s}x{s}",
    ])
