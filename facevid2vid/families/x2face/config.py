"""X2FaceConfig: every architecture number of X2Face's two networks, and its loss settings.

The defaults are the paper's 256x256 model (Wiles, Koepke, Zisserman, ECCV 2018, and its
released code): both networks are pix2pix-style encoder-decoders of 8 levels of 4x4 stride-2
convolutions, widths 64, 128, 256, 512, 512, 512, 512, 512, decoders of 2x upsampling plus 3x3
convolutions. At 256 px the 8 levels reach a 1x1 bottleneck: the driving network's is the
128-dimensional driving vector.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..base import FamilyConfig

MAX_CODE_SIDE = 8  # the code layer is a linear map over the flattened bottleneck map: keep it small


@dataclass
class X2FaceConfig(FamilyConfig):
    """Architecture of the embedding network E and the driving network (encoder and decoder).

    Widths of level i (0-based) are ``min(block_expansion * 2**i, max_features)``; level i's
    output side is ``image_size / 2**(i + 1)``.
    """

    INT_BOUNDS: ClassVar[dict[str, tuple[int, int]]] = {
        "image_size": (32, 1024), "embedding_block_expansion": (1, 512), "embedding_max_features": (1, 2048),
        "embedding_num_blocks": (2, 10), "driving_block_expansion": (1, 512), "driving_max_features": (1, 2048),
        "driving_num_blocks": (1, 10), "motion_dim": (1, 4096), "loss_content_start_step": (0, 1 << 40),
    }

    name: str = "x2face-256"
    image_size: int = 256  # input and output side

    # embedding network: a U-Net with skip connections, source -> 2D sampling field -> embedded face
    embedding_block_expansion: int = 64  # width of the first level (pix2pix ngf)
    embedding_max_features: int = 512  # cap of the level widths
    embedding_num_blocks: int = 8  # levels; 8 at 256 px reach a 1x1 innermost map (pix2pix unet_256)

    # driving network: an encoder-decoder without skips, driving frame -> driving vector -> sampling field
    driving_block_expansion: int = 64
    driving_max_features: int = 512
    driving_num_blocks: int = 7  # 4x4 stride-2 conv levels before the code layer (256 px -> 2x2)
    motion_dim: int = 128  # D of the driving vector: the code layer maps the flattened bottleneck map to D
    residual_flow: bool = True  # sampling grid = identity + tanh(field), as the released code; False: tanh(field)

    # losses (weights LossWeights lacks; perceptual, l1_pyramid and identity come from TrainConfig.loss)
    loss_photometric: float = 1.0  # the paper's L1 between the output and the driving frame
    loss_content_start_step: int = 0  # training steps of L1 only before the content terms join (the paper's stages)

    @property
    def driving_code_side(self) -> int:
        """Side of the driving encoder's last map, flattened into the code layer (2 for the paper's model)."""
        return self.image_size // 2**self.driving_num_blocks

    def _validate_structure(self) -> None:
        for prefix in ("embedding", "driving"):
            blocks = getattr(self, f"{prefix}_num_blocks")
            if self.image_size % 2**blocks:
                raise ValueError(f"image_size {self.image_size} must be divisible by 2**{prefix}_num_blocks = "
                                 f"{2 ** blocks}")
        if self.driving_code_side > MAX_CODE_SIDE:
            raise ValueError(f"the driving bottleneck side image_size / 2**driving_num_blocks = "
                             f"{self.driving_code_side} must be at most {MAX_CODE_SIDE} (raise driving_num_blocks)")
        if self.loss_photometric < 0:
            raise ValueError(f"loss_photometric must be non-negative, got {self.loss_photometric}")


def x2face_config(**overrides) -> X2FaceConfig:
    """The paper's model at 256x256 (see the module docstring), with optional overrides."""
    return X2FaceConfig(**overrides).validate()


def tiny_x2face_config(**overrides) -> X2FaceConfig:
    """64x64 with a few channels: builds and trains a step in well under a second on CPU (tests)."""
    base = dict(name="x2face-tiny", image_size=64, embedding_block_expansion=4, embedding_max_features=16,
                embedding_num_blocks=4, driving_block_expansion=4, driving_max_features=16, driving_num_blocks=4,
                motion_dim=16)
    base.update(overrides)
    return X2FaceConfig(**base).validate()


def x2face_128_config(**overrides) -> X2FaceConfig:
    """128x128 at roughly lite-128's cost, for family comparisons trained on CPU.

    The paper's depths (E: 7 levels, 128 px -> 1x1; the driving encoder: 6 levels to 2x2, then
    the code layer), with widths chosen so that parameters (7.7 M) and the source's MACs
    (1.7 G) match lite-128's (6.8 M, 1.6 G): E 96 then 128, the driving network 160 then 192.
    A driving frame then costs 2.4 GMAC against lite-128's 7.1 (pix2pix's strided 4x4 levels
    spend few MACs per parameter; matching the frame's MACs too would need E and the driving
    network several times wider than the paper's proportions).
    """
    base = dict(name="x2face-128", image_size=128, embedding_block_expansion=96, embedding_max_features=128,
                embedding_num_blocks=7, driving_block_expansion=160, driving_max_features=192,
                driving_num_blocks=6, motion_dim=128)
    base.update(overrides)
    return X2FaceConfig(**base).validate()


PRESETS = {"x2face-256": x2face_config, "x2face-128": x2face_128_config, "x2face-tiny": tiny_x2face_config}
