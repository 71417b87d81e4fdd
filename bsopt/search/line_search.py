"""The one-dimensional search on log lr that the scaling sampler runs at each batch size.

Pure functions of the points evaluated so far (no Optuna): the sampler derives its whole state
from the stored trials, so that workers and resumed runs agree without shared memory.

The search brackets first, then refines:

- bracketing: while the lowest loss sits at the smallest (largest) lr tried, step outward by a
  growing step (the golden ratio), past the study's lr range if need be, down (up) to the
  search limit;
- refinement: with a bracket a < b < c (f(b) lowest), the vertex of the parabola through the
  three points when it falls inside and away from the points tried, else the golden-section
  point of the larger half (Brent's rule, without his bookkeeping: the points are the state).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

GOLDEN = (3.0 - math.sqrt(5.0)) / 2.0  # 0.382: the golden-section fraction
GROW = (1.0 + math.sqrt(5.0)) / 2.0  # 1.618: how fast a bracketing step grows
INITIAL_POINTS = 3  # centre and one step either side before the bracket logic takes over


@dataclass(frozen=True)
class Bracket:
    """What the points at one batch size say about the best log lr."""

    best: float  # log lr of the lowest loss
    low: float  # log lr: the bracket's lower end (the best itself when at an edge)
    high: float
    bracketed: bool  # a lower loss on neither side: the minimum lies in [low, high]
    points: int

    @property
    def width(self) -> float:
        """The bracket's width in log lr (infinite until bracketed)."""
        return self.high - self.low if self.bracketed else math.inf


def bracket(points: Sequence[tuple[float, float]]) -> Bracket | None:
    """The bracket of (log lr, loss) points; None without points.

    Losses that are not finite (a diverged or pruned trial) count as worse than every finite
    one, which is what a comparison needs.
    """
    if not points:
        return None
    pts = sorted(points)
    values = [v if math.isfinite(v) else math.inf for _, v in pts]
    i = min(range(len(pts)), key=lambda k: (values[k], k))
    x = [p[0] for p in pts]
    inside = 0 < i < len(pts) - 1
    return Bracket(best=x[i], low=x[max(i - 1, 0)], high=x[min(i + 1, len(pts) - 1)],
                   bracketed=inside, points=len(pts))


def _far_from(u: float, taken: Sequence[float], tol: float) -> bool:
    return all(abs(u - t) > tol for t in taken)


def parabola_vertex(a: tuple[float, float], b: tuple[float, float],
                    c: tuple[float, float]) -> float | None:
    """The abscissa of the vertex of the parabola through three points; None if not convex."""
    (xa, fa), (xb, fb), (xc, fc) = a, b, c
    if not all(math.isfinite(v) for v in (fa, fb, fc)):
        return None
    num = (xb - xa) ** 2 * (fb - fc) - (xb - xc) ** 2 * (fb - fa)
    den = (xb - xa) * (fb - fc) - (xb - xc) * (fb - fa)
    if den >= 0:  # a maximum or a line: no minimum to jump to
        return None
    return xb - 0.5 * num / den


def next_point(points: Sequence[tuple[float, float]], pending: Sequence[float], *,
               centre: float, step: float, lower: float, upper: float, tol: float) -> float:
    """The next log lr to try at one batch size.

    Args:
        points: (log lr, loss) of the finished trials at this batch size.
        pending: log lrs of trials running there now (not proposed again).
        centre: where to start (the middle of the range, or a guess from other batch sizes).
        step: the first step either side of ``centre``, in log lr.
        lower, upper: the search limits in log lr (the lr range widened by the limit).
        tol: points closer than this in log lr count as the same point.
    """
    taken = [p[0] for p in points] + list(pending)

    def clip(u: float) -> float:
        return min(max(u, lower), upper)

    if len(points) < INITIAL_POINTS:
        for k in range(INITIAL_POINTS + len(taken)):  # centre, -step, +step, then outward
            u = clip(centre + (k + 1) // 2 * step * (1 if k % 2 == 0 else -1))
            if _far_from(u, taken, tol):
                return u
    b = bracket(points)
    assert b is not None or taken, "INITIAL_POINTS proposals exhausted only with points"
    if b is None:
        return clip(centre)
    xs = sorted(p[0] for p in points)
    if not b.bracketed:
        # Step outward from the edge holding the best, a step larger than the last gap.
        at_low = b.best == xs[0] and len(xs) > 1 and b.best != xs[-1]
        gap = max(step, (xs[1] - xs[0]) if at_low else (xs[-1] - xs[-2]))
        direction = -1.0 if at_low else 1.0
        for k in range(1, 64):
            u = clip(b.best + direction * gap * GROW ** k)
            if _far_from(u, taken, tol):
                return u
            if u in (lower, upper):
                break  # the limit is tried: refine inside what it leaves
    return _refine(sorted(points), b, taken, tol)


def _refine(pts: list[tuple[float, float]], b: Bracket, taken: list[float], tol: float) -> float:
    """A point inside the bracket: the parabola's vertex, else golden section."""
    i = next(k for k, p in enumerate(pts) if p[0] == b.best)
    lo, hi = pts[max(i - 1, 0)], pts[min(i + 1, len(pts) - 1)]
    best = pts[i]
    candidates = []
    if 0 < i < len(pts) - 1:
        u = parabola_vertex(lo, best, hi)
        if u is not None and lo[0] < u < hi[0]:
            candidates.append(u)
    left, right = best[0] - lo[0], hi[0] - best[0]
    halves = [(right, best[0] + GOLDEN * right), (left, best[0] - GOLDEN * left)]
    candidates += [u for width, u in sorted(halves, reverse=True) if width > 0]
    # Points halfway to each neighbour, then anything left: the search never stalls.
    candidates += [(best[0] + hi[0]) / 2, (best[0] + lo[0]) / 2]
    for u in candidates:
        if _far_from(u, taken, tol):
            return u
    for scale in (0.5, 0.25, 0.125):
        for u in (best[0] + scale * tol * 4, best[0] - scale * tol * 4):
            if _far_from(u, taken, tol * scale):
                return u
    return best[0] + tol / 2
