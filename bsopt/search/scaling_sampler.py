"""``--sampler scaling``: the search design for "how should the lr follow the batch size?".

The budget is spread over the batch sizes, and at each one a one-dimensional search on log lr
(:mod:`bsopt.search.line_search`: bracketing, widening past the study's lr range when the best
sits at an edge, then parabolic / golden-section refinement) locates the best lr. Each batch
size gets :data:`~bsopt.search.line_search.INITIAL_POINTS` trials first; after that the next
trial goes to the batch size whose bracket is widest (unbracketed ones first), so the budget
goes where the answer is least certain. A batch size's first points are centred on the best
lrs found at the other batch sizes (a power law through them), not on the range's middle.

State: none kept in memory. Every decision reads the stored trials (finished ones and the
running ones, which are not proposed again), so any number of workers, a resumed run, and a
pruned trial (a loss worse than every finished one at its batch size) all fit. After each
trial the bracket of its batch size is written as the study user attribute
``bsopt_lr_bracket_<B>`` ({"lr", "low", "high", "bracketed", "trials"}), for the dashboard
and for users; :mod:`bsopt.analysis` recomputes it from the trials.

Optuna's API: the two parameters are sampled together (``infer_relative_search_space`` /
``sample_relative``); a trial enqueued with a fixed ``batch_size`` keeps it and gets the lr
search of that batch size; anything else falls back to random sampling.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from bsopt.search.line_search import INITIAL_POINTS, Bracket, bracket, next_point

BRACKET_ATTR = "bsopt_lr_bracket_{}"
TOLERANCE = 0.05  # log lr: points closer than 5% in lr count as the same point


class ScalingSampler(optuna.samplers.BaseSampler):
    """Per batch size, a 1-D search on log lr; the budget spread over the batch sizes.

    Args:
        batch_sizes: The batch sizes of the study.
        lr_name: The name of the lr parameter (``lr`` or ``base_lr``).
        lr_low, lr_high: The study's lr range, where the search starts.
        limit: How far past the range the search may go when the best sits at an edge: a
            factor (100: down to ``lr_low / 100`` and up to ``lr_high * 100``).
        seed: Seed of the random fallback.
    """

    def __init__(self, batch_sizes: Sequence[int], lr_name: str, lr_low: float,
                 lr_high: float, *, limit: float = 100.0, seed: int | None = None) -> None:
        self.batch_sizes = sorted(int(b) for b in batch_sizes)
        self.lr_name = lr_name
        self.low, self.high = math.log(lr_low), math.log(lr_high)
        self.lower, self.upper = self.low - math.log(limit), self.high + math.log(limit)
        self._random = optuna.samplers.RandomSampler(seed=seed)

    # --- Optuna's sampler API ---
    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        """Both parameters, as the objective suggests them (the widened lr range)."""
        return {
            "batch_size": optuna.distributions.CategoricalDistribution(self.batch_sizes),
            self.lr_name: optuna.distributions.FloatDistribution(
                math.exp(self.lower), math.exp(self.upper), log=True),
        }

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        """The next (batch size, lr), read off the stored trials."""
        if not search_space:
            return {}
        points, pending, counts = self._state(study, trial.number)
        fixed = trial.system_attrs.get("fixed_params", {}).get("batch_size")
        batch = int(fixed) if fixed in self.batch_sizes else self._choose_batch(
            points, pending, counts)
        x = next_point(points[batch], pending[batch], centre=self._centre(batch, points),
                       step=self._step(), lower=self.lower, upper=self.upper,
                       tol=TOLERANCE)
        lr = float(np.clip(float(f"{math.exp(x):.6g}"), math.exp(self.lower), math.exp(self.upper)))
        return {"batch_size": batch, self.lr_name: lr}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        """A parameter outside the relative space (another objective's): random."""
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        """Write the bracket of the trial's batch size as a study user attribute."""
        batch = trial.params.get("batch_size")
        if batch is None or state not in (TrialState.COMPLETE, TrialState.PRUNED):
            return
        points, _, _ = self._state(study, trial.number)
        value = values[0] if values and state == TrialState.COMPLETE else math.inf
        lr = trial.params.get(self.lr_name)
        if lr is not None:  # the trial is not stored as finished yet
            points[int(batch)].append((math.log(lr), value))
        b = bracket(points[int(batch)])
        if b is not None:
            study.set_user_attr(BRACKET_ATTR.format(int(batch)), bracket_attr(b))

    # --- the design ---
    def _state(self, study: optuna.Study, exclude: int) -> tuple[
            dict[int, list[tuple[float, float]]], dict[int, list[float]], dict[int, int]]:
        """Finished (log lr, loss) points, running log lrs and trial counts per batch size."""
        points: dict[int, list[tuple[float, float]]] = defaultdict(list)
        pending: dict[int, list[float]] = defaultdict(list)
        counts: dict[int, int] = defaultdict(int)
        states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        for t in study.get_trials(deepcopy=False, states=states):
            batch, lr = t.params.get("batch_size"), t.params.get(self.lr_name)
            if t.number == exclude or batch is None or lr is None:
                continue
            batch = int(batch)
            counts[batch] += 1
            if t.state == TrialState.RUNNING:
                pending[batch].append(math.log(lr))
            else:
                ok = t.state == TrialState.COMPLETE and t.values
                points[batch].append((math.log(lr), float(t.values[0]) if ok else math.inf))
        return points, pending, counts

    def _choose_batch(self, points: dict[int, list[tuple[float, float]]],
                      pending: dict[int, list[float]], counts: dict[int, int]) -> int:
        """Batch sizes in turn, smallest first, until each has its first points (so each
        starts from the power law of those before it); then the widest bracket."""
        young = [b for b in self.batch_sizes if counts[b] < INITIAL_POINTS]
        if young:
            return max(young, key=lambda b: (counts[b], -b))  # finish the one under way

        def width(b: int) -> float:
            br = bracket(points[b])
            # A running trial at b will narrow it: count it as one golden-section step.
            w = br.width if br is not None else math.inf
            return w * 0.618 ** len(pending[b])

        return max(self.batch_sizes, key=lambda b: (width(b), -counts[b], -b))

    def _bests(self, points: dict[int, list[tuple[float, float]]],
               exclude: int) -> list[tuple[float, float]]:
        out = []
        for b in self.batch_sizes:
            br = bracket(points[b]) if b != exclude else None
            if br is not None and points[b] and any(math.isfinite(v) for _, v in points[b]):
                out.append((math.log(b), br.best))
        return out

    def _centre(self, batch: int, points: dict[int, list[tuple[float, float]]]) -> float:
        """Where a batch size's search starts: a power law through the others' best lrs."""
        if points[batch]:
            return bracket(points[batch]).best  # type: ignore[union-attr]
        bests = self._bests(points, batch)
        if len(bests) >= 2:
            x, y = np.array(bests).T
            if np.ptp(x) > 0:
                slope, intercept = np.polyfit(x, y, 1)
                slope = float(np.clip(slope, -0.5, 1.5))  # a wild slope from noisy bests
                guess = float(y.mean() + slope * (math.log(batch) - x.mean()))
                return min(max(guess, self.lower), self.upper)
        if bests:  # one batch size done: halfway between square-root and linear scaling
            x, y = min(bests, key=lambda p: abs(p[0] - math.log(batch)))
            return min(max(y + 0.75 * (math.log(batch) - x), self.lower), self.upper)
        return (self.low + self.high) / 2

    def _step(self) -> float:
        """The first step either side: a quarter of the range, at most half a decade."""
        return min((self.high - self.low) / 4, math.log(10) / 2) or math.log(10) / 2


def bracket_attr(b: Bracket) -> dict[str, Any]:
    """A bracket as the JSON the study user attribute holds (lrs, not log lrs)."""
    return {"lr": math.exp(b.best), "low": math.exp(b.low), "high": math.exp(b.high),
            "bracketed": b.bracketed, "trials": b.points}
