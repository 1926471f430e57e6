"""Training on still photos: one clip per face, held-out stills refused, still pairs by random warps."""
import json
import shutil
from dataclasses import fields

import numpy as np
import pytest
import torch
from PIL import Image

from facevid2vid.data.dataset import ClipRecord, DataIndex, PairDataset, load_index, save_index
from facevid2vid.data.fetch import _STILLS, HELD_OUT_COPIES, HELD_OUT_STILLS
from facevid2vid.data.prepare import PrepareOptions, find_sources, prepare, process_source
from facevid2vid.errors import InputError
from facevid2vid.training.transforms import RandomWarp, StillWarpRange, sample_still_warp, similarity_theta
from test_dataset import make_synthetic_dataset

SIZE = 48
GROUP = ("chuck_crop.jpg", "walter2_crop.jpg", "kim1_crop.jpg")  # training stills, side by side


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    yield


def _group_photo(samples) -> np.ndarray:
    """uint8 (260, 720, 3): three real faces from the training stills on a grey canvas."""
    canvas = np.full((260, 720, 3), 128, np.uint8)
    by_name = {p.name: p for p in samples.stills}
    for i, name in enumerate(GROUP):
        with Image.open(by_name[name]) as im:
            face = np.asarray(im.convert("RGB").resize((200, 200), Image.Resampling.BICUBIC))
        canvas[30:230, 20 + 240 * i:220 + 240 * i] = face
    return canvas


@pytest.fixture(scope="module")
def mixed(samples, tmp_path_factory):
    """Synthetic video clips plus the stills of a photo folder: a group photo, a real still, a blank, a held-out one."""
    root = tmp_path_factory.mktemp("stills")
    photos = root / "photos"
    photos.mkdir()
    Image.fromarray(_group_photo(samples)).save(photos / "group.jpg", quality=95)
    shutil.copy(next(p for p in samples.stills if p.name == "cage.jpg"), photos / "cage.jpg")
    Image.fromarray(np.full((200, 300, 3), 90, np.uint8)).save(photos / "blank.png")
    shutil.copy(samples.held_out_stills()[0], photos / HELD_OUT_STILLS[0])
    data = make_synthetic_dataset(root / "data", clips=3, frames=10, size=SIZE, pose_every=2)
    prepare(photos, data, PrepareOptions(size=SIZE, poses=False), progress=False, stills=True)
    return data


def _stills(data_dir, source_name):
    return [c for c in load_index(data_dir).clips if c.source.endswith("/" + source_name)]


# --------------------------------------------------------------------------- prepare


def test_group_photo_gives_one_clip_per_face(mixed):
    group = _stills(mixed, "group.jpg")
    assert [c.id for c in group] == ["group_face00", "group_face01", "group_face02"]
    assert all(c.kind == "still" and c.num_frames == 1 and c.poses == [None] for c in group)
    assert [c.box[0] for c in group] == sorted(c.box[0] for c in group)  # left to right
    for c in group:  # the crop rule of videos: 1.8 x the face (a 200 px photo holds a ~180 px face)
        assert 200 <= c.box[2] <= 400
        with Image.open(c.frame_path(mixed, 0)) as im:
            assert im.size == (SIZE, SIZE)
    assert len(_stills(mixed, "cage.jpg")) == 1
    # the video clips are still there and still videos
    assert [c.kind for c in load_index(mixed).clips[:3]] == ["video"] * 3


def test_photos_without_a_face_and_held_out_ones_are_reported(mixed):
    report = json.loads((mixed / "report.json").read_text())
    reasons = {r["source"].split("/")[-1]: r["reason"] for r in report["skipped"]}
    assert set(reasons) == {"blank.png", HELD_OUT_STILLS[0]}
    assert reasons["blank.png"].startswith("no usable face")
    assert reasons[HELD_OUT_STILLS[0]].startswith("held out")
    assert not _stills(mixed, HELD_OUT_STILLS[0])


def test_real_group_photo(samples, tmp_path):
    photo = next(p for p in samples.photos if p.name == "faceapi-sample5.jpg")  # five women on a staircase
    (src,) = find_sources(photo)
    assert src.kind == "still"
    res = process_source(src, tmp_path, PrepareOptions(size=64, poses=False))
    assert res.status == "done" and len(res.clips) == 5
    again = process_source(src, tmp_path, PrepareOptions(size=64, poses=False))
    assert again.status == "reused" and [c.id for c in again.clips] == [c.id for c in res.clips]


def test_held_out_stills_and_evaluation_clips_are_refused(tmp_path):
    raw = tmp_path / "raw"
    (raw / "frames").mkdir(parents=True)
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    for name in [*HELD_OUT_STILLS, *HELD_OUT_COPIES]:
        Image.fromarray(noise).save(raw / name)
    Image.fromarray(noise).save(raw / "frames" / HELD_OUT_STILLS[1])  # hidden among the frames of a "video"
    Image.fromarray(noise).save(raw / "frames" / "0001.png")
    (raw / "carphone_pristine.mp4").write_bytes(b"not read: refused by name")
    opts = PrepareOptions(size=32, poses=False)
    report = prepare(raw, tmp_path / "a", opts, progress=False, stills=True)
    refused = [r for r in report.skipped if r.reason.startswith(("held out", "evaluation data"))]
    assert report.clips == 0 and len(refused) == len(HELD_OUT_STILLS) + len(HELD_OUT_COPIES) + 2
    assert {r.reason for r in report.skipped if r not in refused} == {"no usable face (none of at least 40 px)"}
    as_frames = prepare(raw, tmp_path / "b", opts, progress=False)  # a folder of frames holding a held-out still
    assert as_frames.clips == 0 and all(r.reason.startswith(("held out", "evaluation")) for r in as_frames.skipped)
    # --allow-evaluation lets the evaluation clip through (then it is unreadable), never a held-out still
    allowed = prepare(raw, tmp_path / "c", opts, progress=False, stills=True, allow_evaluation=True)
    reasons = {r.source.split("/")[-1]: r.reason for r in allowed.skipped}
    assert reasons["carphone_pristine.mp4"].startswith("cannot read video")
    assert all(reasons[n].startswith("held out") for n in HELD_OUT_STILLS)
    assert process_source(find_sources(raw / HELD_OUT_STILLS[2])[0], tmp_path / "d", opts).status == "skipped"


def test_the_loader_refuses_clips_of_held_out_stills(tmp_path):
    index = DataIndex(size=SIZE, clips=[ClipRecord(id="x", source=f"/photos/{HELD_OUT_STILLS[0]}", start=0, end=1,
                                                   fps=0.0, size=SIZE, box=[0, 0, 1], kind="still")])
    save_index(tmp_path, index)
    with pytest.raises(InputError, match="held out"):
        PairDataset(tmp_path, still_fraction=0.5)


def test_held_out_stills_are_three_people_out_of_the_training_photos(samples):
    assert len(set(HELD_OUT_STILLS)) == 3 and set(HELD_OUT_STILLS) <= set(_STILLS)
    assert [p.name for p in samples.held_out_stills()] == list(HELD_OUT_STILLS)
    training = {p.name for p in samples.training_photos()}
    assert not training & (set(HELD_OUT_STILLS) | set(HELD_OUT_COPIES))
    assert len(training) == len(samples.stills) + len(samples.photos) - 4
    assert all(p.is_file() for p in samples.photos) and len(samples.photos) >= 10


def test_old_index_without_kind_loads_as_video(tmp_path):
    data = make_synthetic_dataset(tmp_path, clips=1, frames=4, size=32)
    raw = json.loads((data / "index.json").read_text())
    for c in raw["clips"]:
        c.pop("kind")
    (data / "index.json").write_text(json.dumps(raw))
    assert load_index(data).clips[0].kind == "video"


# --------------------------------------------------------------------------- still pairs


def _unwarp_affine(image: torch.Tensor, warp: RandomWarp) -> torch.Tensor:
    """Undo an affine warp (no spline): (3, S, S) -> (3, S, S)."""
    a, b = warp.theta[0, :, :2], warp.theta[0, :, 2:]
    inv_a = torch.linalg.inv(a)
    inverse = RandomWarp(torch.cat([inv_a, -inv_a @ b], dim=1).unsqueeze(0), None, None)
    return inverse.warp_image(image.unsqueeze(0))[0]


def _corr(x: torch.Tensor, y: torch.Tensor) -> float:
    c = slice(SIZE // 4, 3 * SIZE // 4)  # the centre: inside the frame under any of the warps
    x, y = x[:, c, c].flatten(), y[:, c, c].flatten()
    return float(torch.corrcoef(torch.stack([x, y]))[0, 1])


def _same_sample(x, y) -> bool:
    """Every field of two PairSamples holds equal tensors."""
    return all(torch.equal(getattr(x, f.name), getattr(y, f.name)) for f in fields(x))


def test_still_pairs_are_two_warps_of_one_face(mixed):
    ds = PairDataset(mixed, seed=0, still_fraction=1.0, still_tps_std=0.0)
    stills = [i for i, c in enumerate(ds.clips) if c.kind == "still"]
    assert len(ds) == 3 and len(stills) == 4  # len counts the video clips
    for sid in range(6):
        item = ds[sid]
        clip_idx, warp_s, warp_d = ds.still_plan(sid)
        assert item.is_still.item() and item.clip.item() == clip_idx in stills
        assert not item.source_pose_valid.item() and not item.driving_pose_valid.item()
        assert torch.equal(item.frames, torch.tensor([0, 0]))
        face = ds._load(ds.clips[clip_idx], 0)
        assert torch.allclose(item.source, warp_s.warp_image(face[None])[0], atol=1e-5)
        assert not torch.allclose(item.source, item.driving, atol=0.05)
        # one face: the two un-warped images agree, better than the warped ones do
        back_s, back_d = _unwarp_affine(item.source, warp_s), _unwarp_affine(item.driving, warp_d)
        assert _corr(back_s, back_d) > 0.95 and _corr(back_s, back_d) > _corr(item.source, item.driving)
        assert torch.allclose(item.source.mean((1, 2)), item.driving.mean((1, 2)), atol=0.08)


def test_still_pairs_are_deterministic_per_sample_id(mixed):
    kw = {"still_fraction": 0.5, "augment_flip": True, "color_jitter": 0.1}
    a, b, c = PairDataset(mixed, seed=4, **kw), PairDataset(mixed, seed=4, **kw), PairDataset(mixed, seed=5, **kw)
    items = [a[i] for i in range(8)]
    assert any(x.is_still.item() for x in items)
    for i, x in enumerate(items):
        y = b[i]
        assert _same_sample(x, y)
    assert any(not torch.equal(x.source, c[i].source) for i, x in enumerate(items))


def test_still_fraction_is_respected(mixed):
    for fraction in (0.0, 0.25, 1.0):
        ds = PairDataset(mixed, seed=1, still_fraction=fraction)
        share = np.mean([ds.still_plan(i) is not None for i in range(800)])
        assert share == pytest.approx(fraction, abs=0.05)


def test_zero_still_fraction_gives_the_old_samples(mixed):
    """Still clips in the index change nothing at still_fraction 0: the same pairs as without them."""
    ds = PairDataset(mixed, seed=2, augment_flip=True, color_jitter=0.1)
    videos = [c.id for c in ds.clips if c.kind == "video"]
    ref = PairDataset(mixed, seed=2, augment_flip=True, color_jitter=0.1, clip_ids=videos)
    assert len(ds) == len(ref) == 3
    for sid in range(9):
        x, y = ds[sid], ref[sid]
        assert _same_sample(x, y) and not x.is_still.item()
        # the draws of the loader before still pairs existed: clip id % n, then two frames
        assert x.clip.item() == sid % 3
        expect = np.random.default_rng([2, sid]).choice(10, size=2, replace=False)
        assert x.frames.tolist() == [int(v) for v in expect]


def test_still_fraction_needs_still_clips(tmp_path):
    data = make_synthetic_dataset(tmp_path, clips=1, frames=4, size=32)
    with pytest.raises(InputError, match="no still clips"):
        PairDataset(data, still_fraction=0.2)


# --------------------------------------------------------------------------- the warps


def test_still_warp_sampler():
    image = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    off = StillWarpRange(rotation_deg=0.0, scale=0.0, shift=0.0, tps_std=0.0, flip=0.0)
    assert torch.allclose(sample_still_warp(np.random.default_rng(0), off).warp_image(image), image, atol=1e-5)
    mirror = StillWarpRange(rotation_deg=0.0, scale=0.0, shift=0.0, tps_std=0.0, flip=1.0)
    assert torch.allclose(sample_still_warp(np.random.default_rng(0), mirror).warp_image(image), image.flip(-1),
                          atol=1e-5)
    quarter = RandomWarp(similarity_theta(90.0, 1.0, (0.0, 0.0), False).unsqueeze(0), None, None)
    assert torch.allclose(quarter.warp_image(image), torch.rot90(image, 1, dims=(2, 3)), atol=1e-5)
    # the same rng state gives the same warp; large warps pad by reflection: no black corners
    a, b = (sample_still_warp(np.random.default_rng(7), StillWarpRange(rotation_deg=40.0, scale=0.5)) for _ in "ab")
    assert torch.equal(a.theta, b.theta) and torch.equal(a.control_weights, b.control_weights)
    assert torch.allclose(a.warp_image(torch.ones(1, 3, 24, 24)), torch.ones(1, 3, 24, 24), atol=1e-5)
