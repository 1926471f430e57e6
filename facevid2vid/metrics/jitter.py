"""Jitter: how much a video or a keypoint track changes from one frame to the next.

Measured on a *still* stretch of the driving video (where the person barely moves), the
frame-to-frame change of the synthesized output is mostly shake the model adds; the same
figure for the driving video itself says how much of it the input already had.
Definitions: docs/metrics.md ("Temporal stability").
"""
from __future__ import annotations

import numpy as np
import torch

from facevid2vid.errors import InputError

STILL_WINDOW = 48  # frames of the still stretch the benchmark searches for (2 s at 24 fps)


def frame_changes(frames: np.ndarray) -> np.ndarray:
    """float64 (N-1,): mean absolute difference of consecutive uint8 frames (N, H, W, 3), in [0, 1] units."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or len(frames) < 2:
        raise InputError(f"frame changes need 2 or more frames (N, H, W, C), got shape {frames.shape}")
    out = np.empty(len(frames) - 1)
    for i in range(len(frames) - 1):  # frame by frame: no (N, H, W, 3) int16 copy of the clip
        diff = frames[i + 1].astype(np.int16) - frames[i].astype(np.int16)
        out[i] = np.abs(diff).mean() / 255.0
    return out


def pixel_jitter(frames: np.ndarray) -> float:
    """Mean over consecutive pairs of the mean absolute pixel difference (uint8 frames, [0, 1] units)."""
    return float(frame_changes(frames).mean())


def keypoint_jitter(kp: torch.Tensor) -> float:
    """Mean over consecutive frames and keypoints of the Euclidean step ``||x_{t+1,k} - x_{t,k}||`` of (N, K, 3)."""
    if kp.dim() != 3 or kp.shape[0] < 2:
        raise InputError(f"keypoint jitter needs (N >= 2, K, 3) keypoints, got {tuple(kp.shape)}")
    return float((kp[1:] - kp[:-1]).double().norm(dim=-1).mean())


def find_still_window(frames: np.ndarray, length: int = STILL_WINDOW) -> tuple[int, int]:
    """``(start, stop)``: the ``length`` consecutive frames with the least total pixel change.

    The first such window if several tie; the whole clip when it is shorter than ``length``.
    """
    if length < 2:
        raise InputError(f"a still window needs 2 or more frames, got {length}")
    n = len(frames)
    if n <= length:
        return 0, n
    changes = frame_changes(frames)
    totals = np.convolve(changes, np.ones(length - 1), mode="valid")  # window s sums changes s .. s+length-2
    start = int(np.argmin(totals))
    return start, start + length


def parse_window(text: str) -> tuple[int, int]:
    """``"START:END"`` (END exclusive) -> (start, end); InputError unless 0 <= START and END >= START + 2."""
    parts = text.split(":")
    try:
        start, end = (int(p) for p in parts)
    except ValueError:
        raise InputError(f"a window is START:END in frames, got {text!r}") from None
    if start < 0 or end < start + 2:
        raise InputError(f"a window START:END needs 0 <= START and END >= START + 2, got {text!r}")
    return start, end
