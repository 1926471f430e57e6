"""MonkeyNetConfig: every architecture number of Monkey-Net, and its presets.

The defaults are the paper's VoxCeleb model at 256x256 (``config/vox.yaml`` of
AliaksandrSiarohin/monkey-net): K = 10 keypoints found at 1/4 of the image by a 5-level
hourglass (widths 32 .. 1024), the dense motion network at 1/4 with 2 grouped 1x1 blocks and a
5-level hourglass, and a 7-level U-Net generator (widths 32 .. 1024) with 4 refinement blocks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from facevid2vid.families.base import FamilyConfig

FAMILY = "monkeynet"


@dataclass
class MonkeyNetConfig(FamilyConfig):
    """Architecture of K (keypoint detector), M (dense motion network) and G (generator).

    Widths double per level from ``*block_expansion`` and are capped at ``*max_features``
    (:func:`facevid2vid.models.blocks.level_width`).
    """

    INT_BOUNDS: ClassVar[dict[str, tuple[int, int]]] = {
        "image_size": (32, 1024), "num_keypoints": (1, 64),
        "kp_block_expansion": (1, 512), "kp_max_features": (1, 2048), "kp_num_blocks": (1, 8),
        "dense_motion_block_expansion": (1, 512), "dense_motion_max_features": (1, 2048),
        "dense_motion_num_blocks": (1, 8), "dense_motion_num_group_blocks": (0, 8),
        "block_expansion": (1, 512), "max_features": (1, 2048), "num_blocks": (1, 10),
        "num_refinement_blocks": (0, 16),
    }

    name: str = "monkeynet-256"
    image_size: int = 256  # input and output side
    num_keypoints: int = 10  # K
    temperature: float = 0.1  # softmax temperature of the keypoint heatmaps
    # Gaussian heatmaps of the keypoints: exp(-|p - x_k|^2 / (2 kp_variance)), divided by heatmap_norm
    # (the reference's norm_const). Isotropic and fixed where the paper estimates a covariance per keypoint.
    kp_variance: float = 0.01
    heatmap_norm: float = 100.0

    # K: hourglass on a copy of the image scaled by kp_scale_factor, one heatmap per keypoint
    kp_scale_factor: float = 0.25
    kp_block_expansion: int = 32
    kp_max_features: int = 1024
    kp_num_blocks: int = 5

    # M: dense motion network, at dense_motion_scale_factor of the image (also where G's keypoint
    # embedding is made): grouped 1x1 blocks per motion, then an hourglass -> K + 1 mask logits + 2 residual flow
    dense_motion_scale_factor: float = 0.25
    dense_motion_block_expansion: int = 32
    dense_motion_max_features: int = 1024
    dense_motion_num_blocks: int = 5
    dense_motion_num_group_blocks: int = 2
    background_init: float = 2.0  # initial logit of the background mask (all others start at 0)

    # G: U-Net generator, the source's encoder features deformed by the dense flow
    block_expansion: int = 32
    max_features: int = 1024
    num_blocks: int = 7  # down blocks of the encoder (= up blocks of the decoder)
    num_refinement_blocks: int = 4  # residual blocks at full resolution before the output conv

    # relative motion: also scale the displacement by sqrt(hull area of the source keypoints / of the
    # reference frame's), FOMM's "adapt movement scale" (Monkey-Net's transfer leaves it off)
    relative_scale: bool = False

    # weight of a keypoint equivariance term (not in Monkey-Net; 0 keeps training as the paper's)
    loss_equivariance: float = 0.0

    def _validate_structure(self) -> None:
        for name in ("temperature", "kp_variance", "heatmap_norm"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.loss_equivariance < 0:
            raise ValueError(f"loss_equivariance must not be negative, got {self.loss_equivariance}")
        stages = (("kp_scale_factor", "kp_num_blocks"), ("dense_motion_scale_factor", "dense_motion_num_blocks"))
        for scale_name, blocks_name in stages:
            scale, blocks = getattr(self, scale_name), getattr(self, blocks_name)
            if not 0 < scale <= 1 or abs(self.image_size * scale - self.side(scale)) > 1e-6:
                raise ValueError(f"{scale_name} must be in (0, 1] and give a whole side at image_size "
                                 f"{self.image_size}, got {scale}")
            if self.side(scale) % 2**blocks:
                raise ValueError(f"the side {self.side(scale)} seen at {scale_name} = {scale} must be divisible by "
                                 f"2**{blocks_name} = {2**blocks}")
        if self.image_size % 2**self.num_blocks:
            raise ValueError(f"image_size {self.image_size} must be divisible by 2**num_blocks = {2**self.num_blocks}")


def monkeynet_256() -> MonkeyNetConfig:
    """The paper's VoxCeleb architecture (config/vox.yaml) at 256x256."""
    return MonkeyNetConfig().validate()


def monkeynet_128() -> MonkeyNetConfig:
    """A CPU-trainable Monkey-Net at 128x128, sized to lite-128 (6.8 M parameters, about 7 GMAC a frame).

    The paper's layout (K = 10, K and M at 1/4 of the image, 2 grouped blocks, 4 refinement
    blocks) at narrower widths, so the families are compared at equal size: K and M 4 levels
    from 32 to 128 channels (on 32x32); G 5 levels from 40 to 256 channels.
    """
    return MonkeyNetConfig(
        name="monkeynet-128", image_size=128,
        kp_block_expansion=32, kp_max_features=128, kp_num_blocks=4,
        dense_motion_block_expansion=32, dense_motion_max_features=128, dense_motion_num_blocks=4,
        block_expansion=40, max_features=256, num_blocks=5, num_refinement_blocks=4,
    ).validate()


def monkeynet_tiny() -> MonkeyNetConfig:
    """A few channels at 64x64: builds and runs a training step in well under two seconds on one core."""
    return MonkeyNetConfig(
        name="monkeynet-tiny", image_size=64, num_keypoints=5,
        kp_block_expansion=4, kp_max_features=16, kp_num_blocks=3,
        dense_motion_block_expansion=4, dense_motion_max_features=16, dense_motion_num_blocks=3,
        dense_motion_num_group_blocks=1,
        block_expansion=4, max_features=16, num_blocks=3, num_refinement_blocks=1,
    ).validate()


PRESETS = {"monkeynet-256": monkeynet_256, "monkeynet-128": monkeynet_128, "monkeynet-tiny": monkeynet_tiny}
