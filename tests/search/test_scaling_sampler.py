"""The scaling design finds planted laws, widens past the range, and keeps no state."""

from __future__ import annotations

import math

import optuna
import pytest

from benchmarks.scaling_design import planted_study, power_law, study_bests, surge
from bsopt.analysis.scaling import fit_power_law, fit_surge
from bsopt.config import StudyConfig
from bsopt.search.samplers import make_sampler
from bsopt.search.scaling_sampler import BRACKET_ATTR
from bsopt.search.space import suggest

# Tolerances: with 35 trials (5 per batch size, 16..1024) and loss noise 0.005 on the planted
# bowl, alpha within 0.1 of the planted one and inside the 95% interval; the surge peak within
# a factor 1.5.
ALPHA_TOLERANCE = 0.1


@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_finds_a_planted_power_law(alpha: float) -> None:
    study = planted_study(power_law(alpha), trials=35, noise=0.005, seed=0)
    fit = fit_power_law(study_bests(study))
    assert abs(fit.alpha - alpha) < ALPHA_TOLERANCE
    assert fit.alpha_low <= alpha <= fit.alpha_high
    assert fit.verdict == ("sqrt" if alpha == 0.5 else "linear")


def test_finds_a_planted_surge() -> None:
    study = planted_study(surge(b_noise=128.0), trials=35, noise=0.005, seed=0)
    bests = study_bests(study)
    fit = fit_surge(bests, fit_power_law(bests))
    assert fit is not None and fit.preferred
    assert 128 / 1.5 < fit.b_noise < 128 * 1.5


def test_spreads_the_budget_over_the_batch_sizes() -> None:
    study = planted_study(power_law(0.5), trials=35, seed=0)
    counts = [sum(t.params["batch_size"] == b for t in study.trials) for b in
              (16, 32, 64, 128, 256, 512, 1024)]
    assert min(counts) >= 3 and max(counts) <= 8


def test_widens_past_the_range_when_the_best_sits_at_an_edge() -> None:
    # lr* = 3e-4 at B=16 .. 2.4e-3 at 128: below a range starting at 1e-2 (limit: 1e-4)
    study = planted_study(power_law(1.0, c=3e-4), trials=28, lr=(1e-2, 1.0),
                          batch=(16, 128))
    bests = study_bests(study)
    assert all(b.bracketed for b in bests)
    for b in bests:
        assert abs(math.log(b.lr / (3e-4 * b.batch_size / 16))) < 0.3


def test_the_search_stops_at_the_limit() -> None:
    config = StudyConfig(sampler="scaling", batch_size_min=16, batch_size_max=16, lr_min=1e-2,
                         lr_max=1.0, lr_search_limit=10.0)
    study = optuna.create_study(sampler=make_sampler(config))
    # lower is always better: the search walks down to lr_min / 10 and no further
    study.optimize(lambda t: math.log(suggest(t, config)[1]), n_trials=12)
    assert min(t.params["lr"] for t in study.trials) == pytest.approx(1e-3)


def _ask_tell(study: optuna.Study, config: StudyConfig, n: int) -> None:
    for _ in range(n):
        trial = study.ask()
        b, lr = suggest(trial, config)
        study.tell(trial, (math.log(lr) - math.log(1e-3 * (b / 16) ** 0.5)) ** 2)


def test_a_fresh_sampler_resumes_where_the_stored_trials_stand(tmp_path) -> None:
    config = StudyConfig(sampler="scaling", batch_size_min=16, batch_size_max=64)
    url = f"sqlite:///{tmp_path}/s.db"
    one = optuna.create_study(study_name="one", storage=url, sampler=make_sampler(config))
    _ask_tell(one, config, 14)
    two = optuna.create_study(study_name="two", storage=url, sampler=make_sampler(config))
    _ask_tell(two, config, 6)
    # a new process: a new sampler object, only the storage in common
    two = optuna.load_study(study_name="two", storage=url, sampler=make_sampler(config))
    _ask_tell(two, config, 8)
    assert [t.params for t in one.trials] == [t.params for t in two.trials]


def test_running_trials_are_not_proposed_again() -> None:
    config = StudyConfig(sampler="scaling", batch_size_min=16, batch_size_max=16)
    study = optuna.create_study(sampler=make_sampler(config))
    _ask_tell(study, config, 4)
    asked = [study.ask() for _ in range(3)]  # three workers at once
    lrs = [suggest(t, config)[1] for t in asked]
    assert len({round(math.log(x), 3) for x in lrs}) == 3


def test_a_pruned_trial_counts_as_worse_and_the_bracket_is_stored() -> None:
    config = StudyConfig(sampler="scaling", batch_size_min=32, batch_size_max=32,
                         lr_min=1e-3, lr_max=1e-1)
    study = optuna.create_study(sampler=make_sampler(config))
    values = iter([1.0, 2.0])
    for _ in range(3):
        trial = study.ask()
        suggest(trial, config)
        value = next(values, None)
        if value is None:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, value)
    # centre 1e-2 best, 10^-1.5.. (the step below) worse, the pruned one above: bracketed
    attr = study.user_attrs[BRACKET_ATTR.format(32)]
    assert attr["bracketed"] and attr["trials"] == 3
    assert attr["lr"] == pytest.approx(1e-2)
    assert attr["low"] < attr["lr"] < attr["high"]


def test_an_enqueued_batch_size_is_kept() -> None:
    config = StudyConfig(sampler="scaling", batch_size_min=16, batch_size_max=256)
    study = optuna.create_study(sampler=make_sampler(config))
    study.enqueue_trial({"batch_size": 128})
    trial = study.ask()
    b, lr = suggest(trial, config)
    assert b == 128 and config.lr_min <= lr <= config.lr_max
