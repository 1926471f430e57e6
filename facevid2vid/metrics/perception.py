"""Metrics from the ported perception networks (``facevid2vid.perception``, docs/perception.md).

- ``PD-<network>``: the LPIPS-like distance of ``perception.distance.perceptual_distance`` on
  whole frames with an ImageNet network from a package (InceptionV3 by default). It is *not*
  LPIPS: no learned linear heads, another backbone; compare it only with itself.
- ``AED-<network>``: 1 - cosine similarity of a second identity network's embeddings
  (MobileFaceNet by default; dlib's ResNet stays the ``AED`` column), on face crops;
- ``pose error (<network>)``: mean |yaw|, |pitch|, |roll| difference read by a learned pose
  network (Hopenet-lite by default) on face crops of both frames.

Face crops are squares around the dlib landmarks the face metrics already found, enlarged
by ``IDENTITY_MARGIN`` / ``POSE_MARGIN``; frames without a face on both sides are skipped, as
for the dlib metrics.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from facevid2vid.errors import CheckpointError
from facevid2vid.metrics.face import FaceObservation

IDENTITY_MARGIN = 1.2
POSE_MARGIN = 1.5
CROP_SIZE = 160  # crops are resampled to this before each network's own resize


@dataclass
class PerceptionChoice:
    """Which ported network each metric uses."""

    features: str = "inception_v3"
    identity: str = "mobilefacenet"  # dlib's ResNet is the AED column beside it
    pose: str = "hopenet_lite"  # training's default teacher is WHENet


def metric_labels(choice: PerceptionChoice) -> dict[str, str]:
    from facevid2vid.perception.registry import NETWORKS

    short = {"inception_v3": "InceptionV3", "mobilenet_v2": "MobileNetV2", "mobilefacenet": "MobileFaceNet",
             "dlib_resnet34": "dlibR34", "hopenet_lite": "Hopenet-lite", "whenet": "WHENet"}
    return {"pd": f"PD-{short.get(choice.features, choice.features)}",
            "aed_net": f"AED-{short.get(choice.identity, choice.identity)}",
            "pose_error_net": f"pose error ({short.get(choice.pose, choice.pose)})",
            **{f"_{k}": NETWORKS[v].summary for k, v in vars(choice).items()}}


def face_crop(frame: torch.Tensor, landmarks: np.ndarray, margin: float) -> torch.Tensor:
    """(3, H, W) frame -> (1, 3, CROP_SIZE, CROP_SIZE) square around the landmarks, zero outside."""
    x0, y0 = landmarks.min(0)
    x1, y1 = landmarks.max(0)
    side = max(x1 - x0, y1 - y0) * margin
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    h, w = frame.shape[-2:]
    # affine grid in normalised coordinates (align_corners=False)
    theta = torch.tensor([[side / w, 0, (2 * cx / w) - 1], [0, side / h, (2 * cy / h) - 1]],
                         dtype=frame.dtype, device=frame.device).unsqueeze(0)
    grid = F.affine_grid(theta, (1, 3, CROP_SIZE, CROP_SIZE), align_corners=False)
    return F.grid_sample(frame.unsqueeze(0), grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@dataclass
class PerceptionAccumulator:
    """Sums the three metrics batch by batch."""

    nets: dict[str, torch.nn.Module]
    pd_sum: float = 0.0
    frames: int = 0
    _id: list[float] = field(default_factory=list)
    _pose: list[float] = field(default_factory=list)

    @torch.no_grad()
    def add(self, reference: torch.Tensor, generated: torch.Tensor,
            observations: list[tuple[FaceObservation, FaceObservation]] | None) -> None:
        """Float frames (B, 3, H, W) in [0, 1] and, when faces are on, the dlib observations per pair."""
        from facevid2vid.perception.distance import perceptual_distance

        if min(reference.shape[-2:]) >= getattr(self.nets["features"], "min_size", 1):
            self.pd_sum += perceptual_distance(self.nets["features"], generated, reference).sum().item()
            self.frames += reference.shape[0]
        pairs = [(i, r, g) for i, (r, g) in enumerate(observations or []) if r.found and g.found]
        if not pairs:
            return
        crops = {}
        for name, margin in (("identity", IDENTITY_MARGIN), ("pose", POSE_MARGIN)):
            ref = torch.cat([face_crop(reference[i], r.landmarks, margin) for i, r, _ in pairs])
            gen = torch.cat([face_crop(generated[i], g.landmarks, margin) for i, _, g in pairs])
            crops[name] = (ref, gen)
        er, eg = (F.normalize(self.nets["identity"](x).float(), dim=1) for x in crops["identity"])
        self._id += (1.0 - (er * eg).sum(1)).tolist()
        pr, pg = (self.nets["pose"](x).float() for x in crops["pose"])
        self._pose += (pr - pg).abs().mean(1).tolist()

    def result(self) -> dict[str, float | None]:
        return {"pd": self.pd_sum / self.frames if self.frames else None,
                "aed_net": float(np.mean(self._id)) if self._id else None,
                "pose_error_net": float(np.mean(self._pose)) if self._pose else None}


def load_perception(choice: PerceptionChoice, device: str = "cpu") -> tuple[dict | None, str | None]:
    """The three networks from the cache, or (None, reason) when they have not been fetched."""
    from facevid2vid.perception import load_network

    try:
        nets = {role: load_network(getattr(choice, role), device=device) for role in ("features", "identity", "pose")}
    except CheckpointError as exc:
        return None, f"unavailable ({str(exc).split(':')[0]}: run `facevid2vid weights fetch`)"
    return nets, None
