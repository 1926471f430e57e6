"""M: the dense motion network, sparse keypoint motions -> one dense backward flow and an occlusion map.

Each keypoint k proposes the first-order motion ``T_{s<-d}(z) = kp_s + J_s J_d^-1 (z - kp_d)`` near
it, and the background the identity (FOMM, Eq. 4). An hourglass sees the source deformed by each of
the K + 1 motions beside the difference of the keypoints' Gaussians (Eq. 6) and predicts masks,
softmax over the motions, that mix them into one flow (Eq. 7); a sigmoid 7x7 conv gives the
occlusion map (Sec. 3.2). Everything runs at ``dense_motion_scale_factor`` of the image.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from facevid2vid.geometry import no_autocast
from facevid2vid.models.hourglass2d import Hourglass2d
from facevid2vid.models.keypoints import GaussianDownsample
from facevid2vid.structures import KeypointMotion

from .blocks import coordinate_grid, gaussians, warp
from .config import FOMMConfig


@dataclass
class DenseMotion:
    mask: torch.Tensor  # (B, K+1, h, w) softmax over the motions (index 0: background)
    deformation: torch.Tensor  # (B, h, w, 2) backward flow in (x, y): output pixel z samples the source at it
    occlusion: torch.Tensor | None  # (B, 1, h, w) in (0, 1); None without estimate_occlusion_map


def sparse_motions(source: KeypointMotion, driving: KeypointMotion, h: int, w: int) -> torch.Tensor:
    """The K + 1 candidate flows (B, K+1, h, w, 2): identity, then ``kp_s + J_s J_d^-1 (z - kp_d)`` per keypoint.

    Jacobians are used when both motions have them (zero order otherwise: ``kp_s + z - kp_d``).
    """
    kp_d = driving.kp.float()
    b, k, _ = kp_d.shape
    with no_autocast(kp_d):
        grid = coordinate_grid(h, w, kp_d)  # (h, w, 2)
        rel = grid.view(1, 1, h, w, 2) - kp_d.view(b, k, 1, 1, 2)  # (B, K, h, w, 2)
        if source.jacobian is not None and driving.jacobian is not None:
            jac = source.jacobian.float() @ torch.linalg.inv(driving.jacobian.float())  # (B, K, 2, 2)
            rel = torch.einsum("bkij,bkhwj->bkhwi", jac, rel)
        flows = rel + source.kp.float().view(b, k, 1, 1, 2)
        background = grid.expand(b, 1, h, w, 2)
    return torch.cat([background, flows], dim=1)


class DenseMotionNetwork(nn.Module):
    """(downscaled source, source and driving keypoints) -> :class:`DenseMotion` at the downscaled size."""

    def __init__(self, cfg: FOMMConfig):
        super().__init__()
        k = cfg.num_keypoints
        self.kp_variance, self.align_corners = cfg.kp_variance, cfg.align_corners
        # per motion: its Gaussian difference and the 3 channels of the source it deforms
        self.hourglass = Hourglass2d((k + 1) * 4, cfg.dense_motion_block_expansion, cfg.dense_motion_num_blocks,
                                     cfg.dense_motion_max_features)
        self.mask = nn.Conv2d(self.hourglass.out_channels, k + 1, 7, padding=3)
        self.occlusion = nn.Conv2d(self.hourglass.out_channels, 1, 7, padding=3) if cfg.estimate_occlusion_map else None
        # the reference's AntiAliasInterpolation2d (its kernel buffer is recomputed, not stored)
        self.down = (GaussianDownsample(cfg.dense_motion_scale_factor) if cfg.dense_motion_scale_factor != 1
                     else nn.Identity())

    def heatmap_differences(self, source: KeypointMotion, driving: KeypointMotion, h: int, w: int) -> torch.Tensor:
        """Gaussians at the driving keypoints minus at the source's, background 0: (B, K+1, 1, h, w)."""
        with no_autocast(driving.kp):
            heat = (gaussians(driving.kp.float(), h, w, self.kp_variance)
                    - gaussians(source.kp.float(), h, w, self.kp_variance))  # (B, K, h, w)
        return torch.cat([heat.new_zeros(heat.shape[0], 1, h, w), heat], dim=1).unsqueeze(2)

    def forward(self, small_source: torch.Tensor, source: KeypointMotion, driving: KeypointMotion) -> DenseMotion:
        """``small_source``: ``self.down`` of the source image (B, 3, h, w); motions of batch B."""
        b, c, h, w = small_source.shape
        flows = sparse_motions(source, driving, h, w)  # (B, K+1, h, w, 2)
        m = flows.shape[1]
        repeated = small_source.unsqueeze(1).expand(b, m, c, h, w).reshape(b * m, c, h, w)
        deformed = warp(repeated, flows.reshape(b * m, h, w, 2), self.align_corners).view(b, m, c, h, w)
        heat = self.heatmap_differences(source, driving, h, w).to(deformed.dtype)
        features = self.hourglass(torch.cat([heat, deformed], dim=2).view(b, m * (c + 1), h, w))
        mask = torch.softmax(self.mask(features).float(), dim=1)  # (B, K+1, h, w)
        with no_autocast(mask):
            deformation = (flows * mask.unsqueeze(-1)).sum(dim=1)  # (B, h, w, 2)
        occlusion = None if self.occlusion is None else torch.sigmoid(self.occlusion(features).float())
        return DenseMotion(mask, deformation, occlusion)
