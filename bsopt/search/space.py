"""The search space: batch sizes (powers of two), learning rates (log scale), and the grid.

Parameters are named ``batch_size`` and ``lr`` in every study so every Optuna tool sees them.
With a scaling rule (``lr_scaling`` linear, sqrt or sqrt-adam) the sampled parameter is
``base_lr``, the rate at the reference batch size, and the trial trains with
``lr = base_lr * (B / B0) ** k``; the effective ``lr`` is recorded on the trial
(``bsopt.records.LR``). ``sqrt-adam`` is Malladi et al. 2022's square-root rule for Adam: the
lr times sqrt(B/B0), and 1-beta1, 1-beta2 times B/B0, eps over sqrt(B/B0)
(:mod:`bsopt.training.adam_scaling`).
"""

from __future__ import annotations

import numpy as np
import optuna

from bsopt.config import StudyConfig, powers_of_two
from bsopt.errors import UsageError

# sqrt-adam: the lr part of Malladi et al. 2022's rule for Adam; the trainer scales Adam's
# betas and eps too (bsopt.training.adam_scaling).
SCALING_EXPONENTS = {"none": 0.0, "linear": 1.0, "sqrt": 0.5, "sqrt-adam": 0.5}


def grid_lrs(low: float, high: float, points: int) -> list[float]:
    """``points`` log-spaced learning rates from ``low`` to ``high`` (rounded to 6 digits)."""
    if points == 1 or low == high:
        return [float(low)]
    return [float(f"{v:.6g}") for v in np.geomspace(low, high, points)]


def scaling_exponent(config: StudyConfig) -> float:
    """The exponent k of the study's scaling rule ``lr = base_lr * (B / B0) ** k``.

    Raises:
        UsageError: an unknown rule.
    """
    if config.lr_scaling not in SCALING_EXPONENTS:
        raise UsageError(f"unknown lr scaling {config.lr_scaling!r}: choose one of "
                         f"{', '.join(SCALING_EXPONENTS)}")
    return SCALING_EXPONENTS[config.lr_scaling]


def lr_param_name(config: StudyConfig) -> str:
    """``lr``, or ``base_lr`` when the space follows a scaling rule."""
    scaling_exponent(config)  # a known rule
    return "lr" if config.lr_scaling == "none" else "base_lr"


def lr_bounds(config: StudyConfig) -> tuple[float, float]:
    """The lr parameter's distribution bounds: ``--lr``, widened by ``--lr-search-limit`` for
    the scaling sampler (whose search may step past the range when the best sits at an edge;
    it starts inside the range)."""
    if config.sampler == "scaling":
        return config.lr_min / config.lr_search_limit, config.lr_max * config.lr_search_limit
    return config.lr_min, config.lr_max


def search_space(config: StudyConfig) -> dict[str, optuna.distributions.BaseDistribution]:
    """The Optuna distributions of the study's two parameters."""
    return {
        "batch_size": optuna.distributions.CategoricalDistribution(
            powers_of_two(config.batch_size_min, config.batch_size_max)
        ),
        lr_param_name(config): optuna.distributions.FloatDistribution(
            *lr_bounds(config), log=True
        ),
    }


def grid(config: StudyConfig) -> dict[str, list[float] | list[int]]:
    """The grid sampler's grid: all powers of two x ``grid_lr_points`` log-spaced rates."""
    return {
        "batch_size": powers_of_two(config.batch_size_min, config.batch_size_max),
        lr_param_name(config): grid_lrs(config.lr_min, config.lr_max, config.grid_lr_points),
    }


def grid_points(config: StudyConfig) -> list[dict[str, float | int]]:
    """Every point of the grid, batch size major."""
    space = grid(config)
    name = lr_param_name(config)
    return [{"batch_size": b, name: lr} for b in space["batch_size"] for lr in space[name]]


def default_n_trials(config: StudyConfig) -> int:
    """The budget when none is given: the grid's size for the grid sampler, else 20."""
    return len(grid_points(config)) if config.sampler == "grid" else 20


def adam_scale(config: StudyConfig, batch_size: int) -> float | None:
    """``k = B / B_ref`` under ``sqrt-adam`` (Adam's betas and eps follow it), else None."""
    return batch_size / config.reference_batch if config.lr_scaling == "sqrt-adam" else None


def effective_lr(config: StudyConfig, batch_size: int, sampled_lr: float) -> float:
    """The learning rate a trial trains with, after the scaling rule."""
    exponent = scaling_exponent(config)
    return sampled_lr * (batch_size / config.reference_batch) ** exponent


def suggest(trial: optuna.Trial, config: StudyConfig) -> tuple[int, float]:
    """Sample (batch size, effective lr) for a trial."""
    space = search_space(config)
    name = lr_param_name(config)
    batch_size = int(trial.suggest_categorical("batch_size", space["batch_size"].choices))
    sampled = trial.suggest_float(name, *lr_bounds(config), log=True)
    return batch_size, effective_lr(config, batch_size, sampled)
