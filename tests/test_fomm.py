"""FOMM as a model family: networks, synthesis interface, relative motion, objective (tiny preset, CPU)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from facevid2vid.config import TrainConfig
from facevid2vid.data.batch import PairBatch
from facevid2vid.errors import InputError
from facevid2vid.families.fomm import FOMM, PRESETS, Config, FOMMObjective, Model, Objective, fomm_tiny
from facevid2vid.families.fomm.motion import hull_area, movement_scale
from facevid2vid.structures import ImageSource, KeypointMotion, View
from facevid2vid.training.transforms import RandomWarp


def _model(**overrides) -> FOMM:
    torch.manual_seed(0)
    return FOMM(dataclasses.replace(fomm_tiny(), **overrides)).eval()


def _faces(n: int, size: int = 64, shift: float = 0.0) -> torch.Tensor:
    """Smooth synthetic 'faces': a bright ellipse with two dark eyes, moved right by ``shift`` (normalised)."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    out = []
    for i in range(n):
        dx = shift + 0.1 * i
        face = torch.exp(-(((xs - dx) / 0.5) ** 2 + (ys / 0.65) ** 2) ** 2)
        eyes = sum(torch.exp(-(((xs - dx - ex) ** 2 + (ys + 0.2) ** 2) / 0.005)) for ex in (-0.2, 0.2))
        out.append(torch.stack([0.2 + 0.7 * face - 0.5 * eyes, 0.3 + 0.4 * face - 0.4 * eyes, 0.6 - 0.3 * face]))
    return torch.stack(out).clamp(0, 1)


def _batch(source: torch.Tensor, driving: torch.Tensor) -> PairBatch:
    b = source.shape[0]
    no = torch.zeros(b, dtype=torch.bool)
    return PairBatch(source=source, driving=driving, source_pose=torch.zeros(b, 3), driving_pose=torch.zeros(b, 3),
                     source_pose_valid=no, driving_pose_valid=no, is_still=no, clip=torch.zeros(b, dtype=torch.long),
                     frames=torch.zeros(b, 2, dtype=torch.long))


def test_the_package_exports_the_family_interface():
    assert Config is type(fomm_tiny()) and Model is FOMM and Objective is FOMMObjective
    assert FOMM.family == "fomm" and FOMM.NETWORKS == {"K": "kp_detector", "M": "dense_motion", "G": "generator"}
    assert not FOMM.free_view
    for name, factory in PRESETS.items():
        cfg = factory()
        assert cfg.name == name and Config.from_dict(cfg.to_dict()) == cfg
    vox = PRESETS["fomm-256"]()
    assert (vox.num_keypoints, vox.kp_block_expansion, vox.kp_max_features, vox.dense_motion_max_features,
            vox.max_features, vox.num_bottleneck_blocks, vox.heatmap_side) == (10, 32, 1024, 1024, 512, 6, 58)


def test_config_checks_name_the_field():
    for bad, words in ((dict(kp_scale_factor=0.3), "kp_scale_factor must be 1/n"),
                       (dict(kp_num_blocks=5), r"divisible by 2\*\*kp_num_blocks"),
                       (dict(temperature=0.0), "temperature must be positive"),
                       (dict(max_features=4), "at least block_expansion"),
                       (dict(num_keypoints=0), "num_keypoints must be an integer"),
                       (dict(estimate_jacobian=1), "estimate_jacobian must be true or false")):
        with pytest.raises(ValueError, match=words):
            dataclasses.replace(fomm_tiny(), **bad).validate()


def test_every_network_has_the_documented_shapes():
    model, cfg = _model(), fomm_tiny()
    x = _faces(2)
    motion = model.kp_detector(x)
    assert motion.kp.shape == (2, 5, 2) and motion.jacobian.shape == (2, 5, 2, 2)
    assert motion.kp.abs().max() <= 1
    heat, features = model.kp_detector.heatmaps(x)
    assert heat.shape == (2, 5, cfg.heatmap_side, cfg.heatmap_side)
    assert torch.allclose(heat.sum((2, 3)), torch.ones(2, 5))
    # a fresh Jacobian head is the identity everywhere
    assert torch.allclose(motion.jacobian, torch.eye(2).expand(2, 5, 2, 2), atol=1e-6)
    small = model.dense_motion.down(x)
    assert small.shape == (2, 3, 16, 16)
    dense = model.dense_motion(small, motion.index([1, 0]), motion)
    assert dense.mask.shape == (2, 6, 16, 16) and torch.allclose(dense.mask.sum(1), torch.ones(2, 16, 16), atol=1e-5)
    assert dense.deformation.shape == (2, 16, 16, 2) and dense.occlusion.shape == (2, 1, 16, 16)
    encoded = model.generator.encode(x)
    assert encoded.shape == (2, 16, 16, 16)
    image = model.generator(encoded, dense)
    assert image.shape == (2, 3, 64, 64) and 0 <= image.min() and image.max() <= 1


def test_the_identity_motion_is_the_identity_flow():
    """Source keypoints as the driving ones: every candidate flow, hence the mixed one, is the identity."""
    from facevid2vid.families.fomm.blocks import coordinate_grid
    from facevid2vid.families.fomm.dense_motion import sparse_motions

    motion = KeypointMotion(torch.rand(2, 5, 2) * 2 - 1, torch.eye(2) + 0.3 * torch.randn(2, 5, 2, 2))
    flows = sparse_motions(motion, motion, 8, 8)
    assert flows.shape == (2, 6, 8, 8, 2)
    assert torch.allclose(flows, coordinate_grid(8, 8, flows).expand_as(flows), atol=1e-5)
    moved = KeypointMotion(motion.kp + 0.1, motion.jacobian)  # the driving keypoints moved by +0.1
    assert torch.allclose(sparse_motions(motion, moved, 8, 8)[:, 1:], flows[:, 1:] - 0.1, atol=1e-5)


def test_render_with_the_source_own_motion_and_broadcasts():
    model = _model()
    x = _faces(3)
    with torch.no_grad():
        source = model.encode_source(x[:1])
        assert isinstance(source, ImageSource) and source.motion.kp.shape == (1, 5, 2)
        own = model.render(source, source.motion)
        assert own.shape == (1, 3, 64, 64) and own.dtype == torch.float32
        motion = model.estimate_motion(x)
        many = model.render(source, motion)  # source batch 1, motion batch 3
        assert many.shape == (3, 3, 64, 64)
        sources = model.encode_source(x)
        assert torch.allclose(model.render(sources, source.motion), model.render(sources, motion.index([0, 0, 0])),
                              atol=1e-6)  # motion batch 1 broadcasts
        pairs = model.render(sources, motion)  # one source per frame
        assert torch.allclose(pairs[1:2], model.render(sources.index(slice(1, 2)), motion.index(slice(1, 2))),
                              atol=1e-5)
        assert torch.allclose(many[2:], model.render(source, motion.index(slice(2, 3))), atol=1e-5)
        with pytest.raises(ValueError, match="source batch 3 and motion batch 2 do not match"):
            model.render(sources, motion.index(slice(0, 2)))


def test_free_view_and_wrong_inputs_are_refused():
    model = _model()
    with torch.no_grad():
        source = model.encode_source(_faces(1))
        model.render(source, source.motion, View())  # the default view is fine
        with pytest.raises(InputError, match="free view needs face-vid2vid's 3D keypoints; FOMM has none"):
            model.render(source, source.motion, View(yaw=10.0))
        with pytest.raises(InputError, match=r"\(B, 3, 64, 64\)"):
            model.encode_source(torch.rand(1, 3, 32, 32))
        with pytest.raises(InputError, match="driving image"):
            model.estimate_motion(torch.rand(3, 64, 64))


def test_hull_area_is_the_convex_hull_area():
    from scipy.spatial import ConvexHull

    square = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.5, 0.5], [0.2, 0.7]])
    assert hull_area(square) == pytest.approx(1.0)
    assert hull_area(torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])) == 0.0  # collinear
    assert hull_area(torch.zeros(1, 2)) == 0.0
    rng = np.random.default_rng(0)
    for _ in range(20):
        points = rng.uniform(-1, 1, size=(10, 2))
        assert hull_area(torch.from_numpy(points)) == pytest.approx(ConvexHull(points).volume, rel=1e-12)
    assert movement_scale(square * 2, square) == pytest.approx(2.0)
    assert movement_scale(square, torch.zeros(10, 2)) == 1.0  # degenerate: no scaling


def test_relative_motion_is_the_demos_normalize_kp():
    model = _model()
    g = torch.Generator().manual_seed(3)
    kp = lambda n: torch.rand(n, 5, 2, generator=g) * 1.6 - 0.8  # noqa: E731
    jac = lambda n: torch.eye(2) + 0.2 * torch.randn(n, 5, 2, 2, generator=g)  # noqa: E731
    source, reference, motion = (KeypointMotion(kp(n), jac(n)) for n in (1, 1, 4))
    out = model.relative_motion(motion, reference, source)
    scale = math.sqrt(hull_area(source.kp[0])) / math.sqrt(hull_area(reference.kp[0]))
    assert torch.allclose(out.kp, (motion.kp - reference.kp) * scale + source.kp, atol=1e-6)
    expected = motion.jacobian @ torch.inverse(reference.jacobian) @ source.jacobian
    assert torch.allclose(out.jacobian, expected, atol=1e-5)
    same = model.relative_motion(reference, reference, source)  # the reference frame itself -> the source
    assert torch.allclose(same.kp, source.kp, atol=1e-6) and torch.allclose(same.jacobian, source.jacobian, atol=1e-5)
    unscaled = _model(adapt_movement_scale=False).relative_motion(motion, reference, source)
    assert torch.allclose(unscaled.kp, motion.kp - reference.kp + source.kp, atol=1e-6)


def test_the_animator_runs_both_modes():
    from facevid2vid.inference import Animator

    animator = Animator(_model(), device="cpu", batch_size=2)
    frames = _faces(3)
    source = animator.encode_source(frames[0])
    for mode in ("absolute", "relative"):
        assert animator.animate(source, frames, mode=mode).shape == (3, 3, 64, 64)
    with pytest.raises(InputError, match="FOMM has none"):
        animator.render(source, animator.estimate_motion(frames), View(pitch=5.0))


def test_the_warp_jacobian_is_the_derivative_of_the_warp():
    warp = RandomWarp.sample(2, affine_std=0.1, tps_std=0.05, generator=torch.Generator().manual_seed(0))
    points = (torch.rand(2, 7, 2, dtype=torch.float64) * 2 - 1)
    points[0, 0] = warp.control_points[3].double()  # exactly on a control point: still finite
    warp64 = RandomWarp(warp.theta.double(), warp.control_points.double(), warp.control_weights.double())
    ours = warp64.jacobian(points)
    auto = torch.autograd.functional.jacobian(lambda p: warp64.warp_points(p).sum(0), points)  # (7, 2, 2, 7, 2)
    expected = torch.stack([auto[:, :, b, :, :].diagonal(dim1=0, dim2=2).permute(2, 0, 1) for b in range(2)])
    assert ours.shape == (2, 7, 2, 2) and torch.isfinite(ours).all()
    assert torch.allclose(ours[:, 1:], expected[:, 1:], atol=1e-8)
    affine = RandomWarp(warp.theta, None, None)
    assert torch.equal(affine.jacobian(points.float()), warp.theta[:, :, :2].unsqueeze(1).expand(2, 7, 2, 2))


def test_the_objective_gives_finite_losses_and_gradients_to_every_network():
    model = _model().train()
    objective = FOMMObjective(model, TrainConfig(model=fomm_tiny()))
    batch = _batch(_faces(2), _faces(2, shift=0.15))
    warp = RandomWarp.sample(2, generator=torch.Generator().manual_seed(1))
    result = objective(batch, warp, use_gan=False)
    assert set(result.losses) == {"l1_pyramid", "equivariance", "equivariance_jacobian"}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in result.losses.values())
    assert result.prediction.shape == (2, 3, 64, 64) and result.kp_source.shape == result.kp_driving.shape == (2, 5, 2)
    sum(result.losses.values()).backward()
    for prefix, attr in FOMM.NETWORKS.items():
        grads = [p.grad for p in getattr(model, attr).parameters()]
        assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads), prefix
    # the Jacobian head gets gradients from the Jacobian equivariance term
    assert float(model.kp_detector.jacobian.weight.grad.abs().sum()) > 0
    zero_order = FOMMObjective(_model(estimate_jacobian=False).train(), TrainConfig(model=fomm_tiny()))
    assert set(zero_order(batch, warp, False).losses) == {"l1_pyramid", "equivariance"}
    assert set(objective(batch, None, False).losses) == {"l1_pyramid"}


def test_the_objective_uses_the_perceptual_and_identity_networks_when_given():
    calls = []

    class Distance(torch.nn.Module):
        def forward(self, a, b):
            calls.append(a.shape)
            return (a - b).abs().mean()

    objective = FOMMObjective(_model().train(), TrainConfig(model=fomm_tiny()), perceptual=Distance(),
                              identity=Distance())
    result = objective(_batch(_faces(2), _faces(2, shift=0.1)), None, False)
    assert set(result.losses) == {"perceptual", "identity"} and len(calls) == 2


def test_overfitting_one_batch_lowers_the_reconstruction_loss(one_thread):
    torch.manual_seed(0)
    model = FOMM(fomm_tiny()).train()
    objective = FOMMObjective(model, TrainConfig(model=fomm_tiny()))
    batch = _batch(_faces(2), _faces(2, shift=0.2))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    history = []
    for step in range(30):
        warp = RandomWarp.sample(2, generator=torch.Generator().manual_seed(step))
        result = objective(batch, warp, use_gan=False)
        optimizer.zero_grad()
        sum(result.losses.values()).backward()
        optimizer.step()
        history.append(float(result.losses["l1_pyramid"].detach()))
    first, last = np.mean(history[:3]), np.mean(history[-3:])
    print(f"l1_pyramid {first:.4f} -> {last:.4f}")
    assert last < 0.6 * first


def test_a_checkpoint_round_trip_rebuilds_the_model(tmp_path):
    from facevid2vid.checkpoint import load_checkpoint, model_fingerprint, read_checkpoint_config, save_checkpoint

    model = _model()
    path = save_checkpoint(tmp_path / "fomm-tiny.safetensors", model)
    assert read_checkpoint_config(path) == model.cfg
    loaded = load_checkpoint(path)
    assert isinstance(loaded, FOMM) and model_fingerprint(loaded) == model_fingerprint(model)
    x = _faces(2)
    with torch.no_grad():
        a = model.render(model.encode_source(x[:1]), model.estimate_motion(x))
        b = loaded.render(loaded.encode_source(x[:1]), loaded.estimate_motion(x))
    assert torch.equal(a, b)
