"""Training: losses (``losses``, ``perceptual``), equivariance warps (``transforms``), the optional
network pose teacher (``pose_teacher``), the objectives DDP wraps (``objective``), checkpointed
trainer state (``state``), process-group helpers (``distributed``), building a run's parts from its
config (``build``) and the loop (``trainer``). Batches are ``data.batch.PairBatch``.

Submodules are imported explicitly (``from facevid2vid.training.trainer import Trainer``) so that
using one loss does not load the whole training stack.
"""
