"""FOMM's training objective: reconstruction of the driving frame plus keypoint and Jacobian equivariance.

As ``config/vox-256.yaml`` of the reference (FOMM, Sec. 3.3), without its GAN (``generator_gan: 0``):

- perceptual pyramid at scales 1, 0.5, 0.25, 0.125 (``TrainConfig.pyramid_scales``): the given
  perceptual network (VGG19's PerceptualLoss or the project's FeaturePerceptualLoss standing in for
  it), else the pyramid L1 (weights ``loss.perceptual`` / ``loss.l1_pyramid``);
- equivariance of the keypoints under a random warp T: ``|kp_d - T(kp_T(d))|`` (``loss.equivariance``);
- equivariance of the Jacobians: ``|I - J_d^-1 (dT/dp(kp_T(d)) J_T(d))|``
  (``FOMMConfig.loss_equivariance_jacobian``), the reference's ``equivariance_jacobian``;
- the face-identity term when an identity network is given (``loss.identity``).
"""
from __future__ import annotations

import torch

from facevid2vid.data.batch import PairBatch
from facevid2vid.geometry import no_autocast
from facevid2vid.structures import KeypointMotion
from facevid2vid.training import losses as L
from facevid2vid.training.objective import FamilyObjective, GeneratorResult, autocast, content_terms
from facevid2vid.training.transforms import RandomWarp



def jacobian_equivariance_loss(driving: KeypointMotion, warped: KeypointMotion, warp: RandomWarp) -> torch.Tensor:
    """Mean ``|I - J_d^-1 (dT/dp(kp_w) J_w)|``: the Jacobians of the warped frame, carried back through T,
    must be the driving frame's (all float32)."""
    with no_autocast(warped.kp):
        j_warp = warp.jacobian(warped.kp.float())  # (B, K, 2, 2)
        value = torch.linalg.inv(driving.jacobian.float()) @ (j_warp @ warped.jacobian.float())
    eye = torch.eye(2, dtype=value.dtype, device=value.device)
    return (eye - value).abs().mean()


class FOMMObjective(FamilyObjective):
    """FOMM (owned) plus every loss term of its training, in one call (what DDP wraps)."""

    def forward(self, batch: PairBatch, warp: RandomWarp | None, use_gan: bool = False) -> GeneratorResult:
        """Reconstruct ``batch.driving`` from ``batch.source``; ``use_gan`` is ignored (FOMM has no D here)."""
        amp = autocast(batch.source.device, self.cfg.bf16)
        model = self.model
        with amp:
            source = model.encode_source(batch.source)
            driving = model.estimate_motion(batch.driving)
            pred = model.synthesize(source, driving)[0].float()  # (B, 3, S, S)
        terms = content_terms(pred, batch.driving, self.cfg, self.perceptual, self.identity, amp)
        if warp is not None:
            terms.update(self._equivariance_terms(batch.driving, driving, warp, amp))
        return GeneratorResult(terms, pred, source.motion.kp.float(), driving.kp.float())

    def _equivariance_terms(self, image: torch.Tensor, driving: KeypointMotion, warp: RandomWarp,
                            amp) -> dict[str, torch.Tensor]:
        w_kp, w_jac = self.cfg.loss.equivariance, self.model.cfg.loss_equivariance_jacobian
        w_jac = w_jac if driving.jacobian is not None else 0.0
        if not (w_kp or w_jac):
            return {}
        with amp:
            warped = self.model.estimate_motion(warp.warp_image(image))
        terms = {}
        if w_kp:
            terms["equivariance"] = w_kp * L.equivariance_loss(driving.kp.float(), warped.kp.float(), warp)
        if w_jac:
            terms["equivariance_jacobian"] = w_jac * jacobian_equivariance_loss(driving, warped, warp)
        return terms
