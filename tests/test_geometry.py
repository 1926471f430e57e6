"""Geometry: rotation convention, keypoint transform, flows and warping."""

import pytest
import torch

from facevid2vid import geometry as g


def _random_angles(n, gen):
    yaw = (torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1) * 89
    pitch = (torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1) * 170
    roll = (torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1) * 170
    return yaw, pitch, roll


def test_rotation_round_trip_and_orthonormal():
    gen = torch.Generator().manual_seed(0)
    yaw, pitch, roll = _random_angles(256, gen)
    rot = g.rotation_from_angles(yaw, pitch, roll)
    eye = torch.eye(3, dtype=torch.float64).expand(256, 3, 3)
    assert torch.allclose(rot @ rot.transpose(1, 2), eye, atol=1e-10)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(256, dtype=torch.float64), atol=1e-10)
    y2, p2, r2 = g.angles_from_rotation(rot)
    assert torch.allclose(y2, yaw, atol=1e-6)
    assert torch.allclose(p2, pitch, atol=1e-6)
    assert torch.allclose(r2, roll, atol=1e-6)


def test_sign_convention():
    nose = torch.tensor([0.0, 0.0, -1.0])  # toward the camera
    zero = torch.zeros(1)
    ten = torch.full((1,), 10.0)
    moved = g.rotation_from_angles(ten, zero, zero)[0] @ nose
    assert moved[0] < -0.1 and abs(moved[1]) < 1e-6  # positive yaw: toward image-left
    moved = g.rotation_from_angles(zero, ten, zero)[0] @ nose
    assert moved[1] > 0.1 and abs(moved[0]) < 1e-6  # positive pitch: down
    right = torch.tensor([1.0, 0.0, 0.0])
    moved = g.rotation_from_angles(zero, zero, ten)[0] @ right
    assert moved[1] > 0.1  # positive roll: clockwise in the image (x right, y down)


def test_angles_from_bins():
    logits = torch.full((2, 66), -1e4)
    logits[0, 33] = 0.0  # one-hot bin 33 -> 3 * 33 - 99 = 0 degrees
    logits[1, 40] = 0.0
    logits[1, 41] = 0.0  # even mix of 40 and 41 -> 3 * 40.5 - 99 = 22.5
    assert torch.allclose(g.angles_from_bins(logits), torch.tensor([0.0, 22.5]))
    assert torch.allclose(g.angles_from_bins(torch.zeros(1, 66)), torch.tensor([3 * 32.5 - 99]))


def test_transform_keypoints_matches_manual():
    gen = torch.Generator().manual_seed(1)
    b, k = 3, 4
    canon = torch.randn(b, k, 3, generator=gen)
    yaw, pitch, roll = (x.float() for x in _random_angles(b, gen))
    rot = g.rotation_from_angles(yaw, pitch, roll)
    t = torch.randn(b, 3, generator=gen)
    delta = torch.randn(b, k, 3, generator=gen)
    out = g.transform_keypoints(canon, rot, t, delta)
    for i in range(b):
        for j in range(k):
            manual = rot[i] @ canon[i, j] + t[i] + delta[i, j]
            assert torch.allclose(out[i, j], manual, atol=1e-5)
    # a batch-1 canonical set broadcasts to the batch of poses
    out1 = g.transform_keypoints(canon[:1], rot, t, delta)
    assert torch.allclose(out1[2], (rot[2] @ canon[0].T).T + t[2] + delta[2], atol=1e-5)


def test_coordinate_grid_order():
    grid = g.make_coordinate_grid(2, 3, 5)
    assert grid.shape == (2, 3, 5, 3)
    assert torch.allclose(grid[0, 0, :, 0], torch.linspace(-1, 1, 5))  # x varies along W
    assert torch.allclose(grid[0, :, 0, 1], torch.linspace(-1, 1, 3))  # y along H
    assert torch.allclose(grid[:, 0, 0, 2], torch.linspace(-1, 1, 2))  # z along D


@pytest.mark.parametrize("mode", ["rotation", "identity"])
def test_same_pose_gives_identity_flow_and_warp(mode):
    gen = torch.Generator().manual_seed(2)
    b, k, spatial = 2, 6, (4, 8, 8)
    canon = torch.rand(b, k, 3, generator=gen) * 2 - 1
    yaw, pitch, roll = (x.float() for x in _random_angles(b, gen))
    rot = g.rotation_from_angles(yaw, pitch, roll)
    t = torch.randn(b, 3, generator=gen) * 0.1
    kp = g.transform_keypoints(canon, rot, t, torch.zeros(b, k, 3))
    flows = g.keypoint_flows(kp, kp.clone(), rot, rot.clone(), spatial, mode=mode)
    assert flows.shape == (b, k + 1, *spatial, 3)
    masks = torch.softmax(torch.randn(b, k + 1, *spatial, generator=gen) * 3, dim=1)
    flow = g.compose_flow(flows, masks)
    grid = g.make_coordinate_grid(*spatial).expand(b, *spatial, 3)
    assert torch.allclose(flow, grid, atol=1e-5)
    volume = torch.randn(b, 3, *spatial, generator=gen)
    assert torch.allclose(g.warp_volume(volume, flow), volume, atol=1e-5)


def test_flow_maps_driving_keypoint_to_source_keypoint():
    gen = torch.Generator().manual_seed(3)
    k = 3
    canon = torch.rand(1, k, 3, generator=gen) - 0.5
    rs = g.rotation_from_angles(torch.tensor([20.0]), torch.tensor([-10.0]), torch.tensor([5.0]))
    rd = g.rotation_from_angles(torch.tensor([-15.0]), torch.tensor([8.0]), torch.tensor([0.0]))
    zeros = torch.zeros(1, k, 3)
    xs = g.transform_keypoints(canon, rs, torch.zeros(1, 3), zeros)
    xd = g.transform_keypoints(canon, rd, torch.zeros(1, 3), zeros)
    flows = g.keypoint_flows(xs, xd, rs, rd, (5, 5, 5), mode="rotation")
    grid = g.make_coordinate_grid(5, 5, 5)
    # w_k(p) for any p equals R_s R_d^T (p - x_d,k) + x_s,k; for a rigid motion with zero translation this
    # is R_s R_d^T p (the keypoint terms cancel), the same for every k
    expected = grid.reshape(-1, 3) @ (rs[0] @ rd[0].T).T
    for j in range(1, k + 1):
        assert torch.allclose(flows[0, j].reshape(-1, 3), expected, atol=1e-5)
    # identity mode only translates
    flows_id = g.keypoint_flows(xs, xd, rs, rd, (5, 5, 5), mode="identity")
    assert torch.allclose(flows_id[0, 1].reshape(-1, 3), grid.reshape(-1, 3) - xd[0, 0] + xs[0, 0], atol=1e-6)
    assert torch.allclose(flows[0, 0], grid)  # background


def test_warp_translates_volume():
    vol = torch.zeros(1, 1, 3, 5, 5)
    vol[0, 0, 1, 2, 3] = 1.0  # voxel at x index 3
    grid = g.make_coordinate_grid(3, 5, 5)
    shift = grid.clone()
    shift[..., 0] += 0.5  # sampling 0.5 (one voxel) to the right moves content one voxel left
    out = g.warp_volume(vol, shift.unsqueeze(0))
    assert out[0, 0, 1, 2, 2] == pytest.approx(1.0)
    assert out.sum() == pytest.approx(1.0)


def test_kp2gaussian_peaks_at_keypoint():
    kp = torch.tensor([[[-1.0, 0.0, 1.0]]])
    heat = g.kp2gaussian(kp, (3, 5, 5), variance=0.01)
    assert heat.shape == (1, 1, 3, 5, 5)
    assert heat[0, 0, 2, 2, 0] == pytest.approx(1.0)
    assert heat.sum() == pytest.approx(1.0, abs=1e-4)  # neighbours 0.5 away: exp(-12.5)
    heat2 = g.kp2gaussian_2d(kp, (5, 5), variance=0.01)
    assert heat2.shape == (1, 1, 5, 5) and heat2[0, 0, 2, 0] == pytest.approx(1.0)


def test_user_rotation():
    gen = torch.Generator().manual_seed(4)
    yaw = (torch.rand(4, generator=gen) * 2 - 1) * 40
    zero = torch.zeros(4)
    rd = g.rotation_from_angles(yaw, zero, zero)
    combined = g.user_rotation(rd, yaw=15.0)
    assert torch.allclose(combined, g.rotation_from_angles(yaw + 15.0, zero, zero), atol=1e-6)
    per_item = g.user_rotation(rd, yaw=-yaw)
    assert torch.allclose(per_item, torch.eye(3).expand(4, 3, 3), atol=1e-6)
    full = g.rotation_from_angles(yaw, yaw / 2, -yaw)
    assert torch.allclose(g.user_rotation(full, frontalize=True), torch.eye(3).expand(4, 3, 3))
    assert torch.allclose(g.user_rotation(full), full)
    tilted = g.user_rotation(full, pitch=10.0, frontalize=True)
    assert torch.allclose(tilted, g.rotation_from_angles(zero, zero + 10.0, zero), atol=1e-6)
