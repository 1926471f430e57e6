"""What the typed configs of the 2D model families share: bounds checks, dict round trips.

A family config is a dataclass that also inherits :class:`FamilyConfig`; it lists the
inclusive bounds of its integer fields in ``INT_BOUNDS`` and may add structural checks in
``_validate_structure``. Booleans, floats and tuples of integers are checked by their
defaults' types, so a config read back from a checkpoint is checked before anything is built.
"""
from __future__ import annotations

import math
from dataclasses import fields
from typing import Any, ClassVar


class FamilyConfig:
    """Mixin for family config dataclasses (``name`` and ``image_size`` fields required)."""

    INT_BOUNDS: ClassVar[dict[str, tuple[int, int]]] = {}

    name: str
    image_size: int

    @property
    def output_size(self) -> int:
        """Side of rendered frames (the input side for these families)."""
        return self.image_size

    def side(self, scale: float) -> int:
        """The side of the image scaled by ``scale``."""
        return round(self.image_size * scale)

    def validate(self):
        """ValueError naming the first field of the wrong type or outside its bounds."""
        if not isinstance(self.name, str) or not 0 < len(self.name) <= 100:
            raise ValueError(f"name must be a string of 1..100 characters, got {self.name!r}")
        defaults = type(self)()
        for f in fields(self):
            _check_field(f.name, getattr(self, f.name), getattr(defaults, f.name), self.INT_BOUNDS.get(f.name))
        if self.image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32, got {self.image_size}")
        self._validate_structure()
        return self

    def _validate_structure(self) -> None:
        """Checks across fields (override)."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}

    @classmethod
    def missing_fields(cls, data: dict[str, Any]) -> list[str]:
        return [f.name for f in fields(cls) if f.name not in data]

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """From :meth:`to_dict` output; ValueError naming unknown fields (missing ones take the defaults)."""
        defaults = cls()
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {', '.join(unknown)}")
        return cls(**{k: tuple(v) if isinstance(getattr(defaults, k), tuple) and isinstance(v, list) else v
                      for k, v in data.items()})


def _check_field(name: str, value: Any, default: Any, bounds: tuple[int, int] | None) -> None:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, got {value!r}")
    elif isinstance(default, int):
        low, high = bounds or (0, 1 << 16)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{name} must be an integer in {low}..{high}, got {value!r}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    elif isinstance(default, tuple):
        if not isinstance(value, tuple) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                   for v in value):
            raise ValueError(f"{name} must be a list of numbers, got {value!r}")


def check_image(image, cfg, what: str) -> None:
    """InputError unless ``image`` is a (B, 3, S, S) tensor for a model of config ``cfg`` (S = image_size)."""
    import torch

    from facevid2vid.errors import InputError

    s = cfg.image_size
    if not isinstance(image, torch.Tensor) or image.dim() != 4 or tuple(image.shape[1:]) != (3, s, s):
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise InputError(f"{what} must be a (B, 3, {s}, {s}) tensor for model {cfg.name!r}, got {shape}")


def refuse_free_view(view, label: str) -> None:
    """InputError when a view asks for free view of a family without 3D keypoints (None: no view)."""
    from facevid2vid.errors import InputError

    if view is not None and not view.is_default():
        raise InputError(f"free view needs face-vid2vid's 3D keypoints; {label} has none")
