"""What a training run is made of, built from its :class:`~facevid2vid.config.TrainConfig`.

The :class:`~facevid2vid.training.trainer.Trainer` calls these in a fixed order after seeding
(the dataset, then the networks, then the perception terms): module initialisation draws from
the global RNG, so the order is part of what makes every rank start from the same weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from facevid2vid.config import TrainConfig
from facevid2vid.data.dataset import PairDataset
from facevid2vid.errors import InputError
from facevid2vid.families import FACEVID2VID
from facevid2vid.families.registry import family_of_config, spec
from facevid2vid.models import FaceVid2Vid, MultiScaleDiscriminator
from facevid2vid.perception import DEFAULTS, NETWORKS, load_network, network_path
from facevid2vid.training.objective import GeneratorObjective
from facevid2vid.training.perception_terms import FeaturePerceptualLoss, IdentityLoss, NetworkPoseTeacher
from facevid2vid.training.perceptual import PerceptualLoss, VGGFeatures
from facevid2vid.training.pose_teacher import HopenetTeacher

INDEX_TEACHER = "index"  # pose_teacher_name when the head-pose loss uses the index's PnP poses


@dataclass
class PerceptionTerms:
    """The frozen networks behind the perceptual, identity and head-pose terms (None: term off)."""

    perceptual: nn.Module | None  # PerceptualLoss (local VGG19 file) or FeaturePerceptualLoss (ported network)
    identity: nn.Module | None  # IdentityLoss
    pose_teacher: nn.Module | None  # images (B, 3, S, S) -> poses (B, 3); None: the index's poses
    pose_teacher_name: str  # for the log; INDEX_TEACHER without a network


def build_dataset(cfg: TrainConfig, data_dir: str | Path) -> PairDataset:
    return PairDataset(data_dir, image_size=cfg.model.image_size, seed=cfg.seed,
                       augment_flip=cfg.augment_flip, color_jitter=cfg.augment_color_jitter,
                       still_fraction=cfg.still_fraction, still_rotation_deg=cfg.still_rotation_deg,
                       still_scale=cfg.still_scale, still_shift=cfg.still_shift,
                       still_tps_std=cfg.still_tps_std, still_flip=cfg.still_flip)


def build_networks(cfg: TrainConfig, device: torch.device,
                   distributed: bool) -> tuple[nn.Module, MultiScaleDiscriminator | None]:
    """The model and the discriminator on ``device`` (synchronised batch norm for DDP on CUDA).

    The 2D families (FOMM, Monkey-Net, X2Face) train without a discriminator: None.
    """
    family = family_of_config(cfg.model)
    if family == FACEVID2VID:
        model: nn.Module = FaceVid2Vid(cfg.model).to(device)
        disc = MultiScaleDiscriminator(cfg.model).to(device)
    elif spec(family).trainable:
        model, disc = spec(family).module().Model(cfg.model).to(device), None
    else:
        raise InputError(f"{spec(family).label} models cannot be trained here (no training code for that family)")
    if distributed and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model, disc


def build_objective(cfg: TrainConfig, model: nn.Module, disc: MultiScaleDiscriminator | None,
                    perceptual: nn.Module | None, identity: nn.Module | None,
                    pose_teacher: nn.Module | None = None) -> nn.Module:
    """The generator-side objective of the model's family (what DDP wraps)."""
    family = family_of_config(cfg.model)
    if family == FACEVID2VID:
        if cfg.loss.free_view and not isinstance(pose_teacher, NetworkPoseTeacher):
            raise InputError("loss.free_view needs a ported pose network as the teacher (pose_teacher: "
                             "whenet or auto after `facevid2vid weights fetch`): it reads the pose of images "
                             "that have no index pose")
        return GeneratorObjective(model, disc, cfg, perceptual, identity,
                                  pose_teacher if cfg.loss.free_view else None)
    return spec(family).module().Objective(model, cfg, perceptual, identity)


def build_perception(cfg: TrainConfig, device: torch.device) -> PerceptionTerms:
    """CheckpointError naming ``weights fetch`` when a configured network is not in the cache."""
    perceptual = _perceptual(cfg, device)
    identity = _identity(cfg, device)
    family = family_of_config(cfg.model)
    if family != FACEVID2VID:  # the head-pose term is face-vid2vid's: no teacher runs for the 2D families
        return PerceptionTerms(perceptual, identity, None, f"none ({spec(family).label} has no head pose)")
    teacher, name = _pose_teacher(cfg, device)
    return PerceptionTerms(perceptual, identity, teacher, name)


def _network(cfg: TrainConfig, name: str, device: torch.device) -> nn.Module:
    return load_network(name, cache=cfg.perception_cache, device=device)


def _perceptual(cfg: TrainConfig, device: torch.device) -> nn.Module | None:
    """VGG19 from a local file (the paper's loss) wins; else a ported ImageNet network, if configured."""
    if cfg.vgg19_weights:
        vgg = VGGFeatures.from_file(cfg.vgg19_weights, arch="vgg19")
        face = VGGFeatures.from_file(cfg.face_weights) if cfg.face_weights else None
        return PerceptualLoss(vgg, cfg.pyramid_scales, face=face).to(device)
    if cfg.perceptual_network:
        return FeaturePerceptualLoss(_network(cfg, cfg.perceptual_network, device), cfg.pyramid_scales)
    return None


def _identity(cfg: TrainConfig, device: torch.device) -> nn.Module | None:
    if not (cfg.identity_network and cfg.loss.identity):
        return None
    return IdentityLoss(_network(cfg, cfg.identity_network, device))


def _pose_teacher(cfg: TrainConfig, device: torch.device) -> tuple[nn.Module | None, str]:
    """The head-pose teacher: a user's Hopenet file, a ported network, or the index's PnP poses."""
    if cfg.pose_teacher_weights:
        net = HopenetTeacher.from_file(cfg.pose_teacher_weights, signs=tuple(cfg.pose_teacher_signs))
        return net.to(device), f"Hopenet-style teacher {cfg.pose_teacher_weights}"
    name = cfg.pose_teacher
    if name == "auto":
        fetched = network_path(DEFAULTS["pose"], cfg.perception_cache).is_file()
        name = DEFAULTS["pose"] if fetched else INDEX_TEACHER
    if name == INDEX_TEACHER:
        return None, INDEX_TEACHER
    if name not in NETWORKS or NETWORKS[name].role != "pose":
        raise InputError(f"pose_teacher {cfg.pose_teacher!r}: expected auto, index or one of "
                         f"{', '.join(n for n, s in NETWORKS.items() if s.role == 'pose')}")
    return NetworkPoseTeacher(_network(cfg, name, device)), f"{name} ({NETWORKS[name].summary})"
