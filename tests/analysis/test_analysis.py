from __future__ import annotations

import json
import math

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from bsopt.analysis import (
    analyze,
    analyze_records,
    fit_critical_batch,
    fit_lr_scaling,
    format_analysis,
    scaling_verdict,
    steps_to_reach,
)
from bsopt.errors import UsageError
from bsopt.records import TrialRecord, study_records

optuna.logging.set_verbosity(optuna.logging.WARNING)

BATCHES = [16, 32, 64, 128, 256, 512, 1024]
DISTRIBUTIONS = {"batch_size": CategoricalDistribution(BATCHES),
                 "lr": FloatDistribution(1e-6, 10.0, log=True)}
N_EXAMPLES, EPOCHS = 4096, 40  # so B=16 takes 256 steps per epoch and B=1024 takes 4
S_MIN, B_CRIT = 120.0, 128.0
L_INF, L0, KAPPA, BOWL = 0.1, 2.3, 3.0, 0.05
# With these, an optimal-lr trial at batch size B reaches PLANTED_TARGET after exactly S(B) steps.
PLANTED_TARGET = L_INF + (L0 - L_INF) * math.exp(-KAPPA)


def lr_star(batch_size: int, alpha: float) -> float:
    return 1e-3 * (batch_size / 16) ** alpha


def planted_curves(batch_size: int, lr: float, alpha: float, epochs: int = EPOCHS) -> dict:
    """Curves of a trial: val loss = bowl in log lr + exp decay in steps / S(B).

    Training is slower away from lr* (speed q <= 1), the final loss is higher (the bowl), and
    the planted generalization gap grows with log B.
    """
    per_epoch = N_EXAMPLES // batch_size
    steps = [per_epoch * (e + 1) for e in range(epochs)]
    off = math.log10(lr / lr_star(batch_size, alpha))
    speed = math.exp(-off**2)
    s_b = S_MIN * (1 + B_CRIT / batch_size)
    val = [L_INF + BOWL * off**2 + (L0 - L_INF) * math.exp(-KAPPA * speed * s / s_b)
           for s in steps]
    gap = 0.01 * math.log2(batch_size / 16)
    return {"val_loss": val, "train_loss": [v - gap for v in val], "steps": steps,
            "val_accuracy": [1 - v / 3 for v in val]}


def add(study: optuna.Study, batch_size: int, lr: float, attrs: dict,
        state: TrialState = TrialState.COMPLETE) -> None:
    study.add_trial(create_trial(
        params={"batch_size": batch_size, "lr": lr}, distributions=DISTRIBUTIONS,
        value=attrs["val_loss"][-1],
        intermediate_values={e + 1: v for e, v in enumerate(attrs["val_loss"])},
        user_attrs=attrs, state=state))


def planted_study(alpha: float, batches=BATCHES, lrs_per_batch: int = 24, seed: int = 0,
                  storage: str | None = None, epochs: int = EPOCHS) -> optuna.Study:
    """Random search over log lr in lr*(B) x 10^[-1, 1] at each batch size."""
    rng = np.random.default_rng(seed)
    study = optuna.create_study(storage=storage, study_name=f"planted-{alpha}")
    for batch_size in batches:
        for off in rng.uniform(-1.0, 1.0, lrs_per_batch):
            lr = lr_star(batch_size, alpha) * 10**off
            add(study, batch_size, lr, planted_curves(batch_size, lr, alpha, epochs))
    return study


@pytest.fixture(scope="module")
def sqrt_study() -> optuna.Study:
    return planted_study(alpha=0.5)


@pytest.mark.parametrize("alpha,verdict", [(0.5, "sqrt"), (1.0, "linear")])
def test_scaling_fit_recovers_planted_alpha(alpha, verdict, sqrt_study):
    study = sqrt_study if alpha == 0.5 else planted_study(alpha)
    result = analyze(study)
    fit = result.lr_scaling
    assert fit is not None and fit.batch_sizes == len(BATCHES)
    assert fit.alpha_low <= alpha <= fit.alpha_high
    assert fit.alpha_high - fit.alpha_low < 0.4  # narrow enough to tell 0.5 from 1
    assert fit.verdict == verdict
    # The fitted law predicts lr* within 30% in the middle of the range.
    assert fit.c * 128**fit.alpha == pytest.approx(lr_star(128, alpha), rel=0.3)
    assert fit.verdict_text in format_analysis(result)
    assert result.lr_notes == ()


def test_best_lr_per_batch_and_generalization_gap(sqrt_study):
    best = analyze(sqrt_study).best
    assert [b.batch_size for b in best] == BATCHES
    for b in best:
        assert b.complete_trials == 24 and b.lrs_tried == 24
        # Random search within 10^+-1 of lr*: the best draw is the one closest to lr*.
        assert abs(math.log10(b.lr / lr_star(b.batch_size, 0.5))) < 0.2
        assert b.generalization_gap == pytest.approx(0.01 * math.log2(b.batch_size / 16))
        assert b.val_loss == pytest.approx(b.val_accuracy and 3 * (1 - b.val_accuracy))


@pytest.mark.parametrize("target", [PLANTED_TARGET, None])
def test_critical_batch_recovered_from_steps_to_target(target, sqrt_study):
    result = analyze(sqrt_study, target_loss=target)
    rows = {r.batch_size: r for r in result.steps_to_target}
    assert sorted(rows) == BATCHES and result.unreached == ()
    assert not any(r.upper_bound for r in rows.values())
    crit = result.critical_batch
    assert crit is not None and crit.batch_sizes == len(BATCHES)
    assert crit.b_crit == pytest.approx(B_CRIT, rel=0.1)
    assert crit.b_crit_ci[0] < crit.b_crit < crit.b_crit_ci[1]
    assert crit.e_min == pytest.approx(crit.s_min * crit.b_crit)
    assert rows[64].examples == 64 * rows[64].steps
    if target is not None:
        assert crit.s_min == pytest.approx(S_MIN, rel=0.1)
        for b, row in rows.items():
            assert row.steps == pytest.approx(S_MIN * (1 + B_CRIT / b), rel=0.05)
        assert result.target_rule == "given"
    else:
        # Default: 1.05 x the worst per-batch-size best val loss, here B=1024's (it gets only
        # ~1.2 S(B) steps in its 40 epochs); S(B) scales the same way for any target.
        worst = min(min(r.val_loss) for r in study_records(sqrt_study) if r.batch_size == 1024)
        assert result.target_loss == pytest.approx(1.05 * worst)
        assert "default" in result.target_rule


def test_pruned_trials_count_for_steps_but_not_for_best_lr():
    study = planted_study(alpha=0.5, batches=[64, 128, 256], lrs_per_batch=4)
    # A pruned trial at exactly lr*: the fastest curve at B=64, cut after 12 epochs.
    add(study, 64, lr_star(64, 0.5), planted_curves(64, lr_star(64, 0.5), 0.5, epochs=12),
        state=TrialState.PRUNED)
    pruned_number = len(study.trials) - 1
    # A pruned trial with an implausibly low "final" loss must not become the best.
    fake = planted_curves(128, 1.0, 0.5, epochs=2)
    fake["val_loss"] = [0.5, 0.01]
    add(study, 128, 1.0, fake, state=TrialState.PRUNED)
    result = analyze(study, target_loss=PLANTED_TARGET)
    assert result.pruned_trials == 2
    row64 = next(r for r in result.steps_to_target if r.batch_size == 64)
    assert row64.trial == pruned_number
    assert row64.steps == pytest.approx(S_MIN * (1 + B_CRIT / 64), rel=0.02)
    best128 = next(b for b in result.best if b.batch_size == 128)
    assert best128.lr != 1.0 and best128.complete_trials == 4


def test_steps_to_reach_interpolates_within_the_crossing_epoch():
    record = TrialRecord(number=0, state="COMPLETE", batch_size=32, lr=0.1, value=0.2,
                         val_loss=[1.0, 0.6, 0.2], steps=[10, 20, 30])
    assert steps_to_reach(record, 0.4) == (pytest.approx(25.0), False)
    assert steps_to_reach(record, 0.6) == (pytest.approx(20.0), False)
    assert steps_to_reach(record, 1.5) == (10.0, True)  # already there: an upper bound
    assert steps_to_reach(record, 0.1) is None
    gappy = TrialRecord(number=1, state="PRUNED", batch_size=32, lr=0.1, value=None,
                        val_loss=[1.0, math.nan, 0.2], steps=[10, 20, 30])
    assert steps_to_reach(gappy, 0.4) == (30.0, True)  # no finite point before the crossing


@pytest.mark.parametrize("low,high,verdict", [
    (0.8, 1.2, "linear"), (0.3, 0.7, "sqrt"), (0.4, 1.1, "both"), (1.2, 1.5, "neither"),
    (0.6, 0.9, "neither"),
])
def test_scaling_verdict(low, high, verdict):
    assert scaling_verdict(low, high) == verdict


def test_fit_lr_scaling_interval_is_a_t_interval():
    batch = [16, 32, 64, 128]
    rng = np.random.default_rng(5)
    lrs = [1e-3 * b**0.75 * math.exp(e) for b, e in zip(batch, rng.normal(0, 0.1, 4))]
    fit = fit_lr_scaling(batch, lrs)
    slope, _ = np.polyfit(np.log(batch), np.log(lrs), 1)
    assert fit.alpha == pytest.approx(slope)
    # Two points left over: a t(2) interval is wide; with three batch sizes, t(1) is wider.
    assert fit.alpha_low < 0.75 < fit.alpha_high
    narrow = fit_lr_scaling(batch[:3], lrs[:3])
    assert narrow.alpha_high - narrow.alpha_low > fit.alpha_high - fit.alpha_low
    with pytest.raises(ValueError, match="3 distinct"):
        fit_lr_scaling([16, 16, 32], [1e-3, 2e-3, 3e-3])


def test_fit_critical_batch_exact_points():
    batch = np.array([8, 32, 128, 512, 2048])
    crit = fit_critical_batch(batch, 500 * (1 + 100 / batch))
    assert crit.s_min == pytest.approx(500, rel=1e-4)
    assert crit.b_crit == pytest.approx(100, rel=1e-4)
    assert crit.e_min == pytest.approx(50_000, rel=1e-4)
    assert crit.steps(100) == pytest.approx(1000, rel=1e-4)


def test_too_few_batch_sizes_says_what_to_run():
    study = planted_study(alpha=0.5, batches=[32, 64], lrs_per_batch=3)
    result = analyze(study, target_loss=PLANTED_TARGET)
    assert result.lr_scaling is None and result.critical_batch is None
    assert any("only 2 batch sizes have complete trials (32, 64)" in n and "--batch-size" in n
               for n in result.lr_notes)
    assert "  note: only 2 batch sizes" in format_analysis(result)
    assert any("critical batch size fit needs at least 3" in n for n in result.steps_notes)
    assert any("--noise-scale" in n for n in result.noise_notes)


def test_unreached_target_and_edge_lr_notes():
    study = optuna.create_study()
    for b in (32, 64, 128):
        for lr in (1e-5, 1e-4):  # both far below lr*: the best lr is the largest tried
            add(study, b, lr, planted_curves(b, lr, 1.0, epochs=5))
    result = analyze(study, target_loss=0.05)  # below the planted L_INF: nobody gets there
    assert result.unreached == (32, 64, 128) and result.steps_to_target == ()
    assert any("never reached val loss 0.05" in n and "--epochs" in n
               for n in result.steps_notes)
    assert all(b.lr_at_edge and b.lr == 1e-4 for b in result.best)
    assert any("widen --lr" in n for n in result.lr_notes)


def test_empty_study_and_bad_target():
    result = analyze(optuna.create_study())
    assert result.best == () and result.target_loss is None
    assert "run `bsopt search` first" in format_analysis(result)
    with pytest.raises(UsageError, match="--target-loss"):
        analyze(optuna.create_study(), target_loss=math.nan)


def test_noise_scale_medians_per_batch_and_epoch():
    study = optuna.create_study()
    for b, values in ((32, [[10.0, 20.0], [30.0, 40.0], [20.0, None]]), (64, [[50.0]])):
        for v in values:
            attrs = planted_curves(b, 1e-3, 0.5, epochs=len(v))
            attrs["noise_scale"] = v
            add(study, b, 1e-3, attrs)
    add(study, 128, 1e-3, planted_curves(128, 1e-3, 0.5, epochs=2))  # measured nothing
    series = analyze(study).noise_scale
    assert [(s.batch_size, s.trials, s.medians) for s in series] == [
        (32, 3, (20.0, 30.0)), (64, 1, (50.0,))]


def test_to_dict_is_json_and_matches_sqlite_study(tmp_path, sqrt_study):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    small = {"alpha": 0.5, "batches": [16, 64, 256], "lrs_per_batch": 3, "epochs": 8}
    on_disk = planted_study(**small, storage=storage)
    loaded = optuna.load_study(study_name=on_disk.study_name, storage=storage)
    from_disk = analyze(loaded)
    in_memory = analyze_records(study_records(planted_study(**small)),
                                study_name=on_disk.study_name)
    assert from_disk.critical_batch is not None
    assert from_disk.to_dict() == in_memory.to_dict()
    data = json.loads(json.dumps(analyze(sqrt_study).to_dict(), allow_nan=False))
    assert data["lr_scaling"]["verdict"] == "sqrt"
    assert data["best"][0]["generalization_gap"] == pytest.approx(0.0)
    assert data["steps_to_target"][0]["examples"] == 16 * data["steps_to_target"][0]["steps"]
    assert set(data) >= {"critical_batch", "noise_scale", "target_loss", "target_rule"}


def test_loose_target_upper_bounds_are_left_out_of_the_fit(sqrt_study):
    # At loss 1.5, small batch sizes are already there after one epoch (256 steps at B=16).
    result = analyze(sqrt_study, target_loss=1.5)
    bounded = [r.batch_size for r in result.steps_to_target if r.upper_bound]
    assert bounded and 16 in bounded and 1024 not in bounded
    assert any("upper bound" in n and "--target-loss" in n for n in result.steps_notes)
    crit = result.critical_batch
    assert crit is not None and crit.batch_sizes == len(BATCHES) - len(bounded)
    assert crit.b_crit == pytest.approx(B_CRIT, rel=0.15)  # S(B) scales alike for any target
    assert "<= " in format_analysis(result)


def test_b_crit_outside_the_batch_sizes_is_flagged_as_extrapolation():
    study = planted_study(alpha=0.5, batches=[256, 512, 1024], lrs_per_batch=8)
    result = analyze(study, target_loss=PLANTED_TARGET)
    assert result.critical_batch is not None
    assert result.critical_batch.b_crit < 256
    assert any("extrapolation" in n for n in result.steps_notes)
