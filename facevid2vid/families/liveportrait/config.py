"""LivePortraitConfig: every architecture number of the LivePortrait networks.

The defaults are LivePortrait's released human model (``src/config/models.yaml`` of
KwaiVGI/LivePortrait): 256x256 input, 512x512 output, 21 implicit keypoints, a
ConvNeXt-V2-tiny motion extractor. A checkpoint stores this config as JSON (family
"liveportrait"), so the file alone rebuilds its model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

FAMILY = "liveportrait"

# inclusive bounds of the integer fields (checked before anything is built)
INT_BOUNDS = {
    "image_size": (32, 1024), "num_keypoints": (1, 64), "num_bins": (2, 360),
    "appearance_block_expansion": (1, 512), "appearance_num_down_blocks": (1, 4),
    "appearance_max_features": (1, 2048), "feature_channels": (1, 512), "feature_depth": (1, 64),
    "num_3d_resblocks": (0, 32), "motion_compressed_channels": (1, 256), "motion_block_expansion": (1, 512),
    "motion_max_features": (1, 4096), "motion_num_blocks": (1, 8), "warped_channels": (1, 2048),
    "decoder_out_channels": (1, 1024), "decoder_num_middle_blocks": (0, 16), "spade_hidden": (1, 1024),
    "upscale": (1, 4),
}
SEQUENCE_FIELDS = ("convnext_depths", "convnext_dims", "stitching_hidden", "lip_hidden", "eye_hidden")


@dataclass
class LivePortraitConfig:
    """Architecture of F, M (motion extractor), W (warping), G (SPADE decoder) and S (stitching, retargeting).

    Sizes: the appearance volume is ``feature_channels x feature_depth x h x h`` with
    ``h = image_size / 2**appearance_num_down_blocks``; the decoder upsamples h by 4 and then by
    ``upscale`` (pixel shuffle), so ``output_size = 4 * h * upscale`` (512 for the released model).
    """

    name: str = "liveportrait"
    image_size: int = 256  # input side (source and driving crops)
    num_keypoints: int = 21  # K implicit keypoints
    num_bins: int = 66  # pose bins: angle = 3 * E[bin] - pose_offset degrees
    pose_offset: float = 97.5

    # F: appearance feature extractor (first conv 3x3, down blocks, 1x1 conv to C*D, 3D res blocks)
    appearance_block_expansion: int = 64
    appearance_num_down_blocks: int = 2
    appearance_max_features: int = 512  # cap of the down blocks' widths
    feature_channels: int = 32  # C of the volume
    feature_depth: int = 16  # D of the volume
    num_3d_resblocks: int = 6

    # M: motion extractor (ConvNeXt-V2 with GRN)
    convnext_depths: tuple[int, ...] = (3, 3, 9, 3)
    convnext_dims: tuple[int, ...] = (96, 192, 384, 768)

    # W: warping module (dense motion on keypoint flows, then 2D convs on the warped volume)
    motion_compressed_channels: int = 4
    motion_block_expansion: int = 32
    motion_max_features: int = 1024
    motion_num_blocks: int = 5
    kp_variance: float = 0.01
    estimate_occlusion: bool = True
    warped_channels: int = 256  # W's output width = G's input width

    # G: SPADE decoder
    decoder_out_channels: int = 64
    decoder_num_middle_blocks: int = 6
    spade_hidden: int = 128
    upscale: int = 2  # pixel-shuffle factor of the output conv (256 -> 512)

    # S: stitching and the eye / lip retargeting MLPs (hidden widths)
    stitching_hidden: tuple[int, ...] = (128, 128, 64)
    lip_hidden: tuple[int, ...] = (128, 128, 64)
    eye_hidden: tuple[int, ...] = (256, 256, 128, 128, 64)
    stitching: bool = True  # render applies the stitching MLP to the driving keypoints

    @property
    def volume_size(self) -> int:
        return self.image_size // 2**self.appearance_num_down_blocks

    @property
    def output_size(self) -> int:
        """Side of the frames :meth:`LivePortrait.render` returns."""
        return 4 * self.volume_size * self.upscale

    def validate(self) -> "LivePortraitConfig":
        """ValueError naming the first field outside its bounds (before any allocation)."""
        if not isinstance(self.name, str) or not 0 < len(self.name) <= 100:
            raise ValueError(f"name must be a string of 1..100 characters, got {self.name!r}")
        for name, (low, high) in INT_BOUNDS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer in {low}..{high}, got {value!r}")
        for name in SEQUENCE_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, tuple) or not value or not all(
                    isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4096 for v in value):
                raise ValueError(f"{name} must list 1 or more integers in 1..4096, got {value!r}")
        for name in ("kp_variance", "pose_offset"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.kp_variance <= 0:
            raise ValueError(f"kp_variance must be positive, got {self.kp_variance}")
        for name in ("estimate_occlusion", "stitching"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        self._validate_structure()
        return self

    def _validate_structure(self) -> None:
        if len(self.convnext_depths) != 4 or len(self.convnext_dims) != 4:
            raise ValueError("convnext_depths and convnext_dims must list 4 stages each")
        if self.image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32 (the motion extractor's stride), "
                             f"got {self.image_size}")
        if self.volume_size % 2**self.motion_num_blocks:
            raise ValueError(f"the volume side {self.volume_size} must be divisible by 2**motion_num_blocks = "
                             f"{2 ** self.motion_num_blocks}")
        if self.output_size > 2048:
            raise ValueError(f"output size {self.output_size} is over 2048")

    def to_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    @classmethod
    def missing_fields(cls, data: dict[str, Any]) -> list[str]:
        return [f.name for f in fields(cls) if f.name not in data]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LivePortraitConfig":
        """From :meth:`to_dict` output; ValueError naming unknown fields (missing ones take the defaults)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown LivePortraitConfig fields: {', '.join(unknown)}")
        return cls(**{k: tuple(v) if k in SEQUENCE_FIELDS and isinstance(v, list) else v for k, v in data.items()})


def liveportrait_config(**overrides) -> LivePortraitConfig:
    """The released human model's architecture (models.yaml), with optional overrides."""
    return LivePortraitConfig(**overrides).validate()


def tiny_liveportrait_config(**overrides) -> LivePortraitConfig:
    """A small LivePortrait-shaped network (64x64 in, 128x128 out) for fast tests of the plumbing."""
    base = dict(name="liveportrait-tiny", image_size=64, appearance_block_expansion=8, appearance_max_features=32,
                feature_channels=4, feature_depth=4, num_3d_resblocks=1, convnext_depths=(1, 1, 1, 1),
                convnext_dims=(8, 16, 16, 16), motion_compressed_channels=2, motion_block_expansion=4,
                motion_max_features=16, motion_num_blocks=3, warped_channels=16, decoder_out_channels=8,
                decoder_num_middle_blocks=1, spade_hidden=8, stitching_hidden=(16,), lip_hidden=(16,),
                eye_hidden=(16,))
    base.update(overrides)
    return LivePortraitConfig(**base).validate()
