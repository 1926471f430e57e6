"""torchrun with two CPU processes (gloo): DDP keeps both ranks' parameters identical."""
import os
import subprocess
import sys

import pytest

from facevid2vid.checkpoint import load_checkpoint
from facevid2vid.training.distributed import parameter_digest
from test_dataset import make_synthetic_dataset


@pytest.mark.skipif(sys.platform == "win32", reason="gloo rendezvous on localhost")
def test_torchrun_two_ranks_end_with_identical_parameters(tmp_path):
    data = make_synthetic_dataset(tmp_path / "data", clips=4, frames=6, size=64)
    run = tmp_path / "run"
    env = dict(os.environ, FACEVID2VID_WRITE_DIGEST="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "facevid2vid", "train", "--preset", "tiny", "--data", str(data), "--output", str(run),
           "--max-steps", "3", "--batch-size", "2", "--workers", "0", "--device", "cpu", "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    digests = [(run / f"param_digest.rank{r}.txt").read_text().strip() for r in range(2)]
    assert digests[0] == digests[1]
    log = (run / "train.log").read_text()
    assert "world size 2" in log and "all 2 ranks hold identical parameters" in log
    # rank 0 alone wrote the checkpoint, and it holds those same parameters
    model, disc = load_checkpoint(run / "checkpoints" / "step_00000003.safetensors", with_discriminator=True)
    assert parameter_digest(model, disc) == digests[0]
    assert not list(run.glob("**/*.tmp*"))
