from __future__ import annotations

import json
import math

import optuna
import plotly.graph_objects as go
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from bsopt.visualization.figures import FIGURE_KEYS, study_figures
from bsopt.visualization.layout import batch_colors

BATCHES = [16, 32, 64, 128]
LR_FACTORS = [0.25, 0.5, 1.0, 2.0, 4.0]  # around each batch size's best lr


def linear(b: float) -> float:
    return 1e-3 * b / 16


def best_loss(b: int) -> float:
    return 0.1 + 0.01 * math.log2(b)


@pytest.fixture
def grid_study(make_trial) -> optuna.Study:
    """A grid whose loss is lowest at lr = ``linear(B)``, plus one pruned trial at B = 32."""
    study = optuna.create_study()
    for b in BATCHES:
        for f in LR_FACTORS:
            loss = best_loss(b) + math.log10(f) ** 2
            study.add_trial(make_trial(b, linear(b) * f, [loss + 0.2, loss + 0.1, loss]))
    study.add_trial(make_trial(32, 0.9, [2.0], state=TrialState.PRUNED))
    return study


def test_batch_colors_are_sequential_in_log_batch():
    colors = batch_colors([16, 256, 64, 16])
    assert list(colors) == [16, 64, 256]
    assert len(set(colors.values())) == 3
    # Viridis runs purple (68, 1, 84) -> teal -> yellow (253, 231, 37): green grows with log2 B.
    assert colors[16] == "rgb(68, 1, 84)" and colors[256] == "rgb(253, 231, 37)"
    greens = [int(colors[b].strip("rgb()").split(",")[1]) for b in (16, 64, 256)]
    assert greens[0] < greens[1] < greens[2]
    assert batch_colors([32]) and batch_colors([]) == {}


def _no_nan_json(figure: go.Figure) -> dict:
    """The figure as the dashboard's browser parses it: strict JSON, no NaN/Infinity."""

    def refuse(name):
        raise AssertionError(f"{name} in figure JSON")

    return json.loads(figure.to_json(), parse_constant=refuse)


def test_figures_show_the_data(grid_study):
    figures = study_figures(grid_study)
    assert tuple(figures) == FIGURE_KEYS
    for figure in figures.values():
        _no_nan_json(figure)
        assert figure.layout.title.text

    surface = figures["loss_surface"]
    assert [t.type for t in surface.data] == ["contour", "scatter", "scatter"]
    assert len(surface.data[1].x) == len(BATCHES) * len(LR_FACTORS)
    assert list(surface.layout.xaxis.ticktext) == ["16", "32", "64", "128"]
    assert "1e-3" in surface.layout.yaxis.ticktext
    assert surface.data[2].marker.symbol == "x" and len(surface.data[2].x) == 1
    # Colours follow log10 of the loss (0.14 .. 0.53 here); the colour bar speaks in losses.
    contour, complete = surface.data[0], surface.data[1]
    losses = [best_loss(b) + math.log10(f) ** 2 for b in BATCHES for f in LR_FACTORS]
    assert list(complete.marker.color) == pytest.approx([math.log10(v) for v in losses])
    assert (contour.zmin, contour.zmax) == pytest.approx(
        (math.log10(min(losses)), math.log10(max(losses)))
    )
    assert list(contour.colorbar.ticktext) == ["0.2", "0.5"]
    assert list(contour.colorbar.tickvals) == pytest.approx([math.log10(0.2), math.log10(0.5)])
    assert max(v for row in contour.z for v in row if v is not None) <= contour.zmax + 1e-4
    surface_3d = figures["loss_surface_3d"]
    assert surface_3d.data[0].type == "surface"
    assert list(surface_3d.layout.scene.xaxis.ticktext) == ["16", "32", "64", "128"]

    curves = figures["learning_curves"]
    assert len(curves.data) == 2 * len(grid_study.trials)  # validation and training per trial
    legend = [t for t in curves.data if t.showlegend]
    assert [t.name for t in legend] == [f"batch {b}" for b in BATCHES]
    assert {t.legendgroup for t in curves.data} == {f"batch-{b}" for b in BATCHES}
    assert next(t for t in curves.data if t.line.dash == "dot").legendgroup == "batch-32"
    assert curves.layout.yaxis.type == curves.layout.yaxis2.type == "log"

    best_lr = figures["best_lr_by_batch"]
    assert best_lr.layout.xaxis.type == "log" and best_lr.layout.yaxis.type == "log"
    assert list(best_lr.data[0].x) == BATCHES
    assert list(best_lr.data[0].y) == pytest.approx([linear(b) for b in BATCHES])
    # Best lrs 1e-3..8e-3: ticks at 1, 2 and 5 of each decade, placed at those lrs.
    assert list(best_lr.layout.yaxis.ticktext) == ["1e-3", "2e-3", "5e-3"]
    assert list(best_lr.layout.yaxis.tickvals) == pytest.approx([1e-3, 2e-3, 5e-3])
    linear_trace = best_lr.data[1]
    assert list(linear_trace.x) == [16, 128]
    assert list(linear_trace.y) == pytest.approx([linear(16), linear(128)])

    final = figures["final_by_batch"]
    assert list(final.data[0].y) == pytest.approx([best_loss(b) for b in BATCHES])
    assert list(final.data[1].y) == [0.5] * len(BATCHES)  # make_trial's accuracy
    assert list(figures["throughput"].data[1].y) == [100.0] * len(BATCHES)


def add_trials(study: optuna.Study, make_trial, specs) -> None:
    """Trials from (batch size, lr, val losses, state); losses None: a trial without curves."""
    for batch_size, lr, losses, state in specs:
        if losses is None:  # another tool's objective: params and a value, no bsopt curves
            study.add_trial(optuna.trial.create_trial(
                params={"batch_size": batch_size, "lr": lr},
                distributions={"batch_size": CategoricalDistribution([batch_size]),
                               "lr": FloatDistribution(1e-5, 1.0, log=True)},
                value=0.5,
            ))
        else:
            study.add_trial(make_trial(batch_size, lr, losses, state=state))


COMPLETE, PRUNED = TrialState.COMPLETE, TrialState.PRUNED


@pytest.mark.parametrize(
    "specs, says",
    [
        (
            [],
            {
                "loss_surface": "No finished",
                "best_lr_by_batch": "No complete",
                "learning_curves": "No trial",
                "throughput": "No trial",
            },
        ),
        (
            [(16, 1e-3, [1.0], PRUNED), (64, 1e-2, [1.0], PRUNED)],
            {
                "best_lr_by_batch": "No complete",
                "final_by_batch": "No complete",
                "loss_surface": "needs 3 complete",
            },
        ),
        (
            [(16, 1e-3, [1.0], COMPLETE)],
            {"best_lr_by_batch": "at least two batch sizes", "loss_surface": "needs 3 complete"},
        ),
        (
            [(16, 1e-3, None, COMPLETE)],
            {"learning_curves": "No trial", "throughput": "No trial"},
        ),
    ],
    ids=["empty", "all-pruned", "one-trial", "no-curves"],
)
def test_degenerate_studies_say_what_is_missing(specs, says, make_trial):
    study = optuna.create_study()
    add_trials(study, make_trial, specs)
    figures = study_figures(study)
    assert tuple(figures) == FIGURE_KEYS
    for key, text in says.items():
        notes = [a.text for a in figures[key].layout.annotations]
        assert any(text in n for n in notes), (key, notes)
    for figure in figures.values():
        _no_nan_json(figure)


def test_a_loss_surface_with_non_positive_losses_keeps_a_linear_colour_scale(make_trial):
    study = optuna.create_study()  # a user's objective may go below zero
    for b, lr, loss in ((16, 1e-3, -1.0), (64, 1e-3, 0.5), (16, 1e-2, 1.0)):
        study.add_trial(make_trial(b, lr, [loss]))
    contour, complete = study_figures(study)["loss_surface"].data[:2]
    assert (contour.zmin, contour.zmax) == (-1.0, 1.0) and contour.colorbar.tickvals is None
    assert list(complete.marker.color) == [-1.0, 0.5, 1.0]
