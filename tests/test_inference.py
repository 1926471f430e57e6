"""Animator: source caching, motion modes, free view and batching (tiny preset, random weights)."""
import pytest
import torch

from facevid2vid.config import model_preset
from facevid2vid.inference import Animator
from facevid2vid.models import FaceVid2Vid


@pytest.fixture(scope="module")
def animator():
    torch.manual_seed(0)
    return Animator(FaceVid2Vid(model_preset("tiny")).eval(), batch_size=3)


def frames(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 64, 64, generator=g)


def test_source_is_encoded_once_and_cached(animator, monkeypatch):
    animator.set_source(frames(1)[0])
    calls = []
    original = animator.model.appearance_feature_extractor.forward
    monkeypatch.setattr(animator.model.appearance_feature_extractor, "forward", lambda x: calls.append(1) or original(x))
    out = animator.animate(frames(7, seed=1), mode="absolute")
    assert out.shape == (7, 3, 64, 64)
    assert calls == []  # F never runs per driving frame


def test_batching_does_not_change_results(animator):
    animator.set_source(frames(1)[0])
    driving = frames(5, seed=2)
    batched = animator.animate(driving, mode="absolute")
    one_by_one = torch.cat([animator.animate(driving[i:i + 1], mode="absolute") for i in range(5)])
    assert torch.allclose(batched, one_by_one, atol=1e-5)


def test_relative_first_frame_reproduces_source_motion(animator):
    source = frames(1, seed=3)
    animator.set_source(source)
    driving = frames(4, seed=4)
    rel = animator.animate(driving, mode="relative")
    # relative motion of the first driving frame equals the source's own motion
    own = animator.render(animator.source.motion)
    assert torch.allclose(rel[:1], own, atol=1e-5)


def test_relative_motion_formula(animator):
    animator.set_source(frames(1, seed=5))
    src = animator.source.motion
    motion = animator.estimate_motion(frames(3, seed=6))
    ref = motion.index(slice(0, 1))
    rel = Animator.relative_motion(motion, ref, src)
    assert torch.allclose(rel.yaw, src.yaw + motion.yaw - ref.yaw)
    assert torch.allclose(rel.delta, src.delta + motion.delta - ref.delta)


def test_free_view_changes_output_and_zero_is_identity(animator):
    animator.set_source(frames(1, seed=7))
    motion = animator.estimate_motion(frames(2, seed=8))
    base = animator.render(motion)
    assert torch.allclose(animator.render(motion, yaw=0.0, pitch=0.0, roll=0.0), base)
    turned = animator.render(motion, yaw=30.0)
    assert (turned - base).abs().mean() > 1e-4
    front = animator.render(motion, frontalize=True)
    assert front.shape == base.shape


def test_redirect_batch_matches_single_frames(animator):
    x = frames(4, seed=9)
    batch = animator.redirect(x, yaw=15.0)
    single = torch.cat([animator.redirect(x[i:i + 1], yaw=15.0) for i in range(4)])
    assert torch.allclose(batch, single, atol=1e-5)


def test_wrong_size_is_refused(animator):
    with pytest.raises(ValueError, match="64"):
        animator.set_source(torch.rand(1, 3, 32, 32))
