"""A study's answers gathered: :func:`analyze` and its :class:`StudyAnalysis`.

Where the study holds too little data for a quantity, the analysis says what is missing and
what to run instead of guessing.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import optuna

from bsopt.analysis.best_lr import LR_LOSSES, BestRun, best_by_batch, best_lrs
from bsopt.analysis.critical import ZhangCritical, zhang_critical
from bsopt.analysis.curves import (
    TARGET_SLACK,
    NoiseScaleSeries,
    StepsToTarget,
    default_target,
    noise_scale_by_batch,
    steps_to_target,
)
from bsopt.analysis.fits import (
    MIN_BATCH_SIZES,
    CriticalBatch,
    fit_critical_batch,
)
from bsopt.analysis.scaling import (
    BestLr,
    PowerLaw,
    SurgeFit,
    fit_power_law,
    fit_saturating,
    fit_surge,
)
from bsopt.errors import UsageError
from bsopt.records import TrialRecord, json_ready, study_records
from bsopt.text import batch_sizes_text, plural, sizes_text


@dataclass(frozen=True)
class StudyAnalysis:
    """Everything :func:`analyze` found, with notes on what is missing and what to run."""

    study_name: str | None
    complete_trials: int
    pruned_trials: int
    best: tuple[BestRun, ...]
    best_lrs: tuple[BestLr, ...]  # per batch size: the best lr with its bracket
    lr_scaling: PowerLaw | None
    surge: SurgeFit | None
    saturating: SurgeFit | None  # McCandlish et al.'s lr_max / (1 + B_noise / B), for SGD
    lr_notes: tuple[str, ...]
    target_loss: float | None
    target_rule: str
    steps_to_target: tuple[StepsToTarget, ...]
    unreached: tuple[int, ...]  # batch sizes whose curves never reached the target
    critical_batch: CriticalBatch | None
    zhang: ZhangCritical | None
    steps_notes: tuple[str, ...]
    noise_scale: tuple[NoiseScaleSeries, ...]
    noise_notes: tuple[str, ...]
    notes: tuple[str, ...]  # about the study as a whole

    b_simple_late: float | None = None  # see _b_simple_late

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (non-finite floats become None)."""
        return json_ready(self)


def analyze_records(
    trials: Iterable[TrialRecord], *, target_loss: float | None = None,
    study_name: str | None = None, lr_loss: str = "final",
) -> StudyAnalysis:
    """Analyze trial records (see :func:`analyze`)."""
    if lr_loss not in LR_LOSSES:
        raise UsageError(f"--lr-loss takes {' or '.join(LR_LOSSES)}, got {lr_loss!r}")
    if target_loss is not None and not math.isfinite(target_loss):
        raise UsageError(f"--target-loss must be a finite number, got {target_loss}")
    trials = list(trials)
    notes = []
    if not trials:
        notes.append("the study has no complete or pruned trials yet: run `bsopt search` first")

    best = best_by_batch(trials)
    bests = best_lrs(trials, lr_loss)
    lr_notes: list[str] = []
    fit, surge, saturating = None, None, None
    if len(bests) >= MIN_BATCH_SIZES:
        fit = fit_power_law(bests)
        if len(bests) > MIN_BATCH_SIZES:  # two parameters and AICc need four points
            surge, saturating = fit_surge(bests, fit), fit_saturating(bests, fit)
    elif trials:
        lr_notes.append(
            f"only {len(best)} batch {plural(len(best), 'size has', 'sizes have')} complete "
            f"trials ({sizes_text(b.batch_size for b in best) or 'none'}); the lr scaling fit "
            f"needs at least {MIN_BATCH_SIZES}: run more trials or widen --batch-size")
    single = [b.batch_size for b in best if b.lrs_tried == 1]
    if single:
        lr_notes.append(f"only one lr was tried at {batch_sizes_text(single)}: run more trials "
                        "there so the best lr is a choice, not the only option")
    edge = [b.batch_size for b in best if b.lr_at_edge]
    open_ = [b.batch_size for b in bests if not b.bracketed]
    if open_:
        lr_notes.append(f"the best lr at {batch_sizes_text(open_)} has no higher loss on one "
                        "side, so it weighs little in the fit: widen --lr, or run `--sampler "
                        "scaling`, which widens the lr range there on its own")
    if edge and not open_:
        lr_notes.append(f"the best lr at {batch_sizes_text(edge)} is the smallest or largest "
                        "lr tried there, so the optimum may lie outside: widen --lr or run more "
                        "trials")

    steps_notes: list[str] = []
    no_steps = sorted({r.batch_size for r in trials if r.val_loss and not r.steps})
    if no_steps:
        steps_notes.append(f"trials at {batch_sizes_text(no_steps)} have no per-epoch `steps` "
                           "record, so they are left out of steps-to-target")
    if target_loss is not None:
        target, rule = target_loss, "given"
    else:
        target = default_target(trials)
        rule = f"default: {TARGET_SLACK:g} x the worst per-batch-size best val loss"
    rows: list[StepsToTarget] = []
    unreached: list[int] = []
    critical = None
    zhang = None
    if target is None:
        if trials:
            steps_notes.append("no trial has a val loss curve with steps: run `bsopt search`, "
                               "whose training loop trials them")
    else:
        rows, unreached = steps_to_target(trials, target)
        critical = _critical_batch(rows, unreached, target, steps_notes)
    usable = [r for r in rows if not r.upper_bound]
    zhang = zhang_critical([r.batch_size for r in usable], [r.steps for r in usable],
                           mccandlish_b_crit=critical.b_crit if critical else None)

    noise = noise_scale_by_batch(trials)
    late = _b_simple_late(trials, best)
    noise_notes = []
    if not noise and trials:
        noise_notes.append("no trial measured the gradient noise scale: run trials with "
                           "--noise-scale (it splits each batch into micro-batches)")
    return StudyAnalysis(
        study_name=study_name,
        complete_trials=sum(r.state == "COMPLETE" for r in trials),
        pruned_trials=sum(r.state == "PRUNED" for r in trials),
        best=tuple(best), best_lrs=tuple(bests), lr_scaling=fit, surge=surge,
        saturating=saturating,
        lr_notes=tuple(lr_notes), zhang=zhang,
        target_loss=target, target_rule=rule, steps_to_target=tuple(rows),
        unreached=tuple(unreached), critical_batch=critical, steps_notes=tuple(steps_notes),
        noise_scale=tuple(noise), noise_notes=tuple(noise_notes), notes=tuple(notes),
        b_simple_late=late,
    )


def _b_simple_late(trials: list[TrialRecord], best: list[BestRun]) -> float | None:
    """B_simple late in training: the median over batch sizes of the last measured noise
    scale of each batch size's best trial (McCandlish et al. measure it along a well-tuned
    run; a badly tuned lr's trial, still early in its loss, reads lower)."""
    by_number = {r.number: r for r in trials}
    last = []
    for b in best:
        values = [v for v in by_number[b.trial].noise_scale if math.isfinite(v) and v > 0]
        if values:
            last.append(values[-1])
    return statistics.median(last) if last else None


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


def analyze(study: optuna.Study, *, target_loss: float | None = None,
            lr_loss: str = "final") -> StudyAnalysis:
    """Analyze a bsopt study: lr scaling law, steps to target, critical batch size, noise scale.

    Args:
        study: A study whose trials follow :mod:`bsopt.records` (``batch_size``, ``lr``,
            per-epoch ``val_loss``, ``train_loss``, ``steps``, ``noise_scale``).
        target_loss: Validation loss for steps-to-target; None picks
            ``TARGET_SLACK`` x the worst of the per-batch-size best val losses.
        lr_loss: What ranks the lrs of a batch size in the scaling fits: ``final`` (the
            trial's final val loss, what the search minimized) or ``best-epoch`` (its lowest,
            robust to a spike at the last epoch).

    Example::

        result = analyze(optuna.load_study(study_name="digits-cnn", storage=url))
        print(format_analysis(result))
    """
    return analyze_records(study_records(study), target_loss=target_loss,
                           study_name=study.study_name, lr_loss=lr_loss)
