"""Where a trial trains: the device by name, each worker's GPU, and each worker's CPU threads."""

from __future__ import annotations

import torch

from bsopt.config import StudyConfig, gpu_ids, usable_cores  # torch-free: --workers counts cores
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


def assign_devices(workers: int, visible: int, gpus: list[int] | None = None,
                   trials_per_gpu: int = 1, *, strict: bool = False) -> list[str]:
    """Each of ``workers`` workers' CUDA device: round-robin over the GPUs, K per GPU.

    A pure function (tested on the CPU). ``visible`` is how many CUDA devices this process
    sees (``torch.cuda.device_count()``, after ``$CUDA_VISIBLE_DEVICES``); ``gpus`` the
    indices among them to use (all when None). With ``trials_per_gpu`` K, workers 0..K-1
    share the first GPU, K..2K-1 the second, and so on, around again past the last.

    Args:
        workers: How many worker processes.
        visible: CUDA devices visible to this process.
        gpus: The GPU indices to share out (``--gpus``), or None for all visible ones.
        trials_per_gpu: Workers packed onto one GPU (``--trials-per-gpu``).
        strict: Refuse more workers than ``len(gpus) * trials_per_gpu`` instead of going
            around again.

    Raises:
        UsageError: no GPU, K below 1, an index that is not visible, or (``strict``) more
            workers than places.

    Example::

        assign_devices(4, visible=2, trials_per_gpu=2)  # ['cuda:0', 'cuda:0', 'cuda:1', 'cuda:1']
    """
    if trials_per_gpu < 1:
        raise UsageError(f"--trials-per-gpu must be 1 or more, got {trials_per_gpu}")
    if visible < 1:
        raise UsageError("--gpus or --trials-per-gpu but no CUDA device is visible: drop them, "
                         "or run on a machine with GPUs")
    chosen = list(range(visible)) if gpus is None else list(gpus)
    if not chosen or len(set(chosen)) != len(chosen):
        raise UsageError("--gpus takes distinct GPU indices, e.g. 0,1,2,3")
    unknown = [g for g in chosen if not 0 <= g < visible]
    if unknown:
        raise UsageError(f"--gpus {','.join(map(str, chosen))} names GPU {unknown[0]}, but only "
                         f"{visible} are visible (0 to {visible - 1})")
    places = len(chosen) * trials_per_gpu
    if strict and workers > places:
        raise UsageError(f"--workers {workers} exceeds {len(chosen)} GPUs x --trials-per-gpu "
                         f"{trials_per_gpu} = {places}: lower --workers or raise "
                         "--trials-per-gpu")
    return [f"cuda:{chosen[(i // trials_per_gpu) % len(chosen)]}" for i in range(workers)]


def worker_devices(device: str, workers: int, gpus: str | None = None,
                   trials_per_gpu: int = 1) -> list[str]:
    """Each worker's device for ``--device``, ``--workers``, ``--gpus``, ``--trials-per-gpu``.

    On the CPU every worker gets ``cpu``; on CUDA (``auto`` with a GPU, or ``cuda``) each
    worker its own GPU by :func:`assign_devices`; ``cuda:N`` puts every worker on GPU N.

    Raises:
        UsageError: ``--gpus`` (or ``--trials-per-gpu`` above 1) where no CUDA device is
            used, and what :func:`resolve_device` and :func:`assign_devices` refuse.
    """
    resolved = resolve_device(device)
    if resolved.type != "cuda":
        if gpus is not None or trials_per_gpu != 1:
            raise UsageError(f"--gpus and --trials-per-gpu place workers on CUDA devices, but "
                             f"this run trains on {resolved.type}: drop them, or give "
                             "--device cuda on a machine with GPUs")
        return ["cpu"] * workers
    if resolved.index is not None:
        if gpus is not None:
            raise UsageError(f"--device {device} and --gpus both choose the GPU: give one")
        return [str(resolved)] * workers
    return assign_devices(workers, torch.cuda.device_count(),
                          None if gpus is None else gpu_ids(gpus), trials_per_gpu)


def config_devices(config: StudyConfig) -> list[str]:
    """Each worker's device for a run of ``config``, its precision checked on them.

    Raises:
        UsageError: see :func:`worker_devices`; fp16 without CUDA for bsopt's trainer.
    """
    devices = worker_devices(config.device, config.workers, config.gpus, config.trials_per_gpu)
    if config.command is None and config.train is None:
        from bsopt.training.trainer import check_precision

        check_precision(config.precision, torch.device(devices[0]))
    return devices
