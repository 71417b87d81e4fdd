"""The data behind bsopt's figures, computed from trial records alone.

Pure functions from :class:`~bsopt.records.TrialRecord` lists to plain dataclasses of numbers
and lists, which the figure modules turn into Plotly figures and the tests check by value.
The per-batch-size selection of the best lr is the analysis's own
(:func:`bsopt.analysis.best_by_batch`), so figures and answers agree. Nothing here raises on
a small or odd study: missing data is an empty result.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import griddata
from scipy.spatial import QhullError

from bsopt.analysis.best_lr import BestRun
from bsopt.records import TrialRecord, finite_or_none

GRID_POINTS = 40  # interpolation grid per axis: smooth enough, small enough to store


@dataclass(frozen=True)
class Point:
    """One trial placed on the (log2 batch size, log10 lr) plane."""

    number: int
    state: str
    batch_size: int
    lr: float
    loss: float  # final validation loss (TrialRecord.final_loss); nan if it diverged
    epochs: int

    @property
    def x(self) -> float:
        return math.log2(self.batch_size)

    @property
    def y(self) -> float:
        return math.log10(self.lr)


@dataclass(frozen=True)
class SurfaceData:
    """Observed trials and, when they span a plane, the loss interpolated on a grid."""

    complete: list[Point]  # COMPLETE trials with a finite final loss
    other: list[Point]  # PRUNED trials and diverged (non-finite) ones: not on the surface
    grid_x: list[float] | None = None  # log2 batch size
    grid_y: list[float] | None = None  # log10 lr
    grid_z: list[list[float | None]] | None = None  # rows follow grid_y; None outside the hull


@dataclass(frozen=True)
class Curve:
    """One trial's per-epoch losses."""

    number: int
    state: str
    batch_size: int
    lr: float
    epochs: list[int]
    train_loss: list[float | None]
    val_loss: list[float | None]


@dataclass(frozen=True)
class ScalingLine:
    """``log10 lr = intercept + exponent * log10 B``, fitted with the exponent fixed."""

    name: str
    exponent: float
    intercept: float
    rms: float  # root-mean-square residual of the best lrs, in decades

    def lr_at(self, batch_size: float) -> float:
        """The learning rate the rule gives at ``batch_size``."""
        return 10 ** (self.intercept + self.exponent * math.log10(batch_size))


@dataclass(frozen=True)
class Throughput:
    """Median timing of one batch size's trials."""

    batch_size: int
    trials: int
    seconds_per_epoch: float | None
    samples_per_second: float | None


@dataclass(frozen=True)
class LossScale:
    """How a map colours losses: log10 of the loss when every loss is positive, else the loss.

    On a log scale the corners at chance level (ln 10 = 2.3 for ten classes) no longer take
    most of the palette, which would leave the valley of good runs, the answer, in one colour.
    """

    log: bool
    cmin: float  # colour of the lowest loss
    cmax: float  # colour of the highest loss
    tickvals: list[float] | None = None  # colour-bar ticks (colours) ...
    ticktext: list[str] | None = None  # ... labelled with the losses they stand for

    def colour(self, loss: float) -> float:
        """The colour value of ``loss``."""
        return math.log10(loss) if self.log else loss

    def colour_grid(self, rows: list[list[float | None]]) -> list[list[float | None]]:
        """An interpolated loss grid as colours (5 significant digits, as stored)."""
        return [[None if v is None else float(f"{self.colour(v):.5g}") for v in row]
                for row in rows]


def _point(record: TrialRecord) -> Point:
    loss = record.final_loss
    return Point(record.number, record.state, record.batch_size, record.lr,
                 math.nan if loss is None else loss, record.epochs)


def _spans_plane(xy: np.ndarray) -> bool:
    """True if the points are not all on one line (so a triangulation exists)."""
    return len(xy) >= 3 and np.linalg.matrix_rank(xy - xy.mean(axis=0), tol=1e-9) == 2


def surface_data(trials: Sequence[TrialRecord], grid_points: int = GRID_POINTS) -> SurfaceData:
    """Split trials into surface points and others; interpolate the loss when possible.

    The grid is linear interpolation (``scipy.interpolate.griddata``) over the convex hull of
    the COMPLETE trials; trials at the same (batch size, lr) are averaged first.
    """
    complete, other = [], []
    for p in map(_point, trials):
        (complete if p.state == "COMPLETE" and math.isfinite(p.loss) else other).append(p)
    by_xy: dict[tuple[float, float], list[float]] = defaultdict(list)
    for p in complete:
        by_xy[(p.x, p.y)].append(p.loss)
    xy = np.array(list(by_xy), dtype=float).reshape(-1, 2)
    if not _spans_plane(xy):
        return SurfaceData(complete, other)
    z = np.array([statistics.fmean(v) for v in by_xy.values()])
    gx = np.linspace(xy[:, 0].min(), xy[:, 0].max(), grid_points)
    gy = np.linspace(xy[:, 1].min(), xy[:, 1].max(), grid_points)
    mesh_x, mesh_y = np.meshgrid(gx, gy)
    try:
        gz = griddata(xy, z, (mesh_x, mesh_y), method="linear", rescale=True)
    except QhullError:  # numerically flat despite the rank test
        return SurfaceData(complete, other)
    # 5 significant digits: the interpolation is no more precise, and the figure is stored
    # in the study in 2 kB pieces
    rows = [[float(f"{v:.5g}") if math.isfinite(v) else None for v in row] for row in gz]
    return SurfaceData(complete, other, gx.tolist(), gy.tolist(), rows)


def learning_curves_data(trials: Sequence[TrialRecord]) -> list[Curve]:
    """Per-epoch losses of every trial that has any, ordered by batch size then number."""
    curves = []
    for r in sorted(trials, key=lambda r: (r.batch_size, r.number)):
        n = max(len(r.train_loss), len(r.val_loss))
        if n == 0:
            continue
        train = [finite_or_none(v) for v in r.train_loss] + [None] * (n - len(r.train_loss))
        val = [finite_or_none(v) for v in r.val_loss] + [None] * (n - len(r.val_loss))
        curves.append(
            Curve(r.number, r.state, r.batch_size, r.lr, list(range(1, n + 1)), train, val)
        )
    return curves


def scaling_lines(best: Sequence[BestRun]) -> list[ScalingLine]:
    """Linear (lr ∝ B) and square-root (lr ∝ √B) rules through the best lrs.

    Least squares in log space with the slope fixed: the intercept is the mean of
    ``log10 lr - k log10 B``. Empty when fewer than two batch sizes make a comparison.
    """
    if len({b.batch_size for b in best}) < 2:
        return []
    log_b = np.log10([b.batch_size for b in best])
    log_lr = np.log10([b.lr for b in best])
    lines = []
    for name, k in (("linear: lr ∝ B", 1.0), ("square root: lr ∝ √B", 0.5)):
        intercept = float(np.mean(log_lr - k * log_b))
        rms = float(np.sqrt(np.mean((log_lr - intercept - k * log_b) ** 2)))
        lines.append(ScalingLine(name, k, intercept, rms))
    return lines


def throughput_data(trials: Sequence[TrialRecord]) -> list[Throughput]:
    """Per batch size: median over its trials of each trial's median epoch time and speed."""
    groups: dict[int, list[TrialRecord]] = defaultdict(list)
    for r in trials:
        groups[r.batch_size].append(r)

    def median_of_medians(series: list[list[float]]) -> float | None:
        kept = [[v for v in s if math.isfinite(v)] for s in series]
        medians = [statistics.median(k) for k in kept if k]
        return statistics.median(medians) if medians else None

    out = []
    for b, group in sorted(groups.items()):
        seconds = median_of_medians([r.epoch_seconds for r in group])
        speed = median_of_medians([r.samples_per_second for r in group])
        if seconds is not None or speed is not None:
            out.append(Throughput(b, len(group), seconds, speed))
    return out


def batch_ticks(batch_sizes: Sequence[int]) -> tuple[list[float], list[str]]:
    """Ticks at each power of two from the smallest to the largest batch, on a log2 axis."""
    lo = math.floor(math.log2(min(batch_sizes)))
    hi = math.ceil(math.log2(max(batch_sizes)))
    return [float(k) for k in range(lo, hi + 1)], [str(2**k) for k in range(lo, hi + 1)]


def log_ticks(values: Sequence[float]) -> list[tuple[int, int]]:
    """Round ticks for positive ``values`` on a log axis, as (mantissa, exponent) pairs.

    Every decade from below the smallest value to above the largest; within a range of less
    than two decades, also the 2x and 5x ticks inside it (1e-3, 2e-3, 5e-3, 1e-2, ...).
    """
    lo, hi = math.log10(min(values)), math.log10(max(values))
    mantissas = (1, 2, 5) if hi - lo < 2 else (1,)
    ticks = []
    for k in range(math.floor(lo), math.ceil(hi) + 1):
        for m in mantissas:
            v = math.log10(m) + k
            if lo - 1e-9 <= v <= hi + 1e-9 or (m == 1 and len(mantissas) == 1):
                ticks.append((m, k))
    return ticks


def lr_ticks(lrs: Sequence[float]) -> tuple[list[float], list[str]]:
    """Ticks (1e-3, 1e-2, ...; also 2x and 5x within a narrow range) on a log10 axis."""
    ticks = log_ticks(lrs)
    if len(ticks) < 2:  # a range inside one 1-2-5 step: label the learning rates themselves
        distinct = sorted(set(lrs))[:6]
        return [math.log10(v) for v in distinct], [f"{v:.2g}" for v in distinct]
    return (
        [math.log10(m) + k for m, k in ticks],
        [str(m) if k == 0 else f"{m}e{k}" for m, k in ticks],
    )


def loss_scale(losses: Sequence[float]) -> LossScale:
    """The colour scale of a map of ``losses`` (finite, at least one), with round ticks."""
    low, high = min(losses), max(losses)
    if low <= 0:  # a user's objective may go to zero or below: no log scale
        return LossScale(False, low, high)
    ticks = [m * 10.0**k for m, k in log_ticks(losses)]
    if len(ticks) < 2:  # a range inside one 1-2-5 step: label its ends
        ticks = [low, high]
    return LossScale(True, math.log10(low), math.log10(high),
                     [math.log10(v) for v in ticks], [f"{v:.3g}" for v in ticks])
