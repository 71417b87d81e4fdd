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
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name} but no CUDA device is available: use --device cpu")
    return torch.device(name)


def threads_per_worker(workers: int) -> int:
    """Torch threads for each of ``workers`` processes: this process's cores shared out."""
    return max(1, usable_cores() // workers)
