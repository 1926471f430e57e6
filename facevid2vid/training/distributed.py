"""Process-group helpers: one code path for a single process and for ``torchrun``.

``torchrun`` sets RANK, WORLD_SIZE and LOCAL_RANK; when WORLD_SIZE > 1 we join the group
(gloo on CPU, nccl on CUDA). Everything else asks :class:`DistInfo` whether it is rank 0.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from facevid2vid.devices import resolve_device


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_dist_info() -> DistInfo:
    """The layout torchrun describes in the environment (a single process when unset)."""
    return DistInfo(rank=int(os.environ.get("RANK", 0)), world_size=int(os.environ.get("WORLD_SIZE", 1)),
                    local_rank=int(os.environ.get("LOCAL_RANK", 0)))


def pick_device(requested: str | None, info: DistInfo) -> torch.device:
    """``requested`` (cpu, cuda, cuda:N) or the best available; each rank gets its local GPU.

    The name is checked and ``auto`` resolved by :func:`facevid2vid.devices.resolve_device`
    (a UsageError naming --device); a bare ``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun.
    """
    device = torch.device(resolve_device(requested))
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", info.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


def init_process_group(info: DistInfo, device: torch.device) -> None:
    """Join the torchrun group when there is one (idempotent)."""
    if not info.enabled or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs = {"device_id": device} if device.type == "cuda" else {}
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size, **kwargs)


def destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is True on any rank (so all ranks stop together)."""
    if not dist.is_initialized():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def parameter_digest(*modules: torch.nn.Module) -> str:
    """sha256 over the parameters' names and float32 bytes: equal digests mean equal weights."""
    h = hashlib.sha256()
    for m in modules:
        for name, p in m.named_parameters():
            h.update(name.encode())
            h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def gather_strings(value: str, device: torch.device) -> list[str]:
    """Every rank's ``value`` (all ranks get the list); [value] without a group."""
    if not dist.is_initialized():
        return [value]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return [str(v) for v in out]
