"""X2Face as a model family: its configs, both networks, the synthesis interface and its objective.

All on the tiny preset (64x64, a few channels) except the preset checks, which build the
larger presets on the meta device (shapes only).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from facevid2vid.config import TrainConfig
from facevid2vid.data.batch import PairBatch
from facevid2vid.errors import InputError
from facevid2vid.families.registry import spec
from facevid2vid.families.x2face import PRESETS, Config, Model, Objective, tiny_x2face_config
from facevid2vid.structures import CodeMotion, ImageSource, View
from facevid2vid.training.perception_terms import FeaturePerceptualLoss, IdentityLoss

S = 64  # the tiny preset's side


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny networks: one thread is fastest on the shared machine."""


@pytest.fixture()
def model() -> Model:
    torch.manual_seed(0)
    return Model(tiny_x2face_config()).eval()


def smooth_images(n: int, seed: int) -> torch.Tensor:
    """(n, 3, S, S) low-frequency random images in [0, 1] (a warp of them is learnable)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 6, 6, generator=g)
    return F.interpolate(coarse, size=(S, S), mode="bicubic", align_corners=False).clamp(0, 1)


def shifted(images: torch.Tensor, dx: float, dy: float) -> torch.Tensor:
    """The images translated by (dx, dy) in [-1, 1] units (border padding)."""
    theta = torch.tensor([[1.0, 0.0, -dx], [0.0, 1.0, -dy]]).expand(images.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=True)
    return F.grid_sample(images, grid, padding_mode="border", align_corners=True)


def pair_batch(source: torch.Tensor, driving: torch.Tensor) -> PairBatch:
    b = source.shape[0]
    false = torch.zeros(b, dtype=torch.bool)
    return PairBatch(source=source, driving=driving, source_pose=torch.zeros(b, 3), driving_pose=torch.zeros(b, 3),
                     source_pose_valid=false, driving_pose_valid=false, is_still=false,
                     clip=torch.zeros(b, dtype=torch.int64), frames=torch.zeros(b, 2, dtype=torch.int64))


def train_config() -> TrainConfig:
    cfg = TrainConfig(bf16=False)
    cfg.model = tiny_x2face_config()
    return cfg


class TinyFeatures(nn.Module):
    """A frozen two-layer feature network (what FeaturePerceptualLoss taps) for the tests."""

    min_size = 8

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.b = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.requires_grad_(False)

    def forward(self, x):
        fa = torch.relu(self.a(x))
        return [fa, torch.relu(self.b(fa))]


class TinyEmbedding(nn.Module):
    """A frozen face 'embedding' network for IdentityLoss."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 5, stride=4, padding=2)
        self.requires_grad_(False)

    def forward(self, x):
        return self.conv(x).mean((2, 3))


# --------------------------------------------------------------------------- configs


def test_presets_are_valid_and_round_trip():
    assert set(PRESETS) == {"x2face-256", "x2face-128", "x2face-tiny"}
    for name, factory in PRESETS.items():
        cfg = factory()
        assert isinstance(cfg, Config) and cfg.name == name
        assert Config.from_dict(cfg.to_dict()) == cfg
    paper = PRESETS["x2face-256"]()
    assert paper == Config().validate()  # the defaults are the paper's model
    assert (paper.image_size, paper.embedding_num_blocks, paper.driving_code_side, paper.motion_dim) == (256, 8, 2, 128)
    assert (PRESETS["x2face-128"]().image_size, PRESETS["x2face-tiny"]().image_size) == (128, 64)


def test_the_paper_model_has_pix2pix_shapes():
    """Built on the meta device: the U-Net reaches 1x1, the driving vector is (N, 128)."""
    cfg = PRESETS["x2face-256"]()
    with torch.device("meta"):
        m = Model(cfg).eval()
        image = torch.empty(2, 3, 256, 256)
        x = image
        for down in m.embedding_network.down_blocks:
            x = down(x)
        assert x.shape == (2, 512, 1, 1)
        assert m.estimate_motion(image).code.shape == (2, 128)
        assert m.render(m.encode_source(image), m.estimate_motion(image)).shape == (2, 3, 256, 256)
    widths = [b.conv.out_channels for b in m.driving_network.down_blocks]
    assert widths == [64, 128, 256, 512, 512, 512, 512]


@pytest.mark.parametrize("change, message", [
    (dict(embedding_num_blocks=7), "embedding_num_blocks"),  # 64 px is not divisible by 2**7
    (dict(driving_num_blocks=2), "at most 8"),  # the code layer would flatten a 16x16 map
    (dict(motion_dim=0), "motion_dim"),
    (dict(residual_flow=1), "true or false"),
    (dict(loss_photometric=-1.0), "non-negative"),
])
def test_config_rejects_bad_values(change, message):
    with pytest.raises(ValueError, match=message):
        tiny_x2face_config(**change)


def test_the_registry_lists_the_family():
    s = spec("x2face")
    assert (s.label, s.free_view, s.relative, s.trainable) == ("X2Face", False, False, True)
    module = s.module()
    assert module.Model is Model and module.Config is Config and module.Objective is Objective
    assert Model.family == "x2face" and Model.free_view is False and "D" not in Model.NETWORKS


def test_every_parameter_belongs_to_a_listed_network(model):
    listed = sum(p.numel() for attr in Model.NETWORKS.values() for p in getattr(model, attr).parameters())
    assert listed == sum(p.numel() for p in model.parameters()) > 0


# --------------------------------------------------------------------------- networks and synthesis


def test_network_shapes(model):
    x = smooth_images(3, 0)
    field = model.embedding_network(x)
    assert field.shape == (3, 2, S, S)
    embedded, grid = model.embedding_network.embed(x)
    assert embedded.shape == (3, 3, S, S) and grid.shape == (3, S, S, 2)
    code = model.driving_network.encode(x)
    assert code.shape == (3, model.cfg.motion_dim)
    assert model.driving_network.decode(code).shape == (3, 2, S, S)
    assert model.driving_network.sampling_grid(code).shape == (3, S, S, 2)
    assert model(x, x).shape == (3, 3, S, S)


def test_without_residual_flow_the_field_is_the_grid():
    torch.manual_seed(0)
    m = Model(tiny_x2face_config(residual_flow=False)).eval()
    x = smooth_images(1, 0)
    with torch.no_grad():
        grid = m.driving_network(x)
    assert grid.abs().max() < 1.0  # tanh alone: near 0, so the whole output samples the image centre
    assert m.render(m.encode_source(x), m.estimate_motion(x)).shape == (1, 3, S, S)


def test_render_of_a_source_with_its_own_motion(model):
    x = smooth_images(2, 1)
    with torch.no_grad():
        source = model.encode_source(x)
        motion = model.estimate_motion(x)
        out = model.render(source, motion)
    assert isinstance(source, ImageSource) and source.motion is None and len(source.features) == 1
    assert source.features[0].shape == (2, 3, S, S)
    assert isinstance(motion, CodeMotion) and motion.code.shape == (2, model.cfg.motion_dim)
    assert out.shape == (2, 3, S, S) and out.dtype == torch.float32
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    assert float((out - x).abs().mean()) < 0.1  # both fields start near the identity warp


def test_batch_one_source_or_motion_broadcasts(model):
    x = smooth_images(3, 2)
    with torch.no_grad():
        sources, motions = model.encode_source(x), model.estimate_motion(x)
        each = torch.cat([model.render(sources.index(slice(0, 1)), motions.index(slice(i, i + 1))) for i in range(3)])
        assert torch.allclose(model.render(sources.index(slice(0, 1)), motions), each, atol=1e-6)
        per_source = torch.cat([model.render(sources.index(slice(i, i + 1)), motions.index(slice(0, 1)))
                                for i in range(3)])
        assert torch.allclose(model.render(sources, motions.index(slice(0, 1))), per_source, atol=1e-6)
        with pytest.raises(ValueError, match="broadcast"):
            model.render(sources.index(slice(0, 2)), motions)


def test_without_motion_a_source_is_rendered_in_its_own_pose(model):
    """What redirect passes (``source.motion`` is None): each source's own driving vector."""
    x = smooth_images(2, 11)
    with torch.no_grad():
        source = model.encode_source(x)
        assert torch.equal(model.render(source, None), model.render(source, model.estimate_motion(x)))


def test_the_animator_drives_x2face_in_absolute_mode(model):
    from facevid2vid.inference import Animator

    animator = Animator(model, batch_size=2)
    source = animator.encode_source(smooth_images(1, 12)[0])
    frames = smooth_images(3, 13)
    out = animator.animate(source, frames, mode="absolute")
    with torch.no_grad():
        expected = model.render(model.encode_source(smooth_images(1, 12)), model.estimate_motion(frames))
    assert torch.allclose(out, expected, atol=1e-6)
    assert animator.redirect(frames).shape == (3, 3, S, S)
    with pytest.raises(InputError, match="absolute"):
        animator.animate(source, frames, mode="relative")


def test_free_view_is_refused(model):
    x = smooth_images(1, 3)
    with torch.no_grad():
        source, motion = model.encode_source(x), model.estimate_motion(x)
        for view in (View(yaw=10.0), View(frontalize=True), View(translation=(0.1, 0.0, 0.0)),
                     View(pitch=torch.tensor([0.0, 5.0]))):
            with pytest.raises(InputError, match="free view needs face-vid2vid's 3D keypoints; X2Face has none"):
                model.render(source, motion, view)
        default = model.render(source, motion)
        assert torch.equal(model.render(source, motion, View()), default)
        assert torch.equal(model.render(source, motion, View(yaw=torch.zeros(1))), default)


def test_relative_mode_is_refused(model):
    x = smooth_images(1, 4)
    with torch.no_grad():
        motion = model.estimate_motion(x)
    with pytest.raises(InputError, match="X2Face has no relative mode: use --mode absolute"):
        model.relative_motion(motion, motion, None)


def test_wrong_inputs_raise_input_errors(model):
    with pytest.raises(InputError, match=r"\(B, 3, 64, 64\)"):
        model.encode_source(torch.rand(1, 3, 32, 32))
    with pytest.raises(InputError, match=r"\(B, 3, 64, 64\)"):
        model.estimate_motion(torch.rand(3, S, S))
    with torch.no_grad():
        source = model.encode_source(smooth_images(1, 5))
    with pytest.raises(InputError, match="CodeMotion"):
        model.render(source, CodeMotion(torch.zeros(1, model.cfg.motion_dim + 1)))


# --------------------------------------------------------------------------- objective


def test_objective_terms_are_finite_and_reach_every_network():
    torch.manual_seed(0)
    model = Model(tiny_x2face_config()).train()
    x = smooth_images(2, 6)
    objective = Objective(model, train_config(), FeaturePerceptualLoss(TinyFeatures()), IdentityLoss(TinyEmbedding()))
    res = objective(pair_batch(x, shifted(x, 0.1, 0.0)), None, False)
    assert set(res.losses) == {"photometric", "perceptual", "identity"}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in res.losses.values())
    assert res.prediction.shape == (2, 3, S, S) and res.prediction.dtype == torch.float32
    assert res.kp_source.shape == (2, 0, 2) and res.kp_driving.shape == (2, 0, 2)
    sum(res.losses.values()).backward()
    for attr in Model.NETWORKS.values():
        grads = [p.grad for p in getattr(model, attr).parameters()]
        assert all(g is not None for g in grads), attr
        assert sum(float(g.abs().sum()) for g in grads) > 0, attr


def test_without_a_perceptual_network_a_pyramid_l1_stands_in():
    model = Model(tiny_x2face_config()).train()
    x = smooth_images(2, 7)
    res = Objective(model, train_config())(pair_batch(x, x), None, False)
    assert set(res.losses) == {"photometric", "l1_pyramid"}


def test_content_terms_start_at_their_step():
    cfg = train_config()
    cfg.model = tiny_x2face_config(loss_content_start_step=2)
    model = Model(cfg.model).train()
    objective = Objective(model, cfg)
    batch = pair_batch(smooth_images(2, 8), smooth_images(2, 9))
    seen = [set(objective(batch, None, False).losses) for _ in range(3)]
    assert seen == [{"photometric"}, {"photometric"}, {"photometric", "l1_pyramid"}]
    model.eval()  # evaluation calls do not advance the stage
    objective(batch, None, False)
    assert objective.step == 3


def test_overfitting_one_batch_lowers_the_reconstruction_loss():
    """30 Adam steps on one pair batch (the driving frames shifted copies of the sources)."""
    torch.manual_seed(0)
    model = Model(tiny_x2face_config()).train()
    objective = Objective(model, train_config())
    x = smooth_images(2, 10)
    batch = pair_batch(x, shifted(x, 0.15, -0.1))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.5, 0.999))
    history = []
    for _ in range(30):
        res = objective(batch, None, False)
        opt.zero_grad()
        sum(res.losses.values()).backward()
        opt.step()
        history.append(float(res.losses["photometric"].detach()))
    assert history[-1] < 0.3 * history[0], history
