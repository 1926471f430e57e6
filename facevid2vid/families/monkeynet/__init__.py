"""Monkey-Net (Siarohin et al., "Animating Arbitrary Objects via Deep Motion Transfer", CVPR 2019).

Our own implementation, read from the paper and its public code (AliaksandrSiarohin/monkey-net,
``config/vox.yaml`` for the sizes), one file per network, each on the 2D hourglass of
:mod:`facevid2vid.models.hourglass2d` (FOMM's too):

- K, :mod:`.kp_detector`: hourglass on the frame at 1/4 -> K = 10 heatmaps, softmax with
  temperature 0.1, keypoints = expected (x, y) in [-1, 1]; one frame at a time, no Jacobians.
- M, :mod:`.dense_motion`: per motion (background + K displacements ``x_s - x_d``) the heatmap
  difference and the source moved by that displacement -> grouped 1x1 blocks and an hourglass ->
  a softmax mask over the K + 1 motions and a residual flow; flow = masked sum + residual.
- G, :mod:`.generator`: U-Net whose encoder runs on the source; each skip (the image too) is
  warped by the flow, the heatmap difference is concatenated to it, and the decoder, 4 residual
  refinement blocks and a sigmoid make the frame.

Motion is :class:`~facevid2vid.structures.KeypointMotion` with ``jacobian=None``. Relative mode
is Monkey-Net's transfer ``x_s + (x_d - x_ref)`` (``Config.relative_scale`` adds FOMM's
movement scale, off by default); absolute mode uses the driving keypoints as they are.

Departures from the paper, each because this project lacks what it needs or to keep the
family behind the shared interface:

- keypoint Gaussians are isotropic with a fixed variance (``kp_variance`` 0.01) where the paper
  reads a 2x2 covariance off every heatmap: a motion is keypoints only (the codec sends 2K
  numbers a frame) and no covariance has to be carried or re-estimated in relative mode;
- no discriminator and no GAN term: the reconstruction loss in the discriminator's feature space
  becomes the perception network's feature distance over the image pyramid
  (FeaturePerceptualLoss, the project's stand-in for VGG) plus the pyramid L1 in place of the
  paper's image-level L1 (pyramid L1 alone when no perception network is given);
- optional extras, off or absent unless configured: keypoint equivariance (``loss_equivariance``,
  default 0, not in the paper) and the face-identity term (when an identity network is given);
- the networks are 2D convolutions, where the reference code writes them as 3D convolutions with
  1x3x3 kernels over a one-frame "video" (the same arithmetic); the frame K sees is downscaled with
  antialiased bilinear interpolation (the reference: nearest), and flows are resized bilinearly
  with ``align_corners=True`` so the identity flow stays exact at every skip.
"""
from .config import FAMILY, PRESETS, MonkeyNetConfig
from .model import MonkeyNet
from .objective import MonkeyNetObjective

Config = MonkeyNetConfig
Model = MonkeyNet
Objective = MonkeyNetObjective

__all__ = ["FAMILY", "PRESETS", "Config", "Model", "Objective", "MonkeyNetConfig", "MonkeyNet", "MonkeyNetObjective"]
