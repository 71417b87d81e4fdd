"""The data of the batch-size science figures, from a :class:`~bsopt.analysis.StudyAnalysis`
and the trials (pure, tested by value): steps to target with the fitted curve and both
critical batch sizes, the noise scale by batch size and epoch, the best lr's learning curves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bsopt.analysis import StudyAnalysis
from bsopt.records import TrialRecord, finite_or_none

CURVE_POINTS = 60  # points of the fitted S(B) curve


@dataclass(frozen=True)
class StepsData:
    """Measured steps to target, McCandlish's fitted curve, and the critical batch sizes."""

    batch_sizes: list[int]
    steps: list[float]
    curve_b: list[float]  # the fitted S(B) = S_min (1 + B_crit / B); empty without a fit
    curve_steps: list[float]
    linear_steps: list[float]  # perfect linear scaling from the smallest batch size
    b_crit: float | None  # McCandlish et al.
    zhang: float | None  # Zhang et al.


def steps_data(a: StudyAnalysis) -> StepsData:
    """The steps-to-target figure's data (upper bounds left out, as in the fit)."""
    rows = [r for r in a.steps_to_target if not r.upper_bound]
    b = [r.batch_size for r in rows]
    s = [float(r.steps) for r in rows]
    curve_b: list[float] = []
    curve_s: list[float] = []
    crit = a.critical_batch
    if crit is not None and b:
        curve_b = [float(v) for v in np.geomspace(min(b), max(b), CURVE_POINTS)]
        curve_s = [crit.steps(v) for v in curve_b]
    linear = [s[0] * b[0] / v for v in b] if b else []
    return StepsData(b, s, curve_b, curve_s, linear, crit.b_crit if crit else None,
                     a.zhang.b_crit if a.zhang else None)


@dataclass(frozen=True)
class NoiseLine:
    """The median noise scale of one batch size's trials per epoch."""

    batch_size: int
    epochs: list[int]
    b_simple: list[float | None]


def noise_lines(a: StudyAnalysis) -> list[NoiseLine]:
    """One line per batch size: B_simple against the epoch."""
    return [NoiseLine(s.batch_size, list(range(1, len(s.medians) + 1)),
                      [finite_or_none(v) if v is not None else None for v in s.medians])
            for s in a.noise_scale]


@dataclass(frozen=True)
class BestCurve:
    """The validation curve of one batch size's best trial (the articles' figure)."""

    batch_size: int
    lr: float
    trial: int
    steps: list[float]  # optimizer steps at each epoch's end
    val_loss: list[float | None]


def best_curves(trials: Sequence[TrialRecord]) -> list[BestCurve]:
    """Per batch size, the COMPLETE trial with the lowest final val loss: its curve by steps
    (batch sizes whose best trial recorded no steps are left out)."""
    best: dict[int, TrialRecord] = {}
    for r in trials:
        loss = r.final_loss
        if r.state != "COMPLETE" or loss is None or not math.isfinite(loss):
            continue
        if r.batch_size not in best or loss < best[r.batch_size].final_loss:  # type: ignore
            best[r.batch_size] = r
    out = []
    for b in sorted(best):
        r = best[b]
        n = len(r.val_loss)
        if len(r.steps) < n:  # no steps recorded (a --command script may not): no x axis
            continue
        steps = [float(v) for v in r.steps[:n]]
        out.append(BestCurve(b, r.lr, r.number, steps, [finite_or_none(v) for v in r.val_loss]))
    return out
