"""Training terms built on the ported perception networks (``facevid2vid.perception``).

- ``FeaturePerceptualLoss``: the role VGG19 plays in the paper's L_P, with an ImageNet network
  that ships in a package (MobileNetV2 or InceptionV3): the LPIPS-like distance of
  ``perception.distance.perceptual_distance`` summed over an image pyramid;
- ``IdentityLoss``: the paper's face term, 1 - cosine similarity between the identity
  embeddings of the generated and the real driving face;
- ``NetworkPoseTeacher``: a learned head-pose network run on the fly on the training crops,
  for L_H (the landmark-PnP poses in the index stay as the fallback).

Training crops come from ``face.crop.box_around``: the face box is ``1 / CROP_MARGIN`` of the
crop's side, its centre ``CROP_SHIFT / CROP_MARGIN`` of the side below the crop's centre.
``face_region`` cuts the face back out, enlarged by the margin each network was trained with.
"""
from __future__ import annotations

import torch
from torch import nn

from facevid2vid.training.losses import image_pyramid

CROP_MARGIN = 1.8  # face.crop.box_around defaults: crop side / face size
CROP_SHIFT = 0.1  # crop centre moved up by this many face sizes
IDENTITY_MARGIN = 1.1  # identity networks see a tight face
POSE_MARGIN = 1.5  # pose networks see the face with some context (as in tests/perception_faces.py)


def face_region(images: torch.Tensor, margin: float) -> torch.Tensor:
    """The face of training crops (B, C, S, S), enlarged ``margin`` times, as a square slice."""
    s = images.shape[-1]
    side = min(s, max(8, int(round(s * margin / CROP_MARGIN))))
    cy = s / 2 + s * CROP_SHIFT / CROP_MARGIN
    y0 = int(round(min(max(cy - side / 2, 0), s - side)))
    x0 = (s - side) // 2
    return images[..., y0:y0 + side, x0:x0 + side]


class FeaturePerceptualLoss(nn.Module):
    """Sum over the pyramid levels of the LPIPS-like feature distance (batch mean)."""

    def __init__(self, net: nn.Module, scales=(1.0, 0.5, 0.25, 0.125)):
        super().__init__()
        self.net = net
        self.scales = tuple(scales)
        self.min_size = int(getattr(net, "min_size", 16))

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from facevid2vid.perception.distance import perceptual_distance

        total = prediction.new_zeros((), dtype=torch.float32)
        for p, t in zip(image_pyramid(prediction, self.scales), image_pyramid(target.detach(), self.scales)):
            if min(p.shape[-2:]) < self.min_size:
                continue
            total = total + perceptual_distance(self.net, p, t).float().mean()
        return total


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp(min=1e-8)


class IdentityLoss(nn.Module):
    """1 - cos(embedding(generated face), embedding(real face)), batch mean."""

    def __init__(self, net: nn.Module, margin: float = IDENTITY_MARGIN):
        super().__init__()
        self.net = net
        self.margin = margin

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        emb_p = _unit(self.net(face_region(prediction, self.margin)).float())
        with torch.no_grad():
            emb_t = _unit(self.net(face_region(target, self.margin)).float())
        return (1.0 - (emb_p * emb_t).sum(1)).mean()


class NetworkPoseTeacher(nn.Module):
    """Training crops (B, 3, S, S) -> (B, 3) yaw, pitch, roll degrees from a frozen pose network."""

    def __init__(self, net: nn.Module, margin: float = POSE_MARGIN):
        super().__init__()
        self.net = net
        self.margin = margin

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.angles(images)

    def angles(self, images: torch.Tensor) -> torch.Tensor:
        """The same angles with gradients to ``images`` (the free-view term); the network stays frozen."""
        return self.net(face_region(images.float(), self.margin)).float()
