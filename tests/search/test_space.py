"""The search space: powers of two, log-spaced learning rates, the grid, scaling rules."""

from __future__ import annotations

import math

import optuna
import pytest

from bsopt.config import StudyConfig, powers_of_two
from bsopt.search.space import (
    default_n_trials,
    effective_lr,
    grid,
    grid_lrs,
    grid_points,
    search_space,
    suggest,
)


def test_batch_sizes_are_the_powers_of_two_in_range() -> None:
    assert powers_of_two(16, 256) == [16, 32, 64, 128, 256]
    assert powers_of_two(10, 100) == [16, 32, 64]
    assert powers_of_two(64, 64) == [64]


def test_grid_lrs_are_log_spaced_and_hit_the_bounds() -> None:
    lrs = grid_lrs(1e-3, 1.0, 4)
    assert lrs == pytest.approx([1e-3, 1e-2, 1e-1, 1.0])
    ratios = [b / a for a, b in zip(lrs, lrs[1:])]
    assert ratios == pytest.approx([10.0] * 3)
    assert grid_lrs(0.01, 0.01, 5) == [0.01]


def test_grid_is_every_power_of_two_times_every_lr() -> None:
    config = StudyConfig(sampler="grid", batch_size_min=16, batch_size_max=256, lr_min=1e-3,
                         lr_max=1.0, grid_lr_points=6)
    assert grid(config)["batch_size"] == [16, 32, 64, 128, 256]
    assert len(grid(config)["lr"]) == 6
    points = grid_points(config)
    assert len(points) == 30 == default_n_trials(config)
    assert len({(p["batch_size"], p["lr"]) for p in points}) == 30
    assert default_n_trials(config.replace(sampler="tpe")) == 20


def test_parameters_are_named_batch_size_and_lr() -> None:
    config = StudyConfig()
    study = optuna.create_study()
    trial = study.ask()
    batch_size, lr = suggest(trial, config)
    assert set(trial.params) == {"batch_size", "lr"}
    assert batch_size in powers_of_two(16, 256) and math.log2(batch_size).is_integer()
    assert config.lr_min <= lr <= config.lr_max
    assert trial.params["lr"] == lr


@pytest.mark.parametrize("rule, expected", [("none", 0.01), ("linear", 0.04), ("sqrt", 0.02)])
def test_scaling_rules_give_the_effective_lr(rule: str, expected: float) -> None:
    config = StudyConfig(lr_scaling=rule, reference_batch=64)
    assert effective_lr(config, 256, 0.01) == pytest.approx(expected)
    assert ("base_lr" in search_space(config)) == (rule != "none")


def test_sqrt_adam_scales_the_lr_by_sqrt_k_and_gives_the_trainer_k() -> None:
    from bsopt.search.space import adam_scale, effective_lr

    config = StudyConfig(lr_scaling="sqrt-adam", reference_batch=32)
    assert effective_lr(config, 128, 1e-3) == pytest.approx(2e-3)
    assert adam_scale(config, 128) == 4.0
    assert adam_scale(StudyConfig(lr_scaling="sqrt"), 128) is None


def test_the_scaling_sampler_may_search_past_the_lr_range() -> None:
    from bsopt.search.space import lr_bounds

    config = StudyConfig(sampler="scaling", lr_min=1e-3, lr_max=1e-1, lr_search_limit=10.0)
    assert lr_bounds(config) == pytest.approx((1e-4, 1.0))
    assert lr_bounds(config.replace(sampler="tpe")) == (1e-3, 1e-1)
