"""Every experiment YAML in configs/ loads and trains one step (on a tiny model and a generated data folder).

Each config is read the way ``facevid2vid train --config`` reads it (``cli.train.build_config``),
then only what makes a step expensive is scaled down: the model becomes the ``tiny`` preset
(64 px) keeping the config's code-path fields (keypoint count, flow mode, occlusion, mask
kernel, discriminator scales and keypoint input), two images a step, at most one loader worker.
Everything else (loss weights, GAN schedule, still pairs, augmentation, perception networks,
learning rates) is the config's own. New files in configs/ are covered by the glob.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from facevid2vid.cli.train import build_config
from facevid2vid.config import ModelConfig, TrainConfig, load_train_config, model_preset
from facevid2vid.data.dataset import CLIPS_DIR, ClipRecord, load_index, save_index
from facevid2vid.errors import CheckpointError
from facevid2vid.perception import network_path
from facevid2vid.training.build import INDEX_TEACHER
from facevid2vid.training.trainer import Trainer
from test_dataset import make_synthetic_dataset, synthetic_frame

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
# architecture fields that choose code paths rather than sizes: kept from the config on the tiny model
PATH_FIELDS = ("num_keypoints", "flow_mode", "estimate_occlusion", "motion_mask_kernel", "disc_scales", "disc_use_kp")


def test_configs_are_found():
    assert len(CONFIGS) >= 6 and any(p.name == "tiny.yaml" for p in CONFIGS)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Two video clips and two still faces (configs may ask for still pairs), 64 px."""
    root = make_synthetic_dataset(tmp_path_factory.mktemp("configs") / "data", clips=2, frames=6, size=64)
    index = load_index(root)
    for s in range(2):
        cid = f"still_{s:02d}"
        (root / CLIPS_DIR / cid).mkdir(parents=True)
        frame, yaw = synthetic_frame(3 + 5 * s, 64, identity=s)
        Image.fromarray(frame).save(root / CLIPS_DIR / cid / "000000.jpg", quality=95)
        index.clips.append(ClipRecord(id=cid, source=f"/photos/synthetic_{s}.png", start=0, end=1, fps=0.0,
                                      size=64, box=[0.0, 0.0, 64.0], poses=[[yaw, 0.0, 0.0]], kind="still"))
    save_index(root, index)
    return root


def _tiny_like(model: ModelConfig) -> ModelConfig:
    tiny = dataclasses.replace(model_preset("tiny"), **{name: getattr(model, name) for name in PATH_FIELDS})
    tiny.validate()
    return tiny


def _load(path: Path) -> TrainConfig:
    """The config as ``train --config PATH --batch-size 2 --workers <=1 --checkpoint-every 0`` builds it."""
    workers = min(load_train_config(path).num_workers, 1)  # the worker path, without forking six
    args = argparse.Namespace(config=str(path), preset=None, max_steps=1, batch_size=2, workers=workers,
                              checkpoint_every=0, vgg19=None, seed=None)
    cfg = build_config(args)
    cfg.model = _tiny_like(cfg.model)
    cfg.log_every = cfg.image_every = 0
    return cfg


def _missing_networks(cfg: TrainConfig) -> list[str]:
    """Perception networks the config names that are not in the cache (``weights fetch`` not run)."""
    named = [cfg.perceptual_network if not cfg.vgg19_weights else None,
             cfg.identity_network if cfg.loss.identity else None,
             cfg.pose_teacher if cfg.pose_teacher not in ("auto", INDEX_TEACHER) else None]
    return [n for n in named if n and not network_path(n, cfg.perception_cache).is_file()]


def _without_missing_networks(cfg: TrainConfig, data_dir: Path, tmp_path: Path) -> TrainConfig:
    """Where ``weights fetch`` has not been run (CI's default environment): the trainer refuses
    the config with a one-line hint, and the step then runs with those terms off (the pixel
    terms, the index's landmark poses). With the networks in the cache they are used as named."""
    missing = _missing_networks(cfg)
    if not missing:
        return cfg
    with pytest.raises(CheckpointError, match="weights fetch"):
        Trainer(cfg, data_dir, tmp_path / "refused", device="cpu", progress=False, console=False)
    return dataclasses.replace(
        cfg, perceptual_network=None if cfg.perceptual_network in missing else cfg.perceptual_network,
        identity_network=None if cfg.identity_network in missing else cfg.identity_network,
        pose_teacher=INDEX_TEACHER if cfg.pose_teacher in missing else cfg.pose_teacher)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_trains_one_step(path, data_dir, tmp_path):
    cfg = _without_missing_networks(_load(path), data_dir, tmp_path)
    run = tmp_path / "run"
    tr = Trainer(cfg, data_dir, run, device="cpu", progress=False, console=False)
    before = [p.detach().clone() for p in tr.model.parameters()]
    stats = tr.train_step(next(tr.batches()))

    assert tr.step == 1 and all(math.isfinite(v) for v in stats.values()), stats
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.model.parameters()))
    # the config's terms, and only those, are in the step
    w = cfg.loss
    assert ("perceptual" in stats) == bool(cfg.perceptual_network or cfg.vgg19_weights)
    assert ("identity" in stats) == bool(cfg.identity_network and w.identity)
    assert ("discriminator" in stats) == (cfg.use_gan and cfg.gan_start_step == 0)
    for name in ("equivariance", "keypoint_prior", "head_pose", "deformation_prior"):
        assert (name in stats) == bool(getattr(w, name)), name
    if cfg.pose_teacher not in ("auto", INDEX_TEACHER):
        assert tr.pose_teacher is not None and tr.pose_teacher_name.startswith(cfg.pose_teacher)
    if cfg.still_fraction > 0:
        assert tr.dataset.still_fraction == cfg.still_fraction and tr.dataset.still_idx
    # the run folder's config.yaml reads back as the config that ran
    assert load_train_config(run / "config.yaml").to_dict() == cfg.to_dict()


def test_tiny_model_keeps_the_config_code_paths():
    cfg = load_train_config(next(p for p in CONFIGS if p.name == "bundled-cpu.yaml"))
    tiny = _tiny_like(cfg.model)
    assert tiny.image_size == 64 and tiny.num_keypoints == cfg.model.num_keypoints == 10
    assert tiny.motion_mask_kernel == 3 and tiny.kp_scale_factor == model_preset("tiny").kp_scale_factor
