"""The layout of LivePortrait's released ``.pth`` files, and the key mapping to our modules.

Five files (``pretrained_weights/liveportrait/``): four plain state dicts and one dict of three
state dicts (``retarget_shoulder``, ``retarget_mouth``, ``retarget_eye``, keys possibly with a
DataParallel ``module.`` prefix). Nested keys are written ``outer/inner`` here.

The SPADE decoder's residual-block convs carry spectral norm as ``weight_orig``, ``weight_u``,
``weight_v``; in eval mode spectral norm divides ``weight_orig`` by ``sigma = u . (W v)``
(``W`` = weight_orig as a (out, -1) matrix) using the stored vectors, which
:func:`fold_spectral_norm` does once, so our decoder has plain weights.
"""
from __future__ import annotations

import re

import torch


# file name -> our checkpoint prefix (facevid2vid/families/liveportrait/model.py MODULES)
FILES = {"appearance_feature_extractor.pth": "F", "motion_extractor.pth": "M", "warping_module.pth": "W",
         "spade_generator.pth": "G", "stitching_retargeting_module.pth": "S"}
STITCHING_FILE = "stitching_retargeting_module.pth"
STITCHING_PARTS = {"retarget_shoulder": "stitching", "retarget_mouth": "lip", "retarget_eye": "eye"}

# per prefix: (reference key pattern, our key template) and the inverse (our pattern, reference template)
_RULES = {
    "F": [(r"^down_blocks\.(\d+)\.", r"down.\1."), (r"^second\.", "to_volume."),
          (r"^resblocks_3d\.3dr(\d+)\.", r"resblocks.\1.")],
    "M": [(r"^detector\.", "")],
    "W": [(r"^dense_motion_network\.hourglass\.encoder\.down_blocks\.", "dense_motion.hourglass.down."),
          (r"^dense_motion_network\.hourglass\.decoder\.up_blocks\.", "dense_motion.hourglass.up."),
          (r"^dense_motion_network\.hourglass\.decoder\.", "dense_motion.hourglass."),
          (r"^dense_motion_network\.", "dense_motion.")],
    "G": [(r"^G_middle_(\d+)\.", r"middle.\1."), (r"^conv_img\.0\.", "conv_img.")],
}
_INVERSE = {
    "F": [(r"^down\.(\d+)\.", r"down_blocks.\1."), (r"^to_volume\.", "second."),
          (r"^resblocks\.(\d+)\.", r"resblocks_3d.3dr\1.")],
    "M": [(r"^", "detector.")],
    "W": [(r"^dense_motion\.hourglass\.down\.", "dense_motion_network.hourglass.encoder.down_blocks."),
          (r"^dense_motion\.hourglass\.up\.", "dense_motion_network.hourglass.decoder.up_blocks."),
          (r"^dense_motion\.hourglass\.(conv|norm)\.", r"dense_motion_network.hourglass.decoder.\1."),
          (r"^dense_motion\.", "dense_motion_network.")],
    "G": [(r"^middle\.(\d+)\.", r"G_middle_\1."), (r"^conv_img\.", "conv_img.0.")],
}
# our decoder keys whose reference conv has spectral norm
SPECTRAL = re.compile(r"^(middle\.\d+|up_0|up_1)\.conv_[01s]\.weight$")
SPECTRAL_SUFFIXES = ("_orig", "_u", "_v")


def _apply(rules, key: str) -> str:
    for pattern, template in rules:
        new, count = re.subn(pattern, template, key, count=1)
        if count:
            return new
    return key


def to_ours(prefix: str, key: str) -> str:
    """Our key (without the prefix) for a reference key of the file of ``prefix``.

    Stitching keys are ``outer/inner``; spectral-norm keys keep their ``_orig``/``_u``/``_v`` suffix.
    """
    if prefix == "S":
        outer, _, inner = key.partition("/")
        return f"{STITCHING_PARTS.get(outer, outer + '?')}.{inner.removeprefix('module.')}"
    return _apply(_RULES.get(prefix, []), key)


def to_reference(prefix: str, key: str) -> str:
    """The reference key of one of our keys (inverse of :func:`to_ours`, without spectral suffixes)."""
    if prefix == "S":
        part, _, inner = key.partition(".")
        outer = {v: k for k, v in STITCHING_PARTS.items()}[part]
        return f"{outer}/module.{inner}"
    return _apply(_INVERSE.get(prefix, []), key)


def reference_layout(modules: dict[str, torch.nn.Module]) -> dict[str, dict[str, tuple[int, ...]]]:
    """file name -> {reference key: shape} that our modules (prefix -> module) load from.

    Spectral-norm weights appear as their three stored tensors; BatchNorm counters are included
    (the reference state dicts have them).
    """
    layout: dict[str, dict[str, tuple[int, ...]]] = {}
    for name, prefix in FILES.items():
        keys: dict[str, tuple[int, ...]] = {}
        for key, value in modules[prefix].state_dict().items():
            ref = to_reference(prefix, key)
            shape = tuple(value.shape)
            if prefix == "G" and SPECTRAL.match(key):
                keys[ref + "_orig"] = shape
                keys[ref + "_u"] = (shape[0],)
                keys[ref + "_v"] = (int(torch.Size(shape[1:]).numel()),)
            else:
                keys[ref] = shape
        layout[name] = keys
    return layout
