"""DDP on two CPU processes (gloo) keeps both ranks' parameters identical.

The default suite forks two ranks from the test process (torch is already imported, so they
start in a fraction of a second) and runs the Trainer in each, as ``torchrun`` would with its
environment variables; the full ``torchrun -m facevid2vid train`` launch is the slow test.
"""
import multiprocessing
import os
import socket
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from facevid2vid.checkpoint import load_checkpoint
from facevid2vid.training.distributed import parameter_digest
from test_dataset import make_synthetic_dataset

WORLD = 2
STEPS = 3


def _check_run(run: Path, discriminator: bool = True) -> None:
    """Both ranks ended with the same weights, rank 0 alone wrote them, no temporary files remain."""
    digests = [(run / f"param_digest.rank{r}.txt").read_text().strip() for r in range(WORLD)]
    assert digests[0] == digests[1]
    log = (run / "train.log").read_text()
    assert f"world size {WORLD}" in log and f"all {WORLD} ranks hold identical parameters" in log
    # rank 0 alone wrote the checkpoint, and it holds those same parameters
    path = run / "checkpoints" / f"step_{STEPS:08d}.safetensors"
    nets = load_checkpoint(path, with_discriminator=True) if discriminator else (load_checkpoint(path),)
    assert parameter_digest(*nets) == digests[0]
    assert not list(run.glob("**/*.tmp*"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, port: int, data: str, run: str, errors, preset: str = "tiny") -> None:
    """One rank: the environment torchrun sets, then what `facevid2vid train` does."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), FACEVID2VID_WRITE_DIGEST="1")
    try:
        import torch

        from facevid2vid.config import TrainConfig, model_config_from
        from facevid2vid.training import distributed
        from facevid2vid.training.trainer import Trainer

        torch.set_num_threads(1)
        cfg = TrainConfig(model=model_config_from({"preset": preset}), batch_size=2, num_workers=0, log_every=1, image_every=0,
                          checkpoint_every=0, pose_teacher="index")
        try:
            Trainer(cfg, data, run, device="cpu", progress=False, console=False).fit(STEPS)
        finally:
            distributed.destroy_process_group()
    except BaseException:  # noqa: BLE001 - reported to the test process
        errors.put(f"rank {rank}: {traceback.format_exc()}")
        raise


@pytest.mark.skipif(sys.platform != "linux", reason="forks the ranks; gloo rendezvous on localhost")
@pytest.mark.parametrize("preset", ["tiny", "fomm-tiny", "monkeynet-tiny", "x2face-tiny"])
def test_two_forked_ranks_end_with_identical_parameters(tmp_path, preset):
    """face-vid2vid and each 2D family (trained without a discriminator) under DDP."""
    # what a fresh process spends seconds importing on first use (Adam's first construction imports
    # torch._dynamo; the trainer opens a TensorBoard writer): loaded once here, before the ranks fork
    import torch._dynamo  # noqa: F401
    import torch.utils.tensorboard  # noqa: F401

    data = make_synthetic_dataset(tmp_path / "data", clips=4, frames=6, size=64)
    run = tmp_path / "run"
    ctx = multiprocessing.get_context("fork")
    errors = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_rank_main, args=(r, port, str(data), str(run), errors, preset))
             for r in range(WORLD)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
    assert not alive, "a rank did not finish"
    assert all(p.exitcode == 0 for p in procs), errors.get(timeout=5) if not errors.empty() else "no traceback"
    _check_run(run, discriminator=preset == "tiny")


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="gloo rendezvous on localhost")
def test_torchrun_two_ranks_end_with_identical_parameters(tmp_path):
    data = make_synthetic_dataset(tmp_path / "data", clips=4, frames=6, size=64)
    run = tmp_path / "run"
    env = dict(os.environ, FACEVID2VID_WRITE_DIGEST="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(WORLD),
           "-m", "facevid2vid", "train", "--preset", "tiny", "--data", str(data), "--output", str(run),
           "--max-steps", str(STEPS), "--batch-size", "2", "--workers", "0", "--device", "cpu", "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _check_run(run)
