"""Every bsopt figure of a study, by key: what the dashboard and the report show.

Each figure is two steps: a pure function of :mod:`bsopt.visualization.figure_data` (or of
:mod:`bsopt.analysis`) from :class:`~bsopt.records.TrialRecord` lists to plain figure data
(tested by value), then a thin function turning that data into a Plotly figure. Figures never
raise on a small or odd study: when the data is missing they say so in an annotation.
"""

from __future__ import annotations

from collections.abc import Sequence

import optuna
import plotly.graph_objects as go

from bsopt.records import TrialRecord, study_records
from bsopt.visualization.batch_figures import (
    best_lr_figure,
    final_by_batch_figure,
    learning_curves_figure,
    throughput_figure,
)
from bsopt.visualization.science_figures import (
    best_curves_figure,
    noise_scale_figure,
    steps_to_target_figure,
)
from bsopt.visualization.surface_figures import loss_surface_3d_figure, loss_surface_figure

FIGURES = {
    "loss_surface": loss_surface_figure,
    "loss_surface_3d": loss_surface_3d_figure,
    "learning_curves": learning_curves_figure,
    "best_lr_by_batch": best_lr_figure,
    "final_by_batch": final_by_batch_figure,
    "throughput": throughput_figure,
    "steps_to_target": steps_to_target_figure,
    "noise_scale": noise_scale_figure,
    "best_lr_curves": best_curves_figure,
}
FIGURE_KEYS = tuple(FIGURES)  # stable: the dashboard's graph-object ids and the report use them


def figures_from_records(trials: Sequence[TrialRecord]) -> dict[str, go.Figure]:
    """Every bsopt figure of these trials, keyed by :data:`FIGURE_KEYS`."""
    return {key: make(trials) for key, make in FIGURES.items()}


def study_figures(study: optuna.Study) -> dict[str, go.Figure]:
    """Every bsopt figure of a study (COMPLETE and PRUNED trials), keyed by :data:`FIGURE_KEYS`.

    Example:
        >>> figures = study_figures(optuna.load_study(study_name="digits-cnn", storage=url))
        >>> figures["loss_surface"].show()
    """
    return figures_from_records(study_records(study))
