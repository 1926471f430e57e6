"""S: LivePortrait's stitching MLP and its eye / lip retargeting MLPs.

- stitching: (x_s, x_d) flattened (6K) -> a keypoint offset (3K) plus a shift of t_x, t_y (2),
  added to x_d so that the animated crop lines up with the source around the shoulders;
- lip: (x_s, [c_s_lip, c_d_lip]) (3K + 2) -> an offset (3K) that opens or closes the mouth;
- eye: (x_s, [c_s_eye_left, c_s_eye_right, c_d_eye]) (3K + 3) -> an offset (3K) for the eyelids.

The close ratios c come from face landmarks (LivePortrait's own landmark model, which we do
not use), so the retargeting MLPs are converted and callable but not applied by render.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import LivePortraitConfig


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers of ``sizes`` with ReLU between them (keys mlp.0, mlp.2, ...)."""
    layers: list[nn.Module] = []
    for i, (cin, cout) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(cin, cout))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RetargetingMLP(nn.Module):
    def __init__(self, sizes: list[int]):
        super().__init__()
        self.mlp = mlp(sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class StitchingRetargeting(nn.Module):
    """The three MLPs; methods take and give keypoints (B, K, 3)."""

    def __init__(self, cfg: LivePortraitConfig):
        super().__init__()
        k3 = 3 * cfg.num_keypoints
        self.num_keypoints = cfg.num_keypoints
        self.stitching = RetargetingMLP([2 * k3, *cfg.stitching_hidden, k3 + 2])
        self.lip = RetargetingMLP([k3 + 2, *cfg.lip_hidden, k3])
        self.eye = RetargetingMLP([k3 + 3, *cfg.eye_hidden, k3])

    def stitch(self, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
        """x_d moved by the stitching MLP: kp_source (B or 1, K, 3), kp_driving (B, K, 3) -> (B, K, 3)."""
        b, k = kp_driving.shape[:2]
        feat = torch.cat([kp_source.expand(b, -1, -1).reshape(b, -1), kp_driving.reshape(b, -1)], dim=1)
        delta = self.stitching(feat)  # (B, 3K + 2)
        moved = kp_driving + delta[:, :3 * k].reshape(b, k, 3)
        shift = torch.cat([delta[:, 3 * k:3 * k + 2], delta.new_zeros(b, 1)], dim=1)  # (B, 3): t_x, t_y, 0
        return moved + shift.unsqueeze(1)

    def retarget_lip(self, kp_source: torch.Tensor, lip_ratio: torch.Tensor) -> torch.Tensor:
        """Keypoint offset (B, K, 3) from x_s (B, K, 3) and [c_s_lip, c_d_lip] (B, 2)."""
        b = kp_source.shape[0]
        return self.lip(torch.cat([kp_source.reshape(b, -1), lip_ratio], dim=1)).reshape(b, -1, 3)

    def retarget_eye(self, kp_source: torch.Tensor, eye_ratio: torch.Tensor) -> torch.Tensor:
        """Keypoint offset (B, K, 3) from x_s (B, K, 3) and [c_s_eye (2), c_d_eye] (B, 3)."""
        b = kp_source.shape[0]
        return self.eye(torch.cat([kp_source.reshape(b, -1), eye_ratio], dim=1)).reshape(b, -1, 3)
