"""Monkey-Net's training objective (called as :class:`~facevid2vid.training.objective.GeneratorObjective`).

Reconstruction of the driving frame from the source frame of the same video. The paper's
reconstruction term is L1 on the image and on its discriminator's features (weights 10, 10,
10, 10, 1); without a discriminator here, the perception network's feature distance over the
image pyramid (``perceptual``, weight ``cfg.loss.perceptual``) stands for the feature part and
the pyramid L1 (``cfg.loss.l1_pyramid``) for the image part; the L1 is dropped only beside a
perceptual loss that ``replaces_pixel_terms`` (VGG19, the way GeneratorObjective treats it).
Optional: the face-identity term (``cfg.loss.identity``) and keypoint equivariance
(``model.cfg.loss_equivariance``, 0 by default: not in the paper).
"""
from __future__ import annotations

import torch

from facevid2vid.data.batch import PairBatch
from facevid2vid.training import losses as L
from facevid2vid.training.objective import FamilyObjective, GeneratorResult, autocast
from facevid2vid.training.transforms import RandomWarp



class MonkeyNetObjective(FamilyObjective):
    """MonkeyNet plus its losses, in one ``forward`` (what DDP wraps)."""

    def forward(self, batch: PairBatch, warp: RandomWarp | None, use_gan: bool = False) -> GeneratorResult:
        """Weighted terms on ``batch`` (on the model's device); ``use_gan`` is ignored (no discriminator)."""
        amp = autocast(batch.source.device, self.cfg.bf16)
        with amp:
            pred, kp_source, kp_driving = self.model.reconstruct(batch.source, batch.driving)
        pred = pred.float()  # (B, 3, S, S)
        terms = self._appearance_terms(pred, batch.driving, amp)
        weight = self.model.cfg.loss_equivariance
        if weight and warp is not None:
            with amp:
                kp_warped = self.model.kp_detector(warp.warp_image(batch.driving))
            terms["equivariance"] = weight * L.equivariance_loss(kp_driving.float(), kp_warped.float(), warp)
        return GeneratorResult(terms, pred, kp_source.float(), kp_driving.float())

    def _appearance_terms(self, pred: torch.Tensor, driving: torch.Tensor, amp) -> dict[str, torch.Tensor]:
        w, terms = self.cfg.loss, {}
        if self.perceptual is not None:
            with amp:
                terms["perceptual"] = w.perceptual * self.perceptual(pred, driving).float()
        if (self.perceptual is None or not getattr(self.perceptual, "replaces_pixel_terms", False)) and w.l1_pyramid:
            terms["l1_pyramid"] = w.l1_pyramid * L.pyramid_l1_loss(pred, driving, self.cfg.pyramid_scales)
        if self.identity is not None and w.identity:
            with amp:
                terms["identity"] = w.identity * self.identity(pred, driving).float()
        return terms
