"""Training pairs (source, driving) drawn from the clips that ``prepare`` writes.

Layout of a data directory (see docs/training.md)::

    DATA_DIR/index.json                 clip list (this module's ClipRecord), written by prepare
    DATA_DIR/clips/<clip_id>/000000.jpg  square frames of one clip, one JPEG per frame
    DATA_DIR/report.json                what prepare did and skipped

JPEG frame folders give loader workers cheap random access (one small file per frame
read) where seeking in a video would decode a whole group of pictures per sample.

A sample is addressed by an integer *sample id*: its clip is ``id % len(dataset)`` and all of
its randomness (which two frames, flip, colour jitter) comes from a generator seeded with
``(seed, id)``. So the same ids give the same pairs in any process, with any number of
workers; :class:`InfiniteShardedSampler` hands each rank fresh ids, epoch after epoch.

Clips of ``kind`` "still" (one frame: a face from a photo) give *still pairs*: with probability
``still_fraction`` a sample is two independent random warps of one still's face
(``training.transforms.sample_still_warp``) instead of two frames of a video clip. Their
``*_pose_valid`` are False (a warp changes the pose: the trainer's on-the-fly teacher looks
at the warped images) and ``is_still`` is True. ``still_fraction`` 0 gives the video pairs
exactly as before, stills or not in the index.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image

from facevid2vid.data.batch import PairBatch, PairSample, collate_pairs  # noqa: F401  (re-exported)
from facevid2vid.errors import InputError
from facevid2vid.training.transforms import RandomWarp, StillWarpRange, sample_still_warp

INDEX_NAME = "index.json"
REPORT_NAME = "report.json"
CLIPS_DIR = "clips"
FRAME_PATTERN = "{:06d}.jpg"
INDEX_FORMAT = "facevid2vid-clips"
INDEX_VERSION = 1


@dataclass
class ClipRecord:
    """One clip of a data directory: a steady face, cropped with one box, ``num_frames`` long."""

    id: str
    source: str  # the raw file (or frame folder) it was cut from
    start: int  # frame range [start, end) in the source
    end: int
    fps: float
    size: int  # side of the stored square frames
    box: list[float]  # crop box (x0, y0, side) in source pixels
    identity: str | None = None  # from the folder layout, when it gives one
    poses: list[list[float] | None] = field(default_factory=list)  # teacher (yaw, pitch, roll) per frame
    kind: str = "video"  # "video" (frames of a clip) or "still" (one face of a photo, one frame)

    @property
    def num_frames(self) -> int:
        return self.end - self.start

    def frame_path(self, data_dir: Path, i: int) -> Path:
        return Path(data_dir) / CLIPS_DIR / self.id / FRAME_PATTERN.format(i)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ClipRecord":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class DataIndex:
    """Contents of ``index.json``: the clips plus, per prepared source, what it produced."""

    size: int
    clips: list[ClipRecord] = field(default_factory=list)
    sources: dict[str, dict] = field(default_factory=dict)  # source key -> {"clips": [...], "options": {...}}

    def to_dict(self) -> dict:
        return {"format": INDEX_FORMAT, "version": INDEX_VERSION, "size": self.size,
                "clips": [c.to_dict() for c in self.clips], "sources": self.sources}


def load_index(data_dir: str | Path) -> DataIndex:
    """Read ``DATA_DIR/index.json``; InputError when it is missing or not an index."""
    path = Path(data_dir) / INDEX_NAME
    if not path.is_file():
        raise InputError(f"no {INDEX_NAME} in {data_dir}: run `facevid2vid prepare` first")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"unreadable index {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT:
        raise InputError(f"{path} is not a facevid2vid clip index")
    if data.get("version") != INDEX_VERSION:
        raise InputError(f"{path}: index version {data.get('version')}, expected {INDEX_VERSION}")
    return DataIndex(size=int(data["size"]), clips=[ClipRecord.from_dict(c) for c in data["clips"]],
                     sources=dict(data.get("sources", {})))


def save_index(data_dir: str | Path, index: DataIndex) -> None:
    """Write the index atomically (temporary file, then rename)."""
    from facevid2vid.outputs import write_text

    write_text(Path(data_dir) / INDEX_NAME, json.dumps(index.to_dict(), indent=1))


# ---------------------------------------------------------------------------
# augmentation


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]).unsqueeze(0)


def color_jitter(image: torch.Tensor, brightness: float, contrast: float, saturation: float, hue: float) -> torch.Tensor:
    """Jitter an image (3, H, W) in [0, 1]: factors around 1, ``hue`` a rotation in turns.

    A per-pixel colour map (nothing depends on the image's statistics), so equal parameters
    treat the source and the driving frame alike.
    """
    x = image * brightness
    x = (x - 0.5) * contrast + 0.5  # about a fixed grey: the same colour map for every frame of a pair
    g = _gray(x)
    x = (x - g) * saturation + g
    if hue != 0.0:
        # rotate chroma in YIQ space
        yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
        c, s = math.cos(2 * math.pi * hue), math.sin(2 * math.pi * hue)
        rot = torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
        m = torch.linalg.inv(yiq) @ rot @ yiq
        x = torch.einsum("ij,jhw->ihw", m, x)
    return x.clamp(0.0, 1.0)


# ---------------------------------------------------------------------------
# dataset


class PairDataset(torch.utils.data.Dataset):
    """(source, driving) frame pairs from the same clip, with optional flip and colour jitter.

    Each item is a :class:`~facevid2vid.data.batch.PairSample` (images (3, S, S), teacher poses
    with validity flags, ``is_still``, ``clip`` and ``frames``); a DataLoader with
    ``collate_fn=collate_pairs`` stacks them into a :class:`~facevid2vid.data.batch.PairBatch`.
    ``len`` is the number of video clips (of stills when there are none), and a video sample's
    clip is ``id % len``.
    """

    def __init__(self, data_dir: str | Path, image_size: int | None = None, seed: int = 0,
                 augment_flip: bool = False, color_jitter: float = 0.0, clip_ids: list[str] | None = None,
                 still_fraction: float = 0.0, still_rotation_deg: float = 15.0, still_scale: float = 0.1,
                 still_shift: float = 0.05, still_tps_std: float = 0.005, still_flip: float = 0.0):
        self.data_dir = Path(data_dir)
        index = load_index(self.data_dir)
        clips = [c for c in index.clips if c.num_frames >= 1]
        if clip_ids is not None:
            wanted = set(clip_ids)
            clips = [c for c in clips if c.id in wanted]
        if not clips:
            raise InputError(f"{self.data_dir}: the index lists no usable clips")
        _refuse_held_out(self.data_dir, clips)
        self.clips = clips
        self.video_idx = [i for i, c in enumerate(clips) if c.kind != "still"]
        self.still_idx = [i for i, c in enumerate(clips) if c.kind == "still"]
        self.stored_size = index.size
        self.image_size = int(image_size or index.size)
        self.seed = int(seed)
        self.augment_flip = augment_flip
        self.color_jitter = float(color_jitter)
        self.still_fraction = float(still_fraction)
        self.still_warp = StillWarpRange(still_rotation_deg, still_scale, still_shift, still_tps_std, still_flip)
        if not 0.0 <= self.still_fraction <= 1.0:
            raise InputError(f"still_fraction must be in [0, 1], got {self.still_fraction}")
        if self.still_fraction > 0 and not self.still_idx:
            raise InputError(f"{self.data_dir} has no still clips for still_fraction {self.still_fraction}: "
                             f"prepare photos into it (`facevid2vid prepare --stills`) or set still_fraction 0")
        if not self.video_idx and self.still_fraction == 0:
            raise InputError(f"{self.data_dir} holds only still clips: set still_fraction > 0 to train on them")

    def __len__(self) -> int:
        return len(self.video_idx) or len(self.still_idx)

    def _load(self, clip: ClipRecord, i: int) -> torch.Tensor:
        path = clip.frame_path(self.data_dir, i)
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                if im.size != (self.image_size, self.image_size):
                    im = im.resize((self.image_size, self.image_size), Image.Resampling.BICUBIC)
                arr = np.asarray(im, dtype=np.uint8)
        except OSError as exc:
            raise InputError(f"cannot read frame {path}: {exc}") from None
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)  # (3, S, S)

    @staticmethod
    def _pose(clip: ClipRecord, i: int) -> tuple[torch.Tensor, bool]:
        p = clip.poses[i] if i < len(clip.poses) else None
        if p is None:
            return torch.zeros(3), False
        return torch.tensor(p, dtype=torch.float32), True

    def _is_still(self, rng: np.random.Generator) -> bool:
        """Whether this sample is a still pair (draws nothing when still_fraction is 0)."""
        if self.still_fraction <= 0:
            return False
        u = rng.random()
        return not self.video_idx or bool(u < self.still_fraction)

    def _draw_still(self, rng: np.random.Generator) -> tuple[int, RandomWarp, RandomWarp]:
        """The still's clip index and the source and driving warps."""
        clip_idx = self.still_idx[int(rng.integers(len(self.still_idx)))]
        return clip_idx, sample_still_warp(rng, self.still_warp), sample_still_warp(rng, self.still_warp)

    def still_plan(self, sample_id: int) -> tuple[int, RandomWarp, RandomWarp] | None:
        """(clip index, source warp, driving warp) of a still sample; None for a video sample."""
        rng = np.random.default_rng([self.seed, int(sample_id)])
        return self._draw_still(rng) if self._is_still(rng) else None

    def _video_pair(self, sample_id: int, rng: np.random.Generator) -> PairSample:
        clip_idx = self.video_idx[sample_id % len(self.video_idx)]
        clip = self.clips[clip_idx]
        n = clip.num_frames
        if n > 1:
            src, drv = (int(v) for v in rng.choice(n, size=2, replace=False))
        else:
            src = drv = 0
        source_pose, source_valid = self._pose(clip, src)
        driving_pose, driving_valid = self._pose(clip, drv)
        return PairSample(source=self._load(clip, src), driving=self._load(clip, drv),
                          source_pose=source_pose, driving_pose=driving_pose,
                          source_pose_valid=torch.tensor(source_valid),
                          driving_pose_valid=torch.tensor(driving_valid),
                          is_still=torch.tensor(False), clip=torch.tensor(clip_idx), frames=torch.tensor([src, drv]))

    def _still_pair(self, rng: np.random.Generator) -> PairSample:
        clip_idx, warp_s, warp_d = self._draw_still(rng)
        face = self._load(self.clips[clip_idx], 0).unsqueeze(0)  # (1, 3, S, S)
        source = warp_s.warp_image(face)[0].clamp_(0.0, 1.0)  # (3, S, S)
        driving = warp_d.warp_image(face)[0].clamp_(0.0, 1.0)
        # the index's pose is the unwarped photo's: the trainer's teacher gives the warped ones
        return PairSample(source=source, driving=driving, source_pose=torch.zeros(3), driving_pose=torch.zeros(3),
                          source_pose_valid=torch.tensor(False), driving_pose_valid=torch.tensor(False),
                          is_still=torch.tensor(True), clip=torch.tensor(clip_idx), frames=torch.tensor([0, 0]))

    def _augment(self, pair: PairSample, rng: np.random.Generator) -> PairSample:
        """The same flip and colour jitter for both frames: only motion differs between them."""
        if self.augment_flip and bool(rng.random() < 0.5):
            mirror = torch.tensor([-1.0, 1.0, -1.0])  # mirroring negates yaw and roll, keeps pitch
            pair = replace(pair, source=pair.source.flip(-1), driving=pair.driving.flip(-1),
                           source_pose=pair.source_pose * mirror, driving_pose=pair.driving_pose * mirror)
        if self.color_jitter > 0:
            j = self.color_jitter
            b, c, s = (float(v) for v in rng.uniform(1 - j, 1 + j, size=3))
            h = float(rng.uniform(-j / 2, j / 2))
            pair = replace(pair, source=color_jitter(pair.source, b, c, s, h),
                           driving=color_jitter(pair.driving, b, c, s, h))
        return pair

    def __getitem__(self, sample_id: int) -> PairSample:
        sample_id = int(sample_id)
        rng = np.random.default_rng([self.seed, sample_id])
        pair = self._still_pair(rng) if self._is_still(rng) else self._video_pair(sample_id, rng)
        return self._augment(pair, rng)


def _refuse_held_out(data_dir: Path, clips: list[ClipRecord]) -> None:
    """InputError when a clip was cut from a held-out still (``data.fetch.HELD_OUT_STILLS``)."""
    from facevid2vid.data.fetch import never_train_reason

    for c in clips:
        reason = never_train_reason(Path(c.source).name, allow_evaluation=True)
        if reason is not None:
            raise InputError(f"{data_dir}: clip {c.id} comes from {c.source}; {reason}")


class InfiniteShardedSampler(torch.utils.data.Sampler):
    """Endless stream of sample ids for one rank, resumable at any position.

    Epoch ``e`` is a permutation of ``range(n)`` seeded by ``(seed, e)``, padded to a multiple
    of ``world_size`` and dealt round-robin to ranks; its ids are offset by ``e * n`` so every
    epoch draws fresh pairs. ``start`` skips that many of this rank's ids (resume).
    """

    def __init__(self, num_items: int, seed: int = 0, rank: int = 0, world_size: int = 1, start: int = 0):
        if num_items < 1:
            raise ValueError("num_items must be positive")
        self.n = num_items
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start = start
        self.per_rank = math.ceil(num_items / world_size)

    def epoch_ids(self, epoch: int) -> list[int]:
        perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        total = self.per_rank * self.world_size
        perm = np.resize(perm, total)  # pad by repeating the start, as DistributedSampler does
        return [int(i) + epoch * self.n for i in perm[self.rank::self.world_size]]

    def __iter__(self) -> Iterator[int]:
        epoch, offset = divmod(self.start, self.per_rank)
        while True:
            ids = self.epoch_ids(epoch)
            yield from ids[offset:]
            epoch, offset = epoch + 1, 0
