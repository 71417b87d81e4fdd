"""The loss surface over (batch size, learning rate): a contour map and a 3-D surface."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from bsopt.records import TrialRecord
from bsopt.visualization.figure_data import (
    LossScale,
    Point,
    SurfaceData,
    batch_ticks,
    loss_scale,
    lr_ticks,
    surface_data,
)
from bsopt.visualization.layout import COLORSCALE, LAYOUT, LEGEND_BELOW, message_figure, note

NO_SURFACE = "The surface needs 3 complete trials not on one line; showing the trials only."


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


def loss_surface_figure(trials: Sequence[TrialRecord]) -> go.Figure:
    """Contour of the final val loss over log2 batch size x log10 lr, with the trials."""
    title = "Final validation loss over batch size and learning rate"
    data = surface_data(trials)
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
        note(fig, NO_SURFACE)
    for trace in _marker_traces(data, scale, bar=data.grid_z is None):
        fig.add_trace(trace)
    xaxis, yaxis = _plane_axes(points)
    fig.update_layout(title=title, xaxis=xaxis, yaxis=yaxis, **LAYOUT)
    fig.update_layout(**LEGEND_BELOW)
    return fig


def loss_surface_3d_figure(trials: Sequence[TrialRecord]) -> go.Figure:
    """The interpolated loss surface in 3-D with the trials (only the trials if too few)."""
    title = "Loss surface (3-D)"
    data = surface_data(trials)
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
        note(fig, NO_SURFACE)
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
        **LAYOUT,
        legend=dict(x=0, y=1),  # the colour bar takes the right edge
        scene=dict(xaxis=xaxis, yaxis=yaxis, zaxis=dict(title="val loss")),
    )
    return fig
