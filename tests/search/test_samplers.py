"""Each sampler and pruner by name is Optuna's own class, and runs a real study."""

from __future__ import annotations

import optuna
import pytest

from bsopt.config import StudyConfig
from bsopt.search.pruning import BatchSizePruner
from bsopt.search.samplers import PRUNERS, SAMPLERS, make_pruner, make_sampler
from bsopt.search.scaling_sampler import ScalingSampler
from bsopt.search.space import suggest

EXPECTED_SAMPLERS = {
    # The grid's points are enqueued as the budget (tests/test_study.py): no GridSampler.
    "grid": optuna.samplers.RandomSampler, "random": optuna.samplers.RandomSampler,
    "tpe": optuna.samplers.TPESampler, "gp": optuna.samplers.GPSampler,
    "cmaes": optuna.samplers.CmaEsSampler, "qmc": optuna.samplers.QMCSampler,
    "scaling": ScalingSampler,
}
EXPECTED_PRUNERS = {
    "batch-asha": BatchSizePruner, "batch-median": BatchSizePruner,
    "median": optuna.pruners.MedianPruner, "asha": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner, "none": optuna.pruners.NopPruner,
}


def test_registries_cover_every_name() -> None:
    assert set(EXPECTED_SAMPLERS) == set(SAMPLERS)
    assert set(EXPECTED_PRUNERS) == set(PRUNERS)


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_by_name_samples_the_space(name: str) -> None:
    config = StudyConfig(sampler=name, batch_size_max=64, grid_lr_points=2)
    sampler = make_sampler(config)
    assert isinstance(sampler, EXPECTED_SAMPLERS[name])
    study = optuna.create_study(sampler=sampler)
    seen = set()
    for _ in range(5):
        trial = study.ask()
        batch_size, lr = suggest(trial, config)
        # a bowl around (64, 1e-2) so model-based samplers have something to model
        study.tell(trial, abs(batch_size - 64) / 64 + abs(lr - 1e-2))
        seen.add((batch_size, lr))
    assert len(seen) >= 4  # samples differ


@pytest.mark.parametrize("name", PRUNERS)
def test_pruner_by_name_prunes_a_bad_trial(name: str) -> None:
    config = StudyConfig(pruner=name, epochs=8)
    pruner = make_pruner(config)
    assert isinstance(pruner, EXPECTED_PRUNERS[name])
    study = optuna.create_study(pruner=pruner, sampler=optuna.samplers.RandomSampler(seed=0))
    for value in (0.1, 0.2, 0.15, 0.12, 0.11, 0.13, 0.14, 0.16):  # good trials
        trial = study.ask()
        for epoch in range(1, 9):
            trial.report(value + 1.0 / epoch, epoch)
            trial.should_prune()  # successive halving records its rungs here
        study.tell(trial, value)
    bad = study.ask()
    pruned_at = None
    for epoch in range(1, 9):
        bad.report(50.0, epoch)
        if bad.should_prune():
            pruned_at = epoch
            break
    assert (pruned_at is None) == (name == "none")


def test_multi_objective_studies_get_no_pruner() -> None:
    config = StudyConfig(objectives=("loss", "time"))
    assert isinstance(make_pruner(config), optuna.pruners.NopPruner)
