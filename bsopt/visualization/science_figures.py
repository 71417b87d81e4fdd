"""The batch-size science figures: steps to target with both critical batch sizes, the noise
scale by batch size and epoch, and each batch size's learning curve at its best lr."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from bsopt.analysis import analyze_records
from bsopt.records import TrialRecord
from bsopt.visualization.layout import LAYOUT, batch_colors, message_figure
from bsopt.visualization.science_data import best_curves, noise_lines, steps_data


def steps_to_target_figure(trials: Sequence[TrialRecord]) -> go.Figure:
    """Steps to target against batch size (log-log), McCandlish's curve, both B_crit."""
    title = "Steps to target by batch size"
    a = analyze_records(trials)
    d = steps_data(a)
    if not d.batch_sizes:
        return message_figure(title, "No batch size reached the target loss within its epochs.")
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=d.batch_sizes, y=d.steps, mode="markers", name="measured",
                             marker=dict(size=10)))
    fig.add_trace(go.Scatter(x=d.batch_sizes, y=d.linear_steps, mode="lines",
                             name="perfect linear scaling", line=dict(dash="dot", color="grey")))
    if d.curve_b:
        fig.add_trace(go.Scatter(x=d.curve_b, y=d.curve_steps, mode="lines",
                                 name="S_min (1 + B_crit/B)"))
    for value, label, dash in ((d.b_crit, "B_crit (McCandlish)", "dash"),
                               (d.zhang, "Zhang et al. (20% over linear)", "dashdot")):
        if value is not None:
            fig.add_vline(x=value, line_dash=dash, annotation_text=f"{label} = {value:.3g}")
    fig.update_layout(title=f"{title} (val loss {a.target_loss:.4g})", **LAYOUT)
    fig.update_xaxes(type="log", title="batch size")
    fig.update_yaxes(type="log", title="optimizer steps to target")
    return fig


def noise_scale_figure(trials: Sequence[TrialRecord]) -> go.Figure:
    """B_simple per epoch, one line per batch size."""
    title = "Gradient noise scale B_simple by epoch"
    lines = noise_lines(analyze_records(trials))
    if not lines:
        return message_figure(title, "No trial measured the noise scale: run with --noise-scale.")
    colors = batch_colors([n.batch_size for n in lines])
    fig = go.Figure([go.Scatter(x=n.epochs, y=n.b_simple, mode="lines+markers",
                                name=f"batch {n.batch_size}",
                                line=dict(color=colors[n.batch_size])) for n in lines])
    fig.update_layout(title=title, legend=dict(title="batch size"), **LAYOUT)
    fig.update_xaxes(title="epoch")
    fig.update_yaxes(type="log", title="B_simple (median over trials)")
    return fig


def best_curves_figure(trials: Sequence[TrialRecord]) -> go.Figure:
    """The val loss against optimizer steps of each batch size at its best lr."""
    title = "Learning curves at each batch size's best lr"
    curves = best_curves(trials)
    if not curves:
        return message_figure(title, "No complete trial with per-epoch steps yet.")
    colors = batch_colors([c.batch_size for c in curves])
    fig = go.Figure([go.Scatter(x=c.steps, y=c.val_loss, mode="lines+markers",
                                name=f"batch {c.batch_size} (lr {c.lr:.3g})",
                                line=dict(color=colors[c.batch_size]),
                                hovertext=f"trial {c.trial}") for c in curves])
    fig.update_layout(title=title, legend=dict(title="batch size (best lr)"), **LAYOUT)
    fig.update_xaxes(type="log", title="optimizer steps")
    fig.update_yaxes(type="log", title="validation loss")
    return fig
