"""PairDataset, its typed samples and batches, and the resumable sampler on a small generated data directory."""
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facevid2vid.data.batch import PairBatch, PairSample, collate_pairs
from facevid2vid.data.dataset import (CLIPS_DIR, ClipRecord, DataIndex, InfiniteShardedSampler, PairDataset,
                                      color_jitter, load_index, save_index)
from facevid2vid.errors import InputError


def synthetic_frame(t: int, size: int, identity: int = 0) -> tuple[np.ndarray, float]:
    """A cartoon head turning and talking: uint8 (size, size, 3) and its yaw in degrees."""
    yaw = 25.0 * math.sin(t / 3.0 + identity)
    ys, xs = np.mgrid[0:size, 0:size] / (size - 1) * 2 - 1  # [-1, 1]
    img = np.empty((size, size, 3), np.float32)
    img[..., 0] = 0.3 + 0.2 * ys
    img[..., 1] = 0.35 + 0.1 * identity
    img[..., 2] = 0.5 - 0.2 * xs
    cx = -yaw / 90.0  # positive yaw moves the face toward image-left
    head = ((xs - cx * 0.5) / 0.45) ** 2 + (ys / 0.6) ** 2 < 1
    img[head] = (0.85, 0.65 - 0.1 * identity, 0.55)
    for ex in (-0.18, 0.18):
        eye = ((xs - cx * 0.8 - ex) / 0.07) ** 2 + ((ys + 0.15) / 0.05) ** 2 < 1
        img[eye] = (0.1, 0.1, 0.2)
    mouth_open = 0.03 + 0.05 * (1 + math.sin(t / 1.7))
    mouth = ((xs - cx * 0.8) / 0.15) ** 2 + ((ys - 0.3) / mouth_open) ** 2 < 1
    img[mouth] = (0.5, 0.1, 0.1)
    return (img.clip(0, 1) * 255).round().astype(np.uint8), yaw


def make_synthetic_dataset(root: Path, clips: int = 3, frames: int = 12, size: int = 64,
                           pose_every: int = 1) -> Path:
    """A data directory in prepare's layout; teacher poses (yaw, 0, 0) on every ``pose_every``-th frame."""
    root = Path(root)
    index = DataIndex(size=size)
    for c in range(clips):
        cid = f"synthetic_{c:02d}"
        folder = root / CLIPS_DIR / cid
        folder.mkdir(parents=True)
        poses = []
        for t in range(frames):
            frame, yaw = synthetic_frame(t + 7 * c, size, identity=c % 2)
            Image.fromarray(frame).save(folder / f"{t:06d}.jpg", quality=95)
            poses.append([yaw, 0.0, 0.0] if t % pose_every == 0 else None)
        index.clips.append(ClipRecord(id=cid, source=f"synthetic://{c}", start=0, end=frames, fps=25.0, size=size,
                                      box=[0.0, 0.0, float(size)], identity=f"id{c % 2}", poses=poses))
    save_index(root, index)
    return root


@pytest.fixture
def data_dir(tmp_path):
    return make_synthetic_dataset(tmp_path / "data", clips=3, frames=10, size=48, pose_every=2)


def test_index_round_trip_and_errors(data_dir, tmp_path):
    index = load_index(data_dir)
    assert index.size == 48 and len(index.clips) == 3
    assert index.clips[0].num_frames == 10 and index.clips[0].identity == "id0"
    with pytest.raises(InputError, match="prepare"):
        load_index(tmp_path / "nowhere")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "index.json").write_text("{\"format\": \"other\"}")
    with pytest.raises(InputError, match="not a facevid2vid clip index"):
        load_index(tmp_path / "bad")


def test_items_are_pairs_from_one_clip_with_poses(data_dir):
    ds = PairDataset(data_dir, seed=0)
    assert len(ds) == 3
    item = ds[4]
    assert isinstance(item, PairSample)
    assert item.clip.item() == 1  # sample id 4 -> clip 4 % 3
    assert item.source.shape == (3, 48, 48) and item.source.dtype == torch.float32
    assert 0.0 <= item.source.min() and item.source.max() <= 1.0
    src, drv = item.frames.tolist()
    assert src != drv and 0 <= src < 10 and 0 <= drv < 10
    clip = ds.clips[1]
    # the stored frame is what comes back
    stored = np.asarray(Image.open(clip.frame_path(data_dir, drv)), dtype=np.float32) / 255
    assert np.allclose(item.driving.permute(1, 2, 0).numpy(), stored, atol=1e-6)
    # poses only where the index has one (every 2nd frame)
    assert item.driving_pose_valid.item() == (drv % 2 == 0)
    if drv % 2 == 0:
        assert item.driving_pose[0].item() == pytest.approx(clip.poses[drv][0])
    else:
        assert torch.equal(item.driving_pose, torch.zeros(3))


def test_resizes_to_the_model_size(data_dir):
    item = PairDataset(data_dir, image_size=32)[0]
    assert item.source.shape == (3, 32, 32)


def test_deterministic_given_seed_and_differs_across_seeds(data_dir):
    a = PairDataset(data_dir, seed=5, augment_flip=True, color_jitter=0.2)
    b = PairDataset(data_dir, seed=5, augment_flip=True, color_jitter=0.2)
    c = PairDataset(data_dir, seed=6, augment_flip=True, color_jitter=0.2)
    for i in range(6):
        assert _same(a[i], b[i])
    assert any(not torch.equal(a[i].frames, c[i].frames) for i in range(6))


def test_flip_mirrors_images_and_negates_yaw_and_roll(data_dir):
    plain = PairDataset(data_dir, seed=1)
    flip = PairDataset(data_dir, seed=1, augment_flip=True)
    flipped = 0
    for i in range(12):
        p, f = plain[i], flip[i]
        assert torch.equal(p.frames, f.frames)  # the flip does not change which frames
        if torch.equal(p.source, f.source):
            continue
        flipped += 1
        assert torch.equal(p.source.flip(-1), f.source)
        assert torch.equal(p.driving.flip(-1), f.driving)
        assert torch.equal(f.driving_pose, p.driving_pose * torch.tensor([-1.0, 1.0, -1.0]))
    assert 0 < flipped < 12


def test_color_jitter_same_for_source_and_driving(data_dir):
    ds = PairDataset(data_dir, seed=2, color_jitter=0.3)
    plain = PairDataset(data_dir, seed=2)
    item, ref = ds[0], plain[0]
    assert not torch.equal(item.source, ref.source)
    # one jitter for both frames: equal where the two frames are equal (the background)
    same = (ref.source == ref.driving).all(0)
    assert same.float().mean() > 0.1
    assert torch.allclose(item.source[:, same], item.driving[:, same])
    neutral = color_jitter(ref.source, 1.0, 1.0, 1.0, 0.0)
    assert torch.allclose(neutral, ref.source, atol=1e-6)


def test_loader_workers_give_the_same_batches(data_dir):
    ds = PairDataset(data_dir, seed=3, augment_flip=True, color_jitter=0.1)

    def batches(workers):
        sampler = InfiniteShardedSampler(len(ds), seed=3)
        loader = torch.utils.data.DataLoader(ds, batch_size=2, sampler=sampler, num_workers=workers,
                                             collate_fn=collate_pairs)
        it = iter(loader)
        out = [next(it) for _ in range(4)]
        del it
        return out

    for x, y in zip(batches(0), batches(2)):
        assert isinstance(x, PairBatch) and isinstance(y, PairBatch) and len(x) == 2
        assert _same(x, y)


def _same(x, y) -> bool:
    """Equal pairs (or batches): every field equal."""
    return type(x) is type(y) and all(torch.equal(getattr(x, f.name), getattr(y, f.name))
                                      for f in dataclasses.fields(x))


def test_collate_stacks_samples_into_a_typed_batch(data_dir):
    ds = PairDataset(data_dir, seed=0)
    samples = [ds[i] for i in range(3)]
    batch = collate_pairs(samples)
    assert len(batch) == 3
    assert batch.source.shape == (3, 3, 48, 48) and batch.driving.shape == (3, 3, 48, 48)
    assert batch.source_pose.shape == (3, 3) and batch.frames.shape == (3, 2)
    assert batch.source_pose_valid.dtype == torch.bool and batch.source_pose_valid.shape == (3,)
    assert batch.clip.tolist() == [s.clip.item() for s in samples]
    assert torch.equal(batch.driving[1], samples[1].driving)
    moved = batch.to("cpu")
    assert isinstance(moved, PairBatch) and _same(moved, batch)
    taught = batch.with_teacher_poses(torch.ones(3, 3), torch.full((3, 3), 2.0))
    assert taught.source_pose_valid.all() and taught.driving_pose_valid.all()
    assert torch.equal(taught.driving_pose, torch.full((3, 3), 2.0)) and taught.source is batch.source
    with pytest.raises(ValueError):
        collate_pairs([])


def test_distributed_sampler_shards_typed_batches(data_dir):
    """torch's DistributedSampler (as a user's loader would use it) with the pair collate."""
    ds = PairDataset(data_dir, seed=0)
    seen = []
    for rank in range(2):
        sampler = torch.utils.data.DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=1)
        loader = torch.utils.data.DataLoader(ds, batch_size=2, sampler=sampler, collate_fn=collate_pairs)
        (batch,) = list(loader)  # 3 clips padded to 4: two per rank
        assert isinstance(batch, PairBatch) and len(batch) == 2
        seen += batch.clip.tolist()
    assert sorted(set(seen)) == [0, 1, 2]


def test_sampler_shards_epochs_and_resumes():
    ranks = [InfiniteShardedSampler(5, seed=0, rank=r, world_size=2) for r in range(2)]
    first = [list(_take(s, 3)) for s in ranks]  # one epoch: 5 ids padded to 6
    assert set(first[0]) | set(first[1]) == set(range(5))  # every clip once, one repeated as padding
    # the next ids of each rank come from epoch 1 (offset by 5)
    assert all(5 <= i < 10 for s in ranks for i in _take(InfiniteShardedSampler(5, 0, s.rank, 2, start=3), 3))
    stream = list(_take(InfiniteShardedSampler(5, seed=0), 12))
    assert sorted(stream[:5]) == list(range(5)) and sorted(stream[5:10]) == list(range(5, 10))  # epoch 1 offset
    resumed = list(_take(InfiniteShardedSampler(5, seed=0, start=7), 5))
    assert resumed == stream[7:12]


def _take(it, n):
    it = iter(it)
    for _ in range(n):
        yield next(it)


def test_rejects_an_index_without_clips(tmp_path):
    save_index(tmp_path, DataIndex(size=64))
    with pytest.raises(InputError, match="no usable clips"):
        PairDataset(tmp_path)
