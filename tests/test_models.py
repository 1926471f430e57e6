"""Networks: shapes for every module, gradients, batch broadcasting, paper-size volumes."""
import math
import dataclasses

import pytest
import torch

from facevid2vid.config import model_preset
from facevid2vid.errors import InputError
from facevid2vid.geometry import make_coordinate_grid, rotation_from_angles, warp_volume
from facevid2vid.models import FaceVid2Vid, MultiScaleDiscriminator
from facevid2vid.models.appearance import AppearanceFeatureExtractor
from facevid2vid.structures import View


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return FaceVid2Vid(model_preset("tiny")).eval()


def _images(n, size, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_module_shapes(tiny):
    cfg = tiny.cfg
    k, s = cfg.num_keypoints, cfg.image_size
    x = _images(2, s)
    with torch.no_grad():
        vol = tiny.appearance_feature_extractor(x)
        assert vol.shape == (2, *cfg.volume_shape)
        kp = tiny.kp_detector(x)
        assert kp.shape == (2, k, 3) and kp.abs().max() <= 1.0
        hm = tiny.kp_detector.heatmaps(x)
        assert hm.shape == (2, k, cfg.kp_depth, int(s * cfg.kp_scale_factor), int(s * cfg.kp_scale_factor))
        motion = tiny.he_estimator(x)
        for angle in (motion.yaw, motion.pitch, motion.roll):
            assert angle.shape == (2,) and angle.min() >= -99 and angle.max() <= 96
        assert motion.translation.shape == (2, 3) and motion.delta.shape == (2, k, 3)
        assert motion.yaw_logits.shape == (2, cfg.he_num_bins)
        rot = rotation_from_angles(motion.yaw, motion.pitch, motion.roll)
        m = tiny.dense_motion(vol, kp, kp.flip(0), rot, rot.flip(0))
        d, h = cfg.feature_depth, cfg.volume_size
        assert m.flows.shape == (2, k + 1, d, h, h, 3)
        assert m.mask.shape == (2, k + 1, d, h, h)
        assert torch.allclose(m.mask.sum(1), torch.ones(2, d, h, h), atol=1e-5)
        assert m.occlusion.shape == (2, 1, h, h) and 0 <= m.occlusion.min() and m.occlusion.max() <= 1
        out = tiny.generator(vol, m.flows, m.mask, m.occlusion)
        assert out.image.shape == (2, 3, s, s) and 0 <= out.image.min() and out.image.max() <= 1
        assert out.flow.shape == (2, d, h, h, 3)


def test_discriminator_shapes():
    cfg = dataclasses.replace(model_preset("tiny"), disc_scales=(1.0, 0.5), disc_use_kp=True)
    disc = MultiScaleDiscriminator(cfg)
    x = _images(2, cfg.image_size)
    kp = torch.rand(2, cfg.num_keypoints, 3) * 2 - 1
    results = disc(x, kp)
    assert len(results) == 2
    for features, logits in results:
        assert len(features) == cfg.disc_num_blocks
        assert logits.shape[:2] == (2, 1) and logits.shape[-1] >= 1
    assert results[1][1].shape[-1] < results[0][1].shape[-1]
    with pytest.raises(ValueError):
        disc(x)
    plain = MultiScaleDiscriminator(model_preset("tiny"))
    assert plain.discs[0].blocks[0].conv.parametrizations.weight  # spectral norm present
    assert len(plain(x)) == 1


def test_forward_backward_tiny():
    torch.manual_seed(1)
    model = FaceVid2Vid(model_preset("tiny")).train()
    src, drv = _images(2, 64, 1), _images(2, 64, 2)
    f = model(src, drv)

    out, source, motion, kp_d = f.generated, f.source, f.driving, f.kp_driving
    assert out.image.shape == (2, 3, 64, 64) and kp_d.shape == (2, 5, 3)
    loss = (out.image - drv).abs().mean() + motion.delta.abs().mean() + source.kp.abs().mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    # G's convolutions are spectrally normalised
    assert hasattr(model.generator.final, "parametrizations")


def test_source_batch_broadcasts(tiny):
    src = _images(1, 64, 3)
    drivers = _images(3, 64, 4)
    with torch.no_grad():
        source = tiny.encode_source(src)
        motion = tiny.estimate_motion(drivers)
        kp_d, rot_d = tiny.driving_keypoints(source, motion)
        assert kp_d.shape == (3, 5, 3)
        batched = tiny.synthesize(source, kp_d, rot_d).image
        for i in range(3):
            single = tiny.synthesize(source, kp_d[i:i + 1], rot_d[i:i + 1]).image
            assert torch.allclose(batched[i:i + 1], single, atol=1e-5)


def test_identical_images_give_identical_keypoints_and_identity_flow(tiny):
    x = _images(2, 64, 5)
    with torch.no_grad():
        f = tiny(x, x.clone())

        out, source, motion, kp_d = f.generated, f.source, f.driving, f.kp_driving
    assert torch.allclose(kp_d, source.kp, atol=1e-5)
    grid = make_coordinate_grid(*tiny.cfg.volume_shape[1:]).expand_as(out.flow)
    assert torch.allclose(out.flow, grid, atol=1e-4)


def test_free_view_rotation_override(tiny):
    x = _images(1, 64, 6)
    with torch.no_grad():
        source = tiny.encode_source(x)
        motion = tiny.estimate_motion(x)
        eye = torch.eye(3).unsqueeze(0)
        kp, rot = tiny.driving_keypoints(source, motion, rotation=eye)
        assert torch.equal(rot, eye)
        expected = source.canonical_kp + motion.translation[:, None] + motion.delta
        assert torch.allclose(kp, expected, atol=1e-6)


def test_wrong_image_size_is_an_input_error(tiny):
    with pytest.raises(InputError, match="64"):
        tiny.encode_source(torch.rand(1, 3, 32, 32))


@pytest.mark.parametrize("name, size", [("paper-256", 64), ("paper-512", 128)])
def test_paper_shapes_on_meta_device(name, size):
    cfg = model_preset(name)
    with torch.device("meta"):
        feats = AppearanceFeatureExtractor(cfg)(torch.empty(1, 3, cfg.image_size, cfg.image_size))
    assert feats.shape == (1, 32, 16, size, size)
    if name == "paper-256":
        with torch.device("meta"):
            model = FaceVid2Vid(cfg).eval()
            x = torch.empty(1, 3, 256, 256)
            f = model(x, x)

            out, source, _, kp_d = f.generated, f.source, f.driving, f.kp_driving
        assert out.image.shape == (1, 3, 256, 256)
        assert out.mask.shape == (1, 21, 16, 64, 64) and out.occlusion.shape == (1, 1, 64, 64)
        assert kp_d.shape == (1, 20, 3)


def test_complexity_counts(tiny):
    from facevid2vid.complexity import _macs, count_parameters, macs_per_frame

    params = count_parameters(tiny)
    assert params["total"] == sum(p.numel() for p in tiny.parameters())
    assert params["F"] == sum(p.numel() for p in tiny.appearance_feature_extractor.parameters())
    macs = macs_per_frame(tiny)
    # F by hand: 7x7 conv 3->8 @64^2, 3x3 8->16 @64^2, 3x3 16->32 @32^2, 1x1 32->16 @16^2, 2 3x3x3 4->4 @4x16^2
    f = 64 * 64 * 3 * 8 * 49 + 64 * 64 * 8 * 16 * 9 + 32 * 32 * 16 * 32 * 9 + 16 * 16 * 32 * 16 + 2 * 4 * 256 * 16 * 27
    assert macs["source"]["F"] == f
    assert macs["frame"]["H"] == macs["source"]["H"] > 0
    frame = macs["frame"]
    assert frame["total"] == frame["H"] + frame["M"] + frame["G"] + frame.get("other", 0)
    # the meta-device counts equal those of a real forward (with autograd on: without it, Conv3d calls
    # oneDNN directly, which the counter does not see)
    x = _images(1, 64)
    src = tiny.encode_source(x)
    kp_d, rot_d = tiny.driving_keypoints(src, tiny.estimate_motion(x))
    real_m, m = _macs(tiny.dense_motion, src.features, src.kp, kp_d, src.rotation, rot_d, src.cache)
    real_g, _ = _macs(tiny.generator, src.features, m.flows, m.mask, m.occlusion)
    assert (real_m, real_g) == (macs["frame"]["M"], macs["frame"]["G"])
    # grid sampling is counted as 8 MACs per output value (trilinear)
    vol, flow = torch.zeros(1, 4, 4, 16, 16), make_coordinate_grid(4, 16, 16).unsqueeze(0)
    assert _macs(warp_volume, vol, flow)[0] == 8 * 4 * 4 * 16 * 16


def test_geometry_stays_float32_under_autocast(tiny):
    x = _images(1, 64, 9)
    with torch.no_grad():
        ref = tiny(x, x.flip(-1))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            f = tiny(x, x.flip(-1))

            out, source, motion, kp_d = f.generated, f.source, f.driving, f.kp_driving
    assert source.canonical_kp.dtype == torch.float32 and kp_d.dtype == torch.float32
    assert source.rotation.dtype == torch.float32 and out.flow.dtype == torch.float32
    assert torch.isfinite(out.image).all()
    # keypoints only differ by the bfloat16 convolutions upstream, not by bfloat16 geometry
    assert (kp_d - ref.kp_driving).abs().max() < 0.1
    assert motion.translation.dtype == torch.float32 and motion.yaw.dtype == torch.float32


def test_motion_downsample_runs_m_coarser_with_full_size_outputs(tiny):
    cfg = dataclasses.replace(tiny.cfg, motion_downsample=2)
    coarse = FaceVid2Vid(cfg).eval()
    coarse.load_state_dict(tiny.state_dict())  # same tensors: a full-size model warm-starts it
    seen = []
    coarse.dense_motion.hourglass.register_forward_hook(lambda mod, inp, out: seen.append(tuple(inp[0].shape[2:])))
    x = _images(2, cfg.image_size)
    with torch.no_grad():
        vol, kp = coarse.appearance_feature_extractor(x), coarse.kp_detector(x)
        rot = rotation_from_angles(*(torch.tensor([a, -a]) for a in (10.0, 5.0, 0.0)))
        m = coarse.dense_motion(vol, kp, kp.flip(0), rot, rot.flip(0))
        full = tiny.dense_motion(vol, kp, kp.flip(0), rot, rot.flip(0))
    d, h = cfg.feature_depth, cfg.volume_size
    assert seen == [(d, h // 2, h // 2)]
    assert m.mask.shape == full.mask.shape == (2, cfg.num_keypoints + 1, d, h, h)
    assert torch.allclose(m.mask.sum(1), torch.ones(2, d, h, h), atol=1e-5)
    assert m.occlusion.shape == (2, 1, h, h)
    assert torch.equal(m.flows, full.flows)  # the keypoint flows stay exact at full size
    assert not torch.allclose(m.mask, full.mask)  # but the masks come from the coarser grid
    out = coarse.render(coarse.encode_source(x[:1]), coarse.estimate_motion(x))
    assert out.shape == (2, 3, cfg.image_size, cfg.image_size)


def test_motion_downsample_must_divide_the_volume():
    cfg = dataclasses.replace(model_preset("tiny"), motion_downsample=4)  # 16 px volume, 3 blocks: 4 * 8 > 16
    with pytest.raises(ValueError, match=r"motion_downsample \* 2\*\*motion_num_blocks = 32"):
        cfg.validate()
    assert model_preset("realtime-128").motion_downsample == 2
    assert dataclasses.replace(model_preset("realtime-128"), name="x", motion_downsample=1) == \
        dataclasses.replace(model_preset("bundled-128"), name="x")


def test_the_thin_real_time_preset_differs_from_realtime_128_in_g_only():
    thin, base = model_preset("realtime-thin-128"), model_preset("realtime-128")
    assert thin.generator_channels == base.generator_channels // 2
    assert dataclasses.replace(thin, name="x", generator_channels=base.generator_channels) == \
        dataclasses.replace(base, name="x")
    # so realtime-128 weights fill every network but G (what configs/realtime-thin-128.yaml warm-starts)
    a, b = FaceVid2Vid(thin).state_dict(), FaceVid2Vid(base).state_dict()
    differ = {k.split(".")[0] for k in a if a[k].shape != b[k].shape}
    assert differ == {"generator"}


def _skip_model(bias: float | None = None) -> FaceVid2Vid:
    torch.manual_seed(0)
    cfg = dataclasses.replace(model_preset("tiny"), generator_image_skip=True)
    model = FaceVid2Vid(cfg).eval()
    if bias is not None:
        torch.nn.init.constant_(model.generator.blend.bias, bias)
    return model


def test_image_skip_with_identity_motion_returns_the_source_where_the_mask_picks_it():
    model = _skip_model(bias=-30.0)  # a = 0: the warped source only
    x = _images(2, model.cfg.image_size)
    with torch.no_grad():
        source = model.encode_source(x)
        assert source.image is not None and source.index(slice(0, 1)).image.shape == (1, 3, 64, 64)
        out = model.render(source, model.estimate_motion(x))
    # same image as source and driving: every keypoint flow is the identity, so is the warp
    torch.testing.assert_close(out, x, atol=1e-4, rtol=0)
    with torch.no_grad():
        plain = FaceVid2Vid(model_preset("tiny")).eval()
        assert plain.generator.blend is None and plain.encode_source(x).image is None
        assert not torch.allclose(plain.render(plain.encode_source(x), plain.estimate_motion(x)), x, atol=1e-2)


def test_image_skip_starts_near_the_decoder_and_trains_its_mask():
    model = _skip_model().train()
    x, y = _images(2, 64, seed=1), _images(2, 64, seed=2)
    out = model(x, y)
    alpha = torch.sigmoid(model.generator.blend.bias.detach())
    assert 0.85 < float(alpha) < 0.9  # zero weights, bias 2: mostly G's own decoder at the start
    (out.generated.image - y).abs().mean().backward()
    assert model.generator.blend.weight.grad.abs().sum() > 0


def test_the_pixel_path_price_pushes_the_mask_towards_g():
    """loss.pixel_path: the source copy's mean share of G's output; its gradient raises G's share."""
    from facevid2vid.config import TrainConfig
    from facevid2vid.data.batch import PairBatch
    from facevid2vid.training.objective import GeneratorObjective

    model = _skip_model(bias=-1.0).train()
    x, y = _images(2, 64, seed=1), _images(2, 64, seed=2)
    out = model(x, y)
    share = out.generated.image_share
    assert share is not None and share.shape == (2, 1, 64, 64)
    torch.testing.assert_close(share, torch.full_like(share, float(torch.sigmoid(torch.tensor(-1.0)))))
    assert FaceVid2Vid(model_preset("tiny"))(x, y).generated.image_share is None
    cfg = TrainConfig(model=model.cfg)
    for name in vars(cfg.loss):
        setattr(cfg.loss, name, 0.0)
    cfg.loss.pixel_path = 2.0
    no = torch.zeros(2, dtype=torch.bool)
    batch = PairBatch(source=x, driving=y, source_pose=torch.zeros(2, 3), driving_pose=torch.zeros(2, 3),
                      source_pose_valid=no, driving_pose_valid=no, is_still=no, clip=torch.zeros(2, dtype=torch.long),
                      frames=torch.zeros(2, 2, dtype=torch.long))
    terms = GeneratorObjective(model, None, cfg)(batch, None, use_gan=False).losses
    assert set(terms) == {"pixel_path"}
    assert abs(float(terms["pixel_path"].detach()) - 2.0 * float(torch.sigmoid(torch.tensor(1.0)))) < 1e-5
    terms["pixel_path"].backward()
    assert float(model.generator.blend.bias.grad) < 0  # raising the bias (G's share) lowers the price


def test_free_view_term_reads_the_turned_render_with_the_pose_network():
    """loss.free_view: the source rendered with the driving pose turned by view_yaw, read by WHENet with
    gradients, as the public free-view path renders it; the request moves the target by view_yaw; the
    gradient reaches M and G."""
    from facevid2vid.config import TrainConfig
    from facevid2vid.data.batch import PairBatch
    from facevid2vid.perception import load_network
    from facevid2vid.perception.fetch import fetch_weights
    from facevid2vid.training.build import build_objective
    from facevid2vid.training.perception_terms import NetworkPoseTeacher

    fetch_weights(names=["whenet"], quiet=True)
    pose_net = NetworkPoseTeacher(load_network("whenet"))
    model = _skip_model().train()
    cfg = TrainConfig(model=model.cfg)
    for name in vars(cfg.loss):
        setattr(cfg.loss, name, 0.0)
    cfg.loss.free_view = 2.0
    with pytest.raises(InputError, match="free_view needs a ported pose network"):
        build_objective(cfg, model, None, None, None, None)
    objective = build_objective(cfg, model, None, None, None, pose_net)
    x, y = _images(2, 64, seed=1), _images(2, 64, seed=2)
    yes = torch.ones(2, dtype=torch.bool)
    poses = torch.tensor([[5.0, 0.0, 0.0], [-10.0, 3.0, 0.0]])
    batch = PairBatch(source=x, driving=y, source_pose=poses, driving_pose=poses, source_pose_valid=yes,
                      driving_pose_valid=yes, is_still=~yes, clip=torch.zeros(2, dtype=torch.long),
                      frames=torch.zeros(2, 2, dtype=torch.long))
    assert set(objective(batch, None, use_gan=False).losses) == set()  # no view_yaw: no term
    view_yaw = torch.tensor([20.0, -30.0])
    terms = objective(batch, None, False, view_yaw).losses
    assert set(terms) == {"free_view"}
    with torch.no_grad():  # the same render through the public free-view path, read by the same network
        source = model.encode_source(x)
        turned = model.render(source, model.estimate_motion(y), View(yaw=view_yaw))
        target = poses.clone()
        target[:, 0] += view_yaw  # no roll: the extra yaw adds to the teacher's
        expect = 2.0 * (pose_net(turned) - target).abs().mean()
    assert abs(float(terms["free_view"].detach()) - float(expect)) < 1e-3 * max(1.0, float(expect))
    other = objective(batch, None, False, torch.tensor([-20.0, 30.0])).losses["free_view"]
    assert abs(float(other.detach()) - float(expect)) > 1e-3  # the request moves the target
    terms["free_view"].backward()
    assert next(model.dense_motion.parameters()).grad is not None
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.generator.parameters())
