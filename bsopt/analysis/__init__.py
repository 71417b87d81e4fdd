"""Analysis: what a study's trials say about batch size and learning rate.

Pure functions of trial records (:mod:`bsopt.records`), no training and no storage writes:

- :mod:`~bsopt.analysis.best_lr`: the best learning rate of each batch size;
- :mod:`~bsopt.analysis.fits`: lr* = c B^alpha and the critical batch size, with intervals;
- :mod:`~bsopt.analysis.curves`: steps to a target loss, the gradient noise scale;
- :mod:`~bsopt.analysis.study`: :func:`analyze` gathers them with notes on what is missing;
- :mod:`~bsopt.analysis.text`: the answers as ``bsopt analyze`` prints them.

It may import numpy, scipy, optuna (to read a study) and bsopt's leaf modules
(:mod:`bsopt.records`, :mod:`bsopt.errors`, :mod:`bsopt.text`); figures
(:mod:`bsopt.visualization`) are drawn from it, never the other way round.
"""

from bsopt.analysis.answers import answer_lines, answer_note
from bsopt.analysis.best_lr import BestRun, best_by_batch, best_lrs
from bsopt.analysis.critical import ZhangCritical, zhang_critical
from bsopt.analysis.curves import (
    NoiseScaleSeries,
    StepsToTarget,
    default_target,
    noise_scale_by_batch,
    steps_to_reach,
    steps_to_target,
)
from bsopt.analysis.fits import (
    CriticalBatch,
    ScalingFit,
    fit_critical_batch,
    fit_lr_scaling,
    scaling_verdict,
)
from bsopt.analysis.scaling import BestLr, PowerLaw, SurgeFit, fit_power_law, fit_surge
from bsopt.analysis.study import StudyAnalysis, analyze, analyze_records
from bsopt.analysis.text import format_analysis

__all__ = [
    "BestLr", "PowerLaw", "SurgeFit", "ZhangCritical", "answer_lines", "answer_note",
    "best_lrs", "fit_power_law", "fit_surge", "zhang_critical",
    "BestRun", "CriticalBatch", "NoiseScaleSeries", "ScalingFit", "StepsToTarget",
    "StudyAnalysis", "analyze", "analyze_records", "best_by_batch", "default_target",
    "fit_critical_batch", "fit_lr_scaling", "format_analysis", "noise_scale_by_batch",
    "scaling_verdict", "steps_to_reach", "steps_to_target",
]
