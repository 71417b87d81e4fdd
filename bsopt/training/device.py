"""Where a trial trains: the device by name, and how many CPU threads each worker gets."""

from __future__ import annotations

import torch

from bsopt.config import usable_cores  # torch-free there: the --workers cap counts them too
from bsopt.errors import UsageError


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else the CPU.

    Raises:
        UsageError: ``cuda`` asked for where no CUDA device is available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r}: give auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {name!r}: give auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name} but no CUDA device is available: use --device cpu")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(f"--device {name} but only {torch.cuda.device_count()} CUDA devices "
                         "are visible")
    return device


def threads_per_worker(workers: int) -> int:
    """Torch threads for each of ``workers`` processes: this process's cores shared out."""
    return max(1, usable_cores() // workers)
