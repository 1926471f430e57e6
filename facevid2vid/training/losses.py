"""The training losses of face-vid2vid, each a small function (weights live in ``LossWeights``).

Every function returns a scalar tensor averaged over the batch so that the weights from
SPEC.md mean the same thing at any batch size.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim, ssim

from facevid2vid.structures import HeadMotion
from facevid2vid.training.transforms import RandomWarp

# ---------------------------------------------------------------------------
# reconstruction


def image_pyramid(image: torch.Tensor, scales=(1.0, 0.5, 0.25, 0.125)) -> list[torch.Tensor]:
    """Anti-aliased copies of ``image`` (B, C, H, W) at each scale."""
    out = []
    for s in scales:
        if s == 1.0:
            out.append(image)
        else:
            out.append(F.interpolate(image, scale_factor=s, mode="bilinear", antialias=True,
                                     align_corners=False, recompute_scale_factor=False))
    return out


def pyramid_l1_loss(prediction: torch.Tensor, target: torch.Tensor, scales=(1.0, 0.5, 0.25, 0.125)) -> torch.Tensor:
    """Mean absolute error summed over the image pyramid (the VGG-free reconstruction term)."""
    total = prediction.new_zeros(())
    for p, t in zip(image_pyramid(prediction, scales), image_pyramid(target, scales)):
        total = total + (p - t).abs().mean()
    return total


def ssim_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - (MS-)SSIM for images in [0, 1]: MS-SSIM when the image is large enough for its 5 scales."""
    prediction, target = prediction.float(), target.float()
    side = min(prediction.shape[-2:])
    if side > 160:  # MS-SSIM needs (win_size - 1) * 2^4 < side
        return 1.0 - ms_ssim(prediction, target, data_range=1.0)
    win = 11 if side >= 11 else (side if side % 2 == 1 else side - 1)
    return 1.0 - ssim(prediction, target, data_range=1.0, win_size=max(win, 3))


# ---------------------------------------------------------------------------
# GAN (hinge) and feature matching; discriminator outputs are lists over scales of (features, logits)

DiscOutput = list[tuple[list[torch.Tensor], torch.Tensor]]


def generator_hinge_loss(fake: DiscOutput) -> torch.Tensor:
    """Hinge loss for G: -mean D(fake), summed over scales."""
    return sum(-logits.float().mean() for _, logits in fake)


def discriminator_hinge_loss(real: DiscOutput, fake: DiscOutput) -> torch.Tensor:
    """Hinge loss for D: relu(1 - D(real)) + relu(1 + D(fake)), summed over scales."""
    total = 0.0
    for (_, lr), (_, lf) in zip(real, fake):
        total = total + F.relu(1.0 - lr.float()).mean() + F.relu(1.0 + lf.float()).mean()
    return total


def feature_matching_loss(real: DiscOutput, fake: DiscOutput) -> torch.Tensor:
    """L1 between D's intermediate features on real and generated images (real side detached).

    Mean over the layers of each scale, summed over scales.
    """
    total = 0.0
    for (fr, _), (ff, _) in zip(real, fake):
        layers = [(a.detach().float() - b.float()).abs().mean() for a, b in zip(fr, ff)]
        if layers:
            total = total + sum(layers) / len(layers)
    return total


# ---------------------------------------------------------------------------
# keypoints, pose and expression


def keypoint_prior_loss(kp: torch.Tensor, distance_threshold: float = 0.1, target_depth: float = 0.33) -> torch.Tensor:
    """Spread keypoints apart and hold their mean depth: SPEC's L_L.

    ``sum_{i != j} max(0, D_t - ||x_i - x_j||^2) + |mean_k z_k - z_t|`` for kp (B, K, 3), batch mean.
    """
    k = kp.shape[1]
    sq_dist = (kp.unsqueeze(2) - kp.unsqueeze(1)).pow(2).sum(-1)  # (B, K, K)
    off_diag = ~torch.eye(k, dtype=torch.bool, device=kp.device)
    spread = (F.relu(distance_threshold - sq_dist) * off_diag).sum(dim=(1, 2))
    depth = (kp[..., 2].mean(dim=1) - target_depth).abs()
    return (spread + depth).mean()


def equivariance_loss(kp: torch.Tensor, kp_warped: torch.Tensor, warp: RandomWarp) -> torch.Tensor:
    """SPEC's L_E: keypoints found on the warped image, mapped back through T, match those of the image.

    kp: (B, K, 3) keypoints of d; kp_warped: (B, K, 3) keypoints of T(d). Only (x, y) take part.
    """
    back = warp.warp_points(kp_warped[..., :2].float())
    return (kp[..., :2].float() - back).abs().mean()


def head_pose_loss(motion: HeadMotion, teacher: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """SPEC's L_H: L1 in degrees between predicted (yaw, pitch, roll) and a frozen teacher's.

    teacher: (B, 3) degrees in (yaw, pitch, roll) order; valid: (B,) bool, frames without a
    teacher pose are left out (all invalid gives zero, still attached to the graph).
    """
    return angle_loss(torch.stack([motion.yaw, motion.pitch, motion.roll], dim=1), teacher, valid)


def angle_loss(pred: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """L1 in degrees between (B, 3) angles, mean over angles, then over the ``valid`` (B,) frames."""
    pred = pred.float()
    err = (pred - teacher.to(pred)).abs().mean(dim=1)  # (B,)
    if valid is None:
        return err.mean()
    w = valid.to(pred.dtype)
    return (err * w).sum() / w.sum().clamp(min=1.0)


def deformation_prior_loss(delta: torch.Tensor) -> torch.Tensor:
    """SPEC's L_Delta: L1 norm of the expression deformation, per keypoint, averaged. delta (B, K, 3)."""
    return delta.float().abs().sum(-1).mean()
