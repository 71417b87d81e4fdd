"""Plotly figures of a bsopt study, computed from its trial records alone.

Each figure is two steps: a pure function of :mod:`bsopt.figure_data` from
:class:`~bsopt.records.TrialRecord` lists to plain figure data (tested by value), then a
thin function here turning that data into a ``plotly.graph_objects.Figure``. Figures never
raise on a small or odd study: when the data is missing they say so in an annotation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import optuna
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from bsopt.analysis import best_by_batch
from bsopt.figure_data import (
    LossScale,
    Point,
    SurfaceData,
    batch_ticks,
    learning_curves_data,
    loss_scale,
    lr_ticks,
    scaling_lines,
    surface_data,
    throughput_data,
)
from bsopt.records import TrialRecord, study_records

COLORSCALE = "Viridis"
HEIGHT = 450  # optuna-dashboard draws user figures in 450-pixel boxes
_LAYOUT = dict(height=HEIGHT, margin=dict(l=60, r=20, t=60, b=50))
# A horizontal legend under the x axis, clear of the colour bar on the right.
_LEGEND_BELOW = dict(legend=dict(orientation="h", x=0, y=-0.25), margin_b=90)
_NO_SURFACE = "The surface needs 3 complete trials not on one line; showing the trials only."


def batch_colors(batch_sizes: Sequence[int]) -> dict[int, str]:
    """A colour per batch size, sequential in log2 B (small batches dark, large bright)."""
    sizes = sorted(set(batch_sizes))
    if not sizes:
        return {}
    lo, hi = math.log2(sizes[0]), math.log2(sizes[-1])
    positions = [(math.log2(b) - lo) / (hi - lo) if hi > lo else 0.5 for b in sizes]
    return dict(zip(sizes, sample_colorscale(COLORSCALE, positions), strict=True))


def message_figure(title: str, message: str) -> go.Figure:
    """An empty figure whose only content is ``message``: what the study still lacks."""
    fig = go.Figure()
    fig.add_annotation(
        text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font=dict(size=15)
    )
    fig.update_layout(title=title, xaxis_visible=False, yaxis_visible=False, **_LAYOUT)
    return fig


def _note(
    fig: go.Figure, text: str, *, xref: str = "paper", yref: str = "paper", y: float = 1.0
) -> None:
    """A caveat written on the figure (top of the plot area by default)."""
    fig.add_annotation(
        text=text,
        x=0.5,
        y=y,
        xref=xref,
        yref=yref,
        showarrow=False,
        yanchor="bottom" if y == 1.0 else "middle",
    )


def _hover(p: Point) -> str:
    loss = f"{p.loss:.4g}" if math.isfinite(p.loss) else "diverged"
    return (
        f"trial {p.number} ({p.state.lower()})<br>batch {p.batch_size}, lr {p.lr:.3g}"
        f"<br>val loss {loss} after {p.epochs} epochs"
    )


def _colorbar(scale: LossScale) -> dict[str, Any]:
    return dict(title="val loss", tickvals=scale.tickvals, ticktext=scale.ticktext)


def _marker_traces(data: SurfaceData, scale: LossScale | None, bar: bool) -> list[go.Scatter]:
    """The trials on the map: complete ones coloured by loss (with the colour bar if ``bar``),
    pruned and diverged ones as grey crosses."""
    marker: dict[str, Any] = dict(size=9, line=dict(color="white", width=1))
    if scale is not None:
        marker.update(
            color=[scale.colour(p.loss) for p in data.complete],
            colorscale=COLORSCALE,
            cmin=scale.cmin,
            cmax=scale.cmax,
            showscale=bar,
            colorbar=_colorbar(scale),
        )
    traces = [
        go.Scatter(
            x=[p.x for p in data.complete],
            y=[p.y for p in data.complete],
            mode="markers",
            name="complete",
            text=[_hover(p) for p in data.complete],
            hoverinfo="text",
            marker=marker,
        )
    ]
    if data.other:
        traces.append(
            go.Scatter(
                x=[p.x for p in data.other],
                y=[p.y for p in data.other],
                mode="markers",
                name="pruned / diverged",
                text=[_hover(p) for p in data.other],
                hoverinfo="text",
                marker=dict(symbol="x", size=8, color="grey"),
            )
        )
    return traces


def _plane_axes(points: Sequence[Point]) -> tuple[dict, dict]:
    """The batch-size and learning-rate axes of the (log2 B, log10 lr) plane, in real units."""
    xv, xt = batch_ticks([p.batch_size for p in points])
    yv, yt = lr_ticks([p.lr for p in points])
    return (
        dict(title="batch size", tickvals=xv, ticktext=xt),
        dict(title="learning rate", tickvals=yv, ticktext=yt),
    )


def loss_surface_figure(records: Sequence[TrialRecord]) -> go.Figure:
    """Contour of the final val loss over log2 batch size x log10 lr, with the trials."""
    title = "Final validation loss over batch size and learning rate"
    data = surface_data(records)
    points = data.complete + data.other
    if not points:
        return message_figure(title, "No finished trials yet: nothing to place on the map.")
    fig = go.Figure()
    scale = loss_scale([p.loss for p in data.complete]) if data.complete else None
    if data.grid_z is not None and scale is not None:
        fig.add_trace(
            go.Contour(
                x=data.grid_x,
                y=data.grid_y,
                z=scale.colour_grid(data.grid_z),
                zmin=scale.cmin,
                zmax=scale.cmax,
                colorscale=COLORSCALE,
                colorbar=_colorbar(scale),
                hoverinfo="skip",
                name="interpolated",
            )
        )
    else:
        _note(fig, _NO_SURFACE)
    for trace in _marker_traces(data, scale, bar=data.grid_z is None):
        fig.add_trace(trace)
    xaxis, yaxis = _plane_axes(points)
    fig.update_layout(title=title, xaxis=xaxis, yaxis=yaxis, **_LAYOUT)
    fig.update_layout(**_LEGEND_BELOW)
    return fig


def loss_surface_3d_figure(records: Sequence[TrialRecord]) -> go.Figure:
    """The interpolated loss surface in 3-D with the trials (only the trials if too few)."""
    title = "Loss surface (3-D)"
    data = surface_data(records)
    points = data.complete + data.other
    if not points:
        return message_figure(title, "No finished trials yet: nothing to draw.")
    fig = go.Figure()
    if data.grid_z is not None:
        fig.add_trace(
            go.Surface(
                x=data.grid_x,
                y=data.grid_y,
                z=data.grid_z,
                colorscale=COLORSCALE,
                opacity=0.9,
                name="interpolated",
                colorbar=dict(title="val loss"),
                hoverinfo="skip",
            )
        )
    else:
        _note(fig, _NO_SURFACE)
    for group, name, marker in (
        (data.complete, "complete", dict(size=4, color="black")),
        (
            [p for p in data.other if math.isfinite(p.loss)],
            "pruned",
            dict(size=4, color="grey", symbol="x"),
        ),
    ):
        if group:
            fig.add_trace(
                go.Scatter3d(
                    x=[p.x for p in group],
                    y=[p.y for p in group],
                    z=[p.loss for p in group],
                    mode="markers",
                    name=name,
                    marker=marker,
                    text=[_hover(p) for p in group],
                    hoverinfo="text",
                )
            )
    xaxis, yaxis = _plane_axes(points)
    fig.update_layout(
        title=title,
        **_LAYOUT,
        legend=dict(x=0, y=1),  # the colour bar takes the right edge
        scene=dict(xaxis=xaxis, yaxis=yaxis, zaxis=dict(title="val loss")),
    )
    return fig


def learning_curves_figure(records: Sequence[TrialRecord]) -> go.Figure:
    """Validation and training loss per epoch, one line per trial, grouped by batch size."""
    title = "Learning curves by batch size"
    curves = learning_curves_data(records)
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
    fig.update_layout(title=title, legend=dict(title="batch size (dotted: pruned)"), **_LAYOUT)
    fig.update_xaxes(title="epoch")
    # Log scale: an early spike of a too-large lr (loss 10+) would flatten every other curve.
    fig.update_yaxes(type="log", dtick="D2")  # 1, 2 and 5 of each decade: fewer labels
    fig.update_yaxes(title="loss (log scale)", col=1)
    return fig


def best_lr_figure(records: Sequence[TrialRecord]) -> go.Figure:
    """The best lr at each batch size, with linear and square-root scaling lines (log-log)."""
    title = "Best learning rate by batch size"
    best = best_by_batch(records)
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
        _note(fig, "Scaling lines need the best lr of at least two batch sizes.")
    fig.update_layout(title=title, **_LAYOUT)
    fig.update_layout(**_LEGEND_BELOW)
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
            _note(fig, f"no {name} recorded", xref=f"x{col} domain", yref=f"y{col} domain", y=0.5)
    fig.update_layout(title=title, showlegend=False, **_LAYOUT)
    fig.update_xaxes(title="batch size", type="log", tickvals=sizes)
    return fig


def final_by_batch_figure(records: Sequence[TrialRecord]) -> go.Figure:
    """Final val loss and val accuracy against batch size, each at that batch's best lr."""
    title = "Final loss and accuracy at each batch size's best learning rate"
    best = best_by_batch(records)
    if not best:
        return message_figure(title, "No complete trials yet.")
    panels = [
        ("final val loss", [b.val_loss for b in best]),
        ("final val accuracy", [b.val_accuracy for b in best]),
    ]
    text = [f"trial {b.trial}, lr {b.lr:.3g}" for b in best]
    return _batch_panels(title, [b.batch_size for b in best], panels, text)


def throughput_figure(records: Sequence[TrialRecord]) -> go.Figure:
    """Seconds per epoch and samples per second against batch size (medians)."""
    title = "Throughput by batch size"
    rows = throughput_data(records)
    if not rows:
        return message_figure(title, "No trial has recorded epoch times yet.")
    panels = [
        ("seconds per epoch", [t.seconds_per_epoch for t in rows]),
        ("samples per second", [t.samples_per_second for t in rows]),
    ]
    text = [f"median of {t.trials} trials" for t in rows]
    return _batch_panels(title, [t.batch_size for t in rows], panels, text)


FIGURES = {
    "loss_surface": loss_surface_figure,
    "loss_surface_3d": loss_surface_3d_figure,
    "learning_curves": learning_curves_figure,
    "best_lr_by_batch": best_lr_figure,
    "final_by_batch": final_by_batch_figure,
    "throughput": throughput_figure,
}
FIGURE_KEYS = tuple(FIGURES)  # stable: the dashboard's graph-object ids and the report use them


def figures_from_records(records: Sequence[TrialRecord]) -> dict[str, go.Figure]:
    """Every bsopt figure of these records, keyed by :data:`FIGURE_KEYS`."""
    return {key: make(records) for key, make in FIGURES.items()}


def study_figures(study: optuna.Study) -> dict[str, go.Figure]:
    """Every bsopt figure of a study (COMPLETE and PRUNED trials), keyed by :data:`FIGURE_KEYS`.

    Example:
        >>> figures = study_figures(optuna.load_study(study_name="digits-cnn", storage=url))
        >>> figures["loss_surface"].show()
    """
    return figures_from_records(study_records(study))
