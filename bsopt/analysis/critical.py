"""Zhang et al. 2024's critical batch size, from the measured steps to target.

Zhang et al. 2024 ("How Does Critical Batch Size Scale in Pre-training?", arXiv:2410.21676)
call critical the batch size where the steps to a target loss exceed perfect linear scaling
from a reference batch size B_ref by 20%: ``S(B) = 1.2 S(B_ref) B_ref / B``. bsopt takes B_ref
the smallest batch size that reached the target and interpolates the measured ratio
``S(B) B / (S(B_ref) B_ref)`` linearly in log B at its last upward crossing of 1.2 (the
batch size from which on every measured size needs 20% more steps than linear scaling).
On McCandlish et al.'s curve ``S(B) = S_min (1 + B_crit / B)`` the ratio is
``(B + B_crit) / (B_ref + B_crit)``, which reaches 1.2 at ``B = 1.2 B_ref + 0.2 B_crit``:
the closed form shown beside it as a check.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

EXCESS = 0.2  # 20% more steps than perfect linear scaling


@dataclass(frozen=True)
class ZhangCritical:
    """The batch size where steps exceed linear scaling from B_ref by 20%."""

    b_ref: int
    b_crit: float | None  # None: not exceeded within the batch sizes measured
    beyond: int | None  # then: the largest batch size measured, below which it never happened
    closed_form: float | None  # 1.2 B_ref + 0.2 B_crit of McCandlish's fit, when there is one


def zhang_critical(batch_sizes: Sequence[int], steps: Sequence[float], *,
                   mccandlish_b_crit: float | None = None,
                   excess: float = EXCESS) -> ZhangCritical | None:
    """The Zhang et al. critical batch size of measured steps to target; None below 2 sizes."""
    # A size that reached the target before its first step (or never) has no ratio to give.
    rows = sorted((b, s) for b, s in zip(batch_sizes, steps, strict=True)
                  if b > 0 and math.isfinite(s) and s > 0)
    if len(rows) < 2:
        return None
    b_ref, s_ref = rows[0]
    ratios = [(b, s * b / (s_ref * b_ref)) for b, s in rows]
    closed = (None if mccandlish_b_crit is None or not math.isfinite(mccandlish_b_crit)
              else (1 + excess) * b_ref + excess * mccandlish_b_crit)
    # The last upward crossing: from there on every measured size stays above. A single noisy
    # small batch size (steps are resolved to epoch ends) does not set the answer.
    last = max(i for i, (_, r) in enumerate(ratios) if r <= 1 + excess)
    if last == len(ratios) - 1:
        return ZhangCritical(int(b_ref), None, int(rows[-1][0]), closed)
    (b0, r0), (b1, r1) = ratios[last], ratios[last + 1]
    t = (1 + excess - r0) / (r1 - r0)
    b = math.exp(math.log(b0) + t * (math.log(b1) - math.log(b0)))
    return ZhangCritical(int(b_ref), b, None, closed)
