"""Typed containers passed between the networks (no string-keyed dicts).

Conventions used everywhere in the package:
- images: float tensors (B, 3, H, W), RGB, values in [0, 1];
- keypoints: (B, K, 3) in normalised coordinates [-1, 1], ordered (x, y, z) as
  ``torch.nn.functional.grid_sample`` expects (x: width, y: height, z: depth);
- angles: degrees, tensors of shape (B,);
- rotation matrices: (B, 3, 3).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class HeadMotion:
    """Output of H/Delta for a batch of frames: head pose plus expression."""

    yaw: torch.Tensor  # (B,) degrees
    pitch: torch.Tensor  # (B,) degrees
    roll: torch.Tensor  # (B,) degrees
    translation: torch.Tensor  # (B, 3)
    delta: torch.Tensor  # (B, K, 3) expression deformation
    # raw 66-bin logits, kept for training losses; None when not needed
    yaw_logits: torch.Tensor | None = None
    pitch_logits: torch.Tensor | None = None
    roll_logits: torch.Tensor | None = None

    def index(self, idx) -> "HeadMotion":
        def pick(t):
            return None if t is None else t[idx]

        return HeadMotion(
            pick(self.yaw), pick(self.pitch), pick(self.roll), pick(self.translation), pick(self.delta),
            pick(self.yaw_logits), pick(self.pitch_logits), pick(self.roll_logits),
        )

    def detach(self) -> "HeadMotion":
        def d(t):
            return None if t is None else t.detach()

        return HeadMotion(d(self.yaw), d(self.pitch), d(self.roll), d(self.translation), d(self.delta),
                          d(self.yaw_logits), d(self.pitch_logits), d(self.roll_logits))

    @staticmethod
    def cat(items: list["HeadMotion"]) -> "HeadMotion":
        def c(name):
            vals = [getattr(m, name) for m in items]
            return None if any(v is None for v in vals) else torch.cat(vals)

        return HeadMotion(*(c(n) for n in ("yaw", "pitch", "roll", "translation", "delta",
                                             "yaw_logits", "pitch_logits", "roll_logits")))


@dataclass
class SourceEncoding:
    """Everything computed once per source image (F, L and H/Delta on the source)."""

    features: torch.Tensor  # (B, C, D, H/4, W/4) appearance volume f_s
    canonical_kp: torch.Tensor  # (B, K, 3) x_c
    motion: HeadMotion  # source pose and expression
    kp: torch.Tensor  # (B, K, 3) x_s = R_s x_c + t_s + delta_s
    rotation: torch.Tensor  # (B, 3, 3) R_s


@dataclass
class GeneratorOutput:
    image: torch.Tensor  # (B, 3, H, W) in [0, 1]
    mask: torch.Tensor  # (B, K+1, D, h, w) flow composition masks (index 0: background)
    occlusion: torch.Tensor | None  # (B, 1, h, w)
    flow: torch.Tensor  # (B, D, h, w, 3) composed backward flow


@dataclass
class ForwardOutput:
    """What the training path (``FaceVid2Vid.forward``) returns."""

    generated: GeneratorOutput  # the driving frame re-rendered from the source
    source: SourceEncoding
    driving: HeadMotion  # H/Delta on the driving frame
    kp_driving: torch.Tensor  # (B, K, 3) x_d
