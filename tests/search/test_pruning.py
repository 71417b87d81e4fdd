"""Batch-size-aware pruning: a trial is compared with trials of its own batch size."""

from __future__ import annotations

import math

import optuna
import pytest

from bsopt import records
from bsopt.search.pruning import BatchSizePruner, batch_asha, batch_median

BATCH_SIZES = optuna.distributions.CategoricalDistribution([16, 64, 512])


def curve(final: float, *, slow_start: float = 0.0, epochs: int = 6) -> list[float]:
    """A decreasing loss curve ending at ``final``; ``slow_start`` raises the early epochs."""
    return [final + (1.0 + slow_start) * (1 / epoch - 1 / epochs)
            for epoch in range(1, epochs + 1)]


def ask(study: optuna.Study, batch_size: int) -> optuna.Trial:
    study.enqueue_trial({"batch_size": batch_size})
    trial = study.ask({"batch_size": BATCH_SIZES})
    assert trial.params["batch_size"] == batch_size
    trial.set_user_attr(records.CHANCE_LOSS, math.log(10))  # as bsopt's objective states it
    return trial


def run_trial(study: optuna.Study, batch_size: int, values: list[float]) -> int | None:
    """Report ``values`` epoch by epoch; return the epoch it was pruned at (None: completed)."""
    trial = ask(study, batch_size)
    for epoch, value in enumerate(values, start=1):
        trial.report(value, epoch)
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return epoch
    study.tell(trial, values[-1])
    return None


CHANCE = [2.3] * 6  # a learning rate so far off that the network stays at chance level


def small_batch_study(pruner: optuna.pruners.BasePruner, storage: str | None = None
                      ) -> optuna.Study:
    """Batch-16 trials (two at chance, five fast starters) and one batch-512 trial.

    Worst first, so that each batch-16 trial is the best so far and runs to the end.
    """
    study = optuna.create_study(pruner=pruner, storage=storage)
    run_trial(study, 16, CHANCE)
    run_trial(study, 16, CHANCE)
    for final in (0.18, 0.16, 0.14, 0.12, 0.10):
        assert run_trial(study, 16, curve(final)) is None
    run_trial(study, 512, curve(0.30, slow_start=1.0))
    return study


@pytest.mark.parametrize("make", [batch_asha, batch_median])
def test_a_slow_starting_large_batch_is_compared_with_its_own_batch_size(make):
    # Its early epochs are worse than every batch-16 trial's; a pruner over all trials would
    # stop it. Among batch-512 trials it is the best, and it ends best of all.
    plain = small_batch_study(optuna.pruners.MedianPruner(n_startup_trials=1))
    assert run_trial(plain, 512, curve(0.05, slow_start=1.0)) is not None

    study = small_batch_study(make())
    assert run_trial(study, 512, curve(0.05, slow_start=1.0)) is None
    assert study.best_trial.params["batch_size"] == 512


@pytest.mark.parametrize("make", [batch_asha, batch_median])
def test_a_worse_lr_in_the_same_batch_size_is_pruned_early(make):
    study = small_batch_study(make())
    # Worse than every finished batch-16 trial at every epoch (but better than guessing).
    pruned_at = run_trial(study, 16, curve(0.40))
    assert pruned_at is not None and pruned_at <= 3


def test_the_guard_stops_a_trial_no_better_than_guessing():
    study = small_batch_study(batch_median())
    # The first batch-64 trial: nothing to compare within, but a loss above ln(10) is worse
    # than guessing among 10 classes.
    trial = ask(study, 64)
    trial.report(2.4, 1)
    assert trial.should_prune()
    # Without the guard it runs on: its batch size has no finished trial yet.
    study.pruner = BatchSizePruner(optuna.pruners.MedianPruner(n_startup_trials=1))
    assert not trial.should_prune()


@pytest.mark.parametrize("make", [batch_asha, batch_median])
def test_a_slow_large_batch_survives_among_only_good_small_batch_trials(make):
    # No chance-level trial finished: a guard relative to the finished trials would stop it.
    study = optuna.create_study(pruner=make())
    for final in (0.18, 0.16, 0.14, 0.12, 0.10):
        assert run_trial(study, 16, curve(final)) is None
    assert run_trial(study, 512, curve(0.05, slow_start=1.0)) is None


def test_hyperband_cannot_be_wrapped():
    with pytest.raises(TypeError, match="SuccessiveHalvingPruner"):
        BatchSizePruner(optuna.pruners.HyperbandPruner())


def test_trials_without_a_batch_size_are_compared_with_all_trials():
    pruner = BatchSizePruner(optuna.pruners.MedianPruner(n_startup_trials=1))
    study = optuna.create_study(pruner=pruner)
    good = study.ask()
    good.report(0.1, 1)
    study.tell(good, 0.1)
    bad = study.ask()
    bad.report(5.0, 1)
    assert bad.should_prune()


def test_batch_asha_keeps_its_rungs_in_a_real_sqlite_study(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = small_batch_study(batch_asha(), storage)
    assert run_trial(study, 16, curve(0.40)) is not None
    # Successive halving records the rung values of the trials it judged in the storage.
    reloaded = optuna.load_study(study_name=study.study_name, storage=storage)
    assert "completed_rung_0" in reloaded.trials[-1].system_attrs
