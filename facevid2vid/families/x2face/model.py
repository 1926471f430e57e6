"""X2Face behind the synthesis interface: the embedded face per source, a driving vector per frame.

- ``encode_source``: the embedding network runs once per source; the embedded face is the
  source encoding's only feature (``ImageSource.features == (embedded,)``), no keypoints.
- ``estimate_motion``: the driving encoder, ``CodeMotion(code (N, D))``.
- ``render``: the driving decoder turns each code into a sampling grid that samples the
  embedded face.

X2Face has no keypoints and no pose, so there is no free view and no relative mode (a
difference of driving vectors has no meaning the decoder was trained on).
"""
from __future__ import annotations

import torch
from torch import nn

from facevid2vid.errors import InputError
from facevid2vid.families.base import check_image, refuse_free_view
from facevid2vid.structures import CodeMotion, ImageSource, View

from .blocks import warp_image
from .config import X2FaceConfig
from .driving import DrivingNetwork
from .embedding import EmbeddingNetwork

LABEL = "X2Face"


class X2Face(nn.Module):
    """The embedding network (E) and the driving network (V: encoder and decoder of the driving vector)."""

    family = "x2face"
    NETWORKS = {"E": "embedding_network", "V": "driving_network"}  # checkpoint prefix -> attribute
    free_view = False

    def __init__(self, cfg: X2FaceConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.embedding_network = EmbeddingNetwork(cfg)
        self.driving_network = DrivingNetwork(cfg)

    def _check_motion(self, motion) -> None:
        d = self.cfg.motion_dim
        if not isinstance(motion, CodeMotion) or motion.code.dim() != 2 or motion.code.shape[1] != d:
            got = tuple(motion.code.shape) if isinstance(motion, CodeMotion) else type(motion).__name__
            raise InputError(f"{LABEL} motion must be a CodeMotion of codes (N, {d}) for model "
                             f"{self.cfg.name!r}, got {got}")

    def forward(self, source: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
        """Training path: the driving frames (B, 3, S, S) re-rendered from the sources (B, 3, S, S), float32."""
        embedded, _ = self.embedding_network.embed(source)
        return warp_image(embedded, self.driving_network(driving))

    def encode_source(self, image: torch.Tensor) -> ImageSource:
        """The embedding network on source image(s) (B, 3, S, S): the embedded face, once per source."""
        check_image(image, self.cfg, "source image")
        embedded, _ = self.embedding_network.embed(image)
        return ImageSource(image=image, motion=None, features=(embedded,))

    def estimate_motion(self, frames: torch.Tensor) -> CodeMotion:
        """The driving encoder on frames (N, 3, S, S): driving vectors (N, D)."""
        check_image(frames, self.cfg, "driving image")
        return CodeMotion(self.driving_network.encode(frames))

    def render(self, source: ImageSource, motion: CodeMotion | None, view: View | None = None) -> torch.Tensor:
        """Frames (N, 3, S, S) float32 in [0, 1]: each code's sampling grid applied to the embedded face.

        Source and motion have batch 1 or N (batch 1 broadcasts; a batch-1 motion is decoded once).
        ``motion`` None (the source's ``motion``, as redirect passes it): each source's own driving
        vector, so the source is re-rendered in its own pose.
        """
        refuse_free_view(view, LABEL)
        if motion is None:
            motion = self.estimate_motion(source.image)
        self._check_motion(motion)
        (embedded,) = source.features
        b, m = embedded.shape[0], motion.batch_size
        n = max(b, m)
        if b not in (1, n) or m not in (1, n):
            raise ValueError(f"source batch {b} and motion batch {m} do not broadcast (each must be 1 or N)")
        grid = self.driving_network.sampling_grid(motion.code)  # (m, S, S, 2)
        out = warp_image(embedded.expand(n, -1, -1, -1), grid.expand(n, -1, -1, -1))
        return out.clamp(0, 1)

    @staticmethod
    def relative_motion(motion: CodeMotion, reference: CodeMotion, source) -> CodeMotion:
        """Refused: X2Face's driving vectors have no relative mode."""
        raise InputError(f"{LABEL} has no relative mode: use --mode absolute")
