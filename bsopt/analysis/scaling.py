"""The lr scaling answers with intervals: per-batch-size best lr, power law, surge, verdict.

- per batch size, the best log lr and its uncertainty from the trials there: the bracket of
  the lowest loss by its neighbours in lr, its estimate the vertex of the parabola through
  the three (a 1-D quadratic fit on log lr), its standard error the bracket's width / sqrt(12)
  (uniform on the bracket); an unbracketed best (at the edge of the lrs tried) gets a standard
  error as wide as the lrs tried, so it barely weighs;
- ``log lr* = log c + alpha log B`` by weighted least squares (weights 1 / se^2), the standard
  error scaled up by the fit's reduced chi^2 when the scatter exceeds the stated errors;
- the verdict names linear (alpha = 1, Goyal et al. 2017) or square root (alpha = 0.5, Hoffer
  et al. 2017; Malladi et al. 2022 for Adam) when the interval excludes the other, else
  "undecided" with the trials that would decide, assuming the half-width shrinks as
  1 / sqrt(trials);
- the surge form of Li et al. 2024 ("Surge Phenomenon in Optimal Learning Rate and Batch Size
  Scaling", arXiv:2405.14578) for Adam-style optimizers,
  ``lr*(B) = lr_max / (0.5 (sqrt(B_noise / B) + sqrt(B / B_noise)))``, which peaks at
  ``B = B_noise``; and McCandlish et al. 2018's form for SGD, ``lr*(B) = lr_max / (1 +
  B_noise / B)``, which rises linearly below B_noise and saturates above it; each compared
  with the power law by AICc on the same weights.
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
DECIDED = {
    "linear": "linear: the interval excludes square root (alpha=0.5); when B doubles, double "
              "the lr",
    "sqrt": "square root: the interval excludes linear (alpha=1); when B doubles, multiply the "
            "lr by 1.41",
    "neither": "neither linear nor square root: the interval excludes both",
    "undecided": "undecided: the interval holds both linear (alpha=1) and square root "
                 "(alpha=0.5)",
}


@dataclass(frozen=True)
class BestLr:
    """The best log lr at one batch size with its standard error."""

    batch_size: int
    lr: float  # the estimate: the parabola's vertex inside the bracket
    low: float  # the bracket, as lrs
    high: float
    se_log: float  # standard error of log lr
    bracketed: bool
    trials: int


def _quadratic_vertex(pts: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """Vertex of the least-squares parabola through 4+ points and its delta-method se."""
    x, y = np.array(pts).T
    design = np.column_stack([np.ones_like(x), x, x * x])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    if coef[2] <= 0:
        return None
    dof = len(x) - 3
    s2 = float(np.sum((y - design @ coef) ** 2)) / dof
    cov = s2 * np.linalg.pinv(design.T @ design)
    grad = np.array([0.0, -1.0 / (2 * coef[2]), coef[1] / (2 * coef[2] ** 2)])
    return float(-coef[1] / (2 * coef[2])), float(math.sqrt(max(grad @ cov @ grad, 0.0)))


def best_lr(batch_size: int, points: Sequence[tuple[float, float]]) -> BestLr | None:
    """The best lr at one batch size from its (lr, loss) points; None without a finite loss.

    Bracketed: the estimate is the vertex of the parabola through the best and its two
    neighbours, or of the least-squares parabola through the five points around the best
    when there are that many (its standard error by the delta method, between a third of the
    bracket's and the bracket's); the bracket is the two neighbours.
    """
    finite = sorted((math.log(lr), v) for lr, v in points if math.isfinite(v))
    if not finite:
        return None
    xs = [p[0] for p in finite]
    i = min(range(len(finite)), key=lambda k: finite[k][1])
    if 0 < i < len(finite) - 1:
        (xa, fa), (xb, fb), (xc, fc) = finite[i - 1], finite[i], finite[i + 1]
        den = (xb - xa) * (fb - fc) - (xb - xc) * (fb - fa)
        num = (xb - xa) ** 2 * (fb - fc) - (xb - xc) ** 2 * (fb - fa)
        x = xb - 0.5 * num / den if den < 0 else xb
        se = (xc - xa) / math.sqrt(12)
        near = finite[max(i - 2, 0): i + 3]
        # Five points (two degrees of freedom) at least: with four, a near-exact fit gives a
        # standard error near zero that would outweigh every other batch size. Floored at a
        # third of the bracket's: the parabola is only locally right.
        fitted = _quadratic_vertex(near) if len(near) >= 5 else None
        if fitted is not None and xa < fitted[0] < xc:
            x, se = fitted[0], min(se, max(fitted[1], se / 3))
        x = min(max(x, xa), xc)
        return BestLr(batch_size, math.exp(x), math.exp(xa), math.exp(xc), se, True,
                      len(points))
    span = max(xs[-1] - xs[0], math.log(10))
    return BestLr(batch_size, math.exp(xs[i]), math.exp(xs[max(i - 1, 0)]),
                  math.exp(xs[min(i + 1, len(xs) - 1)]), span, False, len(points))


@dataclass(frozen=True)
class PowerLaw:
    """Weighted fit of ``log lr* = log c + alpha log B`` with its interval and verdict."""

    _derived: ClassVar[tuple[str, ...]] = ("verdict_text", "width")
    alpha: float
    alpha_low: float
    alpha_high: float
    c: float
    chi2: float  # weighted residual sum of squares
    batch_sizes: int
    trials: int
    verdict: str  # a key of DECIDED
    more_trials: int | None  # undecided: about this many more trials would decide

    @property
    def width(self) -> float:
        """The interval's width."""
        return self.alpha_high - self.alpha_low

    @property
    def verdict_text(self) -> str:
        """The verdict in plain words."""
        text = DECIDED[self.verdict]
        if self.alpha_low <= 0.0 <= self.alpha_high:
            text += "; the interval also holds alpha=0 (no change of lr with B)"
        if self.more_trials is not None:
            text += (f"; about {self.more_trials} more trials would decide (if the interval "
                     "shrinks as 1/sqrt(trials))")
        return text


def verdict(alpha: float, low: float, high: float, trials: int) -> tuple[str, int | None]:
    """The verdict key, and for "undecided" the more trials that would decide."""
    holds_linear, holds_sqrt = low <= 1.0 <= high, low <= 0.5 <= high
    if holds_linear and not holds_sqrt:
        return "linear", None
    if holds_sqrt and not holds_linear:
        return "sqrt", None
    if not holds_linear and not holds_sqrt:
        return "neither", None
    # Both inside: excluding the farther of the two needs a half-width below its distance.
    half, needed = (high - low) / 2, max(abs(alpha - 1.0), abs(alpha - 0.5))
    ratio = half / needed
    return "undecided", max(1, math.ceil(trials * (ratio ** 2 - 1)))


def _weights(se: Sequence[float]) -> np.ndarray:
    return 1.0 / np.maximum(np.asarray(se, float), 1e-3) ** 2


def fit_power_law(bests: Sequence[BestLr], *, confidence: float = CONFIDENCE) -> PowerLaw:
    """Weighted least squares of log lr* on log B (at least three batch sizes)."""
    if len({b.batch_size for b in bests}) < 3:
        raise ValueError("need 3 batch sizes")
    x = np.log([b.batch_size for b in bests])
    y = np.log([b.lr for b in bests])
    w = _weights([b.se_log for b in bests])
    xm, ym = np.sum(w * x) / np.sum(w), np.sum(w * y) / np.sum(w)
    sxx = float(np.sum(w * (x - xm) ** 2))
    alpha = float(np.sum(w * (x - xm) * (y - ym)) / sxx)
    intercept = float(ym - alpha * xm)
    chi2 = float(np.sum(w * (y - intercept - alpha * x) ** 2))
    dof = len(x) - 2
    scale = max(1.0, chi2 / dof) if dof > 0 else 1.0
    # Stated errors explain the scatter: normal quantile; else the t of the residual scale.
    q = (stats.norm.ppf(0.5 + confidence / 2) if scale == 1.0 or dof == 0
         else stats.t.ppf(0.5 + confidence / 2, dof))
    half = q * math.sqrt(scale / sxx)
    trials = sum(b.trials for b in bests)
    key, more = verdict(alpha, alpha - half, alpha + half, trials)
    return PowerLaw(alpha, alpha - half, alpha + half, math.exp(intercept), chi2, len(x),
                    trials, key, more)


def saturating_log_lr(batch: np.ndarray, log_lr_max: float,
                      log_b_noise: float) -> np.ndarray:
    """log of McCandlish et al. 2018's ``lr_max / (1 + B_noise / B)`` (SGD)."""
    return log_lr_max - np.log1p(np.exp(log_b_noise) / batch)


def surge_log_lr(batch: np.ndarray, log_lr_max: float, log_b_noise: float) -> np.ndarray:
    """log of Li et al. 2024's ``lr_max / (0.5 (sqrt(B_noise/B) + sqrt(B/B_noise)))``."""
    r = np.sqrt(np.exp(log_b_noise) / batch)
    return log_lr_max - np.log(0.5 * (r + 1.0 / r))


@dataclass(frozen=True)
class SurgeFit:
    """The surge (or saturating) curve fitted to the best lrs, against the power law by AICc."""

    _derived: ClassVar[tuple[str, ...]] = ("verdict_text",)
    lr_max: float
    b_noise: float  # the peak batch size
    b_noise_ci: tuple[float, float]
    aicc_surge: float
    aicc_power: float
    inside: bool  # the peak (the knee) lies within the batch sizes fitted
    form: str = "surge"  # or "saturating"

    @property
    def preferred(self) -> bool:
        """The surge form is better by more than 2 AICc and peaks inside the data."""
        return self.inside and self.aicc_surge < self.aicc_power - 2.0

    @property
    def verdict_text(self) -> str:
        """Which form the data prefer, in words."""
        delta = self.aicc_power - self.aicc_surge
        if self.form == "saturating":
            if self.preferred:
                return (f"saturating: the best lr grows about linearly below B = "
                        f"{self.b_noise:.3g} and levels off at {self.lr_max:.3g} above it "
                        f"(AICc {delta:.1f} better than the power law)")
            where = "" if self.inside else ", and its knee lies outside the batch sizes"
            return (f"no saturation: the power law fits as well (AICc better by {delta:.1f}, "
                    f"2 needed{where})")
        if self.preferred:
            return (f"surge: the best lr rises, peaks at B = {self.b_noise:.3g}, then falls "
                    f"(AICc {delta:.1f} better than the power law)")
        where = "" if self.inside else ", and its peak lies outside the batch sizes"
        return (f"no surge: the power law fits as well (AICc of the surge form better by "
                f"{delta:.1f}, 2 needed{where})")


def _aicc(chi2: float, n: int, k: int = 2) -> float:
    """AICc of a weighted least-squares fit (Gaussian errors, scale fitted)."""
    if n - k - 1 <= 0:
        return math.nan
    return n * math.log(max(chi2, 1e-12) / n) + 2 * k + 2 * k * (k + 1) / (n - k - 1)


def fit_saturating(bests: Sequence[BestLr], power: PowerLaw, *,
                   confidence: float = CONFIDENCE) -> SurgeFit | None:
    """Fit McCandlish et al.'s saturating curve (SGD) like :func:`fit_surge`."""
    return fit_surge(bests, power, confidence=confidence, form="saturating")


def fit_surge(bests: Sequence[BestLr], power: PowerLaw, *,
              confidence: float = CONFIDENCE, form: str = "surge") -> SurgeFit | None:
    """Fit the surge curve by weighted least squares on log lr; None if it does not converge."""
    model = saturating_log_lr if form == "saturating" else surge_log_lr
    b = np.array([x.batch_size for x in bests], float)
    y = np.log([x.lr for x in bests])
    se = 1.0 / np.sqrt(_weights([x.se_log for x in bests]))
    starts = [math.log(v) for v in np.geomspace(b.min() / 4, b.max() * 4, 7)]
    # The peak may lie outside the data (then the law is monotone there), not without limit.
    bounds = ([-np.inf, math.log(b.min()) - 10], [np.inf, math.log(b.max()) + 10])
    best = None
    for start in starts:
        p0 = [float(y.max()), start]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                params, cov = optimize.curve_fit(model, b, y, p0=p0, sigma=se,
                                                 absolute_sigma=True, maxfev=4000,
                                                 bounds=bounds)
            except (RuntimeError, ValueError):
                continue
        chi2 = float(np.sum(((y - model(b, *params)) / se) ** 2))
        if best is None or chi2 < best[0]:
            best = (chi2, params, cov)
    if best is None:
        return None
    chi2, params, cov = best
    n = len(b)
    scale = max(1.0, chi2 / (n - 2)) if n > 2 else 1.0
    var = float(cov[1, 1]) * scale
    q = stats.norm.ppf(0.5 + confidence / 2)
    half = min(q * math.sqrt(var), 30.0) if math.isfinite(var) and var >= 0 else math.nan
    log_bn = float(params[1])
    ci = (math.exp(log_bn - half), math.exp(log_bn + half)) if math.isfinite(half) else (
        math.nan, math.nan)
    return SurgeFit(lr_max=math.exp(float(params[0])), b_noise=math.exp(log_bn), b_noise_ci=ci,
                    aicc_surge=_aicc(chi2, n), aicc_power=_aicc(power.chi2, n),
                    inside=bool(b.min() <= math.exp(log_bn) <= b.max()), form=form)
