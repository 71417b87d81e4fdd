"""The look shared by every bsopt figure: sizes, colours by batch size, notes, empty states."""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.colors import sample_colorscale

COLORSCALE = "Viridis"
HEIGHT = 450  # optuna-dashboard draws user figures in 450-pixel boxes
LAYOUT = dict(height=HEIGHT, margin=dict(l=60, r=20, t=60, b=50))
# A horizontal legend under the x axis, clear of the colour bar on the right.
LEGEND_BELOW = dict(legend=dict(orientation="h", x=0, y=-0.25), margin_b=90)


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
    fig.update_layout(title=title, xaxis_visible=False, yaxis_visible=False, **LAYOUT)
    return fig


def note(
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
