"""X2Face's training objective: the paper's photometric L1, then its content (identity) terms.

The paper trains in two stages: first an L1 loss between the generated and the driving frame
only, then with content losses added (VGG-Face and VGG features). Here the content losses
are the project's stand-ins: the perceptual pyramid (``FeaturePerceptualLoss`` or VGG19's
``PerceptualLoss``) and the face-identity term (``IdentityLoss``), each when given; without
a perceptual network a multi-scale L1 takes its place. ``loss_content_start_step`` (default 0:
content terms from the start) sets the stage boundary. The paper's cross-identity identity
term needs pairs of two people, which the training data (pairs from one video) has not: only
the same-identity terms are used. No keypoints, no discriminator, no equivariance.
"""
from __future__ import annotations


from facevid2vid.data.batch import PairBatch
from facevid2vid.training.objective import FamilyObjective, GeneratorResult, autocast, content_terms
from facevid2vid.training.transforms import RandomWarp



class X2FaceObjective(FamilyObjective):
    """X2Face plus its losses, in one call (what DDP wraps).

    ``step`` counts the training calls (the model in train mode) for the stage boundary; a
    trainer that resumes a run sets it to the run's step.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.step = 0  # the run's step (the trainer sets it): the content-loss curriculum

    def forward(self, batch: PairBatch, warp: RandomWarp | None = None, use_gan: bool = False) -> GeneratorResult:
        """Reconstruct each driving frame from the source frame of its pair; the weighted terms by name.

        ``warp`` and ``use_gan`` are part of the objective interface; X2Face uses neither.
        """
        amp = autocast(batch.source.device, self.cfg.bf16)
        with amp:
            pred = self.model(batch.source, batch.driving).float()  # (B, 3, S, S)
        target = batch.driving.float()
        terms = {"photometric": self.model.cfg.loss_photometric * (pred - target).abs().mean()}
        if self.step >= self.model.cfg.loss_content_start_step:
            terms.update(content_terms(pred, target, self.cfg, self.perceptual, self.identity, amp))
        if self.model.training:
            self.step += 1
        none = pred.new_zeros(pred.shape[0], 0, 2)  # no keypoints
        return GeneratorResult(terms, pred, none, none)

