"""Image grids for TensorBoard: source, driving and prediction with keypoints drawn."""
from __future__ import annotations

import numpy as np
import torch

_PALETTE = np.array([
    [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
    [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255],
    [170, 110, 40], [255, 250, 200], [128, 0, 0], [170, 255, 195], [128, 128, 0], [255, 215, 180],
    [0, 0, 128], [128, 128, 128],
], dtype=np.uint8)


def draw_keypoints(image: np.ndarray, kp: np.ndarray, radius: int = 1) -> np.ndarray:
    """Mark keypoints (K, >=2) in normalised [-1, 1] (x, y) on a uint8 (H, W, 3) image (a copy)."""
    out = image.copy()
    h, w = out.shape[:2]
    for k, (x, y) in enumerate(kp[:, :2]):
        px = int(round((x + 1) / 2 * (w - 1)))
        py = int(round((y + 1) / 2 * (h - 1)))
        y0, y1 = max(py - radius, 0), min(py + radius + 1, h)
        x0, x1 = max(px - radius, 0), min(px + radius + 1, w)
        if y0 < y1 and x0 < x1:
            out[y0:y1, x0:x1] = _PALETTE[k % len(_PALETTE)]
    return out


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    return (images.detach().float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def training_grid(source: torch.Tensor, driving: torch.Tensor, prediction: torch.Tensor,
                  kp_source: torch.Tensor, kp_driving: torch.Tensor, max_rows: int = 4) -> np.ndarray:
    """uint8 (rows*S, 3*S, 3): per row source (its kp), driving (driving kp), prediction (driving kp)."""
    n = min(max_rows, source.shape[0])
    s, d, p = _to_uint8(source[:n]), _to_uint8(driving[:n]), _to_uint8(prediction[:n])
    ks, kd = kp_source[:n].detach().float().cpu().numpy(), kp_driving[:n].detach().float().cpu().numpy()
    radius = max(1, s.shape[1] // 128)
    rows = [np.concatenate([draw_keypoints(s[i], ks[i], radius), draw_keypoints(d[i], kd[i], radius),
                            draw_keypoints(p[i], kd[i], radius)], axis=1) for i in range(n)]
    return np.concatenate(rows, axis=0)
