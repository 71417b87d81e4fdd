"""The lr scaling fits and verdicts, and Zhang et al.'s critical batch size, on planted data."""

from __future__ import annotations

import math

import pytest

from bsopt.analysis.critical import zhang_critical
from bsopt.analysis.scaling import BestLr, best_lr, fit_power_law, fit_surge, verdict

SIZES = [16, 32, 64, 128, 256, 512, 1024]


def planted(alpha: float, se: float, wobble: float = 0.0, trials: int = 5) -> list[BestLr]:
    """Best lrs on c B^alpha, alternately ``wobble`` above and below in log lr."""
    out = []
    for i, b in enumerate(SIZES):
        lr = 1e-3 * b ** alpha * math.exp(wobble * (1 if i % 2 else -1))
        out.append(BestLr(b, lr, lr / 2, lr * 2, se, True, trials))
    return out


@pytest.mark.parametrize(("alpha", "key"), [(1.0, "linear"), (0.5, "sqrt"), (0.0, "neither")])
def test_a_tight_fit_is_decisive(alpha: float, key: str) -> None:
    fit = fit_power_law(planted(alpha, se=0.05, wobble=0.03))
    assert fit.alpha == pytest.approx(alpha, abs=0.02)
    assert fit.width < 0.2
    assert fit.verdict == key and fit.more_trials is None


def test_a_wide_fit_is_undecided_and_says_how_many_trials_would_decide() -> None:
    fit = fit_power_law(planted(0.75, se=0.5, wobble=0.5))
    assert fit.verdict == "undecided"
    # half-width h and distance d = 0.25 to the farther rule: trials * ((h/d)^2 - 1) more
    half = fit.width / 2
    assert fit.more_trials == math.ceil(35 * ((half / 0.25) ** 2 - 1))
    assert "more trials would decide" in fit.verdict_text


def test_verdict_counts() -> None:
    assert verdict(0.75, 0.25, 1.25, 10) == ("undecided", 30)  # h = 0.5 = 2 d: 4x the trials
    assert verdict(0.9, 0.6, 1.2, 10) == ("linear", None)


def test_the_scatter_widens_the_interval_beyond_the_stated_errors() -> None:
    tight = fit_power_law(planted(0.5, se=0.05))
    scattered = fit_power_law(planted(0.5, se=0.05, wobble=0.3))
    assert scattered.width > 3 * tight.width


def test_the_surge_form_wins_on_a_surge_and_loses_on_a_power_law() -> None:
    surge = []
    for b in SIZES:
        r = math.sqrt(128 / b)
        lr = 0.01 / (0.5 * (r + 1 / r))
        surge.append(BestLr(b, lr, lr / 2, lr * 2, 0.05, True, 5))
    fit = fit_surge(surge, fit_power_law(surge))
    assert fit is not None and fit.preferred
    assert fit.b_noise == pytest.approx(128, rel=0.01)
    assert fit.lr_max == pytest.approx(0.01, rel=0.01)
    power = planted(0.5, se=0.05, wobble=0.03)
    assert not fit_surge(power, fit_power_law(power)).preferred


def test_best_lr_is_the_parabolas_vertex_with_the_bracket() -> None:
    # loss = (log lr - log 0.01)^2 at five lrs: the vertex is exact
    lrs = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
    b = best_lr(64, [(x, (math.log(x) - math.log(0.0125)) ** 2) for x in lrs])
    assert b is not None and b.bracketed
    assert b.lr == pytest.approx(0.0125, rel=1e-6)
    assert (b.low, b.high) == pytest.approx((3e-3, 3e-2))
    edge = best_lr(64, [(x, -math.log(x)) for x in lrs])  # best at the largest lr
    assert edge is not None and not edge.bracketed and edge.lr == pytest.approx(1e-1)


def test_zhang_critical_batch_on_a_planted_steps_curve() -> None:
    # S(B) = S_min (1 + B_crit/B) with B_crit = 200: the ratio to linear scaling from 16 is
    # (B + 200) / 216, 1.2 at B = 1.2 * 16 + 0.2 * 200 = 59.2
    steps = [1000 * (1 + 200 / b) for b in SIZES]
    z = zhang_critical(SIZES, steps, mccandlish_b_crit=200.0)
    assert z is not None and z.b_ref == 16
    assert z.closed_form == pytest.approx(59.2)
    # interpolated in log B between 32 (ratio 1.074) and 64 (1.222): within 5% of 59.2
    assert z.b_crit == pytest.approx(59.2, rel=0.05)


def test_zhang_exact_at_a_measured_size_and_not_reached() -> None:
    # the ratio is 1, 1.1, 1.2 (exactly at 64), 2: the crossing is 64
    steps = [1000, 1000 * 1.1 / 2, 1000 * 1.2 / 4, 1000 * 2 / 8]
    z = zhang_critical([16, 32, 64, 128], steps)
    assert z is not None and z.b_crit == pytest.approx(64) and z.closed_form is None
    perfect = zhang_critical([16, 32, 64], [1000, 500, 250])
    assert perfect is not None and perfect.b_crit is None and perfect.beyond == 64


def test_the_saturating_form_wins_on_mccandlish_s_curve() -> None:
    from bsopt.analysis.scaling import fit_saturating

    sat = []
    for b in SIZES:
        lr = 0.3 / (1 + 64 / b)
        sat.append(BestLr(b, lr, lr / 2, lr * 2, 0.05, True, 5))
    fit = fit_saturating(sat, fit_power_law(sat))
    assert fit is not None and fit.preferred and fit.form == "saturating"
    assert fit.b_noise == pytest.approx(64, rel=0.01)
    assert "levels off" in fit.verdict_text


def test_best_epoch_ranks_a_trial_by_its_lowest_val_loss() -> None:
    from bsopt.analysis.best_lr import trial_loss
    from bsopt.records import TrialRecord

    r = TrialRecord(number=0, state="COMPLETE", batch_size=32, lr=0.1, value=0.9,
                    val_loss=[1.0, 0.3, 0.9])
    assert trial_loss(r) == 0.9 and trial_loss(r, "best-epoch") == 0.3


def test_a_verdict_says_when_the_interval_also_holds_no_scaling() -> None:
    fit = fit_power_law(planted(0.2, se=0.3, wobble=0.3))
    assert fit.alpha_low < 0 < fit.alpha_high
    assert "also holds alpha=0" in fit.verdict_text
    assert "also holds alpha=0" not in fit_power_law(planted(1.0, se=0.05)).verdict_text


def test_zhang_takes_the_last_crossing_past_a_noisy_small_batch() -> None:
    ratios = [1.0, 1.5, 1.0, 1.1, 2.0]  # 32 is a noisy outlier; from 256 on, all above
    sizes = [16, 32, 64, 128, 256]
    steps = [1000 * r * 16 / b for r, b in zip(ratios, sizes, strict=True)]
    z = zhang_critical(sizes, steps)
    t = (1.2 - 1.1) / (2.0 - 1.1)
    assert z is not None and z.b_crit == pytest.approx(128 * 2 ** t)


def test_zhang_skips_sizes_with_no_steps_to_measure() -> None:
    # The smallest size reached the target before its first step: 16 has no ratio, 32 is
    # the reference (no division by zero), and a size that never got there is left out too.
    z = zhang_critical([16, 32, 64, 128], [0.0, 1000, 500, float("nan")])
    assert z is not None and z.b_ref == 32 and z.beyond == 64
    assert zhang_critical([16, 32], [0.0, 1000]) is None
