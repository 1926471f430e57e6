"""FOMMConfig: every architecture number of the First Order Motion Model, and its presets.

The defaults are ``config/vox-256.yaml`` of AliaksandrSiarohin/first-order-model (the released
``vox-cpk.pth.tar``): K = 10 keypoints with local affine Jacobians found at 1/4 of the image by a
5-level hourglass (widths 32 .. 1024), the dense motion network at 1/4 with a 5-level hourglass
(widths 64 .. 1024) and an occlusion map, and a Johnson-style generator (64 -> 128 -> 256 in two down
blocks, 6 residual blocks of 256, two up blocks, 7x7 conv, sigmoid).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from facevid2vid.families.base import FamilyConfig

FAMILY = "fomm"


@dataclass
class FOMMConfig(FamilyConfig):
    """Architecture of K (keypoint detector), M (dense motion network) and G (generator).

    Widths double per level from ``*block_expansion`` and are capped at ``*max_features``
    (:func:`facevid2vid.models.blocks.level_width`), as in the reference's hourglass.
    """

    INT_BOUNDS: ClassVar[dict[str, tuple[int, int]]] = {
        "image_size": (32, 1024), "num_keypoints": (1, 64),
        "kp_block_expansion": (1, 512), "kp_max_features": (1, 4096), "kp_num_blocks": (1, 8),
        "kp_padding": (0, 3),
        "dense_motion_block_expansion": (1, 512), "dense_motion_max_features": (1, 4096),
        "dense_motion_num_blocks": (1, 8),
        "block_expansion": (1, 512), "max_features": (1, 4096), "num_down_blocks": (1, 6),
        "num_bottleneck_blocks": (0, 32),
    }

    name: str = "fomm-256"
    image_size: int = 256  # input and output side
    num_keypoints: int = 10  # K (the reference's num_kp)
    estimate_jacobian: bool = True  # first order (keypoints + Jacobians); False: zero order (keypoints only)
    single_jacobian_map: bool = False  # one Jacobian map shared by all keypoints (the reference's mgif config)
    temperature: float = 0.1  # softmax temperature of the keypoint heatmaps
    kp_variance: float = 0.01  # variance of the Gaussians M gets at each keypoint

    # K: hourglass on a copy of the image scaled by kp_scale_factor (anti-aliased), 7x7 heads
    kp_scale_factor: float = 0.25
    kp_block_expansion: int = 32
    kp_max_features: int = 1024
    kp_num_blocks: int = 5
    kp_padding: int = 0  # padding of the 7x7 heatmap and Jacobian heads (the reference's `pad`: 0 crops 3 a side)

    # M: dense motion network at dense_motion_scale_factor of the image: hourglass on the K + 1 deformed
    # sources and heatmap differences -> K + 1 mask logits and the occlusion map
    dense_motion_scale_factor: float = 0.25
    dense_motion_block_expansion: int = 64
    dense_motion_max_features: int = 1024
    dense_motion_num_blocks: int = 5
    estimate_occlusion_map: bool = True

    # G: 7x7 SameBlock, num_down_blocks down blocks, residual bottleneck, up blocks, 7x7 conv + sigmoid
    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2
    num_bottleneck_blocks: int = 6

    # grid_sample's align_corners in M and G: False is the reference as it runs on torch >= 1.3 (its
    # requirements pin 1.12.1; what parity is checked against); True is how torch 1.0, which the
    # released checkpoints were trained with, sampled
    align_corners: bool = False

    # relative motion: scale the driving displacement by sqrt(hull area of the source keypoints / of the
    # reference frame's) (the reference demo's --adapt_scale)
    adapt_movement_scale: bool = True

    # weight of the Jacobian equivariance term (the keypoint term takes TrainConfig.loss.equivariance);
    # FOMM's vox config: 10 for both
    loss_equivariance_jacobian: float = 10.0

    @property
    def heatmap_side(self) -> int:
        """Side of K's heatmaps: the 7x7 heads take 3 - kp_padding pixels off each side."""
        return self.side(self.kp_scale_factor) + 2 * self.kp_padding - 6

    def _validate_structure(self) -> None:
        for name in ("temperature", "kp_variance"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.loss_equivariance_jacobian < 0:
            raise ValueError(f"loss_equivariance_jacobian must not be negative, got {self.loss_equivariance_jacobian}")
        for scale_name, blocks_name in (("kp_scale_factor", "kp_num_blocks"),
                                        ("dense_motion_scale_factor", "dense_motion_num_blocks")):
            scale, blocks = getattr(self, scale_name), getattr(self, blocks_name)
            if not 0 < scale <= 1 or abs(1 / scale - round(1 / scale)) > 1e-6:
                raise ValueError(f"{scale_name} must be 1/n for a whole n (the anti-alias filter keeps every "
                                 f"n-th pixel), got {scale}")
            if self.image_size % round(1 / scale) or self.side(scale) % 2**blocks:
                raise ValueError(f"the side {self.side(scale)} seen at {scale_name} = {scale} must be whole and "
                                 f"divisible by 2**{blocks_name} = {2**blocks}")
        if self.heatmap_side < 1:
            raise ValueError(f"K's heatmaps would be empty: side {self.side(self.kp_scale_factor)} with 7x7 heads "
                             f"padded by {self.kp_padding}")
        if self.max_features < self.block_expansion:
            raise ValueError(f"max_features {self.max_features} must be at least block_expansion "
                             f"{self.block_expansion} (G's first block and final conv have block_expansion channels)")
        if self.image_size % 2**self.num_down_blocks:
            raise ValueError(f"image_size {self.image_size} must be divisible by 2**num_down_blocks = "
                             f"{2**self.num_down_blocks}")


def fomm_256() -> FOMMConfig:
    """The reference's VoxCeleb architecture (config/vox-256.yaml) at 256x256."""
    return FOMMConfig().validate()


def fomm_128() -> FOMMConfig:
    """A CPU-trainable FOMM at 128x128, near lite-128's per-frame cost, for family comparisons.

    The paper's layout (K = 10 with Jacobians, K and M at 1/4 of the image with 4-level hourglasses
    on 32x32 maps, occlusion map, G's two down blocks) at narrower widths (K, M: 32 .. 256; G: 64 ..
    256) and 3 bottleneck blocks: about 6.6 GMAC per driving frame (lite-128: 7.1).
    """
    return FOMMConfig(
        name="fomm-128", image_size=128,
        kp_block_expansion=32, kp_max_features=256, kp_num_blocks=4,
        dense_motion_block_expansion=32, dense_motion_max_features=256, dense_motion_num_blocks=4,
        block_expansion=64, max_features=256, num_down_blocks=2, num_bottleneck_blocks=3,
    ).validate()


def fomm_tiny() -> FOMMConfig:
    """A few channels at 64x64: builds and runs a training step in well under two seconds on one core."""
    return FOMMConfig(
        name="fomm-tiny", image_size=64, num_keypoints=5,
        kp_block_expansion=4, kp_max_features=16, kp_num_blocks=2,
        dense_motion_block_expansion=4, dense_motion_max_features=16, dense_motion_num_blocks=2,
        block_expansion=8, max_features=16, num_down_blocks=2, num_bottleneck_blocks=1,
    ).validate()


PRESETS = {"fomm-256": fomm_256, "fomm-128": fomm_128, "fomm-tiny": fomm_tiny}
