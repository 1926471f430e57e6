"""The model families and what each supports, in one table.

The 2D families (FOMM, Monkey-Net, X2Face) are packages under ``facevid2vid.families`` that
export ``Config`` (a :class:`~facevid2vid.families.base.FamilyConfig` dataclass), ``Model``
(the synthesis interface, with ``NETWORKS``: checkpoint prefix -> attribute), ``PRESETS``
(preset name -> config factory) and ``Objective`` (their training losses, called as
:class:`~facevid2vid.training.objective.GeneratorObjective` is). face-vid2vid and
LivePortrait predate the table and are wired by :mod:`facevid2vid.checkpoint` directly.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from . import FACEVID2VID, FOMM, LIVEPORTRAIT, MONKEYNET, X2FACE


@dataclass(frozen=True)
class FamilySpec:
    name: str
    label: str  # for tables and messages
    package: str | None  # the 2D families' package (exports Config, Model, PRESETS, Objective)
    free_view: bool  # --yaw/--pitch/--roll/--frontalize (3D keypoints and a rotation)
    relative: bool  # has a relative motion mode
    trainable: bool  # facevid2vid train can train it

    def module(self) -> ModuleType:
        if self.package is None:
            raise ValueError(f"family {self.name!r} is not a table family")
        return importlib.import_module(self.package)


SPECS = {s.name: s for s in (
    FamilySpec(FACEVID2VID, "face-vid2vid", None, free_view=True, relative=True, trainable=True),
    FamilySpec(LIVEPORTRAIT, "LivePortrait", None, free_view=True, relative=True, trainable=False),
    FamilySpec(FOMM, "FOMM", "facevid2vid.families.fomm", free_view=False, relative=True, trainable=True),
    FamilySpec(MONKEYNET, "Monkey-Net", "facevid2vid.families.monkeynet", free_view=False, relative=True,
               trainable=True),
    FamilySpec(X2FACE, "X2Face", "facevid2vid.families.x2face", free_view=False, relative=False, trainable=True),
)}
TABLE_FAMILIES = tuple(name for name, s in SPECS.items() if s.package is not None)


def spec(name: str) -> FamilySpec:
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(SPECS)}") from None


def family_presets() -> dict[str, tuple[str, object]]:
    """Every table family's presets: preset name -> (family, config factory)."""
    out = {}
    for name in TABLE_FAMILIES:
        for preset, factory in spec(name).module().PRESETS.items():
            out[preset] = (name, factory)
    return out


def family_of_config(cfg) -> str:
    """The family a config object belongs to."""
    from facevid2vid.config import ModelConfig

    from .liveportrait import LivePortraitConfig

    if isinstance(cfg, ModelConfig):
        return FACEVID2VID
    if isinstance(cfg, LivePortraitConfig):
        return LIVEPORTRAIT
    for name in TABLE_FAMILIES:
        if isinstance(cfg, spec(name).module().Config):
            return name
    raise ValueError(f"{type(cfg).__name__} is no model family's config")
