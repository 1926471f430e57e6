"""MonkeyNet: K, M and G of Monkey-Net behind the synthesis interface of the 2D families.

``encode_source`` runs K and G's encoder on the source (and keeps the source at M's side);
``render`` runs M and the rest of G per frame. Motion is :class:`KeypointMotion` without
Jacobians. Relative motion is Monkey-Net's transfer: ``x = x_s + (x_d - x_ref)``, optionally
with the displacement scaled by ``sqrt(area(x_s) / area(x_ref))`` (``cfg.relative_scale``).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from facevid2vid.errors import InputError
from facevid2vid.families.base import check_image, refuse_free_view
from facevid2vid.structures import ImageSource, KeypointMotion, View

from ..fomm.motion import movement_scale  # the same convex-hull movement scale as FOMM's
from .config import FAMILY, MonkeyNetConfig
from .dense_motion import DenseMotion, DenseMotionNetwork
from .generator import Generator
from .kp_detector import KPDetector
from .movement import heatmap_difference


class MonkeyNet(nn.Module):
    """Monkey-Net's keypoint detector (K), dense motion network (M) and generator (G)."""

    family = FAMILY
    NETWORKS = {"K": "kp_detector", "M": "dense_motion", "G": "generator"}
    free_view = False

    def __init__(self, cfg: MonkeyNetConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.motion_side = cfg.side(cfg.dense_motion_scale_factor)
        self.kp_detector = KPDetector(cfg)
        self.dense_motion = DenseMotionNetwork(cfg)
        self.generator = Generator(cfg)

    def _motion_source(self, image: torch.Tensor) -> torch.Tensor:
        """The source at M's side (B, 3, h, h)."""
        if self.motion_side == image.shape[-1]:
            return image
        return F.interpolate(image, size=(self.motion_side,) * 2, mode="bilinear", align_corners=False,
                             antialias=True)

    def encode_source(self, image: torch.Tensor) -> ImageSource:
        """K and G's encoder on source images (B, 3, S, S); features = (source at M's side, G's skips 1..n)."""
        check_image(image, self.cfg, "source image")
        kp = self.kp_detector(image)
        skips = self.generator.encode(image)  # skips[0] is the image itself, kept in ImageSource.image
        return ImageSource(image, KeypointMotion(kp), (self._motion_source(image), *skips[1:]))

    def estimate_motion(self, frames: torch.Tensor) -> KeypointMotion:
        """K on driving frames (N, 3, S, S)."""
        check_image(frames, self.cfg, "driving image")
        return KeypointMotion(self.kp_detector(frames))

    def synthesize(self, source: ImageSource, kp_driving: torch.Tensor) -> tuple[torch.Tensor, DenseMotion]:
        """M and G for driving keypoints (N, K, 2): (frames (N, 3, S, S) before clamping, the dense motion)."""
        n = kp_driving.shape[0]
        if source.batch_size not in (1, n):
            raise InputError(f"source batch {source.batch_size} does not match motion batch {n}")
        kp_source = source.motion.kp
        heat = heatmap_difference(kp_driving, kp_source, self.motion_side, self.cfg.kp_variance,
                                  self.cfg.heatmap_norm)  # (N, K, h, h)
        motion = self.dense_motion(source.features[0], heat, kp_driving, kp_source)
        skips = [source.image, *source.features[1:]]
        return self.generator(skips, motion.flow, heat), motion

    def render(self, source: ImageSource, motion: KeypointMotion, view: View | None = None) -> torch.Tensor:
        """Frames (N, 3, S, S) in [0, 1] for absolute ``motion``; source and motion have batch 1 or N."""
        refuse_free_view(view, "Monkey-Net")
        if not isinstance(motion, KeypointMotion) or motion.kp.shape[1:] != (self.cfg.num_keypoints, 2):
            raise InputError(f"Monkey-Net motion must be KeypointMotion with kp (N, {self.cfg.num_keypoints}, 2)")
        n = max(source.batch_size, motion.batch_size)
        if motion.batch_size not in (1, n):
            raise InputError(f"motion batch {motion.batch_size} does not match source batch {source.batch_size}")
        kp = motion.kp.expand(n, -1, -1)
        return self.synthesize(source, kp)[0].float().clamp(0, 1)

    def relative_motion(self, motion: KeypointMotion, reference: KeypointMotion,
                        source: KeypointMotion) -> KeypointMotion:
        """Monkey-Net's motion transfer: ``x_s + scale (x_d - x_ref)`` (reference and source batch 1)."""
        scale = movement_scale(source.kp[0], reference.kp[0]) if self.cfg.relative_scale else 1.0
        return KeypointMotion(source.kp + scale * (motion.kp - reference.kp))

    def reconstruct(self, source: torch.Tensor, driving: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                                 torch.Tensor]:
        """The training path: (prediction of ``driving`` from ``source`` (B, 3, S, S), kp_source, kp_driving).

        K sees source and driving frames in one batch (one set of BatchNorm statistics).
        """
        check_image(source, self.cfg, "source image")
        check_image(driving, self.cfg, "driving image")
        b = source.shape[0]
        kp = self.kp_detector(torch.cat([source, driving]))  # (2B, K, 2)
        kp_source, kp_driving = kp[:b], kp[b:]
        skips = self.generator.encode(source)
        encoded = ImageSource(source, KeypointMotion(kp_source), (self._motion_source(source), *skips[1:]))
        prediction, _ = self.synthesize(encoded, kp_driving)
        return prediction, kp_source, kp_driving

