"""FaceVid2Vid: the five synthesis networks and the steps that connect them."""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import InputError
from ..geometry import rotation_from_angles, transform_keypoints, user_rotation
from ..structures import ForwardOutput, GeneratorOutput, HeadMotion, SourceEncoding, View
from .appearance import AppearanceFeatureExtractor
from .generator import Generator
from .he_resnet import WideningPoseExpressionEstimator
from .keypoints import CanonicalKeypointDetector
from .motion import MotionFieldEstimator
from .pose_expression import HeadPoseExpressionEstimator


# the module table: checkpoint prefix (the paper's letter) -> attribute of FaceVid2Vid
MODULES = {"F": "appearance_feature_extractor", "L": "kp_detector", "H": "he_estimator", "M": "dense_motion",
           "G": "generator"}


class FaceVid2Vid(nn.Module):
    """F, L, H/Delta, M and G (the discriminator lives apart, in training).

    The synthesis interface (what every model family implements, batching left to the caller):
    ``encode_source(image) -> SourceEncoding`` once per source, ``estimate_motion(frames) ->
    HeadMotion`` per driving frame, ``render(source, motion, view) -> frames``. Inside render:
    ``driving_keypoints`` -> ``synthesize`` (M and G). ``forward`` chains them for training.
    """

    NETWORKS = MODULES  # checkpoint prefix -> attribute of each network (facevid2vid.complexity, checkpoints)

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.appearance_feature_extractor = AppearanceFeatureExtractor(cfg)
        self.kp_detector = CanonicalKeypointDetector(cfg)
        self.he_estimator = (WideningPoseExpressionEstimator(cfg) if cfg.he_trunk == "widening"
                             else HeadPoseExpressionEstimator(cfg))
        self.dense_motion = MotionFieldEstimator(cfg)
        self.generator = Generator(cfg)

    def _check_image(self, image: torch.Tensor, what: str) -> None:
        s = self.cfg.image_size
        if image.dim() != 4 or image.shape[1] != 3 or image.shape[2] != s or image.shape[3] != s:
            raise InputError(f"{what} must be a (B, 3, {s}, {s}) tensor for model {self.cfg.name!r}, "
                             f"got {tuple(image.shape)}")

    def encode_source(self, image: torch.Tensor) -> SourceEncoding:
        """F, L and H/Delta on the source image(s) (B, 3, S, S), plus M's source-only part."""
        self._check_image(image, "source image")
        motion = self.he_estimator(image)
        canonical = self.kp_detector(image)
        rotation = rotation_from_angles(motion.yaw, motion.pitch, motion.roll).to(canonical.dtype)
        kp = transform_keypoints(canonical, rotation, motion.translation.to(canonical.dtype),
                                 motion.delta.to(canonical.dtype))
        features = self.appearance_feature_extractor(image)
        return SourceEncoding(features=features, canonical_kp=canonical, motion=motion, kp=kp, rotation=rotation,
                              cache=self.dense_motion.prepare_source(features, kp),
                              image=image if self.cfg.generator_image_skip else None)

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
        """M and G: the source re-rendered with driving keypoints (N, K, 3) and rotation (N, 3, 3).

        A batch-1 source serves any N (broadcast views, no copies); otherwise batches must match.
        """
        n = kp_driving.shape[0]
        if source.batch_size not in (1, n):
            raise ValueError(f"source batch {source.batch_size} does not match driving batch {n}")
        features = source.features.expand(n, *source.features.shape[1:])
        kp_source = source.kp.expand(n, -1, -1)
        rot_source = source.rotation.expand(n, -1, -1)
        motion = self.dense_motion(features, kp_source, kp_driving, rot_source, rot_driving, cache=source.cache)
        image = None if source.image is None else source.image.expand(n, *source.image.shape[1:])
        return self.generator(features, motion.flows, motion.mask, motion.occlusion, image)

    def render(self, source: SourceEncoding, motion: HeadMotion, view: View | None = None) -> torch.Tensor:
        """Frames (N, 3, S, S) in [0, 1]: the source with absolute driving ``motion`` and free-view ``view``.

        Source, motion and per-frame view controls each have batch 1 or N (batch 1 broadcasts).
        """
        return self.synthesize_view(source, motion, view).image.float().clamp(0, 1)

    def synthesize_view(self, source: SourceEncoding, motion: HeadMotion, view: View | None = None) -> GeneratorOutput:
        """M and G for :meth:`render`, unclamped (the free-view training term differentiates it)."""
        view = view or View()
        n = max(source.batch_size, motion.yaw.shape[0], view.num_frames() or 1)
        motion = _broadcast_motion(motion, n)
        rotation = user_rotation(rotation_from_angles(motion.yaw, motion.pitch, motion.roll),
                                 yaw=view.yaw, pitch=view.pitch, roll=view.roll, frontalize=view.frontalize)
        translation = motion.translation
        if view.translation is not None:
            translation = translation + torch.as_tensor(view.translation, dtype=translation.dtype,
                                                        device=translation.device)
        kp_driving, rotation = self.driving_keypoints(source, HeadMotion(motion.yaw, motion.pitch, motion.roll,
                                                                         translation, motion.delta), rotation)
        return self.synthesize(source, kp_driving, rotation)

    def forward(self, source_image: torch.Tensor, driving_image: torch.Tensor) -> ForwardOutput:
        """Training path: the driving frame re-rendered from the source."""
        source = self.encode_source(source_image)
        motion = self.estimate_motion(driving_image)
        kp_driving, rot_driving = self.driving_keypoints(source, motion)
        return ForwardOutput(self.synthesize(source, kp_driving, rot_driving), source, motion, kp_driving)


def _broadcast_motion(motion: HeadMotion, n: int) -> HeadMotion:
    """A batch-1 motion repeated (as views) to batch n."""
    if motion.yaw.shape[0] == n:
        return motion
    if motion.yaw.shape[0] != 1:
        raise ValueError(f"motion batch {motion.yaw.shape[0]} does not match batch {n}")
    return HeadMotion(motion.yaw.expand(n), motion.pitch.expand(n), motion.roll.expand(n),
                      motion.translation.expand(n, -1), motion.delta.expand(n, -1, -1))
