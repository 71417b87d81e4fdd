"""Malladi et al. 2022's square-root SDE scaling rule for Adam (``--lr-scaling sqrt-adam``).

"On the SDEs and Scaling Rules for Adaptive Gradient Algorithms" (NeurIPS 2022, arXiv:
2205.10287): when the batch size grows by ``k = B / B_ref``, Adam follows the same SDE with

- ``lr -> lr * sqrt(k)``,
- ``1 - beta1 -> k (1 - beta1)`` and ``1 - beta2 -> k (1 - beta2)``,
- ``eps -> eps / sqrt(k)``.

The rule needs ``k (1 - beta) < 1``; beyond it a beta would fall below 0, so it is clamped at
0 (and the trial records the betas it trained with). The lr part is the ``sqrt`` rule of
:mod:`bsopt.search.space`; this module gives the rest.
"""

from __future__ import annotations

import math

# PyTorch's Adam defaults, which the rule scales from (the reference batch size's values).
BETA1, BETA2, EPS = 0.9, 0.999, 1e-8


def sqrt_adam_options(k: float, *, beta1: float = BETA1, beta2: float = BETA2,
                      eps: float = EPS) -> dict[str, float | tuple[float, float]]:
    """Adam's ``betas`` and ``eps`` at ``k`` times the reference batch size.

    Example::

        >>> sqrt_adam_options(4.0)
        {'betas': (0.6, 0.996), 'eps': 5e-09}
    """
    if not k > 0:
        raise ValueError(f"k must be positive, got {k}")

    def scaled(beta: float) -> float:
        return float(f"{max(0.0, 1.0 - k * (1.0 - beta)):.12g}")

    return {"betas": (scaled(beta1), scaled(beta2)), "eps": eps / math.sqrt(k)}
