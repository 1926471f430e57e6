"""Typed training pairs: one sample of :class:`~facevid2vid.data.dataset.PairDataset` and a batch of them.

``PairDataset[i]`` is a :class:`PairSample`; the trainer's DataLoader stacks samples with
:func:`collate_pairs` into a :class:`PairBatch`. Both are plain dataclasses of tensors defined
at module level, so they pickle from loader workers to the main process, and ``PairBatch``
has ``pin_memory`` (which the DataLoader calls for ``pin_memory=True``) and ``to(device)``.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Callable, Sequence

import torch


@dataclass
class PairSample:
    """One (source, driving) pair; teacher poses are (yaw, pitch, roll) in degrees."""

    source: torch.Tensor  # (3, S, S) float in [0, 1]
    driving: torch.Tensor  # (3, S, S)
    source_pose: torch.Tensor  # (3,) zeros where there is none
    driving_pose: torch.Tensor  # (3,)
    source_pose_valid: torch.Tensor  # () bool: False where the index has no pose, and for still pairs
    driving_pose_valid: torch.Tensor  # () bool
    is_still: torch.Tensor  # () bool: two warps of one still photo
    clip: torch.Tensor  # () int64: index into PairDataset.clips
    frames: torch.Tensor  # (2,) int64: source and driving frame in the clip


@dataclass
class PairBatch:
    """A batch of pairs: the fields of :class:`PairSample` stacked along a leading batch axis B."""

    source: torch.Tensor  # (B, 3, S, S) float in [0, 1]
    driving: torch.Tensor  # (B, 3, S, S)
    source_pose: torch.Tensor  # (B, 3) teacher (yaw, pitch, roll) degrees
    driving_pose: torch.Tensor  # (B, 3)
    source_pose_valid: torch.Tensor  # (B,) bool
    driving_pose_valid: torch.Tensor  # (B,) bool
    is_still: torch.Tensor  # (B,) bool
    clip: torch.Tensor  # (B,) int64
    frames: torch.Tensor  # (B, 2) int64

    def __len__(self) -> int:
        return self.source.shape[0]

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "PairBatch":
        return replace(self, **{name: fn(getattr(self, name)) for name in _names(self)})

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "PairBatch":
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "PairBatch":
        """Page-locked copies (the DataLoader's pin-memory thread calls this)."""
        return self._map(lambda t: t.pin_memory())

    def with_teacher_poses(self, source_pose: torch.Tensor, driving_pose: torch.Tensor) -> "PairBatch":
        """The batch with poses (B, 3) from a network teacher, valid on every pair."""
        return replace(self, source_pose=source_pose, driving_pose=driving_pose,
                       source_pose_valid=torch.ones_like(self.source_pose_valid),
                       driving_pose_valid=torch.ones_like(self.driving_pose_valid))


def collate_pairs(samples: Sequence[PairSample]) -> PairBatch:
    """Stack samples into a batch: the DataLoader's ``collate_fn``."""
    if not samples:
        raise ValueError("cannot collate an empty list of pairs")
    return PairBatch(**{name: torch.stack([getattr(s, name) for s in samples]) for name in _names(samples[0])})


def _names(obj) -> tuple[str, ...]:
    return tuple(f.name for f in fields(obj))
