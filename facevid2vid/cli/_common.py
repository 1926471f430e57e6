"""Arguments shared by several commands, and the ``type=`` checks that make bad values usage errors.

A value a check refuses is reported by argparse as one line naming the option, exit code 2.
:class:`OptionTable` says which options set which fields of a settings dataclass (or which
parameters of a library function): commands build their settings through it, and
tests/test_cli_defaults.py checks the defaults on both sides against each other.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from facevid2vid.devices import check_device, device_problem
from facevid2vid.validation import MAX_ANGLE


def _parse(text: str, kind: type, what: str):
    try:
        return kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def int_range(low: int, high: int | None = None):
    """A ``type=`` for integers in ``low..high`` (no upper bound when ``high`` is None)."""
    if high is not None:
        phrase = f"an integer in {low}..{high}"
    else:
        phrase = "a positive integer" if low == 1 else f"an integer >= {low}"

    def check(text: str) -> int:
        value = _parse(text, int, phrase)
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {phrase}, got {value}")
        return value

    check.__name__ = phrase
    return check


positive_int = int_range(1)
nonnegative_int = int_range(0)


def float_range(low: float | None = None, high: float | None = None, low_open: bool = False):
    """A ``type=`` for finite numbers within ``low..high`` (``low`` excluded with ``low_open``)."""
    if low is not None and high is not None:
        span = f"within {low:g}..{high:g}"
    elif low is not None:
        span = f"{'>' if low_open else '>='} {low:g}"
    else:
        span = "finite"

    def check(text: str) -> float:
        value = _parse(text, float, f"a number {span}")
        bad = not math.isfinite(value) or (low is not None and (value <= low if low_open else value < low))
        if bad or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be a finite number {span}, got {text!r}")
        return value

    check.__name__ = f"number {span}"
    return check


finite_float = float_range()
positive_float = float_range(0.0, low_open=True)
nonnegative_float = float_range(0.0)
angle = float_range(-MAX_ANGLE, MAX_ANGLE)


def device_name(text: str) -> str:
    """A ``type=`` for --device (:mod:`facevid2vid.devices`): cpu, cuda, cuda:N or auto, normalised.

    ``auto`` is left for the library to resolve, so that checking it needs no torch import.
    """
    problem = device_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return check_device(text)


def add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", type=device_name, default="auto",
                   help="cpu, cuda, cuda:N or auto (default: auto, i.e. cuda when available)")


def add_model_args(p: argparse.ArgumentParser, device: bool = True) -> None:
    p.add_argument("--checkpoint", metavar="FILE", default=None,
                   help="model weights (.safetensors); default: the bundled model")
    if device:
        add_device_arg(p)


def add_crop_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-crop", dest="crop", action="store_false",
                   help="use the inputs as they are (resized) instead of detecting and cropping the face")


VIEW_OPTIONS = {"yaw": "yaw", "pitch": "pitch", "roll": "roll", "frontalize": "frontalize"}  # add_view_args


def add_view_args(p: argparse.ArgumentParser) -> None:
    limit = f"{MAX_ANGLE:g}"
    p.add_argument("--yaw", type=angle, default=0.0, metavar="DEG", help=f"added yaw in degrees (-{limit}..{limit})")
    p.add_argument("--pitch", type=angle, default=0.0, metavar="DEG",
                   help=f"added pitch in degrees (-{limit}..{limit})")
    p.add_argument("--roll", type=angle, default=0.0, metavar="DEG", help=f"added roll in degrees (-{limit}..{limit})")
    p.add_argument("--frontalize", action="store_true", help="set the head rotation to identity (face the camera)")


def report(result, what: str) -> None:
    fps = f" at {result.fps:g} fps" if result.fps else ""
    print(f"{what}: wrote {result.output} ({result.num_frames} frame{'s' if result.num_frames != 1 else ''}"
          f"{fps}) in {result.seconds:.1f} s")


@dataclass(frozen=True)
class OptionTable:
    """Which options of a command set which fields of a settings dataclass (or parameters of a function).

    ``target`` ("module:name") is imported only when the command runs, so ``--help`` loads no
    torch. An option whose value is None leaves the field at its default. Every field of a
    dataclass target is in ``options``, in ``elsewhere`` (set from other options by the command)
    or in ``not_on_cli`` (no option, deliberately); tests/test_cli_defaults.py holds each table
    to that and checks every option's default, and the "default X" its help states, against the
    field's. ``overrides``: the options change a loaded config, so their defaults are None.
    """

    target: str
    options: Mapping[str, str]  # argparse dest -> field or parameter name
    elsewhere: Mapping[str, str] = field(default_factory=dict)  # field -> dest of the option that sets it
    not_on_cli: frozenset[str] = frozenset()
    overrides: bool = False

    def resolve(self) -> Any:
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)

    def values(self, args: argparse.Namespace) -> dict[str, Any]:
        """{field: value} of the options given a value (not None) in ``args``."""
        found = {name: getattr(args, dest, None) for dest, name in self.options.items()}
        return {name: value for name, value in found.items() if value is not None}

    def build(self, args: argparse.Namespace, **fields: Any) -> Any:
        """The dataclass from ``args`` and ``fields`` (the ones set elsewhere)."""
        cls = self.resolve()
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{self.target} is not a dataclass")
        return cls(**self.values(args), **fields)


SMOOTHING = OptionTable("facevid2vid.smoothing:SmoothingSettings",
                        {"smooth": "enabled", "smooth_min_cutoff": "min_cutoff", "smooth_beta": "beta"},
                        not_on_cli=frozenset({"d_cutoff"}))  # the speed estimate's filter: tuned once, fixed


def add_smoothing_args(p: argparse.ArgumentParser, jitter_row: bool = False) -> None:
    """--smooth, --smooth-min-cutoff, --smooth-beta; ``jitter_row``: only the filter of benchmark's smoothed row."""
    if jitter_row:
        what, implies = "One Euro filter of the smoothed jitter row: ", ""
    else:
        p.add_argument("--smooth", action="store_true",
                       help="smooth the estimated head pose and expression over time (One Euro filter; causal)")
        what, implies = "", "implies --smooth; "
    # checked by SmoothingSettings.validate() (one line naming the setting, exit code 1)
    p.add_argument("--smooth-min-cutoff", type=float, default=None, metavar="HZ",
                   help=f"{what}cutoff while still: lower smooths more ({implies}default 0.5)")
    p.add_argument("--smooth-beta", type=float, default=None, metavar="BETA",
                   help=f"{what}how fast the cutoff rises with speed: higher lags less ({implies}default 15)")


def smoothing_settings(args, enabled: bool | None = None):
    """SmoothingSettings from the --smooth* arguments (validated); ``enabled`` overrides --smooth."""
    values = SMOOTHING.values(args)
    if enabled is None:
        enabled = bool(values.pop("enabled", False)) or bool(values)
    values["enabled"] = enabled
    settings = SMOOTHING.resolve()(**values)
    settings.validate()
    return settings
