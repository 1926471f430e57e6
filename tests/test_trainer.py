"""The trainer on the tiny preset and a generated data directory (CPU)."""
import json
import os
import signal
import warnings

import pytest
import torch

from facevid2vid.checkpoint import load_checkpoint
from facevid2vid.cli import main
from facevid2vid.config import TrainConfig, model_preset
from facevid2vid.errors import CheckpointError
from facevid2vid.training.state import load_state, save_state
from facevid2vid.training.trainer import Trainer, lr_factor
from test_dataset import make_synthetic_dataset


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("train") / "data", clips=3, frames=8, size=64)


@pytest.fixture(scope="module")
def one_step_run(data_dir, tmp_path_factory):
    """A finished one-step run: (its trainer, its run directory)."""
    run = tmp_path_factory.mktemp("one_step") / "run"
    tr = Trainer(_cfg(), data_dir, run, device="cpu", progress=False, console=False)
    tr.fit(1)
    return tr, run


def _cfg(**kw) -> TrainConfig:
    # pose_teacher "index" (the index's landmark poses): the same run whether or not `weights fetch` has
    # filled the cache ("auto" would pick WHENet then); the network teachers have their own tests below
    cfg = TrainConfig(model=model_preset("tiny"), batch_size=2, num_workers=0, log_every=0, image_every=0,
                      checkpoint_every=0, pose_teacher="index")
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _overfit(data_dir, tmp_path, steps):
    tr = Trainer(_cfg(), data_dir, tmp_path / "run", device="cpu", progress=False, console=False)
    batch = next(tr.batches())
    l1 = [tr.train_step(batch)["l1"] for _ in range(steps)]
    return l1


def test_training_lowers_the_loss_on_one_batch(data_dir, tmp_path):
    """The default suite's stand-in for the overfit tests below (slow): a dozen steps on one batch lower its L1."""
    l1 = _overfit(data_dir, tmp_path, 12)
    assert sum(l1[-3:]) / 3 < 0.85 * l1[0], l1


@pytest.mark.slow
def test_one_batch_is_overfit(data_dir, tmp_path):
    l1 = _overfit(data_dir, tmp_path, 50)
    start, end = l1[0], sum(l1[-5:]) / 5
    assert end < 0.4 * start, (start, end)


@pytest.mark.slow
def test_one_batch_is_overfit_long(data_dir, tmp_path):
    l1 = _overfit(data_dir, tmp_path, 300)
    assert sum(l1[-5:]) / 5 < 0.25 * l1[0]


def test_stopped_and_resumed_equals_uninterrupted(data_dir, tmp_path):
    # `--preset tiny` with the index's poses (as _cfg: the same run with or without fetched networks)
    config = tmp_path / "tiny-index.yaml"
    config.write_text("model:\n  preset: tiny\npose_teacher: index\n")
    common = ["train", "--config", str(config), "--data", str(data_dir), "--batch-size", "2", "--workers", "1",
              "--device", "cpu", "--no-progress"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(common + ["--output", str(straight), "--max-steps", "3"]) == 0
    assert main(common + ["--output", str(split), "--max-steps", "1"]) == 0
    assert json.loads((split / "checkpoints" / "latest.json").read_text())["step"] == 1
    assert main(common + ["--output", str(split), "--max-steps", "3", "--resume"]) == 0
    a, da = load_checkpoint(straight / "checkpoints" / "step_00000003.safetensors", with_discriminator=True)
    b, db = load_checkpoint(split / "checkpoints" / "step_00000003.safetensors", with_discriminator=True)
    for (name, x), y in zip(list(a.state_dict().items()) + list(da.state_dict().items()),
                            list(b.state_dict().values()) + list(db.state_dict().values())):
        assert torch.allclose(x.float(), y.float(), atol=1e-6, rtol=1e-5), name
    # and training did move the weights away from the step-1 checkpoint
    mid = load_checkpoint(split / "checkpoints" / "step_00000001.safetensors")
    assert any(not torch.equal(x, y) for x, y in zip(mid.state_dict().values(), b.state_dict().values()))
    sa = load_state(split / "checkpoints" / "step_00000003.state.safetensors")
    assert sa["step"] == 3 and sa["samples_per_rank"] == 6
    assert "resumed from" in (split / "train.log").read_text()


def test_checkpoints_are_loadable_and_written_atomically(data_dir, tmp_path):
    run = tmp_path / "run"
    cfg = _cfg(checkpoint_every=2, keep_checkpoints=2, log_every=1, image_every=2)
    tr = Trainer(cfg, data_dir, run, device="cpu", progress=False, console=False)
    assert tr.fit(3) == 3
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    # step 2 on schedule, 3 at the end (step 1's would be pruned); no temporary files left
    assert ckpts == ["latest.json", "step_00000002.safetensors", "step_00000002.state.safetensors",
                     "step_00000003.safetensors", "step_00000003.state.safetensors"]
    model = load_checkpoint(run / "checkpoints" / "step_00000003.safetensors")  # what `animate` does
    for (k, v), w in zip(model.state_dict().items(), tr.model.state_dict().values()):
        assert torch.equal(v, w.cpu()), k
    log = (run / "train.log").read_text()
    assert "no VGG19 file given -> multi-scale L1" in log and "step 3 " in log
    events = list((run / "tb").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 1000  # scalars and image grids
    assert (run / "config.yaml").is_file()


def test_sigterm_saves_a_checkpoint_and_stops(data_dir, tmp_path):
    run = tmp_path / "run"
    tr = Trainer(_cfg(), data_dir, run, device="cpu", progress=False, console=False)
    step_fn = tr.train_step

    def step_then_signal(batch):
        out = step_fn(batch)
        if tr.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # a real signal, handled by the trainer
        return out

    tr.train_step = step_then_signal
    before = signal.getsignal(signal.SIGTERM)
    assert tr.fit(50) == 2
    assert signal.getsignal(signal.SIGTERM) == before  # handlers restored
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["step"] == 2
    assert "received SIGTERM" in (run / "train.log").read_text()


def test_sigterm_to_the_whole_process_group_still_saves(data_dir, tmp_path):
    """A scheduler's SIGTERM (or ``pkill -f``) reaches the loader workers too: they leave it to the trainer."""
    import subprocess
    import sys
    import time

    config = tmp_path / "tiny.yaml"
    config.write_text("model:\n  preset: tiny\nbatch_size: 2\nnum_workers: 1\nlog_every: 1\nimage_every: 0\n"
                      "checkpoint_every: 0\npose_teacher: index\n")
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "facevid2vid", "train", "--config", str(config), "--data",
                             str(data_dir), "--output", str(run), "--max-steps", "100000", "--no-progress"],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log, deadline = run / "train.log", time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if log.is_file() and "step 2 " in log.read_text():
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1]
    os.killpg(proc.pid, signal.SIGTERM)  # the trainer and its loader worker
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["step"] >= 2
    assert "received SIGTERM" in log.read_text()


def test_time_budget_stops_and_saves(data_dir, tmp_path):
    """--max-minutes: the run stops once its wall time is spent, with a checkpoint (equal-budget comparisons)."""
    import time

    run = tmp_path / "run"
    tr = Trainer(_cfg(max_minutes=0.5 / 60), data_dir, run, device="cpu", progress=False, console=False)
    step_fn = tr.train_step

    def slow_step(batch):
        time.sleep(0.2)
        return step_fn(batch)

    tr.train_step = slow_step
    step = tr.fit(1000)
    assert 1 <= step < 1000
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["step"] == step
    assert "after 0.00833333 minutes" in (run / "train.log").read_text()


def test_init_from_another_resolution(data_dir, tmp_path, one_step_run):
    src, run = one_step_run
    cfg96 = _cfg()
    cfg96.model.image_size = 96
    tr = Trainer(cfg96, data_dir, tmp_path / "b", device="cpu", progress=False, console=False,
                 init_from=run / "checkpoints" / "step_00000001.safetensors")
    for (k, v), w in zip(src.model.state_dict().items(), tr.model.state_dict().values()):
        assert torch.equal(v, w), k
    assert "initialised from" in (tmp_path / "b" / "train.log").read_text()
    assert tr.dataset[0].source.shape == (3, 96, 96)
    tr.train_step(next(tr.batches()))  # and it trains at the new size


def test_resume_rejects_another_architecture(data_dir, one_step_run):
    _, run = one_step_run
    other = _cfg()
    other.model.num_keypoints = 4
    with pytest.raises(CheckpointError, match="--init-from"):
        Trainer(other, data_dir, run, device="cpu", progress=False, console=False, resume=True)


def test_refuses_to_overwrite_a_run_without_resume(data_dir, one_step_run):
    from facevid2vid.errors import InputError

    _, run = one_step_run
    with pytest.raises(InputError, match="--resume"):
        Trainer(_cfg(), data_dir, run, device="cpu", progress=False, console=False)


def test_trainer_state_round_trip(tmp_path):
    import numpy as np

    opt = torch.optim.Adam([torch.nn.Parameter(torch.ones(3))], lr=1e-3, betas=(0.5, 0.999))
    opt.param_groups[0]["params"][0].grad = torch.ones(3)
    opt.step()
    state = {"opt": opt.state_dict(), "np": np.random.get_state(), "py": (3, (1, 2), None), "n": 5}
    save_state(tmp_path / "s.safetensors", state)
    back = load_state(tmp_path / "s.safetensors")
    assert back["n"] == 5 and back["py"] == (3, (1, 2), None)
    assert torch.equal(back["opt"]["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    opt2 = torch.optim.Adam([torch.nn.Parameter(torch.ones(3))], lr=1e-3)
    opt2.load_state_dict(back["opt"])
    assert opt2.param_groups[0]["betas"] == (0.5, 0.999) or list(opt2.param_groups[0]["betas"]) == [0.5, 0.999]
    with pytest.raises(CheckpointError):
        load_state(tmp_path / "missing.safetensors")


def test_lr_schedule_steps_down_at_milestones():
    assert lr_factor(0, (10, 20), 0.1) == 1.0
    assert lr_factor(10, (10, 20), 0.1) == pytest.approx(0.1)
    assert lr_factor(25, (10, 20), 0.1) == pytest.approx(0.01)


def test_lr_warmup_rises_linearly_then_holds():
    assert [lr_factor(s, (), 0.1, warmup=4) for s in range(6)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    assert lr_factor(1, (1,), 0.1, warmup=4) == pytest.approx(0.05)  # with the decay
    with pytest.raises(ValueError, match="lr_warmup_steps"):
        TrainConfig(lr_warmup_steps=-1).validate()


def test_cli_train_reports_bad_inputs(tmp_path, capsys):
    assert main(["train", "--preset", "tiny", "--data", str(tmp_path / "none"), "--output", str(tmp_path / "r")]) == 1
    assert "prepare" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "missing.yaml"), "--data", str(tmp_path),
                 "--output", str(tmp_path / "r")]) == 1


def test_local_vgg19_and_network_pose_teacher_are_used(data_dir, tmp_path):
    from facevid2vid.training.perceptual import VGGFeatures
    from facevid2vid.training.pose_teacher import HopenetTeacher

    torch.save({f"features.{k}": v for k, v in VGGFeatures("vgg19").features.state_dict().items()},
               tmp_path / "vgg19.pth")
    torch.save(HopenetTeacher(layers=(1, 1, 1, 1)).state_dict(), tmp_path / "hopenet.pkl")
    cfg = _cfg(vgg19_weights=str(tmp_path / "vgg19.pth"), pose_teacher_weights=str(tmp_path / "hopenet.pkl"))
    tr = Trainer(cfg, data_dir, tmp_path / "run", device="cpu", progress=False, console=False)
    stats = tr.train_step(next(tr.batches()))
    assert "perceptual" in stats and "l1_pyramid" not in stats and stats["head_pose"] > 0
    log = (tmp_path / "run" / "train.log").read_text()
    assert "perceptual: VGG19 pyramid from" in log and "Hopenet-style teacher" in log



@pytest.fixture(scope="module")
def perception_nets():
    """The ported networks the training terms use, converted into the cache."""
    from facevid2vid.perception.fetch import fetch_weights

    return fetch_weights(names=["mobilenet_v2", "mobilefacenet", "whenet"], quiet=True)


def test_perception_terms_are_used(data_dir, tmp_path, perception_nets):
    """All three perception terms in one step: logged and present in the losses (that they learn: below, slow)."""
    cfg = _cfg(perceptual_network="mobilenet_v2", identity_network="mobilefacenet", pose_teacher="whenet")
    cfg.loss.free_view = 1.0  # the free-view term reads its renders with the same network
    tr = Trainer(cfg, data_dir, tmp_path / "run", device="cpu", progress=False, console=False)
    stats = tr.train_step(next(tr.batches()))
    assert {"perceptual", "identity", "head_pose", "l1_pyramid", "free_view", "free_view_identity"} <= set(stats)
    assert stats["perceptual"] > 0 and stats["identity"] > 0 and stats["head_pose"] > 0
    assert stats["free_view"] > 0 and stats["free_view_identity"] > 0
    log = (tmp_path / "run" / "train.log").read_text()
    assert "mobilenet_v2 feature distance" in log and "mobilefacenet embeddings" in log
    assert "head pose: whenet" in log and "free view: the source turned by up to +-30 degrees" in log


@pytest.mark.slow
def test_perception_terms_train(data_dir, tmp_path, perception_nets):
    """All three perception terms in a tiny run: logged, present in the losses, and they learn."""
    cfg = _cfg(perceptual_network="mobilenet_v2", identity_network="mobilefacenet", pose_teacher="whenet")
    tr = Trainer(cfg, data_dir, tmp_path / "run", device="cpu", progress=False, console=False)
    batch = next(tr.batches())
    first = tr.train_step(batch)
    for _ in range(14):
        last = tr.train_step(batch)
    assert {"perceptual", "identity", "head_pose", "l1_pyramid"} <= set(first)
    assert last["perceptual"] < first["perceptual"], (first["perceptual"], last["perceptual"])
    log = (tmp_path / "run" / "train.log").read_text()
    assert "mobilenet_v2 feature distance" in log and "mobilefacenet embeddings" in log
    assert "head pose: whenet" in log


def test_pose_teacher_auto_and_bad_name(data_dir, tmp_path, perception_nets, monkeypatch):
    from facevid2vid.errors import InputError

    tr = Trainer(_cfg(pose_teacher="auto"), data_dir, tmp_path / "a", device="cpu", progress=False, console=False)
    assert tr.pose_teacher is not None and tr.pose_teacher_name.startswith("whenet")
    tr = Trainer(_cfg(pose_teacher="auto", perception_cache=str(tmp_path / "empty")), data_dir, tmp_path / "b",
                 device="cpu", progress=False, console=False)
    assert tr.pose_teacher is None  # falls back to the index's landmark poses
    free_view = _cfg(pose_teacher="index")
    free_view.loss.free_view = 1.0
    with pytest.raises(InputError, match="free_view needs a ported pose network"):
        Trainer(free_view, data_dir, tmp_path / "d", device="cpu", progress=False, console=False)
    with pytest.raises(InputError, match="pose_teacher"):
        Trainer(_cfg(pose_teacher="mobilefacenet"), data_dir, tmp_path / "c", device="cpu", progress=False,
                console=False)
    with pytest.raises(CheckpointError, match="weights fetch"):
        Trainer(_cfg(identity_network="mobilefacenet", perception_cache=str(tmp_path / "empty")), data_dir,
                tmp_path / "d", device="cpu", progress=False, console=False)


def test_the_stage_before_the_gan_warns_nothing_about_the_schedulers(data_dir, tmp_path):
    """D's rate follows the step before its first update: torch's scheduler-order warning is expected and muted."""
    tr = Trainer(_cfg(gan_start_step=10), data_dir, tmp_path / "run", device="cpu", progress=False, console=False)
    batch = next(tr.batches())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stats = tr.train_step(batch)
    assert "discriminator" not in stats
    assert not [w for w in caught if "lr_scheduler" in str(w.message)], [str(w.message) for w in caught]
