"""The generator's and the discriminator's objectives as modules (what DDP wraps).

DistributedDataParallel synchronises gradients of whatever runs inside its ``forward``, so
each objective computes everything it needs in one call: the generator objective runs
F, L, H/Delta, M, G on the pair and H/Delta on the warped driving frame, then every loss.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from facevid2vid.config import TrainConfig
from facevid2vid.data.batch import PairBatch
from facevid2vid.geometry import angles_from_rotation, rotation_from_angles, user_rotation
from facevid2vid.models import FaceVid2Vid, MultiScaleDiscriminator
from facevid2vid.structures import ForwardOutput, View
from facevid2vid.training import losses as L
from facevid2vid.training.transforms import RandomWarp


@dataclass
class GeneratorResult:
    losses: dict[str, torch.Tensor]  # weighted terms by name (logged); their sum is the generator loss
    prediction: torch.Tensor  # (B, 3, S, S) float32
    kp_source: torch.Tensor  # (B, K, 3)
    kp_driving: torch.Tensor  # (B, K, 3)

    def detach(self) -> "GeneratorResult":
        """Without the autograd graph (what the trainer keeps for its image grids)."""
        return GeneratorResult({k: v.detach() for k, v in self.losses.items()}, self.prediction.detach(),
                               self.kp_source.detach(), self.kp_driving.detach())


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA when enabled; nothing on CPU (what every family's objective runs under)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


class FamilyObjective(nn.Module):
    """Base of the 2D families' objectives: the model (owned, so DDP wraps it) and the perception terms."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, perceptual: nn.Module | None = None,
                 identity: nn.Module | None = None):
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.perceptual = perceptual  # FeaturePerceptualLoss or PerceptualLoss, or None
        self.identity = identity  # IdentityLoss or None


def content_terms(pred: torch.Tensor, target: torch.Tensor, cfg: TrainConfig, perceptual: nn.Module | None,
                  identity: nn.Module | None, amp) -> dict[str, torch.Tensor]:
    """The 2D families' appearance terms: perceptual (else multi-scale L1 without a perceptual network)
    and face identity, weighted by ``cfg.loss``."""
    w, terms = cfg.loss, {}
    if perceptual is not None:
        if w.perceptual:
            with amp:
                terms["perceptual"] = w.perceptual * perceptual(pred, target).float()
    elif w.l1_pyramid:
        terms["l1_pyramid"] = w.l1_pyramid * L.pyramid_l1_loss(pred, target, cfg.pyramid_scales)
    if identity is not None and w.identity:
        with amp:
            terms["identity"] = w.identity * identity(pred, target).float()
    return terms


class GeneratorObjective(nn.Module):
    """FaceVid2Vid plus all generator-side losses; the discriminator is referenced, not owned."""

    def __init__(self, model: FaceVid2Vid, discriminator: MultiScaleDiscriminator, cfg: TrainConfig,
                 perceptual: nn.Module | None = None, identity: nn.Module | None = None,
                 pose_net: nn.Module | None = None):
        super().__init__()
        self.model = model
        self.perceptual = perceptual  # PerceptualLoss (VGG19) or FeaturePerceptualLoss (ported network)
        self.identity = identity  # IdentityLoss or None
        self.pose_net = pose_net  # NetworkPoseTeacher read with gradients (free-view term), or None
        self.cfg = cfg
        # kept out of the module tree: D has its own optimizer and its own DDP wrapper
        self._disc = [discriminator]

    def forward(self, batch: PairBatch, warp: RandomWarp | None, use_gan: bool,
                view_yaw: torch.Tensor | None = None) -> GeneratorResult:
        """Every generator-side term on ``batch`` (on the model's device), in one call for DDP.

        ``view_yaw`` (B,) degrees: the extra yaw of the free-view term (None: no free-view term).
        """
        amp = autocast(batch.source.device, self.cfg.bf16)
        with amp:
            fwd = self.model(batch.source, batch.driving)
        pred = fwd.generated.image.float()  # (B, 3, S, S)
        terms = self._appearance_terms(pred, batch.driving, amp)
        share = fwd.generated.image_share
        if self.cfg.loss.pixel_path and share is not None:
            terms["pixel_path"] = self.cfg.loss.pixel_path * (1 - share.float()).mean()
        if use_gan:
            terms.update(self._gan_terms(pred, batch.driving, fwd.kp_driving, amp))
        terms.update(self._motion_terms(fwd, batch, warp, amp))
        if view_yaw is not None and self.pose_net is not None and self.cfg.loss.free_view:
            terms.update(self._free_view_terms(fwd, batch, view_yaw, amp))
        return GeneratorResult(terms, pred, fwd.source.kp, fwd.kp_driving)

    def _appearance_terms(self, pred: torch.Tensor, driving: torch.Tensor, amp) -> dict[str, torch.Tensor]:
        """Perceptual (or multi-scale L1 + SSIM) and face-identity terms of the prediction."""
        w, terms = self.cfg.loss, {}
        if self.perceptual is not None:
            with amp:
                terms["perceptual"] = w.perceptual * self.perceptual(pred, driving).float()
        if self.perceptual is None or not getattr(self.perceptual, "replaces_pixel_terms", False):
            if w.l1_pyramid:
                terms["l1_pyramid"] = w.l1_pyramid * L.pyramid_l1_loss(pred, driving, self.cfg.pyramid_scales)
            if w.ssim:
                terms["ssim"] = w.ssim * L.ssim_loss(pred, driving)
        if self.identity is not None and w.identity:
            with amp:
                terms["identity"] = w.identity * self.identity(pred, driving).float()
        return terms

    def _gan_terms(self, pred: torch.Tensor, driving: torch.Tensor, kp_driving: torch.Tensor,
                   amp) -> dict[str, torch.Tensor]:
        """Hinge GAN and discriminator feature matching (D frozen by the caller)."""
        w, terms, disc = self.cfg.loss, {}, self._disc[0]
        with amp:
            fake = disc(pred, kp_driving)
            with torch.no_grad():
                real = disc(driving, kp_driving)
        if w.gan:
            terms["gan"] = w.gan * L.generator_hinge_loss(fake)
        if w.feature_matching:
            terms["feature_matching"] = w.feature_matching * L.feature_matching_loss(real, fake)
        return terms

    def _motion_terms(self, fwd: ForwardOutput, batch: PairBatch, warp: RandomWarp | None,
                      amp) -> dict[str, torch.Tensor]:
        """Equivariance, keypoint prior, head pose against the teacher, deformation prior."""
        w, terms = self.cfg.loss, {}
        src, motion_d, kp_d = fwd.source, fwd.driving, fwd.kp_driving
        if w.equivariance and warp is not None:
            with amp:
                motion_t = self.model.estimate_motion(warp.warp_image(batch.driving))
                kp_t, _ = self.model.driving_keypoints(src, motion_t)
            terms["equivariance"] = w.equivariance * L.equivariance_loss(kp_d.float(), kp_t.float(), warp)
        if w.keypoint_prior:
            terms["keypoint_prior"] = w.keypoint_prior * L.keypoint_prior_loss(kp_d.float())
        if w.head_pose:
            terms["head_pose"] = w.head_pose * 0.5 * (
                L.head_pose_loss(motion_d, batch.driving_pose, batch.driving_pose_valid)
                + L.head_pose_loss(src.motion, batch.source_pose, batch.source_pose_valid))
        if w.deformation_prior:
            terms["deformation_prior"] = w.deformation_prior * 0.5 * (
                L.deformation_prior_loss(motion_d.delta) + L.deformation_prior_loss(src.motion.delta))
        return terms

    def _free_view_terms(self, fwd: ForwardOutput, batch: PairBatch, view_yaw: torch.Tensor,
                         amp) -> dict[str, torch.Tensor]:
        """The source rendered with the driving pose turned by ``view_yaw`` (B,): the pose network's angles
        of it against the teacher's driving pose turned the same way, and its identity against the source.

        The driving motion is detached so that H cannot meet the request by misreading the driving frame:
        the term trains what renders a turn (the source's encoding, L's keypoints, M, G).
        """
        w = self.cfg.loss
        with amp:
            turned = self.model.synthesize_view(fwd.source, fwd.driving.detach(), View(yaw=view_yaw))
        turned = turned.image.float()  # (B, 3, S, S)
        teacher = batch.driving_pose.float()  # (B, 3) yaw, pitch, roll degrees
        target = angles_from_rotation(user_rotation(
            rotation_from_angles(teacher[:, 0], teacher[:, 1], teacher[:, 2]), yaw=view_yaw.to(teacher)))
        terms = {"free_view": w.free_view * L.angle_loss(self.pose_net.angles(turned), torch.stack(target, dim=1),
                                                         batch.driving_pose_valid)}
        if self.identity is not None and w.identity:
            with amp:
                terms["free_view_identity"] = w.identity * self.identity(turned, batch.source).float()
        return terms


class DiscriminatorObjective(nn.Module):
    """Hinge loss of D on real driving frames against (detached) predictions, in one D pass."""

    def __init__(self, discriminator: MultiScaleDiscriminator, cfg: TrainConfig):
        super().__init__()
        self.discriminator = discriminator
        self.cfg = cfg

    def forward(self, real: torch.Tensor, fake: torch.Tensor, kp: torch.Tensor) -> torch.Tensor:
        b = real.shape[0]
        with autocast(real.device, self.cfg.bf16):
            # one forward over real and fake together: DDP allows one forward per backward
            outs = self.discriminator(torch.cat([real, fake.detach()]), torch.cat([kp, kp]).detach())
        real_out = [([f[:b] for f in feats], logits[:b]) for feats, logits in outs]
        fake_out = [([f[b:] for f in feats], logits[b:]) for feats, logits in outs]
        return self.cfg.loss.gan * L.discriminator_hinge_loss(real_out, fake_out)
