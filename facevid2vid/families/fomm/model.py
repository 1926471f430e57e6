"""FOMM: the First Order Motion Model (Siarohin et al., NeurIPS 2019) behind our synthesis interface.

Networks (checkpoint prefix -> attribute, :data:`FOMM.NETWORKS`): K ``kp_detector``, M
``dense_motion``, G ``generator``. The reference's generator owns its dense motion network
(``generator.dense_motion_network.*``); here M is a network of its own beside G, so each network's
weights are stored once under its own prefix and the converter maps the reference's
``generator.dense_motion_network.`` keys to ``M.``, its other generator keys to ``G.`` and
``kp_detector.`` to ``K.`` (every key name below the prefix is the reference's).

Per source (:meth:`FOMM.encode_source`): K on the source, G's encoder, M's downscaled source.
Per driving frame: K (:meth:`FOMM.estimate_motion`), then M and G's decoder (:meth:`FOMM.render`).
"""
from __future__ import annotations

import torch
from torch import nn

from facevid2vid.families.base import check_image, refuse_free_view
from facevid2vid.structures import ImageSource, KeypointMotion, View

from . import motion as relative
from .config import FOMMConfig
from .dense_motion import DenseMotion, DenseMotionNetwork
from .generator import OcclusionAwareGenerator
from .kp_detector import KPDetector


def broadcast(motion: KeypointMotion, n: int) -> KeypointMotion:
    """A batch-1 motion expanded (as views) to batch n."""
    if motion.batch_size == n:
        return motion
    if motion.batch_size != 1:
        raise ValueError(f"motion batch {motion.batch_size} does not match batch {n}")
    jacobian = None if motion.jacobian is None else motion.jacobian.expand(n, -1, -1, -1)
    return KeypointMotion(motion.kp.expand(n, -1, -1), jacobian)


def _expand(t: torch.Tensor, n: int) -> torch.Tensor:
    return t if t.shape[0] == n else t.expand(n, *t.shape[1:])


class FOMM(nn.Module):
    """K, M and G of FOMM; renders are ``cfg.image_size`` square, like its inputs."""

    family = "fomm"
    NETWORKS = {"K": "kp_detector", "M": "dense_motion", "G": "generator"}
    free_view = False

    def __init__(self, cfg: FOMMConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.kp_detector = KPDetector(cfg)
        self.dense_motion = DenseMotionNetwork(cfg)
        self.generator = OcclusionAwareGenerator(cfg)

    def encode_source(self, image: torch.Tensor) -> ImageSource:
        """K, G's encoder and M's downscaling on source image(s) (B, 3, S, S) in [0, 1].

        ``features``: (G's encoder map (B, C, S / 2**num_down_blocks, ...), the source at M's scale (B, 3, h, w)).
        """
        check_image(image, self.cfg, "source image")
        features = (self.generator.encode(image), self.dense_motion.down(image))
        return ImageSource(image, self.kp_detector(image), features)

    def estimate_motion(self, frames: torch.Tensor) -> KeypointMotion:
        """K on driving frames (N, 3, S, S): keypoints (N, K, 2) and Jacobians (N, K, 2, 2)."""
        check_image(frames, self.cfg, "driving image")
        return self.kp_detector(frames)

    def synthesize(self, source: ImageSource, motion: KeypointMotion) -> tuple[torch.Tensor, DenseMotion]:
        """(image (N, 3, S, S) in (0, 1), M's output) for a source and a motion of batch 1 or N each."""
        n = max(source.batch_size, motion.batch_size)
        if source.batch_size not in (1, n) or motion.batch_size not in (1, n):
            raise ValueError(f"source batch {source.batch_size} and motion batch {motion.batch_size} do not match "
                             f"(each is 1 or N)")
        if source.motion is None or len(source.features) != 2:
            raise ValueError("not a FOMM source encoding (encode it with FOMM.encode_source)")
        encoded, small = (_expand(f, n) for f in source.features)
        dense = self.dense_motion(small, broadcast(source.motion, n), broadcast(motion, n))
        return self.generator(encoded, dense), dense

    def render(self, source: ImageSource, motion: KeypointMotion, view: View | None = None) -> torch.Tensor:
        """Frames (N, 3, S, S) float32 in [0, 1] for absolute ``motion``; source and motion batch 1 or N."""
        refuse_free_view(view, "FOMM")
        return self.synthesize(source, motion)[0].float().clamp(0, 1)

    def relative_motion(self, motion: KeypointMotion, reference: KeypointMotion,
                        source: KeypointMotion) -> KeypointMotion:
        """The reference demo's relative mode (:mod:`.motion`), the movement scale per ``cfg.adapt_movement_scale``."""
        return relative.relative_motion(motion, reference, source, self.cfg.adapt_movement_scale)
