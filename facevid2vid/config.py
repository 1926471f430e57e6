"""Typed configuration: architecture presets and training settings.

Every architecture number lives in :class:`ModelConfig`; named presets build it.
A checkpoint stores the config it was trained with, so it alone rebuilds its model.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml


# Documented bounds of ModelConfig fields (docs/reliability.md): inclusive integer ranges ...
MODEL_INT_BOUNDS = {
    "image_size": (32, 1024), "num_keypoints": (1, 64),
    "appearance_block_expansion": (1, 512), "feature_channels": (1, 512), "feature_depth": (1, 64),
    "num_3d_resblocks": (0, 32), "volume_downsample": (2, 8), "appearance_max_features": (1, 2048),
    "kp_block_expansion": (1, 512), "kp_max_features": (1, 2048), "kp_num_blocks": (1, 8), "kp_depth": (1, 64),
    "he_block_expansion": (1, 256), "he_num_bins": (2, 360),
    "motion_compressed_channels": (1, 256), "motion_block_expansion": (1, 512), "motion_max_features": (1, 2048),
    "motion_num_blocks": (1, 8), "motion_mask_kernel": (1, 15), "motion_downsample": (1, 4),
    "num_2d_resblocks": (0, 32), "generator_channels": (1, 2048),
    "appearance_first_kernel": (1, 15), "kp_heatmap_kernel": (1, 15), "spade_hidden": (1, 1024),
    "disc_block_expansion": (1, 512), "disc_max_features": (1, 2048), "disc_num_blocks": (1, 8),
}
# ... and (exclusive, inclusive] ranges of the real-valued ones
MODEL_FLOAT_BOUNDS = {"kp_scale_factor": (0.0, 1.0), "kp_temperature": (0.0, 10.0), "kp_variance": (0.0, 1.0)}
MAX_VOLUME_ELEMENTS = 1 << 26  # C x D x H x W of the appearance volume (paper-512: 8.4 million)

# ModelConfig fields added after checkpoints were first written (the bundled v1 model lacks them all).
# A stored config without one gets the value that rebuilds the network it was saved from; every
# other field must be stored: the dataclass defaults are paper-256's, and silently taking them for
# another architecture would build the wrong network (ModelConfig.missing_fields).
BACKWARD_COMPATIBLE_DEFAULTS = {
    # before the field existed, the appearance volume was always a quarter of the image side
    "volume_downsample": lambda data: 4,
    # before the field existed, F's widths doubled without a cap: a cap at the widest stage keeps them
    "appearance_max_features": lambda data: max(
        256, data["appearance_block_expansion"] * data.get("volume_downsample", 4)),
    # the architecture options of converted open face-vid2vid checkpoints: before them, this package's own design
    **{name: (lambda data, value=value: value) for name, value in {
        "appearance_first_kernel": 7, "kp_heatmap_kernel": 7, "kp_downsample": "bilinear", "he_trunk": "bottleneck",
        "angle_convention": "ours", "upsample_3d": "nearest", "downsample_3d": "pool", "motion_final_conv": False,
        "warp_align_corners": True, "warp_padding": "border", "generator_decoder": "resblocks",
        "generator_spectral_norm": True, "generator_activation": "relu", "spade_hidden": 128,
        "motion_downsample": 1, "generator_image_skip": False}.items()},
}

# the choices of the string-valued architecture options (docs/checkpoints.md says which open fv2v needs)
MODEL_CHOICES = {
    "flow_mode": ("rotation", "identity"),
    "kp_downsample": ("bilinear", "gaussian"),
    "he_trunk": ("bottleneck", "widening"),
    "angle_convention": ("ours", "open-fv2v", "open-fv2v-beta"),
    "upsample_3d": ("nearest", "trilinear"),
    "downsample_3d": ("pool", "stride"),
    "warp_padding": ("border", "zeros"),
    "generator_decoder": ("resblocks", "spade"),
    "generator_activation": ("relu", "leaky_relu"),
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, got {value!r}")


@dataclass
class ModelConfig:
    """Architecture of F, L, H/Delta, M, G and D.

    Spatial sizes follow from ``image_size``: the appearance volume is
    ``feature_channels x feature_depth x (image_size/v) x (image_size/v)`` with
    ``v = volume_downsample`` (4 in the paper; 8 runs M and G at a quarter of the cost).
    """

    name: str = "paper-256"
    image_size: int = 256
    num_keypoints: int = 20

    # F: appearance feature extractor
    appearance_block_expansion: int = 64  # first 7x7 conv width; down blocks double it
    feature_channels: int = 32  # C of the volume
    feature_depth: int = 16  # D of the volume
    num_3d_resblocks: int = 6
    volume_downsample: int = 4  # image side / volume side: log2 of it is F's down and G's up stages
    appearance_max_features: int = 256  # F's down blocks double the width up to this

    # L: canonical keypoint detector (works on a downscaled copy of the source)
    kp_scale_factor: float = 0.25
    kp_block_expansion: int = 32
    kp_max_features: int = 1024
    kp_num_blocks: int = 5
    kp_depth: int = 16  # depth of the heatmap volume
    kp_temperature: float = 0.1

    # H / Delta: head pose and expression estimator
    he_block_expansion: int = 64
    he_num_bins: int = 66  # 3-degree bins, angle = 3 * E[bin] - 99
    he_layers: tuple[int, ...] = (3, 4, 6, 3)  # bottleneck blocks per stage (ResNet-50 like)

    # M: motion field estimator
    motion_compressed_channels: int = 4
    motion_block_expansion: int = 32
    motion_max_features: int = 1024
    motion_num_blocks: int = 5
    kp_variance: float = 0.01  # Gaussian heatmap variance in normalised coordinates
    motion_mask_kernel: int = 7  # size of the 3D conv that predicts the K+1 masks (7 in the open code)
    flow_mode: str = "rotation"  # "rotation": R_s R_d^-1 per keypoint; "identity": as open code
    # M's hourglass works on the volume at 1/n of its height and width (masks and occlusion upsampled
    # back; the keypoint flows stay exact at full size): about n*n times cheaper, the real-time preset's lever
    motion_downsample: int = 1

    # G: generator
    num_2d_resblocks: int = 6  # 2D residual blocks (SPADE blocks with generator_decoder "spade")
    generator_channels: int = 256  # width after the 1x1 conv on the reshaped volume
    estimate_occlusion: bool = True

    # Options that build the open face-vid2vid reimplementation's networks from converted checkpoints
    # (docs/checkpoints.md, presets open-fv2v-256 and open-fv2v-256-beta); the defaults are this package's design.
    appearance_first_kernel: int = 7  # F's first conv (open fv2v SPADE generator: 3)
    kp_heatmap_kernel: int = 7  # L's heatmap conv (open fv2v: 3)
    kp_downsample: str = "bilinear"  # L's input: "bilinear" (antialiased) | "gaussian" (blur + stride, open fv2v)
    he_trunk: str = "bottleneck"  # H's trunk: "bottleneck" | "widening" (open fv2v: biases, 1x1 widening convs)
    angle_convention: str = "ours"  # H's bins -> HeadMotion angles: "ours" | "open-fv2v" | "open-fv2v-beta"
    upsample_3d: str = "nearest"  # 3D up blocks of L and M: "nearest" | "trilinear" (open fv2v beta)
    downsample_3d: str = "pool"  # M's 3D down blocks: "pool" (conv, 2x2 average) | "stride" (open fv2v beta)
    motion_final_conv: bool = False  # a 3x3x3 conv + BN + ReLU on M's hourglass output (open fv2v)
    warp_align_corners: bool = True  # grid_sample align_corners of M's and G's 3D warps (open fv2v: False)
    warp_padding: str = "border"  # grid_sample padding of those warps: "border" | "zeros" (open fv2v)
    generator_decoder: str = "resblocks"  # G after the occlusion: "resblocks" (+ up blocks) | "spade"
    generator_spectral_norm: bool = True  # spectral norm on G's convs (converted checkpoints: folded, False)
    generator_activation: str = "relu"  # after G's first conv: "relu" | "leaky_relu" (slope 0.01, open fv2v)
    spade_hidden: int = 128  # hidden width of each SPADE modulation
    # G's pixel path: the source image warped by the depth-averaged flow, blended with G's output by a
    # learned per-pixel mask (models/generator.py); static and slowly moving regions keep the source's detail
    generator_image_skip: bool = False

    # D: multi-scale patch discriminator
    disc_scales: tuple[float, ...] = (1.0,)
    disc_block_expansion: int = 64
    disc_max_features: int = 512
    disc_num_blocks: int = 4
    disc_use_kp: bool = False

    @property
    def volume_size(self) -> int:
        return self.image_size // self.volume_downsample

    @property
    def volume_shape(self) -> tuple[int, int, int, int]:
        """(C, D, H, W) of the appearance feature volume f_s."""
        s = self.volume_size
        return (self.feature_channels, self.feature_depth, s, s)

    def validate(self) -> None:
        """ValueError naming the first field outside its documented bounds (:data:`MODEL_INT_BOUNDS` ...).

        Checked before a network is built, so an absurd config (from a checkpoint or a YAML
        file) fails with one line instead of a huge allocation.
        """
        if not isinstance(self.name, str) or not 0 < len(self.name) <= 100:
            raise ValueError(f"name must be a string of 1..100 characters, got {self.name!r}")
        for name, (low, high) in MODEL_INT_BOUNDS.items():
            _check_int(name, getattr(self, name), low, high)
        for name, (low, high) in MODEL_FLOAT_BOUNDS.items():
            value = getattr(self, name)
            if not _is_number(value) or not (low < value <= high):
                raise ValueError(f"{name} must be a number in ({low:g}, {high:g}], got {value!r}")
        for name in ("estimate_occlusion", "disc_use_kp", "motion_final_conv", "warp_align_corners",
                     "generator_spectral_norm", "generator_image_skip"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        self._validate_structure()

    def _validate_structure(self) -> None:
        """Bounds that tie fields together (sizes the networks can be built with)."""
        if self.image_size % 32 != 0:
            raise ValueError(f"image_size must be a multiple of 32 in 32..1024, got {self.image_size}")
        if self.volume_downsample not in (2, 4, 8):
            raise ValueError(f"volume_downsample must be 2, 4 or 8, got {self.volume_downsample}")
        for name, choices in MODEL_CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {getattr(self, name)!r}")
        for name in ("motion_mask_kernel", "appearance_first_kernel", "kp_heatmap_kernel"):
            if getattr(self, name) % 2 != 1:
                raise ValueError(f"{name} must be odd (1..15), got {getattr(self, name)}")
        if self.kp_downsample == "gaussian" and abs(round(1 / self.kp_scale_factor) * self.kp_scale_factor - 1) > 1e-9:
            raise ValueError(f"kp_downsample 'gaussian' needs kp_scale_factor = 1/n, got {self.kp_scale_factor}")
        if not isinstance(self.he_layers, tuple) or not 1 <= len(self.he_layers) <= 5:
            raise ValueError(f"he_layers must list 1..5 stage depths, got {self.he_layers!r}")
        for count in self.he_layers:
            _check_int("he_layers", count, 0, 32)
        if not isinstance(self.disc_scales, tuple) or not 1 <= len(self.disc_scales) <= 4 or not all(
                _is_number(v) and 0 < v <= 1 for v in self.disc_scales):
            raise ValueError(f"disc_scales must list 1..4 numbers in (0, 1], got {self.disc_scales!r}")
        if self.generator_image_skip and self.generator_decoder != "resblocks":
            raise ValueError("generator_image_skip needs generator_decoder 'resblocks'")
        kp_side = round(self.image_size * self.kp_scale_factor)
        if kp_side < 1 or kp_side % 2**self.kp_num_blocks:
            raise ValueError(f"image_size * kp_scale_factor = {kp_side} px must be divisible by "
                             f"2**kp_num_blocks = {2 ** self.kp_num_blocks}")
        if self.volume_size % (self.motion_downsample * 2**self.motion_num_blocks):
            raise ValueError(f"the volume side image_size / volume_downsample = {self.volume_size} must be divisible "
                             f"by motion_downsample * 2**motion_num_blocks = "
                             f"{self.motion_downsample * 2 ** self.motion_num_blocks}")
        elements = self.feature_channels * self.feature_depth * self.volume_size**2
        if elements > MAX_VOLUME_ELEMENTS:
            raise ValueError(f"the appearance volume {'x'.join(map(str, self.volume_shape))} has {elements} values, "
                             f"over the bound of {MAX_VOLUME_ELEMENTS}")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Fields absent from ``data`` take the dataclass defaults (for presets plus overrides)."""
        return _from_dict(cls, data)

    @classmethod
    def missing_fields(cls, data: dict[str, Any]) -> list[str]:
        """Fields a stored config (a checkpoint's) lacks that no backward-compatible default covers."""
        return [f.name for f in fields(cls) if f.name not in data and f.name not in BACKWARD_COMPATIBLE_DEFAULTS]

    @classmethod
    def from_stored(cls, data: dict[str, Any]) -> "ModelConfig":
        """A config as written by :meth:`to_dict`, older ones completed by :data:`BACKWARD_COMPATIBLE_DEFAULTS`.

        ValueError naming the fields :meth:`missing_fields` finds: never the paper-256 defaults.
        """
        missing = cls.missing_fields(data)
        if missing:
            raise ValueError(f"missing field{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        data = dict(data)
        for name, default in BACKWARD_COMPATIBLE_DEFAULTS.items():
            if name not in data:
                data[name] = default(data)
        return _from_dict(cls, data)


@dataclass
class LossWeights:
    """Loss weights; defaults from the paper (SPEC.md)."""

    perceptual: float = 10.0
    l1_pyramid: float = 10.0  # used in place of the perceptual term when no VGG19 file is given
    ssim: float = 5.0  # (MS-)SSIM term used with l1_pyramid when no VGG19 file is given
    gan: float = 1.0
    feature_matching: float = 10.0
    equivariance: float = 20.0
    keypoint_prior: float = 10.0
    head_pose: float = 20.0
    deformation_prior: float = 5.0
    identity: float = 5.0  # 1 - cosine of face embeddings (the paper's face term), when identity_network is set
    # mean share of the warped source image in G's output (generator_image_skip): a price on copying the
    # source, which otherwise wins on same-person video pairs and stops the head from turning (model card)
    pixel_path: float = 0.0
    # free view: the pair's source re-rendered with the driving pose turned by a random yaw (up to
    # free_view_max_yaw), and the pose network's angles of that image pulled to the requested pose
    # (L1, degrees); video pairs alone never ask for a head turned beyond what the clip shows
    free_view: float = 0.0


@dataclass
class TrainConfig:
    """Everything a training run needs besides the data path."""

    model: ModelConfig = field(default_factory=ModelConfig)  # or a model family's config (FOMM, ...)
    loss: LossWeights = field(default_factory=LossWeights)
    batch_size: int = 4
    num_workers: int = 2
    lr_generator: float = 2e-4
    lr_discriminator: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    max_steps: int = 100_000
    max_minutes: float = 0.0  # also stop after this much wall time in fit (0: no limit); for equal-budget runs
    lr_milestones: tuple[int, ...] = (60_000, 90_000)  # step decay by lr_gamma
    lr_gamma: float = 0.1
    # linear rise of both learning rates over the first N steps: a run started with --init-from gets a
    # fresh Adam, whose first full-size steps knock a trained model back (0: full rate from step 0)
    lr_warmup_steps: int = 0
    grad_clip: float = 10.0
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3  # older step checkpoints are deleted (0 keeps all)
    log_every: int = 50
    image_every: int = 500
    seed: int = 0
    augment_flip: bool = True
    augment_color_jitter: float = 0.1
    # still pairs: two random warps of one face from a photo ("still" clips, `prepare --stills`)
    still_fraction: float = 0.0  # probability that a sample is a still pair (0: video pairs only)
    still_rotation_deg: float = 15.0  # in-plane rotation, uniform in +-this
    still_scale: float = 0.1  # zoom log-uniform in [1 / (1 + s), 1 + s]
    still_shift: float = 0.05  # translation per axis, uniform in +-this ([-1, 1] image coordinates)
    still_tps_std: float = 0.005  # thin-plate-spline weights on a 5 x 5 grid
    still_flip: float = 0.0  # probability that each warp alone mirrors the face (a mirror is no head motion; augment_flip mirrors both)
    free_view_max_yaw: float = 30.0  # free-view term: requested extra yaw uniform in +-this (degrees)
    vgg19_weights: str | None = None  # local torchvision-format VGG19 state dict
    face_weights: str | None = None  # optional face-recognition network for the perceptual face term
    pose_teacher_weights: str | None = None  # optional Hopenet-style network; else poses from the index
    pose_teacher_signs: tuple[float, float, float] = (1.0, 1.0, 1.0)  # map its yaw/pitch/roll signs to ours
    # ported perception networks (facevid2vid.perception, `facevid2vid weights fetch`)
    perceptual_network: str | None = None  # "mobilenet_v2" | "inception_v3": perceptual pyramid loss
    identity_network: str | None = None  # "dlib_resnet34" | "mobilefacenet": face-identity loss
    pose_teacher: str = "auto"  # "auto" (whenet if fetched, else "index") | "whenet" | "hopenet_lite" | "index"
    perception_cache: str | None = None  # cache folder of the converted networks (default: the data cache)
    pyramid_scales: tuple[float, ...] = (1.0, 0.5, 0.25, 0.125)
    equivariance_tps_std: float = 0.005
    equivariance_affine_std: float = 0.05
    use_gan: bool = True
    gan_start_step: int = 0  # steps of pure reconstruction before the GAN terms switch on
    bf16: bool = True  # autocast on CUDA only

    def validate(self) -> None:
        """ValueError naming the first training setting out of range (the model's are checked too)."""
        self.model.validate()
        for name, low in (("batch_size", 1), ("num_workers", 0), ("max_steps", 0), ("checkpoint_every", 0),
                          ("keep_checkpoints", 0), ("log_every", 0), ("image_every", 0), ("gan_start_step", 0),
                          ("lr_warmup_steps", 0)):
            _check_int(name, getattr(self, name), low, 1 << 40)
        for name in ("lr_generator", "lr_discriminator", "lr_gamma", "grad_clip"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not _is_number(self.max_minutes) or self.max_minutes < 0:
            raise ValueError(f"max_minutes must be a finite number >= 0, got {self.max_minutes!r}")
        if not _is_number(self.still_fraction) or not 0 <= self.still_fraction <= 1:
            raise ValueError(f"still_fraction must be in 0..1, got {self.still_fraction!r}")
        if not _is_number(self.free_view_max_yaw) or not 0 <= self.free_view_max_yaw < 90:
            raise ValueError(f"free_view_max_yaw must be in 0..90 degrees, got {self.free_view_max_yaw!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain values; the model section names its family when it is not face-vid2vid's."""
        out = {f.name: _plain(getattr(self, f.name)) for f in fields(self)}
        if not isinstance(self.model, ModelConfig):
            from facevid2vid.families.registry import family_of_config

            out["model"] = {"family": family_of_config(self.model), **self.model.to_dict()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        return _from_dict(cls, data)


# ---------------------------------------------------------------------------
# presets

def _paper_256() -> ModelConfig:
    return ModelConfig(name="paper-256")


def _paper_512() -> ModelConfig:
    return ModelConfig(name="paper-512", image_size=512)


def _lite_256() -> ModelConfig:
    # Same architecture, narrowed for CPU inference: one frame well under a second on 2 cores.
    return ModelConfig(
        name="lite-256",
        num_keypoints=15,
        appearance_block_expansion=16,
        feature_channels=16,
        feature_depth=8,
        num_3d_resblocks=2,
        kp_block_expansion=16,
        kp_max_features=256,
        kp_num_blocks=4,
        kp_depth=8,
        he_block_expansion=16,
        he_layers=(1, 1, 1, 1),
        motion_block_expansion=16,
        motion_max_features=256,
        motion_num_blocks=4,
        num_2d_resblocks=3,
        generator_channels=96,
        disc_block_expansion=32,
        disc_max_features=256,
    )


def _lite_128() -> ModelConfig:
    cfg = _lite_256()
    cfg.name = "lite-128"
    cfg.image_size = 128
    return cfg


def _narrowed(cfg: ModelConfig, name: str) -> ModelConfig:
    # The CPU models' narrowing (configs/bundled-cpu.yaml): 10 keypoints, a thin M with a 3x3x3 mask
    # conv, a thin G, so that a training step fits a CPU budget
    cfg.name = name
    cfg.num_keypoints = 10
    cfg.motion_mask_kernel = 3
    cfg.motion_block_expansion = 8
    cfg.motion_max_features = 128
    cfg.kp_max_features = 128
    cfg.generator_channels = 64
    cfg.num_2d_resblocks = 2
    return cfg


def _bundled_128() -> ModelConfig:
    # The bundled v1 model's shape: lite-128 narrowed
    return _narrowed(_lite_128(), "bundled-128")


def _realtime_128() -> ModelConfig:
    # The live call's model (docs/call.md): the bundled model's networks with M at half the volume's
    # height and width, so its weights warm-start it; M costs about a quarter, a frame about 60 %
    cfg = _narrowed(_lite_128(), "realtime-128")
    cfg.motion_downsample = 2
    return cfg


def _realtime_thin_128() -> ModelConfig:
    # realtime-128 with half of G's channels (32): G's MACs a frame 0.42 -> 0.14 G, M + G 0.59 -> 0.31 G,
    # for the call's 20 frames a second a direction on 2 CPU cores (docs/call.md). F, L, H and M keep
    # realtime-128's shapes, so its weights warm-start them; G is trained anew
    cfg = _realtime_128()
    cfg.name = "realtime-thin-128"
    cfg.generator_channels = 32
    return cfg


def _cpu_256() -> ModelConfig:
    # The bundled model's shape: 256 px in and out, with the appearance volume at 1/8 of the image
    # (16 x 8 x 32 x 32) so that M and G cost what they cost at 128 px, plus one more upsampling
    # stage in G. Narrowed as the 128 px model: synthesis stays under 0.1 s a frame on 2 CPU cores.
    cfg = _narrowed(_lite_256(), "cpu-256")
    cfg.volume_downsample = 8
    cfg.appearance_max_features = 64  # the third down block keeps 64 channels, as F's output at 128 px
    cfg.kp_scale_factor = 0.125  # L sees 32x32, as at 128 px with 0.25
    # D convolves at full resolution before each pooling: at 256 px its width is what a step costs
    cfg.disc_block_expansion = 16
    cfg.disc_max_features = 128
    return cfg


def _tiny() -> ModelConfig:
    # For tests: every module present, few channels, 64x64 images.
    return ModelConfig(
        name="tiny",
        image_size=64,
        num_keypoints=5,
        appearance_block_expansion=8,
        feature_channels=4,
        feature_depth=4,
        num_3d_resblocks=1,
        kp_scale_factor=0.5,
        kp_block_expansion=8,
        kp_max_features=32,
        kp_num_blocks=3,
        kp_depth=4,
        he_block_expansion=8,
        he_layers=(1, 1, 1, 1),
        motion_compressed_channels=2,
        motion_block_expansion=8,
        motion_max_features=32,
        motion_num_blocks=3,
        num_2d_resblocks=1,
        generator_channels=16,
        disc_block_expansion=8,
        disc_max_features=32,
        disc_num_blocks=2,
    )


# The open face-vid2vid reimplementation (github.com/zhanglonghao1992/One-Shot_Free-View_Neural_Talking_Head_Synthesis)
# at its two published Vox-256 checkpoints. "vox-256.yaml": the code as it is today (2021-11 on; its checkpoint
# 00000189-checkpoint.pth.tar has the SPADE generator). "vox-256-beta.yaml": the code of 2021-09-18 (commit 0b8e3a8),
# when the beta checkpoint (original generator) was published: L on the full image, an older rotation order, trilinear
# 3D upsampling and strided 3D downsampling in M. docs/checkpoints.md lists every difference from our design.
OPEN_FV2V_CONFIGS = ("vox-256.yaml", "vox-256-beta.yaml")
OPEN_FV2V_GENERATORS = ("spade", "original")


def open_fv2v_config(config: str = "vox-256.yaml", generator: str = "spade") -> ModelConfig:
    """The architecture of an open face-vid2vid checkpoint: its YAML config's name and its generator."""
    if config not in OPEN_FV2V_CONFIGS or generator not in OPEN_FV2V_GENERATORS:
        raise ValueError(f"open face-vid2vid config must be one of {', '.join(OPEN_FV2V_CONFIGS)} and generator one "
                         f"of {', '.join(OPEN_FV2V_GENERATORS)}, got {config!r} and {generator!r}")
    beta = config == "vox-256-beta.yaml"
    name = "open-fv2v-256" + ("-beta" if beta else "")
    if generator != ("original" if beta else "spade"):
        name += f"-{generator}"
    return ModelConfig(
        name=name, image_size=256, num_keypoints=15,
        appearance_block_expansion=64, feature_channels=32, feature_depth=16, num_3d_resblocks=6,
        volume_downsample=4, appearance_max_features=256, appearance_first_kernel=3 if generator == "spade" else 7,
        kp_scale_factor=1.0 if beta else 0.25, kp_block_expansion=32, kp_max_features=1024, kp_num_blocks=5,
        kp_depth=16, kp_temperature=0.1, kp_heatmap_kernel=3, kp_downsample="gaussian",
        he_block_expansion=64, he_num_bins=66, he_layers=(3, 4, 6, 3), he_trunk="widening",
        angle_convention="open-fv2v-beta" if beta else "open-fv2v",
        motion_compressed_channels=4, motion_block_expansion=32, motion_max_features=1024, motion_num_blocks=5,
        kp_variance=0.01, motion_mask_kernel=7, flow_mode="identity", motion_final_conv=True,
        upsample_3d="trilinear" if beta else "nearest", downsample_3d="stride" if beta else "pool",
        warp_align_corners=False, warp_padding="zeros",
        num_2d_resblocks=6, generator_channels=256, estimate_occlusion=True,
        generator_decoder="spade" if generator == "spade" else "resblocks", generator_spectral_norm=False,
        generator_activation="leaky_relu", spade_hidden=128,
        disc_block_expansion=32, disc_max_features=512, disc_num_blocks=4,
    )


PRESETS = {
    "paper-256": _paper_256,
    "paper-512": _paper_512,
    "lite-256": _lite_256,
    "lite-128": _lite_128,
    "bundled-128": _bundled_128,
    "realtime-128": _realtime_128,
    "realtime-thin-128": _realtime_thin_128,
    "cpu-256": _cpu_256,
    "tiny": _tiny,
    "open-fv2v-256": lambda: open_fv2v_config("vox-256.yaml", "spade"),
    "open-fv2v-256-beta": lambda: open_fv2v_config("vox-256-beta.yaml", "original"),
}


def model_preset(name: str) -> ModelConfig:
    try:
        cfg = PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
    cfg.validate()
    return cfg


def load_train_config(path: str | Path) -> TrainConfig:
    """Load a YAML experiment file.

    The ``model`` section may name a ``preset`` and override any of its fields.
    """
    data = yaml.safe_load(Path(path).read_text()) or {}
    model = model_config_from(dict(data.pop("model", {}) or {}))
    loss = LossWeights(**(data.pop("loss", {}) or {}))
    cfg = TrainConfig.from_dict(data)
    cfg.model, cfg.loss = model, loss
    cfg.validate()
    return cfg


def model_config_from(data: dict[str, Any]):
    """The ``model`` section of an experiment file: a ``preset`` (face-vid2vid's, or a model family's such
    as ``fomm-128``; or a ``family`` with its defaults) plus overrides of any field, validated."""
    from facevid2vid.families import FACEVID2VID

    preset, family = data.pop("preset", None), data.pop("family", FACEVID2VID)
    if family == FACEVID2VID and (preset is None or preset in PRESETS):
        base = model_preset(preset or "paper-256")
    else:
        from facevid2vid.families.registry import family_presets, spec

        presets = family_presets()
        if preset is not None and preset not in presets:
            raise ValueError(f"unknown preset {preset!r}; choose one of: {', '.join([*PRESETS, *presets])}")
        base = presets[preset][1]() if preset is not None else spec(family).module().Config()
    model = type(base).from_dict({**base.to_dict(), **data})
    model.validate()
    return model


def save_train_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the config as YAML, atomically."""
    from facevid2vid.outputs import write_text

    write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


# ---------------------------------------------------------------------------
# helpers

def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple):
        return list(value)
    return value


def _from_dict(cls, data: dict[str, Any]):
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {', '.join(sorted(unknown))}")
    kwargs = {}
    for name, value in data.items():
        default = getattr(cls(), name) if name in known else None
        if isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        if dataclasses.is_dataclass(default) and isinstance(value, dict):
            value = _from_dict(type(default), value)
        kwargs[name] = value
    return cls(**kwargs)
