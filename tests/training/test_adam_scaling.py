"""Malladi et al.'s square-root rule for Adam: the betas and eps at k times the batch."""

from __future__ import annotations

import math

import pytest

from bsopt.training.adam_scaling import sqrt_adam_options


@pytest.mark.parametrize("k", [0.25, 1.0, 2.0, 8.0])
def test_one_minus_beta_scales_by_k_and_eps_by_one_over_sqrt_k(k: float) -> None:
    options = sqrt_adam_options(k)
    beta1, beta2 = options["betas"]
    assert 1 - beta1 == pytest.approx(k * 0.1)
    assert 1 - beta2 == pytest.approx(k * 0.001)
    assert options["eps"] == pytest.approx(1e-8 / math.sqrt(k))


def test_beyond_the_rules_range_a_beta_stops_at_zero() -> None:
    assert sqrt_adam_options(16.0)["betas"] == (0.0, pytest.approx(0.984))
    with pytest.raises(ValueError):
        sqrt_adam_options(0.0)
