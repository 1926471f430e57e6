"""Arguments shared by several commands."""
from __future__ import annotations

import argparse


def add_model_args(p: argparse.ArgumentParser, device: bool = True) -> None:
    p.add_argument("--checkpoint", metavar="FILE", default=None,
                   help="model weights (.safetensors); default: the bundled model")
    if device:
        p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: cuda when available)")


def add_crop_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-crop", dest="crop", action="store_false",
                   help="use the inputs as they are (resized) instead of detecting and cropping the face")


def add_view_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--yaw", type=float, default=0.0, metavar="DEG", help="added yaw in degrees")
    p.add_argument("--pitch", type=float, default=0.0, metavar="DEG", help="added pitch in degrees")
    p.add_argument("--roll", type=float, default=0.0, metavar="DEG", help="added roll in degrees")
    p.add_argument("--frontalize", action="store_true", help="set the head rotation to identity (face the camera)")


def report(result, what: str) -> None:
    fps = f" at {result.fps:g} fps" if result.fps else ""
    print(f"{what}: wrote {result.output} ({result.num_frames} frame{'s' if result.num_frames != 1 else ''}"
          f"{fps}) in {result.seconds:.1f} s")


def add_smoothing_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--smooth", action="store_true",
                   help="smooth the estimated head pose and expression over time (One Euro filter; causal)")
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
