"""The scaling design against grid, random and TPE on a planted lr*(B) (no training, seconds).

The objective is a bowl in log lr whose bottom follows a planted law: ``c B^alpha`` or Li et
al. 2024's surge curve. ``loss = bowl(log lr - log lr*(B)) + noise * N(0, 1)``, the bowl
steep above lr* and gentle below, like a real loss against lr. Each
method gets the same number of trials over the same space; the fitted alpha (power law) or
peak batch size (surge) and the alpha interval's width are printed. The tests drive
:func:`planted_study` too (tests/search/test_scaling_sampler.py).

Run::

    python -m benchmarks.scaling_design
    python -m benchmarks.scaling_design --trials 40 --noise 0.01
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from collections.abc import Callable

import numpy as np
import optuna

from bsopt.analysis.scaling import best_lr, fit_power_law, fit_surge, surge_log_lr
from bsopt.config import StudyConfig, powers_of_two
from bsopt.search.samplers import make_sampler
from bsopt.search.space import suggest

LrLaw = Callable[[float], float]


def power_law(alpha: float, c: float = 0.01, b0: float = 16.0) -> LrLaw:
    """``lr*(B) = c (B / b0)^alpha``."""
    return lambda b: c * (b / b0) ** alpha


def surge(lr_max: float = 0.01, b_noise: float = 128.0) -> LrLaw:
    """Li et al. 2024's surge curve, peaking at ``b_noise``."""
    return lambda b: float(math.exp(surge_log_lr(np.array([b], float), math.log(lr_max),
                                                 math.log(b_noise))[0]))


def bowl(d: float) -> float:
    """Loss at ``d = log lr - log lr*``: steep above the best lr (towards divergence), gentle
    below, not a parabola (so a quadratic fit is only locally right)."""
    return 1.0 + 0.3 * (math.exp(min(d, 30.0)) - 1.0 - d) + 0.02 * d * d


def planted_study(law: LrLaw, *, sampler: str = "scaling", trials: int = 35,
                  noise: float = 0.0, seed: int = 0, batch: tuple[int, int] = (16, 1024),
                  lr: tuple[float, float] = (1e-4, 1.0)) -> optuna.Study:
    """An in-memory study of ``trials`` trials on the planted bowl, driven by Optuna."""
    config = StudyConfig(study_name="planted", sampler=sampler, seed=seed,
                         batch_size_min=batch[0], batch_size_max=batch[1], lr_min=lr[0],
                         lr_max=lr[1], grid_lr_points=5)
    rng = np.random.default_rng(seed + 1)
    study = optuna.create_study(sampler=make_sampler(config))
    if sampler == "grid":  # as bsopt.search.study enqueues the grid
        points = [{"batch_size": b, "lr": x} for b in powers_of_two(*batch)
                  for x in np.geomspace(lr[0], lr[1], 5)]
        for i in rng.permutation(len(points))[:trials]:
            study.enqueue_trial(points[i])

    def objective(trial: optuna.Trial) -> float:
        b, x = suggest(trial, config)
        return bowl(math.log(x) - math.log(law(b))) + noise * rng.standard_normal()

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=trials)
    return study


def study_bests(study: optuna.Study) -> list:
    """The per-batch-size best lrs (bsopt.analysis.scaling.best_lr) of a study's trials."""
    points: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        points[t.params["batch_size"]].append((t.params["lr"], t.value))
    return [b for b in (best_lr(k, v) for k, v in sorted(points.items())) if b is not None]


def main() -> None:
    """Print the fits of every method on each planted law."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=35)
    p.add_argument("--noise", type=float, default=0.005)
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()
    laws = {"alpha=0.5": power_law(0.5), "alpha=1": power_law(1.0), "surge@128": surge()}
    print(f"{args.trials} trials, noise {args.noise}, medians over {args.seeds} seeds")
    print(f"{'law':10} {'sampler':8} {'alpha':>7} {'CI width':>9} {'surge peak':>10}")
    for name, law in laws.items():
        for sampler in ("scaling", "grid", "random", "tpe"):
            alphas, widths, peaks = [], [], []
            for seed in range(args.seeds):
                study = planted_study(law, sampler=sampler, trials=args.trials,
                                      noise=args.noise, seed=seed)
                bests = study_bests(study)
                fit = fit_power_law(bests)
                sf = fit_surge(bests, fit)
                alphas.append(fit.alpha)
                widths.append(fit.width)
                peaks.append(sf.b_noise if sf else math.nan)
            print(f"{name:10} {sampler:8} {np.median(alphas):7.3f} {np.median(widths):9.3f} "
                  f"{np.median(peaks):10.1f}")


if __name__ == "__main__":
    main()
