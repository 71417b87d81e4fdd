"""Figures by batch size: learning curves, the best lr, final loss and accuracy, throughput."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from bsopt.analysis import best_by_batch
from bsopt.records import TrialRecord
from bsopt.visualization.figure_data import (
    learning_curves_data,
    lr_ticks,
    scaling_lines,
    throughput_data,
)
from bsopt.visualization.layout import LAYOUT, LEGEND_BELOW, batch_colors, message_figure, note


def learning_curves_figure(trials: Sequence[TrialRecord]) -> go.Figure:
    """Validation and training loss per epoch, one line per trial, grouped by batch size."""
    title = "Learning curves by batch size"
    curves = learning_curves_data(trials)
    if not curves:
        return message_figure(title, "No trial has recorded a loss curve yet.")
    colors = batch_colors([c.batch_size for c in curves])
    fig = make_subplots(rows=1, cols=2, subplot_titles=("validation loss", "training loss"))
    traces, cols, shown = [], [], set()
    for c in curves:
        hover = f"trial {c.number}, batch {c.batch_size}, lr {c.lr:.3g} ({c.state.lower()})"
        line = dict(color=colors[c.batch_size], dash="dot" if c.state == "PRUNED" else "solid")
        for col, losses in ((1, c.val_loss), (2, c.train_loss)):
            traces.append(
                go.Scatter(
                    x=c.epochs,
                    y=losses,
                    mode="lines",
                    line=line,
                    name=f"batch {c.batch_size}",
                    legendgroup=f"batch-{c.batch_size}",
                    showlegend=c.batch_size not in shown,
                    hovertext=hover,
                    hoverinfo="text+y",
                )
            )
            cols.append(col)
            shown.add(c.batch_size)
    fig.add_traces(traces, rows=[1] * len(traces), cols=cols)  # one call: add_trace is O(n)
    fig.update_layout(title=title, legend=dict(title="batch size (dotted: pruned)"), **LAYOUT)
    fig.update_xaxes(title="epoch")
    # Log scale: an early spike of a too-large lr (loss 10+) would flatten every other curve.
    fig.update_yaxes(type="log", dtick="D2")  # 1, 2 and 5 of each decade: fewer labels
    fig.update_yaxes(title="loss (log scale)", col=1)
    return fig


def best_lr_figure(trials: Sequence[TrialRecord]) -> go.Figure:
    """The best lr at each batch size, with linear and square-root scaling lines (log-log)."""
    title = "Best learning rate by batch size"
    best = best_by_batch(trials)
    if not best:
        return message_figure(title, "No complete trials yet: no best learning rate to show.")
    fig = go.Figure(
        go.Scatter(
            x=[b.batch_size for b in best],
            y=[b.lr for b in best],
            mode="markers+lines",
            name="best lr",
            marker=dict(size=10),
            text=[f"trial {b.trial}: val loss {b.val_loss:.4g}" for b in best],
        )
    )
    lines = scaling_lines(best)
    ends = [best[0].batch_size, best[-1].batch_size]
    for line, dash in zip(lines, ("dash", "dot"), strict=False):
        fig.add_trace(
            go.Scatter(
                x=ends,
                y=[line.lr_at(b) for b in ends],
                mode="lines",
                line=dict(dash=dash),
                name=f"{line.name} (rms {line.rms:.2f} decades)",
            )
        )
    if not lines:
        note(fig, "Scaling lines need the best lr of at least two batch sizes.")
    fig.update_layout(title=title, **LAYOUT)
    fig.update_layout(**LEGEND_BELOW)
    fig.update_xaxes(title="batch size", type="log", tickvals=[b.batch_size for b in best])
    # Labelled like the loss surface's lr axis: Plotly's own log ticks crowd a narrow range
    # with unlabelled minor digits.
    shown = [b.lr for b in best] + [line.lr_at(b) for line in lines for b in ends]
    values, texts = lr_ticks(shown)
    fig.update_yaxes(title="learning rate", type="log", tickvals=[10**v for v in values],
                     ticktext=texts)
    return fig


def _batch_panels(
    title: str, sizes: list[int], panels: list[tuple[str, list[float | None]]], text: list[str]
) -> go.Figure:
    """Side-by-side line plots of per-batch-size values on a log batch-size axis."""
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[name for name, _ in panels])
    for col, (name, values) in enumerate(panels, start=1):
        trace = go.Scatter(x=sizes, y=values, mode="markers+lines", name=name, text=text)
        fig.add_trace(trace, row=1, col=col)
        if all(v is None for v in values):
            note(fig, f"no {name} recorded", xref=f"x{col} domain", yref=f"y{col} domain", y=0.5)
    fig.update_layout(title=title, showlegend=False, **LAYOUT)
    fig.update_xaxes(title="batch size", type="log", tickvals=sizes)
    return fig


def final_by_batch_figure(trials: Sequence[TrialRecord]) -> go.Figure:
    """Final val loss and val accuracy against batch size, each at that batch's best lr."""
    title = "Final loss and accuracy at each batch size's best learning rate"
    best = best_by_batch(trials)
    if not best:
        return message_figure(title, "No complete trials yet.")
    panels = [
        ("final val loss", [b.val_loss for b in best]),
        ("final val accuracy", [b.val_accuracy for b in best]),
    ]
    text = [f"trial {b.trial}, lr {b.lr:.3g}" for b in best]
    return _batch_panels(title, [b.batch_size for b in best], panels, text)


def throughput_figure(trials: Sequence[TrialRecord]) -> go.Figure:
    """Seconds per epoch and samples per second against batch size (medians)."""
    title = "Throughput by batch size"
    rows = throughput_data(trials)
    if not rows:
        return message_figure(title, "No trial has recorded epoch times yet.")
    panels = [
        ("seconds per epoch", [t.seconds_per_epoch for t in rows]),
        ("samples per second", [t.samples_per_second for t in rows]),
    ]
    text = [f"median of {t.trials} trials" for t in rows]
    return _batch_panels(title, [t.batch_size for t in rows], panels, text)
