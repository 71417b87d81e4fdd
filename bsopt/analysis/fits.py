"""The fits behind the answers, with intervals: lr* = c B^alpha and S(B) = S_min (1 + B_crit/B).

- ``lr* = c * B^alpha``: linear scaling (alpha = 1, Goyal et al. 2017, "Accurate, Large
  Minibatch SGD") or square-root scaling (alpha = 0.5, Krizhevsky 2014; Hoffer et al. 2017,
  "Train longer, generalize better");
- ``S(B) = S_min (1 + B_crit / B)``, so ``E(B) = E_min (1 + B / B_crit)`` (McCandlish et al.
  2018, "An Empirical Model of Large-Batch Training", arXiv:1812.06162).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy import optimize, stats

CONFIDENCE = 0.95
MIN_BATCH_SIZES = 3  # two parameters fitted, at least one degree of freedom for a CI

VERDICTS = {
    "linear": "consistent with linear scaling (alpha=1)",
    "sqrt": "consistent with square-root scaling (alpha=0.5)",
    "both": "consistent with both — run more batch sizes / lrs",
    "neither": "consistent with neither linear (alpha=1) nor square-root (alpha=0.5) scaling",
}


@dataclass(frozen=True)
class ScalingFit:
    """Least-squares fit of ``log lr* = log c + alpha log B`` with a t-interval for alpha."""

    _derived: ClassVar[tuple[str, ...]] = ("verdict_text",)
    alpha: float
    alpha_low: float
    alpha_high: float
    c: float
    r_squared: float
    batch_sizes: int
    verdict: str  # a key of VERDICTS: "linear", "sqrt", "both" or "neither"

    @property
    def verdict_text(self) -> str:
        """The verdict in words."""
        return VERDICTS[self.verdict]


@dataclass(frozen=True)
class CriticalBatch:
    """Fit of ``S(B) = S_min (1 + B_crit / B)``, so ``E(B) = E_min (1 + B / B_crit)``."""

    s_min: float
    s_min_ci: tuple[float, float]
    b_crit: float
    b_crit_ci: tuple[float, float]
    e_min: float  # S_min * B_crit
    e_min_ci: tuple[float, float]
    batch_sizes: int

    def steps(self, batch_size: float) -> float:
        """Predicted steps to target at ``batch_size``."""
        return self.s_min * (1.0 + self.b_crit / batch_size)


def scaling_verdict(alpha_low: float, alpha_high: float) -> str:
    """Which of alpha = 1 and 0.5 the interval holds: "linear", "sqrt", "both" or "neither"."""
    def holds(alpha: float) -> bool:
        return alpha_low - 1e-9 <= alpha <= alpha_high + 1e-9

    linear, sqrt = holds(1.0), holds(0.5)
    return {(True, False): "linear", (False, True): "sqrt", (True, True): "both"}.get(
        (linear, sqrt), "neither")


def fit_lr_scaling(
    batch_sizes: Sequence[float], lrs: Sequence[float], *, confidence: float = CONFIDENCE
) -> ScalingFit:
    """Fit ``lr* = c * B^alpha`` by least squares in log-log space.

    Args:
        batch_sizes: One batch size per point (at least three distinct).
        lrs: The best learning rate at each batch size.
        confidence: Level of the t-interval for alpha.
    """
    x, y = np.log(np.asarray(batch_sizes, float)), np.log(np.asarray(lrs, float))
    n = len(x)
    if n != len(y) or len(set(x)) < MIN_BATCH_SIZES:
        raise ValueError(f"need {MIN_BATCH_SIZES} distinct batch sizes, got {len(set(x))}")
    sxx = float(np.sum((x - x.mean()) ** 2))
    alpha = float(np.sum((x - x.mean()) * (y - y.mean())) / sxx)
    intercept = float(y.mean() - alpha * x.mean())
    ssr = float(np.sum((y - intercept - alpha * x) ** 2))
    sst = float(np.sum((y - y.mean()) ** 2))
    half = stats.t.ppf(0.5 + confidence / 2, n - 2) * math.sqrt(ssr / (n - 2) / sxx)
    low, high = alpha - half, alpha + half
    return ScalingFit(alpha=alpha, alpha_low=low, alpha_high=high, c=math.exp(intercept),
                      r_squared=1.0 - ssr / sst if sst > 0 else 1.0, batch_sizes=n,
                      verdict=scaling_verdict(low, high))


def fit_critical_batch(
    batch_sizes: Sequence[float], steps: Sequence[float], *, confidence: float = CONFIDENCE
) -> CriticalBatch:
    """Fit ``S(B) = S_min (1 + B_crit / B)`` (McCandlish et al. 2018, arXiv:1812.06162).

    Least squares on log S with log S_min and log B_crit as parameters: relative errors suit
    step counts spanning orders of magnitude, and both stay positive. The intervals are
    ``exp(estimate +- t * se)`` from the fit's covariance: approximate, since the model is
    nonlinear. ``E_min = S_min * B_crit``.

    Args:
        batch_sizes: At least three distinct batch sizes.
        steps: Steps to target at each.
        confidence: Level of the intervals.
    """
    b, s = np.asarray(batch_sizes, float), np.asarray(steps, float)
    n = len(b)
    if n != len(s) or len(set(b)) < MIN_BATCH_SIZES:
        raise ValueError(f"need {MIN_BATCH_SIZES} distinct batch sizes, got {len(set(b))}")
    # Starting point from the linear form S = S_min + S_min B_crit (1/B).
    slope, intercept = np.polyfit(1.0 / b, s, 1)
    if intercept > 0 and slope > 0:
        p0 = [math.log(intercept), math.log(slope / intercept)]
    else:
        p0 = [math.log(s.min()), math.log(float(np.median(b)))]
    span = (math.log(b.min()) - 20.0, math.log(b.max()) + 20.0)
    p0[1] = min(max(p0[1], span[0] + 1.0), span[1] - 1.0)

    def model(batch: np.ndarray, log_s_min: float, log_b_crit: float) -> np.ndarray:
        return log_s_min + np.log1p(np.exp(log_b_crit) / batch)

    with warnings.catch_warnings():  # an exact fit leaves no covariance: CI becomes nan
        warnings.simplefilter("ignore", optimize.OptimizeWarning)
        params, cov = optimize.curve_fit(model, b, np.log(s), p0=p0,
                                         bounds=([-np.inf, span[0]], [np.inf, span[1]]))
    t = stats.t.ppf(0.5 + confidence / 2, n - 2)

    def interval(estimate: float, variance: float) -> tuple[float, float]:
        if not (math.isfinite(variance) and variance >= 0):
            return (math.nan, math.nan)
        half = t * math.sqrt(variance)
        # A flat direction gives a huge variance: the bound is then infinite, not an error.
        return (math.exp(max(estimate - half, -700.0)), math.exp(min(estimate + half, 700.0)))

    log_s, log_b = float(params[0]), float(params[1])
    return CriticalBatch(
        s_min=math.exp(log_s), s_min_ci=interval(log_s, cov[0, 0]),
        b_crit=math.exp(log_b), b_crit_ci=interval(log_b, cov[1, 1]),
        e_min=math.exp(log_s + log_b),
        e_min_ci=interval(log_s + log_b, cov[0, 0] + cov[1, 1] + 2 * cov[0, 1]),
        batch_sizes=n,
    )
