"""MonkeyNet: K, M and G of Monkey-Net behind the synthesis interface of the 2D families.

``encode_source`` runs K and G's encoder on the source (and keeps the source at M's side);
``render`` runs M and the rest of G per frame. Motion is :class:`KeypointMotion` without
Jacobians. Relative motion is Monkey-Net's transfer: ``x = x_s + (x_d - x_ref)``, optionally
with the displacement scaled by ``sqrt(area(x_s) / area(x_ref))`` (``cfg.relative_scale``).
"""
from __future__ import annotations

import math

import torch
from scipy.spatial import ConvexHull
from torch import nn
from torch.nn import functional as F

from facevid2vid.errors import InputError
from facevid2vid.structures import ImageSource, KeypointMotion, View

from .config import FAMILY, MonkeyNetConfig
from .dense_motion import DenseMotion, DenseMotionNetwork
from .generator import Generator
from .kp_detector import KPDetector
from .movement import heatmap_difference


def hull_area(kp: torch.Tensor) -> float:
    """Area of the convex hull of keypoints (K, 2); 0 when they span no area."""
    try:
        return float(ConvexHull(kp.detach().double().cpu().numpy()).volume)  # a 2D hull's "volume" is its area
    except (RuntimeError, ValueError):  # scipy's QhullError is a RuntimeError
        return 0.0


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

    def _check_image(self, image: torch.Tensor, what: str) -> None:
        s = self.cfg.image_size
        if not isinstance(image, torch.Tensor) or image.dim() != 4 or tuple(image.shape[1:]) != (3, s, s):
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise InputError(f"{what} must be a (B, 3, {s}, {s}) tensor for model {self.cfg.name!r}, got {shape}")

    def _motion_source(self, image: torch.Tensor) -> torch.Tensor:
        """The source at M's side (B, 3, h, h)."""
        if self.motion_side == image.shape[-1]:
            return image
        return F.interpolate(image, size=(self.motion_side,) * 2, mode="bilinear", align_corners=False,
                             antialias=True)

    def encode_source(self, image: torch.Tensor) -> ImageSource:
        """K and G's encoder on source images (B, 3, S, S); features = (source at M's side, G's skips 1..n)."""
        self._check_image(image, "source image")
        kp = self.kp_detector(image)
        skips = self.generator.encode(image)  # skips[0] is the image itself, kept in ImageSource.image
        return ImageSource(image, KeypointMotion(kp), (self._motion_source(image), *skips[1:]))

    def estimate_motion(self, frames: torch.Tensor) -> KeypointMotion:
        """K on driving frames (N, 3, S, S)."""
        self._check_image(frames, "driving image")
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
        if view is not None and not view.is_default():
            raise InputError("free view needs face-vid2vid's 3D keypoints; Monkey-Net has none")
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
        scale = 1.0
        if self.cfg.relative_scale:
            area_s, area_ref = hull_area(source.kp[0]), hull_area(reference.kp[0])
            scale = math.sqrt(area_s / area_ref) if area_s > 0 and area_ref > 0 else 1.0
        return KeypointMotion(source.kp + scale * (motion.kp - reference.kp))

    def reconstruct(self, source: torch.Tensor, driving: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                                 torch.Tensor]:
        """The training path: (prediction of ``driving`` from ``source`` (B, 3, S, S), kp_source, kp_driving).

        K sees source and driving frames in one batch (one set of BatchNorm statistics).
        """
        self._check_image(source, "source image")
        self._check_image(driving, "driving image")
        b = source.shape[0]
        kp = self.kp_detector(torch.cat([source, driving]))  # (2B, K, 2)
        kp_source, kp_driving = kp[:b], kp[b:]
        skips = self.generator.encode(source)
        encoded = ImageSource(source, KeypointMotion(kp_source), (self._motion_source(source), *skips[1:]))
        prediction, _ = self.synthesize(encoded, kp_driving)
        return prediction, kp_source, kp_driving

