"""FaceVid2Vid: the five synthesis networks and the steps that connect them."""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import InputError
from ..geometry import rotation_from_angles, transform_keypoints
from ..structures import ForwardOutput, GeneratorOutput, HeadMotion, SourceEncoding
from .appearance import AppearanceFeatureExtractor
from .generator import Generator
from .keypoints import CanonicalKeypointDetector
from .motion import MotionFieldEstimator
from .pose_expression import HeadPoseExpressionEstimator


# the module table: checkpoint prefix (the paper's letter) -> attribute of FaceVid2Vid
MODULES = {"F": "appearance_feature_extractor", "L": "kp_detector", "H": "he_estimator", "M": "dense_motion",
           "G": "generator"}


class FaceVid2Vid(nn.Module):
    """F, L, H/Delta, M and G (the discriminator lives apart, in training).

    Source path (once): ``encode_source``. Per driving frame: ``estimate_motion`` ->
    ``driving_keypoints`` -> ``synthesize``. ``forward`` chains all of them for training.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.appearance_feature_extractor = AppearanceFeatureExtractor(cfg)
        self.kp_detector = CanonicalKeypointDetector(cfg)
        self.he_estimator = HeadPoseExpressionEstimator(cfg)
        self.dense_motion = MotionFieldEstimator(cfg)
        self.generator = Generator(cfg)

    def _check_image(self, image: torch.Tensor, what: str) -> None:
        s = self.cfg.image_size
        if image.dim() != 4 or image.shape[1] != 3 or image.shape[2] != s or image.shape[3] != s:
            raise InputError(f"{what} must be a (B, 3, {s}, {s}) tensor for model {self.cfg.name!r}, "
                             f"got {tuple(image.shape)}")

    def encode_source(self, image: torch.Tensor) -> SourceEncoding:
        """F, L and H/Delta on the source image(s) (B, 3, S, S)."""
        self._check_image(image, "source image")
        motion = self.he_estimator(image)
        canonical = self.kp_detector(image)
        rotation = rotation_from_angles(motion.yaw, motion.pitch, motion.roll).to(canonical.dtype)
        kp = transform_keypoints(canonical, rotation, motion.translation.to(canonical.dtype),
                                 motion.delta.to(canonical.dtype))
        return SourceEncoding(features=self.appearance_feature_extractor(image), canonical_kp=canonical,
                              motion=motion, kp=kp, rotation=rotation)

    def estimate_motion(self, image: torch.Tensor) -> HeadMotion:
        """H/Delta on driving frames (N, 3, S, S)."""
        self._check_image(image, "driving image")
        return self.he_estimator(image)

    def driving_keypoints(self, source: SourceEncoding, motion: HeadMotion,
                          rotation: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x_d = R_d x_c + t_d + delta_d`` with the source's canonical keypoints -> (x_d (N, K, 3), R_d (N, 3, 3)).

        ``rotation`` (N, 3, 3) replaces R_d (free view); a batch-1 source broadcasts to N.
        """
        canonical = source.canonical_kp
        if rotation is None:
            rotation = rotation_from_angles(motion.yaw, motion.pitch, motion.roll)
        rotation = rotation.to(canonical.dtype)
        kp = transform_keypoints(canonical, rotation, motion.translation.to(canonical.dtype),
                                 motion.delta.to(canonical.dtype))
        return kp, rotation

    def synthesize(self, source: SourceEncoding, kp_driving: torch.Tensor,
                   rot_driving: torch.Tensor) -> GeneratorOutput:
        """M and G: the source re-rendered with driving keypoints (N, K, 3) and rotation (N, 3, 3)."""
        n = kp_driving.shape[0]
        features, kp_source, rot_source = source.features, source.kp, source.rotation
        if features.shape[0] != n:
            if features.shape[0] != 1:
                raise ValueError(f"source batch {features.shape[0]} does not match driving batch {n}")
            features = features.expand(n, *features.shape[1:])
            kp_source = kp_source.expand(n, -1, -1)
            rot_source = rot_source.expand(n, -1, -1)
        motion = self.dense_motion(features, kp_source, kp_driving, rot_source, rot_driving)
        return self.generator(features, motion.flows, motion.mask, motion.occlusion)

    def forward(self, source_image: torch.Tensor, driving_image: torch.Tensor) -> ForwardOutput:
        """Training path: the driving frame re-rendered from the source."""
        source = self.encode_source(source_image)
        motion = self.estimate_motion(driving_image)
        kp_driving, rot_driving = self.driving_keypoints(source, motion)
        return ForwardOutput(self.synthesize(source, kp_driving, rot_driving), source, motion, kp_driving)
