"""Sampler and pruner registries: a name in, Optuna's own class out.

The one place that names them: the command line lists these names, and a study planned with
another one is refused before anything is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna

from bsopt.config import StudyConfig, powers_of_two
from bsopt.errors import UsageError
from bsopt.search.pruning import batch_asha, batch_median
from bsopt.search.scaling_sampler import ScalingSampler
from bsopt.search.space import lr_param_name

SAMPLERS: dict[str, Callable[[StudyConfig], optuna.samplers.BaseSampler]] = {
    # The grid is the budget itself: bsopt enqueues every grid point as a trial with fixed
    # parameters (bsopt.search.study), so the sampler is never asked for them. Optuna's
    # GridSampler would read every trial after each one, pick points of its own for trials
    # without a grid id, and fail on a one-point grid; a trial added by hand gets a random
    # point.
    "grid": lambda c: optuna.samplers.RandomSampler(seed=c.seed),
    "random": lambda c: optuna.samplers.RandomSampler(seed=c.seed),
    # Optuna 5's TPE defaults: multivariate, constant liar (good with parallel workers). Four
    # random trials before modelling: fewest epochs to the best cell of 3..12 (BENCHMARKS.md).
    "tpe": lambda c: optuna.samplers.TPESampler(seed=c.seed, n_startup_trials=4),
    "gp": lambda c: optuna.samplers.GPSampler(seed=c.seed),
    "cmaes": lambda c: optuna.samplers.CmaEsSampler(seed=c.seed, warn_independent_sampling=False),
    "qmc": lambda c: optuna.samplers.QMCSampler(
        seed=c.seed, scramble=True, warn_independent_sampling=False, warn_asynchronous_seeding=False
    ),
    # The batch-size science design (bsopt.search.scaling_sampler): per batch size a 1-D
    # search on log lr, the budget spread over the batch sizes.
    "scaling": lambda c: ScalingSampler(
        powers_of_two(c.batch_size_min, c.batch_size_max), lr_param_name(c), c.lr_min,
        c.lr_max, limit=c.lr_search_limit, seed=c.seed),
}


def _hyperband(config: StudyConfig) -> optuna.pruners.BasePruner:
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=config.epochs)


PRUNERS: dict[str, Callable[[StudyConfig], optuna.pruners.BasePruner]] = {
    # Steps are epochs, so every pruner compares trials after the same amount of data; the
    # batch- pruners compare a trial only with trials of its own batch size
    # (bsopt.search.pruning).
    "batch-asha": lambda c: batch_asha(),
    "batch-median": lambda c: batch_median(),
    "median": lambda c: optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1),
    "asha": lambda c: optuna.pruners.SuccessiveHalvingPruner(min_resource=1),
    "hyperband": _hyperband,
    "none": lambda c: optuna.pruners.NopPruner(),
}


def _named(registry: dict[str, Callable[[StudyConfig], Any]], what: str, name: str,
           config: StudyConfig) -> Any:
    if name not in registry:
        raise UsageError(f"unknown {what} {name!r}: choose one of {', '.join(registry)}")
    return registry[name](config)


def make_sampler(config: StudyConfig) -> optuna.samplers.BaseSampler:
    """The Optuna sampler named by ``config.sampler``.

    Raises:
        UsageError: no sampler of that name.
    """
    return _named(SAMPLERS, "sampler", config.sampler, config)


def make_pruner(config: StudyConfig) -> optuna.pruners.BasePruner:
    """The Optuna pruner named by ``config.pruner`` (none for multi-objective studies).

    Raises:
        UsageError: no pruner of that name.
    """
    pruner = _named(PRUNERS, "pruner", config.pruner, config)
    if len(config.objectives) > 1:
        return optuna.pruners.NopPruner()  # Optuna prunes single-objective studies only
    return pruner
