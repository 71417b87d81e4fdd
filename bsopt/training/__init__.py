"""Training: datasets, the reference networks, the training loop and what it measures.

This subpackage is PyTorch only: it never imports Optuna (a test checks), so the training
loop can be read, tested and reused without knowing about studies. The search layer
(:mod:`bsopt.search`) calls it, one trial at a time.

- :mod:`~bsopt.training.data`: datasets as in-memory tensors, split deterministically;
- :mod:`~bsopt.training.models`: the reference CNN and MLP;
- :mod:`~bsopt.training.trainer`: :class:`Trainer`, one (batch size, lr) epoch by epoch, with
  gradient accumulation, warmup, divergence detection and exact checkpoints;
- :mod:`~bsopt.training.noise_scale`: the gradient noise scale B_simple;
- :mod:`~bsopt.training.memory`: the memory a training step needs;
- :mod:`~bsopt.training.profile`: throughput and the largest batch per device;
- :mod:`~bsopt.training.device`: device names and threads per worker.

It may import torch, torchvision, numpy, scikit-learn and bsopt's leaf modules
(:mod:`bsopt.errors`, :mod:`bsopt.catalog`, :mod:`bsopt.import_path`, :mod:`bsopt.config`'s
helpers); nothing else of bsopt.
"""

from bsopt.training.data import TensorData, load_dataset, split
from bsopt.training.device import resolve_device, threads_per_worker
from bsopt.training.memory import estimate_memory_mb
from bsopt.training.models import ReferenceCNN, ReferenceMLP, build_model
from bsopt.training.noise_scale import NoiseScaleEstimator
from bsopt.training.profile import Profile, profile
from bsopt.training.trainer import Diverged, EpochResult, Trainer, TrainSettings

__all__ = [
    "Diverged", "EpochResult", "NoiseScaleEstimator", "Profile", "ReferenceCNN",
    "ReferenceMLP", "TensorData", "TrainSettings", "Trainer", "build_model",
    "estimate_memory_mb", "load_dataset", "profile", "resolve_device", "split",
    "threads_per_worker",
]
