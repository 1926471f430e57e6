"""M: the motion field estimator, which turns K keypoint flows into one dense flow plus occlusion."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..geometry import keypoint_flows, kp2gaussian
from ..structures import MotionSourceCache
from .blocks import Conv3d, Hourglass3d, cpu_channels_last, warp_3d


@dataclass
class MotionOutput:
    flows: torch.Tensor  # (B, K+1, D, h, w, 3) per-keypoint backward flows, index 0: background
    mask: torch.Tensor  # (B, K+1, D, h, w) softmax weights over the flows
    occlusion: torch.Tensor | None  # (B, 1, h, w) in (0, 1), None without occlusion estimation


class MotionFieldEstimator(nn.Module):
    """(f_s, x_s, x_d, R_s, R_d) -> :class:`MotionOutput`.

    f_s is compressed to a few channels and warped by each of the K+1 flows; each warped
    copy gets a heatmap channel (Gaussians at x_d minus at x_s; zero for the background).
    A 3D hourglass then predicts the softmax masks and, from its depth-flattened output,
    the 2D occlusion map.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c, d, k = cfg.feature_channels, cfg.feature_depth, cfg.num_keypoints
        cc = cfg.motion_compressed_channels
        if cfg.volume_size % (cfg.motion_downsample * 2**cfg.motion_num_blocks) != 0:
            raise ValueError(f"volume size {cfg.volume_size} is not divisible by motion_downsample * "
                             f"2**motion_num_blocks")
        self.flow_mode = cfg.flow_mode
        self.downsample = cfg.motion_downsample
        self.variance = cfg.kp_variance
        self.compress = nn.Sequential(Conv3d(c, cc, 1), nn.BatchNorm3d(cc), nn.ReLU(inplace=True))
        self.warp_options = dict(align_corners=cfg.warp_align_corners, padding=cfg.warp_padding)
        self.hourglass = Hourglass3d((k + 1) * (cc + 1), cfg.motion_block_expansion,
                                     cfg.motion_num_blocks, cfg.motion_max_features, final_conv=cfg.motion_final_conv,
                                     upsample=cfg.upsample_3d, downsample=cfg.downsample_3d)
        out = self.hourglass.out_channels
        ks = cfg.motion_mask_kernel
        self.mask = Conv3d(out, k + 1, ks, padding=ks // 2)
        self.occlusion = nn.Conv2d(out * d, 1, 7, padding=3) if cfg.estimate_occlusion else None

    def working_size(self, spatial: tuple[int, int, int]) -> tuple[int, int, int]:
        """(D, h, w) of the volume -> (D, h / n, w / n), where the hourglass works (n = motion_downsample)."""
        d, h, w = spatial
        return (d, h // self.downsample, w // self.downsample)

    def prepare_source(self, features: torch.Tensor, kp_source: torch.Tensor) -> MotionSourceCache:
        """The source-only part of M, computed once per source: compressed f_s and source Gaussians."""
        spatial = self.working_size(tuple(features.shape[2:]))
        compressed = self.compress(features)
        if self.downsample > 1:
            compressed = F.avg_pool3d(compressed, (1, self.downsample, self.downsample))
        return MotionSourceCache(compressed=compressed,  # (B, cc, D, h / n, w / n)
                                 heat=kp2gaussian(kp_source, spatial, self.variance))  # (B, K, D, h / n, w / n)

    def heatmap_channel(self, heat_source: torch.Tensor, kp_driving: torch.Tensor, spatial) -> torch.Tensor:
        """(B, K+1, 1, D, h, w): driving minus source Gaussians, zeros for the background."""
        heat = kp2gaussian(kp_driving, spatial, self.variance) - heat_source
        zeros = heat.new_zeros(heat.shape[0], 1, *spatial)
        return torch.cat([zeros, heat], dim=1).unsqueeze(2)

    def forward(self, features: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor,
                rot_source: torch.Tensor, rot_driving: torch.Tensor,
                cache: MotionSourceCache | None = None) -> MotionOutput:
        """``cache`` (from :meth:`prepare_source`, batch 1 or B) skips the source-only work."""
        b = kp_driving.shape[0]
        full = tuple(features.shape[2:])
        spatial = self.working_size(full)
        d, h, w = spatial
        flows = keypoint_flows(kp_source, kp_driving, rot_source, rot_driving, spatial, self.flow_mode)
        k1 = flows.shape[1]
        cache = cache or self.prepare_source(features, kp_source)
        comp = cache.compressed.expand(b, *cache.compressed.shape[1:])  # (B, cc, D, h, w)
        cc = comp.shape[1]
        repeated = comp.unsqueeze(1).expand(b, k1, cc, d, h, w).reshape(b * k1, cc, d, h, w)
        warped = warp_3d(repeated, flows.reshape(b * k1, d, h, w, 3), **self.warp_options).view(b, k1, cc, d, h, w)
        heat = self.heatmap_channel(cache.heat, kp_driving, spatial).to(warped.dtype)
        x = torch.cat([heat, warped], dim=2).view(b, k1 * (cc + 1), d, h, w)  # (B, (K+1)(cc+1), D, h, w)
        pred = self.hourglass(x)
        logits = self.mask(pred)  # (B, K+1, D, h, w)
        occlusion = None
        if self.occlusion is not None:
            flat = pred.reshape(b, -1, h, w)  # (B, out*D, h, w)
            occlusion = self.occlusion(cpu_channels_last(flat))
        if spatial != full:  # back to the volume's size; the flows are exact there
            flows = keypoint_flows(kp_source, kp_driving, rot_source, rot_driving, full, self.flow_mode)
            logits = F.interpolate(logits, size=full, mode="trilinear", align_corners=False)
            if occlusion is not None:
                occlusion = F.interpolate(occlusion, size=full[1:], mode="bilinear", align_corners=False)
        occlusion = None if occlusion is None else torch.sigmoid(occlusion)
        return MotionOutput(flows=flows, mask=torch.softmax(logits, dim=1), occlusion=occlusion)
