"""Arguments shared by several commands, and the ``type=`` checks that make bad values usage errors.

A value a check refuses is reported by argparse as one line naming the option, exit code 2.
"""
from __future__ import annotations

import argparse
import math

from facevid2vid.validation import MAX_ANGLE

DEVICES = ("cpu", "cuda", "auto")


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
    """A ``type=`` for --device: cpu, cuda, cuda:N or auto; cuda only where CUDA is available."""
    name = text.strip().lower()
    kind, _, index = name.partition(":")
    if kind not in DEVICES or (index and (kind != "cuda" or not index.isdigit())):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}: choose {', '.join(DEVICES)} (or cuda:N)")
    if kind == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text!r} asked for, but CUDA is not available here: use cpu or auto")
        if index and int(index) >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text!r}: this machine has {torch.cuda.device_count()} CUDA devices")
    return name


def add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", type=device_name, default="auto",
                   help="cpu, cuda or auto (default: cuda when available)")


def add_model_args(p: argparse.ArgumentParser, device: bool = True) -> None:
    p.add_argument("--checkpoint", metavar="FILE", default=None,
                   help="model weights (.safetensors); default: the bundled model")
    if device:
        add_device_arg(p)


def add_crop_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-crop", dest="crop", action="store_false",
                   help="use the inputs as they are (resized) instead of detecting and cropping the face")


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


def add_smoothing_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--smooth", action="store_true",
                   help="smooth the estimated head pose and expression over time (One Euro filter; causal)")
    # checked by SmoothingSettings.validate() (one line naming the setting, exit code 1)
    p.add_argument("--smooth-min-cutoff", type=float, default=None, metavar="HZ",
                   help="cutoff while still: lower smooths more (implies --smooth; default 0.5)")
    p.add_argument("--smooth-beta", type=float, default=None, metavar="BETA",
                   help="how fast the cutoff rises with speed: higher lags less (implies --smooth; default 15)")


def smoothing_settings(args, enabled: bool | None = None):
    """SmoothingSettings from the --smooth* arguments (validated); ``enabled`` overrides --smooth."""
    from facevid2vid.smoothing import SmoothingSettings

    settings = SmoothingSettings()
    if enabled is None:
        enabled = args.smooth or args.smooth_min_cutoff is not None or args.smooth_beta is not None
    settings.enabled = enabled
    if args.smooth_min_cutoff is not None:
        settings.min_cutoff = args.smooth_min_cutoff
    if args.smooth_beta is not None:
        settings.beta = args.smooth_beta
    settings.validate()
    return settings
