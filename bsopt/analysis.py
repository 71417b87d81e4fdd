"""What a study's data say about batch size: scaling law, critical batch size, noise scale.

Pure functions over :class:`~bsopt.records.TrialRecord` answer the seeds' questions, and
:func:`analyze` gathers them into a :class:`StudyAnalysis` that the CLI prints or dumps as JSON:

- the best learning rate per batch size and the fit ``lr* = c * B^alpha``: linear scaling
  (alpha = 1, Goyal et al. 2017, "Accurate, Large Minibatch SGD") or square-root scaling
  (alpha = 0.5, Krizhevsky 2014; Hoffer et al. 2017, "Train longer, generalize better");
- the optimizer steps and examples needed to reach a target validation loss per batch size,
  fitted with ``S(B) = S_min (1 + B_crit / B)`` and ``E(B) = E_min (1 + B / B_crit)``
  (McCandlish et al. 2018, "An Empirical Model of Large-Batch Training", arXiv:1812.06162);
- the gradient noise scale ``B_simple = tr(Sigma) / |G|^2`` measured during training
  (:mod:`bsopt.training.noise_scale`), which the same paper finds to track ``B_crit`` (roughly, and
  growing as the loss falls);
- the generalization gap (final val loss - final train loss) at each batch size's best lr
  (Keskar et al. 2017, "On Large-Batch Training for Deep Learning").

Where the study holds too little data for a quantity, the analysis says what is missing and
what to run instead of guessing. The best run per batch size is
:func:`bsopt.figure_data.best_by_batch`, the same selection the figures show; the text the
CLI prints is :mod:`bsopt.analysis_text`.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import optuna
from scipy import optimize, stats

from bsopt.analysis_text import batch_sizes_text, format_text, plural, sizes_text
from bsopt.errors import UsageError
from bsopt.figure_data import BestRun, best_by_batch
from bsopt.records import TrialRecord, study_records

CONFIDENCE = 0.95
TARGET_SLACK = 1.05  # default target: this times the worst per-batch-size best val loss
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
class StepsToTarget:
    """Fewest optimizer steps any trial at one batch size needed to reach the target loss."""

    _derived: ClassVar[tuple[str, ...]] = ("examples",)
    batch_size: int
    steps: float
    trial: int
    upper_bound: bool  # reached at its first recorded epoch: no interpolation possible

    @property
    def examples(self) -> float:
        """Examples seen: ``E = B * S``."""
        return self.batch_size * self.steps


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


@dataclass(frozen=True)
class NoiseScaleSeries:
    """Median B_simple over the trials at one batch size, per epoch (None: not measured)."""

    batch_size: int
    trials: int
    medians: tuple[float | None, ...]


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        out = {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        out.update({name: _jsonable(getattr(value, name))
                    for name in getattr(value, "_derived", ())})
        return out
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


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


def steps_to_reach(record: TrialRecord, target: float) -> tuple[float, bool] | None:
    """Optimizer steps at which a trial's val loss curve first reaches ``target``.

    The loss is known only at epoch ends; within the epoch where it crosses, steps are
    interpolated linearly between the two epoch ends (loss linear in steps). A curve that is
    already at or below the target at its first recorded point gives that point's steps,
    an upper bound.

    Args:
        record: The trial; uses its ``val_loss`` and ``steps`` lists.
        target: The validation loss to reach.

    Returns:
        ``(steps, upper_bound)``, or None if the curve never reaches the target.
    """
    previous: tuple[float, float] | None = None
    for loss, steps in zip(record.val_loss, record.steps):
        if not math.isfinite(loss):
            previous = None
            continue
        if loss <= target:
            if previous is None:
                return float(steps), True
            s0, v0 = previous
            return s0 + (steps - s0) * (v0 - target) / (v0 - loss), False
        previous = (float(steps), loss)
    return None


def default_target(records: Iterable[TrialRecord]) -> float | None:
    """``TARGET_SLACK`` x the worst of the per-batch-size best val losses (any epoch, any trial).

    Every batch size with a curve reaches it, and the 5% slack makes the batch size that
    sets it reach it before its very last point.
    """
    best: dict[int, float] = {}
    for r in records:
        finite = [v for v in r.val_loss if math.isfinite(v)]
        if finite and r.steps:
            best[r.batch_size] = min(best.get(r.batch_size, math.inf), min(finite))
    if not best:
        return None
    worst = max(best.values())
    return worst + (TARGET_SLACK - 1.0) * abs(worst)


def steps_to_target(
    records: Iterable[TrialRecord], target: float
) -> tuple[list[StepsToTarget], list[int]]:
    """Fewest steps to ``target`` per batch size over complete AND pruned trials.

    Returns:
        The rows of batch sizes that reached it, and the batch sizes whose curves never did.
    """
    reached: dict[int, StepsToTarget] = {}
    seen: set[int] = set()
    for r in records:
        if not r.steps:
            continue
        seen.add(r.batch_size)
        hit = steps_to_reach(r, target)
        if hit is not None and (r.batch_size not in reached
                                or hit[0] < reached[r.batch_size].steps):
            reached[r.batch_size] = StepsToTarget(r.batch_size, hit[0], r.number, hit[1])
    return [reached[b] for b in sorted(reached)], sorted(seen - set(reached))


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
        return (math.exp(estimate - half), math.exp(estimate + half))

    log_s, log_b = float(params[0]), float(params[1])
    return CriticalBatch(
        s_min=math.exp(log_s), s_min_ci=interval(log_s, cov[0, 0]),
        b_crit=math.exp(log_b), b_crit_ci=interval(log_b, cov[1, 1]),
        e_min=math.exp(log_s + log_b),
        e_min_ci=interval(log_s + log_b, cov[0, 0] + cov[1, 1] + 2 * cov[0, 1]),
        batch_sizes=n,
    )


def noise_scale_by_batch(records: Iterable[TrialRecord]) -> list[NoiseScaleSeries]:
    """Median of the ``noise_scale`` attribute over trials, per batch size and epoch."""
    values: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    trials: dict[int, int] = defaultdict(int)
    for r in records:
        finite = [(e, v) for e, v in enumerate(r.noise_scale) if math.isfinite(v)]
        if finite:
            trials[r.batch_size] += 1
        for epoch, v in finite:
            values[r.batch_size][epoch].append(v)
    out = []
    for batch_size in sorted(values):
        by_epoch = values[batch_size]
        medians = tuple(float(statistics.median(by_epoch[e])) if by_epoch.get(e) else None
                        for e in range(max(by_epoch) + 1))
        out.append(NoiseScaleSeries(batch_size, trials[batch_size], medians))
    return out


@dataclass(frozen=True)
class StudyAnalysis:
    """Everything :func:`analyze` found, with notes on what is missing and what to run."""

    study_name: str | None
    complete_trials: int
    pruned_trials: int
    best: tuple[BestRun, ...]
    lr_scaling: ScalingFit | None
    lr_notes: tuple[str, ...]
    target_loss: float | None
    target_rule: str
    steps_to_target: tuple[StepsToTarget, ...]
    unreached: tuple[int, ...]  # batch sizes whose curves never reached the target
    critical_batch: CriticalBatch | None
    steps_notes: tuple[str, ...]
    noise_scale: tuple[NoiseScaleSeries, ...]
    noise_notes: tuple[str, ...]
    notes: tuple[str, ...]  # about the study as a whole

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (non-finite floats become None)."""
        return _jsonable(self)

    def format_text(self) -> str:
        """The tables and verdicts, as the CLI prints them."""
        return format_text(self)


def analyze_records(
    records: Iterable[TrialRecord], *, target_loss: float | None = None,
    study_name: str | None = None,
) -> StudyAnalysis:
    """Analyze trial records (see :func:`analyze`)."""
    if target_loss is not None and not math.isfinite(target_loss):
        raise UsageError(f"--target-loss must be a finite number, got {target_loss}")
    records = list(records)
    notes = []
    if not records:
        notes.append("the study has no complete or pruned trials yet: run `bsopt search` first")

    best = best_by_batch(records)
    lr_notes, fit = [], None
    if len(best) >= MIN_BATCH_SIZES:
        fit = fit_lr_scaling([b.batch_size for b in best], [b.lr for b in best])
    elif records:
        lr_notes.append(
            f"only {len(best)} batch {plural(len(best), 'size has', 'sizes have')} complete "
            f"trials ({sizes_text(b.batch_size for b in best) or 'none'}); the lr scaling fit "
            f"needs at least {MIN_BATCH_SIZES}: run more trials or widen --batch-size")
    single = [b.batch_size for b in best if b.lrs_tried == 1]
    if single:
        lr_notes.append(f"only one lr was tried at {batch_sizes_text(single)}: run more trials "
                        "there so the best lr is a choice, not the only option")
    edge = [b.batch_size for b in best if b.lr_at_edge]
    if edge:
        lr_notes.append(f"the best lr at {batch_sizes_text(edge)} is the smallest or largest "
                        "lr tried there, so the optimum may lie outside: widen --lr or run more "
                        "trials")

    steps_notes: list[str] = []
    no_steps = sorted({r.batch_size for r in records if r.val_loss and not r.steps})
    if no_steps:
        steps_notes.append(f"trials at {batch_sizes_text(no_steps)} have no per-epoch `steps` "
                           "record, so they are left out of steps-to-target")
    if target_loss is not None:
        target, rule = target_loss, "given"
    else:
        target = default_target(records)
        rule = f"default: {TARGET_SLACK:g} x the worst per-batch-size best val loss"
    rows: list[StepsToTarget] = []
    unreached: list[int] = []
    critical = None
    if target is None:
        if records:
            steps_notes.append("no trial has a val loss curve with steps: run `bsopt search`, "
                               "whose training loop records them")
    else:
        rows, unreached = steps_to_target(records, target)
        critical = _critical_batch(rows, unreached, target, steps_notes)

    noise = noise_scale_by_batch(records)
    noise_notes = []
    if not noise and records:
        noise_notes.append("no trial measured the gradient noise scale: run trials with "
                           "--noise-scale (it splits each batch into micro-batches)")
    return StudyAnalysis(
        study_name=study_name,
        complete_trials=sum(r.state == "COMPLETE" for r in records),
        pruned_trials=sum(r.state == "PRUNED" for r in records),
        best=tuple(best), lr_scaling=fit, lr_notes=tuple(lr_notes),
        target_loss=target, target_rule=rule, steps_to_target=tuple(rows),
        unreached=tuple(unreached), critical_batch=critical, steps_notes=tuple(steps_notes),
        noise_scale=tuple(noise), noise_notes=tuple(noise_notes), notes=tuple(notes),
    )


def _critical_batch(
    rows: list[StepsToTarget], unreached: list[int], target: float, notes: list[str]
) -> CriticalBatch | None:
    """Fit S(B) to the interpolated rows, appending to ``notes`` what limits the fit."""
    if unreached:
        notes.append(f"{batch_sizes_text(unreached)} never reached val loss {target:.4g}: "
                     "give those trials more --epochs, or pass a looser --target-loss")
    bounded = [r.batch_size for r in rows if r.upper_bound]
    if bounded:
        notes.append(f"{batch_sizes_text(bounded)} reached the target at the first recorded "
                     "epoch, so those steps are only upper bounds, left out of the fit: "
                     "pass a lower --target-loss")
    usable = [r for r in rows if not r.upper_bound]
    if len(usable) < MIN_BATCH_SIZES:
        notes.append(
            f"only {len(usable)} batch {plural(len(usable), 'size reaches', 'sizes reach')} the "
            f"target within its epochs; the critical batch size fit needs at least "
            f"{MIN_BATCH_SIZES}: run more batch sizes (widen --batch-size) or more --epochs")
        return None
    try:
        fit = fit_critical_batch([r.batch_size for r in usable], [r.steps for r in usable])
    except (RuntimeError, ValueError) as exc:  # curve_fit did not converge
        notes.append(f"the fit of S(B) = S_min (1 + B_crit/B) failed ({exc}): run more batch "
                     "sizes or lrs")
        return None
    low, high = usable[0].batch_size, usable[-1].batch_size
    if not low <= fit.b_crit <= high:
        notes.append(f"B_crit = {fit.b_crit:.3g} lies outside the batch sizes fitted "
                     f"({low}..{high}), so it is an extrapolation: widen --batch-size")
    return fit


def analyze(study: optuna.Study, *, target_loss: float | None = None) -> StudyAnalysis:
    """Analyze a bsopt study: lr scaling law, steps to target, critical batch size, noise scale.

    Args:
        study: A study whose trials follow :mod:`bsopt.records` (``batch_size``, ``lr``,
            per-epoch ``val_loss``, ``train_loss``, ``steps``, ``noise_scale``).
        target_loss: Validation loss for steps-to-target; None picks
            ``TARGET_SLACK`` x the worst of the per-batch-size best val losses.

    Example::

        result = analyze(optuna.load_study(study_name="digits-cnn", storage=url))
        print(result.format_text())
    """
    return analyze_records(study_records(study), target_loss=target_loss,
                           study_name=study.study_name)
