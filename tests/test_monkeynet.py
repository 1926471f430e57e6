"""Monkey-Net as a model family: its networks' shapes, the synthesis interface, its objective, and training."""
from __future__ import annotations

import math

import pytest
import torch

from facevid2vid.config import TrainConfig
from facevid2vid.data.batch import PairBatch
from facevid2vid.errors import InputError
from facevid2vid.families import registry
from facevid2vid.families.monkeynet import PRESETS, Config, Model, Objective
from facevid2vid.families.monkeynet.movement import coordinate_grid, warp
from facevid2vid.structures import ImageSource, KeypointMotion, View
from facevid2vid.training.transforms import RandomWarp

S = 64  # the tiny preset's side


@pytest.fixture(scope="module")
def model(one_thread):
    torch.manual_seed(0)
    return Model(PRESETS["monkeynet-tiny"]()).eval()


def blobs(centres: list[tuple[float, float]], side: int = S) -> torch.Tensor:
    """Images (B, 3, side, side) with a bright blob at each (x, y) centre on a smooth background."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, side), torch.linspace(-1, 1, side), indexing="ij")
    out = []
    for cx, cy in centres:
        d = (xs - cx) ** 2 + (ys - cy) ** 2
        out.append(torch.stack([torch.exp(-d / 0.05), 0.5 + 0.5 * torch.sin(3 * xs + cx), 0.8 * torch.exp(-d / 0.2)]))
    return torch.stack(out)


def pair_batch(source: torch.Tensor, driving: torch.Tensor) -> PairBatch:
    b = source.shape[0]
    no = torch.zeros(b, dtype=torch.bool)
    return PairBatch(source, driving, torch.zeros(b, 3), torch.zeros(b, 3), no, no, no,
                     torch.zeros(b, dtype=torch.long), torch.zeros(b, 2, dtype=torch.long))


def test_registry_finds_the_package():
    spec = registry.spec("monkeynet")
    module = spec.module()
    assert spec.label == "Monkey-Net" and spec.relative and not spec.free_view
    assert module.Model is Model and module.Config is Config and module.Objective is Objective
    assert set(module.PRESETS) == {"monkeynet-256", "monkeynet-128", "monkeynet-tiny"}
    assert Model.family == "monkeynet" and "D" not in Model.NETWORKS and Model.free_view is False


def test_configs_validate_and_round_trip():
    for factory in PRESETS.values():
        cfg = factory()
        assert Config.from_dict(cfg.to_dict()) == cfg
    assert Config() == PRESETS["monkeynet-256"]()  # the defaults are the paper's 256 model
    with pytest.raises(ValueError, match="num_blocks"):
        Config(image_size=96, num_blocks=7).validate()  # 96 is not divisible by 2**7
    with pytest.raises(ValueError, match="kp_num_blocks"):
        Config(kp_num_blocks=7).validate()  # K sees 64x64
    with pytest.raises(ValueError, match="kp_variance"):
        Config(kp_variance=0.0).validate()
    with pytest.raises(ValueError, match="num_keypoints"):
        Config(num_keypoints=0).validate()


def test_paper_model_has_the_reference_parameter_counts():
    """Monkey-Net's vox.yaml networks, counted from its public code: K 14,132,728, M 14,162,705, G 66,466,986."""
    with torch.device("meta"):
        paper = Model(PRESETS["monkeynet-256"]())
    counts = {k: sum(p.numel() for p in getattr(paper, a).parameters()) for k, a in Model.NETWORKS.items()}
    assert counts == {"K": 14_132_728, "M": 14_162_705, "G": 66_466_986}


def test_network_shapes(model):
    cfg = model.cfg
    k, h = cfg.num_keypoints, cfg.side(cfg.dense_motion_scale_factor)
    images = torch.rand(3, 3, S, S)
    with torch.no_grad():
        heat = model.kp_detector.heatmaps(images)
        kp = model.kp_detector(images)
        source = model.encode_source(images)
        synthesized, motion = model.synthesize(source, kp.flip(0))
    assert heat.shape == (3, k, S // 4, S // 4)
    torch.testing.assert_close(heat.sum(dim=(2, 3)), torch.ones(3, k))
    assert kp.shape == (3, k, 2) and kp.abs().max() <= 1
    assert source.motion.kp.shape == (3, k, 2) and source.motion.jacobian is None
    assert source.features[0].shape == (3, 3, h, h)  # the source at M's side
    assert [f.shape[1:] for f in source.features[1:]] == [(8, 32, 32), (16, 16, 16), (16, 8, 8)]
    assert motion.flow.shape == (3, h, h, 2) and motion.residual.shape == (3, h, h, 2)
    assert motion.mask.shape == (3, k + 1, h, h)
    torch.testing.assert_close(motion.mask.sum(1), torch.ones(3, h, h))
    assert synthesized.shape == (3, 3, S, S) and 0 <= synthesized.min() and synthesized.max() <= 1


def test_dense_motion_moves_the_source_onto_the_driving_keypoint(model):
    """All mask on keypoint 1 (background bias down, keypoint 1 up): the flow is p + x_s,1 - x_d,1, so
    the blob at x_s,1 lands at x_d,1. Equal keypoints give the identity flow at initialisation."""
    m = Model(PRESETS["monkeynet-tiny"]()).eval()
    with torch.no_grad():
        m.dense_motion.out.bias.copy_(torch.tensor([-50.0, 0.0, 50.0, 0.0, 0.0, 0.0, 0.0, 0.0]))
    source = blobs([(-0.4, -0.2)])
    kp_s = torch.zeros(1, 5, 2)
    kp_s[0, 1] = torch.tensor([-0.4, -0.2])
    kp_d = kp_s.clone()
    kp_d[0, 1] = torch.tensor([0.3, 0.4])
    h = m.motion_side
    small = torch.nn.functional.interpolate(source, size=(h, h), mode="bilinear", antialias=True)
    with torch.no_grad():
        flow = m.dense_motion(small, torch.zeros(1, 5, h, h), kp_d, kp_s).flow
        identity = model.dense_motion(small, torch.zeros(1, 5, h, h), kp_s, kp_s).flow
    torch.testing.assert_close(identity[0], coordinate_grid(h, h, identity))
    moved = warp(source, torch.nn.functional.interpolate(flow.permute(0, 3, 1, 2), size=(S, S), mode="bilinear",
                                                         align_corners=True).permute(0, 2, 3, 1))
    peak = moved[0, 0].flatten().argmax()
    y, x = divmod(int(peak), S)
    assert abs(2 * x / (S - 1) - 1 - 0.3) < 0.07 and abs(2 * y / (S - 1) - 1 - 0.4) < 0.07


def test_render_own_motion_and_broadcast(model):
    frames = blobs([(0.0, 0.0), (0.3, -0.2), (-0.2, 0.3)])
    with torch.no_grad():
        one = model.encode_source(frames[:1])
        three = model.encode_source(frames)
        motion = model.estimate_motion(frames)
        own = model.render(three, three.motion)
        from_one = model.render(one, motion)  # batch-1 source, 3 motions
        to_one = model.render(three, motion.index(slice(0, 1)))  # 3 sources, batch-1 motion
        each = torch.cat([model.render(one, motion.index(slice(i, i + 1))) for i in range(3)])
    assert own.shape == from_one.shape == to_one.shape == (3, 3, S, S) and own.dtype == torch.float32
    assert 0 <= own.min() and own.max() <= 1
    torch.testing.assert_close(from_one, each, atol=1e-5, rtol=0)
    torch.testing.assert_close(to_one[0], own[0], atol=1e-5, rtol=0)
    assert ImageSource.cat([one, one]).features[1].shape[0] == 2


def test_free_view_and_bad_inputs_are_refused(model):
    frames = torch.rand(2, 3, S, S)
    with torch.no_grad():
        source = model.encode_source(frames)
        model.render(source, source.motion, View())  # the default view is fine
        with pytest.raises(InputError, match="free view needs face-vid2vid's 3D keypoints; Monkey-Net has none"):
            model.render(source, source.motion, View(yaw=10.0))
        with pytest.raises(InputError, match=r"\(B, 3, 64, 64\)"):
            model.encode_source(torch.rand(1, 3, 32, 32))
        with pytest.raises(InputError, match=r"\(B, 3, 64, 64\)"):
            model.estimate_motion(torch.rand(3, 64, 64))
        with pytest.raises(InputError, match="batch"):
            model.render(source, KeypointMotion(torch.zeros(3, 5, 2)))


def test_relative_motion(model):
    torch.manual_seed(1)
    source = KeypointMotion(0.3 * torch.randn(1, 5, 2))
    reference = KeypointMotion(0.5 * torch.randn(1, 5, 2))
    motion = KeypointMotion(reference.kp + 0.1 * torch.randn(4, 5, 2))
    out = model.relative_motion(motion, reference, source)
    torch.testing.assert_close(out.kp, source.kp + motion.kp - reference.kp)
    assert out.jacobian is None
    torch.testing.assert_close(model.relative_motion(reference, reference, source).kp, source.kp)
    scaled = Model(Config.from_dict({**PRESETS["monkeynet-tiny"]().to_dict(), "relative_scale": True}))
    big = KeypointMotion(2.0 * source.kp)  # 4 times the hull area: displacements halved
    moved = KeypointMotion(big.kp + 0.2)
    torch.testing.assert_close(scaled.relative_motion(moved, big, source).kp, source.kp + 0.1)


def test_objective_terms_are_finite_and_reach_every_network(one_thread):
    torch.manual_seed(0)
    cfg = Config.from_dict({**PRESETS["monkeynet-tiny"]().to_dict(), "loss_equivariance": 10.0})
    model = Model(cfg)
    objective = Objective(model, TrainConfig())
    batch = pair_batch(blobs([(-0.3, 0.0), (0.2, 0.2)]), blobs([(0.1, 0.1), (-0.2, -0.1)]))
    result = objective(batch, RandomWarp.sample(2, generator=torch.Generator().manual_seed(0)), False)
    assert set(result.losses) == {"l1_pyramid", "equivariance"}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in result.losses.values())
    assert result.prediction.shape == (2, 3, S, S) and result.prediction.dtype == torch.float32
    assert result.kp_source.shape == result.kp_driving.shape == (2, 5, 2)
    sum(result.losses.values()).backward()
    for prefix, attr in Model.NETWORKS.items():
        grads = [p.grad for p in getattr(model, attr).parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), f"no gradient reaches {prefix} ({attr})"
    # no equivariance term by default (the paper has none), nor without a warp
    plain = Objective(Model(PRESETS["monkeynet-tiny"]()), TrainConfig())
    assert set(plain(batch, RandomWarp.sample(2), False).losses) == {"l1_pyramid"}


def test_perceptual_and_identity_terms_are_used(one_thread):
    calls = []

    class Distance(torch.nn.Module):
        def forward(self, prediction, target):
            calls.append(prediction.shape)
            return (prediction - target).pow(2).mean()

    model = Model(PRESETS["monkeynet-tiny"]())
    batch = pair_batch(torch.rand(2, 3, S, S), torch.rand(2, 3, S, S))
    result = Objective(model, TrainConfig(), perceptual=Distance(), identity=Distance())(batch, None, False)
    assert set(result.losses) == {"perceptual", "l1_pyramid", "identity"} and len(calls) == 2
    vgg_like = Distance()
    vgg_like.replaces_pixel_terms = True
    assert set(Objective(model, TrainConfig(), perceptual=vgg_like)(batch, None, False).losses) == {"perceptual"}


def test_one_batch_is_overfit(one_thread):
    """30 Adam steps on two pairs: the pyramid L1 falls to well under half of where it starts."""
    torch.manual_seed(0)
    model = Model(PRESETS["monkeynet-tiny"]())
    objective = Objective(model, TrainConfig())
    batch = pair_batch(blobs([(-0.3, 0.0), (0.2, 0.2)]), blobs([(0.1, 0.1), (-0.2, -0.1)]))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.5, 0.999))
    losses = []
    for _ in range(30):
        loss = sum(objective(batch, None, False).losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-3:]) / 3 < 0.4 * losses[0], losses
