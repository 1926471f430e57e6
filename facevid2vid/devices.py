"""Device names: the one place where ``--device`` values are checked and ``auto`` is resolved.

Accepted: ``auto`` (or None: CUDA when available, else the CPU), ``cpu``, ``cuda`` and
``cuda:N``. Anything else, and CUDA asked for where there is none, is a
:class:`~facevid2vid.errors.UsageError` with one line naming the option.

torch is imported only when CUDA has to be looked for, so the CLI can check ``--device cpu``
(and leave ``auto`` for later) without loading it.
"""
from __future__ import annotations

from facevid2vid.errors import UsageError

DEVICE_CHOICES = ("cpu", "cuda", "auto")  # and cuda:N
OPTION = "--device"


def _normalise(name: object) -> str:
    return str(name).strip().lower()


def _syntax_problem(name: str) -> str | None:
    kind, sep, index = name.partition(":")
    if kind not in DEVICE_CHOICES or (sep and (kind != "cuda" or not index.isdigit())):
        return f"{name!r} is not a device: choose {', '.join(DEVICE_CHOICES)} or cuda:N"
    return None


def _cuda_problem(name: str) -> str | None:
    """Why CUDA device ``name`` (cuda or cuda:N) cannot be used here, or None."""
    import torch

    if not torch.cuda.is_available():
        return (f"{name} was asked for but CUDA is not available here (no CUDA device, or a CPU-only "
                f"PyTorch): use cpu or auto")
    _, _, index = name.partition(":")
    count = torch.cuda.device_count()
    if index and int(index) >= count:
        return f"{name}: this machine has {count} CUDA device{'s' if count != 1 else ''} (cuda:0..cuda:{count - 1})"
    return None


def device_problem(name: str | None) -> str | None:
    """Why ``name`` is not a usable device here (without the option name), or None when it is."""
    if name is None:
        return None
    text = _normalise(name)
    problem = _syntax_problem(text)
    if problem is None and text.startswith("cuda"):
        problem = _cuda_problem(text)
    return problem


def check_device(name: str | None) -> str:
    """``name`` normalised (``auto`` kept as it is) when it is usable here; else UsageError."""
    problem = device_problem(name)
    if problem is not None:
        raise UsageError(f"{OPTION} {problem}")
    return "auto" if name is None else _normalise(name)


def resolve_device(name: str | None) -> str:
    """The torch device string to use: ``auto``/None -> ``cuda`` when available, else ``cpu``."""
    name = check_device(name)
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
