"""Training: datasets, the reference networks, the training loop and what it measures.

This subpackage is PyTorch only: it never imports Optuna (a test checks), so the training
loop can be read, tested and reused without knowing about studies. The search layer
(:mod:`bsopt.search`) calls it, one trial at a time.

- :mod:`~bsopt.training.data`: what a trial trains on: train / val / test splits in memory
  (:class:`TensorData`) or streamed through a DataLoader (:class:`StreamedData`);
- :mod:`~bsopt.training.sources`: where the data come from (built-ins, ``imagefolder:DIR``,
  ``package.module:loader``) and the loader contract; :mod:`~bsopt.training.image_folder`,
  :mod:`~bsopt.training.builtin_datasets`: those loaders;
- :mod:`~bsopt.training.splits`: the deterministic split and held-out test part;
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

from bsopt.training.data import (
    DataChoice,
    StreamedData,
    TensorData,
    TrialData,
    describe,
    load_dataset,
)
from bsopt.training.device import resolve_device, threads_per_worker
from bsopt.training.memory import estimate_memory_mb
from bsopt.training.models import ReferenceCNN, ReferenceMLP, build_model
from bsopt.training.noise_scale import NoiseScaleEstimator
from bsopt.training.profile import Profile, profile
from bsopt.training.trainer import Diverged, EpochResult, Trainer, TrainSettings, evaluate

__all__ = [
    "DataChoice", "Diverged", "EpochResult", "NoiseScaleEstimator", "Profile", "ReferenceCNN",
    "ReferenceMLP", "StreamedData", "TensorData", "TrainSettings", "Trainer", "TrialData",
    "build_model", "describe", "estimate_memory_mb", "evaluate", "load_dataset", "profile",
    "resolve_device", "threads_per_worker",
]
