"""Animator: the stateless core (source encoding once, motion modes, free view, batching, two streams)."""
import pytest
import torch

from facevid2vid.config import model_preset
from facevid2vid.inference import Animator
from facevid2vid.models import FaceVid2Vid
from facevid2vid.structures import View


@pytest.fixture(scope="module")
def animator():
    torch.manual_seed(0)
    return Animator(FaceVid2Vid(model_preset("tiny")).eval(), batch_size=3)


def frames(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 64, 64, generator=g)


def test_source_is_encoded_once_and_cached(animator, monkeypatch):
    source = animator.encode_source(frames(1)[0])
    calls = []
    for module in (animator.model.appearance_feature_extractor, animator.model.kp_detector,
                   animator.model.dense_motion.compress):
        original = module.forward
        monkeypatch.setattr(module, "forward", lambda x, original=original: calls.append(1) or original(x))
    out = animator.animate(source, frames(7, seed=1), mode="absolute")
    assert out.shape == (7, 3, 64, 64)
    assert calls == []  # F, L and M's compression of f_s never run per driving frame


def test_cached_source_matches_recomputed(animator):
    source = animator.encode_source(frames(1, seed=11))
    motion = animator.estimate_motion(frames(4, seed=12))
    cached = animator.render(source, motion)
    recomputed = animator.render(source.without_cache(), motion)
    assert torch.allclose(cached, recomputed, atol=1e-6)


def test_batching_does_not_change_results(animator):
    source = animator.encode_source(frames(1)[0])
    driving = frames(5, seed=2)
    batched = animator.animate(source, driving, mode="absolute")
    one_by_one = torch.cat([animator.animate(source, driving[i:i + 1], mode="absolute") for i in range(5)])
    assert torch.allclose(batched, one_by_one, atol=1e-5)


def test_two_sources_interleaved_match_each_alone(animator):
    """One model serves two independent streams: nothing of one leaks into the other."""
    a = animator.encode_source(frames(1, seed=20) * 0.2)  # a dark and a bright source
    b = animator.encode_source(0.8 + frames(1, seed=21) * 0.2)
    drive_a, drive_b = frames(4, seed=22), frames(4, seed=23)
    alone_a = animator.animate(a, drive_a, mode="relative")
    alone_b = animator.animate(b, drive_b, mode="relative")
    stream_a = animator.animate_iter(a, (drive_a[i:i + 1] for i in range(4)), mode="relative")
    stream_b = animator.animate_iter(b, (drive_b[i:i + 1] for i in range(4)), mode="relative")
    mixed_a, mixed_b = [], []
    for _ in range(4):  # alternate frame by frame between the two streams
        mixed_a.append(next(stream_a))
        mixed_b.append(next(stream_b))
    assert torch.allclose(torch.cat(mixed_a), alone_a, atol=1e-6)
    assert torch.allclose(torch.cat(mixed_b), alone_b, atol=1e-6)
    assert (alone_a - alone_b).abs().max() > 1e-4  # the two streams differ far beyond the tolerance


def test_relative_first_frame_reproduces_source_motion(animator):
    source = animator.encode_source(frames(1, seed=3))
    rel = animator.animate(source, frames(4, seed=4), mode="relative")
    # relative motion of the first driving frame equals the source's own motion
    own = animator.render(source, source.motion)
    assert torch.allclose(rel[:1], own, atol=1e-5)


def test_relative_motion_formula(animator):
    src = animator.encode_source(frames(1, seed=5)).motion
    motion = animator.estimate_motion(frames(3, seed=6))
    ref = motion.index(slice(0, 1))
    rel = Animator.relative_motion(motion, ref, src)
    assert torch.allclose(rel.yaw, src.yaw + motion.yaw - ref.yaw)
    assert torch.allclose(rel.delta, src.delta + motion.delta - ref.delta)


def test_free_view_changes_output_and_zero_is_identity(animator):
    source = animator.encode_source(frames(1, seed=7))
    motion = animator.estimate_motion(frames(2, seed=8))
    base = animator.render(source, motion)
    assert torch.allclose(animator.render(source, motion, View(yaw=0.0, pitch=0.0, roll=0.0)), base)
    turned = animator.render(source, motion, View(yaw=30.0))
    assert (turned - base).abs().mean() > 1e-4
    front = animator.render(source, motion, View(frontalize=True))
    assert front.shape == base.shape


def test_yaw_sweep_is_one_render(animator):
    """Per-frame view controls: a batch-1 motion rendered at 5 yaws equals 5 separate renders."""
    source = animator.encode_source(frames(1, seed=13))
    yaws = torch.linspace(-30, 30, 5)
    sweep = animator.render(source, source.motion, View(yaw=yaws, translation=(0.0, 0.05, 0.0)))
    single = torch.cat([animator.render(source, source.motion, View(yaw=float(y), translation=(0.0, 0.05, 0.0)))
                        for y in yaws])
    assert sweep.shape == (5, 3, 64, 64)
    assert torch.allclose(sweep, single, atol=1e-5)


def test_view_is_validated(animator):
    source = animator.encode_source(frames(1, seed=14))
    with pytest.raises(ValueError, match="yaw"):
        animator.render(source, source.motion, View(yaw=float("nan")))
    with pytest.raises(ValueError, match="lengths"):
        animator.render(source, source.motion, View(yaw=torch.zeros(3), pitch=torch.zeros(4)))
    with pytest.raises(ValueError, match="batch"):
        animator.render(source, animator.estimate_motion(frames(2)), View(yaw=torch.zeros(3)))


def test_redirect_batch_matches_single_frames(animator):
    x = frames(4, seed=9)
    batch = animator.redirect(x, View(yaw=15.0))
    single = torch.cat([animator.redirect(x[i:i + 1], View(yaw=15.0)) for i in range(4)])
    assert torch.allclose(batch, single, atol=1e-5)


def test_redirect_is_encode_source_plus_render(animator):
    x = frames(4, seed=15)
    sources = animator.encode_source(x)  # one source per frame
    assert torch.allclose(animator.redirect(x, View(pitch=10.0)),
                          animator.render(sources, sources.motion, View(pitch=10.0)), atol=1e-5)


def test_wrong_size_is_refused(animator):
    with pytest.raises(ValueError, match="64"):
        animator.encode_source(torch.rand(1, 3, 32, 32))
