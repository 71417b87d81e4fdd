from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from bsopt.analysis import best_by_batch
from bsopt.records import TrialRecord
from bsopt.visualization import figure_data

BATCHES = [16, 32, 64, 128]
LR_FACTORS = [0.25, 0.5, 1.0, 2.0, 4.0]  # around each batch size's best lr


def rec(
    number: int,
    batch_size: int,
    lr: float,
    loss: float,
    *,
    state: str = "COMPLETE",
    epochs: int = 3,
    seconds: float = 1.0,
    speed: float = 100.0,
) -> TrialRecord:
    """A record whose val loss falls to ``loss`` at its last epoch."""
    val = [loss + 0.1 * (epochs - e) for e in range(1, epochs + 1)]
    return TrialRecord(
        number=number,
        state=state,
        batch_size=batch_size,
        lr=lr,
        value=loss if state == "COMPLETE" else None,
        train_loss=[v / 2 for v in val],
        val_loss=val,
        val_accuracy=[1 - v / 10 for v in val],
        epoch_seconds=[seconds] * epochs,
        samples_per_second=[speed] * epochs,
        steps=[10 * (e + 1) for e in range(epochs)],
    )


def planted(best_lr: Callable[[float], float]) -> list[TrialRecord]:
    """A grid whose loss is lowest at ``best_lr(B)``: 0.1 + (decades off the best)^2 + 0.01 B."""
    out = []
    for b in BATCHES:
        for f in LR_FACTORS:
            loss = 0.1 + math.log10(f) ** 2 + 0.01 * math.log2(b)
            out.append(rec(len(out), b, best_lr(b) * f, loss))
    return out


def linear(b: float) -> float:
    return 1e-3 * b / 16


def sqrt(b: float) -> float:
    return 1e-3 * math.sqrt(b / 16)


def test_best_by_batch_picks_the_lowest_complete_trial_per_batch():
    records = planted(linear)
    # A pruned trial with a lower loss and a diverged complete one must not win.
    records.append(rec(100, 32, 0.5, 0.0, state="PRUNED"))
    records.append(rec(101, 64, 0.9, math.nan))
    best = best_by_batch(records)
    assert [b.batch_size for b in best] == BATCHES
    assert [b.lr for b in best] == pytest.approx([linear(b) for b in BATCHES])
    losses = [0.1 + 0.01 * math.log2(b) for b in BATCHES]
    assert [b.val_loss for b in best] == pytest.approx(losses)
    assert [b.val_accuracy for b in best] == pytest.approx([1 - v / 10 for v in losses])
    assert [b.train_loss for b in best] == pytest.approx([v / 2 for v in losses])
    assert [b.trial for b in best] == [5 * i + 2 for i in range(len(BATCHES))]  # f = 1.0
    # Only the 5 finite complete trials count; the best lr is inside the range tried.
    assert all(b.complete_trials == 5 and b.lrs_tried == 5 and not b.lr_at_edge for b in best)
    assert all(b.train_seconds == pytest.approx(3.0) for b in best)  # the epochs' sum


def test_final_loss_is_the_last_epoch_and_none_when_it_diverged():
    diverged = TrialRecord(0, "COMPLETE", 16, 1e-3, 0.4, val_loss=[0.5, 0.4, math.nan])
    assert diverged.final_loss is None
    assert rec(1, 16, 1e-3, 0.25).final_loss == pytest.approx(0.25)
    # No curve recorded (not a bsopt trial): the objective value stands in.
    assert TrialRecord(2, "COMPLETE", 16, 1e-3, 0.7).final_loss == 0.7
    assert TrialRecord(3, "COMPLETE", 16, 1e-3, math.inf).final_loss is None
    # The diverged trial has the lowest loss at epoch 2 but cannot be the best.
    (best,) = best_by_batch([diverged, rec(1, 16, 1e-2, 0.45)])
    assert best.trial == 1 and best.complete_trials == 1


def test_train_seconds_prefers_the_recorded_total():
    record = rec(0, 16, 1e-3, 0.5, seconds=2.0)
    assert record.total_seconds == pytest.approx(6.0)
    timed = TrialRecord(1, "COMPLETE", 16, 1e-3, 0.5, epoch_seconds=[1.0], train_seconds=9.5)
    assert timed.total_seconds == 9.5
    assert TrialRecord(2, "COMPLETE", 16, 1e-3, 0.5).total_seconds is None


def test_best_lr_at_the_edge_of_the_lrs_tried_is_flagged():
    best = best_by_batch(
        [rec(0, 32, 1e-3, 0.9), rec(1, 32, 1e-2, 0.5), rec(2, 32, 1e-1, 0.3),
         rec(3, 64, 1e-2, 0.4)]
    )
    assert [(b.batch_size, b.lr, b.lrs_tried, b.lr_at_edge) for b in best] == [
        (32, 1e-1, 3, True),
        (64, 1e-2, 1, False),  # one lr tried: no edge to speak of
    ]


@pytest.mark.parametrize("rule, exact", [(linear, 1.0), (sqrt, 0.5)])
def test_scaling_lines_have_fixed_slopes_and_fit_the_matching_rule(rule, exact):
    lines = figure_data.scaling_lines(best_by_batch(planted(rule)))
    assert [line.exponent for line in lines] == [1.0, 0.5]
    for line in lines:
        slope = (math.log10(line.lr_at(256)) - math.log10(line.lr_at(16))) / math.log10(16)
        assert slope == pytest.approx(line.exponent)
        if line.exponent == exact:  # the true rule passes through every best lr
            assert line.rms == pytest.approx(0.0, abs=1e-12)
            assert [line.lr_at(b) for b in BATCHES] == pytest.approx([rule(b) for b in BATCHES])
        else:
            assert line.rms > 0.1


def test_scaling_lines_least_squares_intercept():
    best = best_by_batch([rec(0, 16, 1e-3, 0.1), rec(1, 64, 1e-2, 0.1)])
    linear_line = figure_data.scaling_lines(best)[0]
    # log10 lr - log10 B = (-3 - 1.204) and (-2 - 1.806): the intercept is their mean.
    expected = ((-3 - math.log10(16)) + (-2 - math.log10(64))) / 2
    assert linear_line.intercept == pytest.approx(expected)
    assert figure_data.scaling_lines(best_by_batch([rec(0, 16, 1e-3, 0.1)])) == []


def test_surface_grid_interpolates_through_the_trials():
    records = planted(linear)
    data = figure_data.surface_data(records, grid_points=5)
    assert len(data.complete) == len(records) and data.other == []
    assert len(data.grid_x) == 5 and len(data.grid_y) == 5
    assert len(data.grid_z) == 5 and all(len(row) == 5 for row in data.grid_z)
    assert data.grid_x[0] == pytest.approx(4) and data.grid_x[-1] == pytest.approx(7)
    # The corner at the smallest batch and lr is a trial: the surface passes through it.
    corner = next(
        p for p in data.complete if p.batch_size == 16 and p.lr == min(r.lr for r in records)
    )
    assert data.grid_z[0][0] == pytest.approx(corner.loss, rel=1e-4)
    # Outside the convex hull of the trials (the lr grid is slanted) the grid is empty.
    assert None in data.grid_z[-1] and all(
        v is None or 0.1 < v < 1.5 for row in data.grid_z for v in row
    )


def test_surface_separates_pruned_and_diverged_and_averages_duplicates():
    records = [
        rec(0, 16, 1e-3, 1.0),
        rec(1, 16, 1e-3, 3.0),
        rec(2, 64, 1e-3, 1.0),
        rec(3, 16, 1e-1, 1.0),
        rec(4, 64, 1e-1, math.inf),
        rec(5, 32, 1e-2, 0.2, state="PRUNED"),
    ]
    data = figure_data.surface_data(records, grid_points=3)
    assert sorted(p.number for p in data.other) == [4, 5]
    assert math.isnan(next(p for p in data.other if p.number == 4).loss)
    assert data.grid_z[0][0] == pytest.approx(2.0)  # the mean of trials 0 and 1


@pytest.mark.parametrize(
    "records",
    [
        [],
        [rec(0, 16, 1e-3, 1.0)],
        [rec(0, 16, 1e-3, 1.0), rec(1, 32, 1e-2, 1.0)],
        [rec(0, 16, 1e-3, 1.0), rec(1, 16, 1e-2, 1.0), rec(2, 16, 1e-1, 1.0)],  # one batch size
        [rec(0, 16, 1e-3, 1.0), rec(1, 32, 1e-2, 1.0), rec(2, 64, 1e-1, 1.0)],  # on one line
    ],
    ids=["none", "one", "two", "one-batch", "collinear"],
)
def test_surface_needs_three_points_off_one_line(records):
    data = figure_data.surface_data(records)
    assert data.grid_z is None and len(data.complete) == len(records)


def test_learning_curves_data_orders_by_batch_and_pads():
    records = [
        rec(0, 64, 1e-2, 0.5),
        rec(1, 16, 1e-2, 0.4, epochs=2),
        TrialRecord(2, "COMPLETE", 32, 1e-2, 0.3, train_loss=[1.0, math.nan], val_loss=[1.0]),
        TrialRecord(3, "PRUNED", 32, 1e-2, None),  # no curve: left out
    ]
    curves = figure_data.learning_curves_data(records)
    assert [(c.number, c.batch_size) for c in curves] == [(1, 16), (2, 32), (0, 64)]
    assert curves[0].epochs == [1, 2] and curves[0].val_loss == pytest.approx([0.5, 0.4])
    assert curves[1].train_loss == [1.0, None] and curves[1].val_loss == [1.0, None]


def test_throughput_is_the_median_over_a_batch_sizes_trials():
    records = [
        rec(0, 16, 1e-3, 1.0, seconds=3.0, speed=10.0),
        rec(1, 16, 1e-2, 1.0, seconds=1.0, speed=30.0),
        rec(2, 16, 1e-1, 1.0, seconds=2.0, speed=20.0, state="PRUNED"),
        rec(3, 64, 1e-3, 1.0, seconds=0.5, speed=80.0),
    ]
    rows = figure_data.throughput_data(records)
    assert [(t.batch_size, t.trials) for t in rows] == [(16, 3), (64, 1)]
    assert [t.seconds_per_epoch for t in rows] == [2.0, 0.5]
    assert [t.samples_per_second for t in rows] == [20.0, 80.0]


def test_ticks_are_in_real_units():
    assert figure_data.batch_ticks([16, 256]) == (
        [4.0, 5.0, 6.0, 7.0, 8.0],
        ["16", "32", "64", "128", "256"],
    )
    vals, texts = figure_data.lr_ticks([1e-4, 0.5])
    assert texts == ["1e-4", "1e-3", "1e-2", "1e-1", "1"] and vals == [-4, -3, -2, -1, 0]
    assert figure_data.lr_ticks([0.01, 0.06])[1] == ["1e-2", "2e-2", "5e-2"]
    assert figure_data.lr_ticks([0.02, 0.03])[1] == ["0.02", "0.03"]


def test_best_by_batch_ignores_trials_without_loss():
    records = [TrialRecord(0, "COMPLETE", 32, 0.1, None),
               TrialRecord(1, "COMPLETE", 32, 0.2, 0.5, val_loss=[0.9, 0.5])]
    (best,) = best_by_batch(records)
    assert best.trial == 1 and best.lrs_tried == 1 and not best.lr_at_edge


def test_loss_scale_is_logarithmic_with_round_ticks_for_positive_losses():
    scale = figure_data.loss_scale([0.04, 0.3, 2.3])
    assert scale.log and (scale.cmin, scale.cmax) == pytest.approx(
        (math.log10(0.04), math.log10(2.3))
    )
    assert scale.ticktext == ["0.05", "0.1", "0.2", "0.5", "1", "2"]
    assert scale.tickvals == pytest.approx([math.log10(float(t)) for t in scale.ticktext])
    assert scale.colour(0.1) == pytest.approx(-1.0)
    assert scale.colour_grid([[0.1, None], [1.0, 0.123456789]]) == [[-1.0, None], [0.0, -0.90849]]
    # Within one 1-2-5 step: the ends are labelled.
    assert figure_data.loss_scale([0.21, 0.24]).ticktext == ["0.21", "0.24"]


def test_loss_scale_is_linear_when_a_loss_is_not_positive():
    scale = figure_data.loss_scale([-1.0, 0.0, 3.0])
    assert not scale.log and (scale.cmin, scale.cmax) == (-1.0, 3.0)
    assert scale.tickvals is None and scale.colour(-1.0) == -1.0
