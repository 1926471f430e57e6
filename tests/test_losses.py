"""Losses and warps on constructed cases where the right answer is known."""

import re

import pytest
import torch

from facevid2vid.errors import CheckpointError
from facevid2vid.structures import HeadMotion
from facevid2vid.training import losses
from facevid2vid.training.perceptual import PerceptualLoss, VGGFeatures
from facevid2vid.training.transforms import RandomWarp


pytestmark = pytest.mark.usefixtures("one_thread")


def _grid_keypoints(n_side: int, spacing: float, depth: float) -> torch.Tensor:
    xs = (torch.arange(n_side) - (n_side - 1) / 2) * spacing
    gy, gx = torch.meshgrid(xs, xs, indexing="ij")
    kp = torch.stack([gx.flatten(), gy.flatten(), torch.full((n_side * n_side,), depth)], dim=-1)
    return kp.unsqueeze(0)  # (1, K, 3)


# ---------------------------------------------------------------------------
# keypoint prior


def test_keypoint_prior_zero_when_spread_and_at_target_depth():
    # squared distance between neighbours 0.35^2 = 0.1225 > D_t = 0.1
    kp = _grid_keypoints(3, 0.35, 0.33)
    assert losses.keypoint_prior_loss(kp, 0.1, 0.33).item() == pytest.approx(0.0, abs=1e-6)


def test_keypoint_prior_positive_when_close_or_off_depth():
    close = _grid_keypoints(3, 0.2, 0.33)  # 0.04 < 0.1
    # each close pair (i != j counted both ways) contributes D_t - d^2
    kp = close[0]
    d2 = (kp[:, None] - kp[None]).pow(2).sum(-1)
    expected = torch.clamp(0.1 - d2, min=0).sum() - 9 * 0.1  # diagonal excluded
    assert losses.keypoint_prior_loss(close).item() == pytest.approx(expected.item(), rel=1e-5)
    assert expected > 0
    deep = _grid_keypoints(3, 0.35, 0.5)
    assert losses.keypoint_prior_loss(deep).item() == pytest.approx(0.17, abs=1e-5)


# ---------------------------------------------------------------------------
# warps and equivariance


def test_equivariance_zero_for_keypoints_moving_with_the_warp():
    g = torch.Generator().manual_seed(0)
    warp = RandomWarp.sample(4, affine_std=0.1, tps_std=0.01, generator=g)
    kp_warped = torch.rand(4, 10, 3, generator=g) * 1.6 - 0.8
    kp = kp_warped.clone()
    kp[..., :2] = warp.warp_points(kp_warped[..., :2])
    kp[..., 2] = torch.rand(4, 10, generator=g)  # depth plays no part
    assert losses.equivariance_loss(kp, kp_warped, warp).item() == pytest.approx(0.0, abs=1e-6)
    moved = kp.clone()
    moved[..., 0] += 0.1
    assert losses.equivariance_loss(moved, kp_warped, warp).item() == pytest.approx(0.05, abs=1e-5)


def test_identity_warp_leaves_image_and_points():
    warp = RandomWarp.sample(2, affine_std=0.0, tps_std=0.0)
    img = torch.rand(2, 3, 16, 20)
    assert torch.allclose(warp.warp_image(img), img, atol=1e-5)
    pts = torch.rand(2, 7, 2) * 2 - 1
    assert torch.allclose(warp.warp_points(pts), pts)


def _blob(h, w, cx, cy, sigma=0.06):
    ys = torch.linspace(-1, 1, h)
    xs = torch.linspace(-1, 1, w)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.exp(-((gx - cx) ** 2 + (gy - cy) ** 2) / (2 * sigma**2))


def test_warped_image_and_warped_points_agree():
    """A blob at q in d lands at p in T(d) with T(p) = q: the convention the loss relies on."""
    g = torch.Generator().manual_seed(3)
    h = w = 96
    q = torch.tensor([0.2, -0.3])
    img = _blob(h, w, *q.tolist()).expand(1, 3, h, w).contiguous()
    for _ in range(3):
        warp = RandomWarp.sample(1, affine_std=0.08, tps_std=0.01, generator=g)
        warped = warp.warp_image(img)[0, 0]
        # soft-argmax of the warped blob
        ys = torch.linspace(-1, 1, h)
        xs = torch.linspace(-1, 1, w)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        wts = warped.clamp(min=0) ** 4
        p = torch.stack([(wts * gx).sum() / wts.sum(), (wts * gy).sum() / wts.sum()])
        back = warp.warp_points(p.view(1, 1, 2))[0, 0]
        assert torch.allclose(back, q, atol=0.02), (back, q)


# ---------------------------------------------------------------------------
# pose, deformation, reconstruction, GAN


def _motion(yaw, pitch, roll, k=3):
    b = len(yaw)
    return HeadMotion(torch.tensor(yaw), torch.tensor(pitch), torch.tensor(roll), torch.zeros(b, 3), torch.zeros(b, k, 3))


def test_head_pose_loss_is_masked_l1_in_degrees():
    m = _motion([10.0, 0.0], [0.0, 5.0], [0.0, 0.0])
    teacher = torch.tensor([[4.0, 0.0, 0.0], [100.0, 100.0, 100.0]])
    # only the first frame has a teacher pose: |10 - 4| / 3 angles
    loss = losses.head_pose_loss(m, teacher, torch.tensor([True, False]))
    assert loss.item() == pytest.approx(2.0)
    assert losses.head_pose_loss(m, teacher, torch.tensor([False, False])).item() == 0.0
    assert losses.head_pose_loss(m, teacher).item() > 50


def test_deformation_prior():
    delta = torch.zeros(2, 4, 3)
    assert losses.deformation_prior_loss(delta).item() == 0.0
    delta[0, 0] = torch.tensor([0.1, -0.2, 0.3])
    assert losses.deformation_prior_loss(delta).item() == pytest.approx(0.6 / 8)


def test_reconstruction_terms_zero_on_equal_images_and_grow_with_error():
    a = torch.rand(2, 3, 64, 64)
    assert losses.pyramid_l1_loss(a, a).item() == 0.0
    assert losses.ssim_loss(a, a).item() == pytest.approx(0.0, abs=1e-5)
    b_small = (a + 0.05 * torch.randn_like(a)).clamp(0, 1)
    b_large = (a + 0.3 * torch.randn_like(a)).clamp(0, 1)
    assert 0 < losses.pyramid_l1_loss(b_small, a) < losses.pyramid_l1_loss(b_large, a)
    assert 0 < losses.ssim_loss(b_small, a) < losses.ssim_loss(b_large, a)
    big = torch.rand(1, 3, 192, 192)
    assert losses.ssim_loss(big, big).item() == pytest.approx(0.0, abs=1e-5)  # MS-SSIM path


def test_hinge_and_feature_matching():
    feats = [torch.ones(1, 2, 4, 4)]
    real = [(feats, torch.full((1, 1, 4, 4), 2.0))]
    fake = [([torch.zeros(1, 2, 4, 4)], torch.full((1, 1, 4, 4), -2.0))]
    assert losses.discriminator_hinge_loss(real, fake).item() == 0.0  # both beyond the margin
    fake_wrong = [([torch.zeros(1, 2, 4, 4)], torch.full((1, 1, 4, 4), 0.5))]
    assert losses.discriminator_hinge_loss(real, fake_wrong).item() == pytest.approx(1.5)
    assert losses.generator_hinge_loss(fake_wrong).item() == pytest.approx(-0.5)
    assert losses.feature_matching_loss(real, real).item() == 0.0
    assert losses.feature_matching_loss(real, fake).item() == pytest.approx(1.0)


# ---------------------------------------------------------------------------
# perceptual loss from a torchvision-format state dict


def test_vgg19_loads_torchvision_layout_and_measures_differences(tmp_path):
    torch.manual_seed(0)
    ref = VGGFeatures("vgg19")
    state = {f"features.{k}": v for k, v in ref.features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # ignored, as in a full torchvision checkpoint
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    vgg = VGGFeatures.from_file(path)
    assert len(vgg.taps) == 5 and vgg.taps == [1, 6, 11, 20, 29]  # relu1_1 .. relu5_1 in torchvision indices
    for a, b in zip(vgg.features.state_dict().values(), ref.features.state_dict().values()):
        assert torch.equal(a, b)
    loss = PerceptualLoss(vgg, scales=(1.0, 0.5))
    x = torch.rand(1, 3, 64, 64)
    y = torch.rand(1, 3, 64, 64)
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(x, y).item() > 0
    x.requires_grad_(True)
    loss(x, y).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in vgg.parameters())


def test_vgg_rejects_wrong_files(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(CheckpointError, match="features"):
        VGGFeatures.from_file(bad)
    with pytest.raises(CheckpointError, match="not found"):
        VGGFeatures.from_file(tmp_path / "missing.pth")
    wrong = {f"features.{k}": v[..., :1] if v.dim() == 4 else v
             for k, v in VGGFeatures("vgg19").features.state_dict().items()}
    torch.save(wrong, bad)
    with pytest.raises(CheckpointError, match="does not match"):
        VGGFeatures.from_file(bad)


# ---------------------------------------------------------------------------
# pluggable Hopenet-style pose teacher


def test_hopenet_teacher_loads_its_layout_and_gives_degrees(tmp_path):
    from facevid2vid.training.pose_teacher import HopenetTeacher

    torch.manual_seed(0)
    ref = HopenetTeacher(layers=(1, 1, 1, 1), input_size=64)
    # save in the torchvision / Hopenet key layout (bn1, downsample), as a real Hopenet file has it
    def torchvision_key(k):
        return re.sub(r"\.norm(\d)\.", r".bn\1.", k).replace(".shortcut.", ".downsample.") if k.startswith("layer") else k

    state = {f"module.{torchvision_key(k)}": v for k, v in ref.state_dict().items()}
    assert any(".downsample." in k for k in state) and any(".bn2." in k for k in state)
    state["fc_finetune.weight"] = torch.zeros(3, 2048)  # present in Hopenet files, unused
    torch.save(state, tmp_path / "hopenet.pkl")
    teacher = HopenetTeacher.from_file(tmp_path / "hopenet.pkl", signs=(-1.0, 1.0, -1.0))
    teacher.input_size = 64
    img = torch.rand(2, 3, 80, 80)
    out = teacher(img)
    assert out.shape == (2, 3) and (out.abs() <= 99).all()
    assert torch.allclose(out, ref(img) * torch.tensor([-1.0, 1.0, -1.0]), atol=1e-5)
    # expected value of a one-hot bin distribution: bin 40 -> 3 * 40 - 99 = 21 degrees
    with torch.no_grad():
        for fc in (ref.fc_yaw, ref.fc_pitch, ref.fc_roll):
            fc.weight.zero_()
            fc.bias.fill_(-1e4)
            fc.bias[40] = 1e4
    assert torch.allclose(ref(img), torch.full((2, 3), 21.0))
    with pytest.raises(CheckpointError, match="Hopenet"):
        torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pkl")
        HopenetTeacher.from_file(tmp_path / "bad.pkl")
