from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bsopt.training.noise_scale import (
    GradNormSample,
    MicroBatchGradNorms,
    NoiseScaleEstimator,
    grad_sq_norm_estimate,
    trace_estimate,
)


def _problem(seed: int = 0, n: int = 512, d: int = 16):
    """A fixed linear-regression dataset and a point w off its optimum."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * np.linspace(0.5, 2.0, d)
    w_true = rng.normal(size=d)
    y = x @ w_true + 0.5 * rng.normal(size=n)
    w = w_true + 0.3 * rng.normal(size=d)
    return x, y, w


def _regression(seed: int = 0, n: int = 512, d: int = 16) -> tuple[np.ndarray, float, float]:
    """Per-example gradients of 0.5 (w.x - y)^2, and the exact |G|^2 and tr(Sigma) of the
    empirical distribution (what sampling with replacement sees)."""
    x, y, w = _problem(seed, n, d)
    per_example = (x @ w - y)[:, None] * x
    mean = per_example.mean(axis=0)
    trace = float(((per_example - mean) ** 2).sum(axis=1).mean())
    return per_example, float(mean @ mean), trace


def _batch_pairs(per_example: np.ndarray, steps: int, small: int, big: int, seed: int = 1):
    """Squared norms of nested (small within big) batch means, drawn with replacement."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(len(per_example), size=(steps, big))
    big_sq = (per_example[idx].mean(axis=1) ** 2).sum(axis=1)
    small_sq = (per_example[idx[:, :small]].mean(axis=1) ** 2).sum(axis=1)
    return small_sq, big_sq


def test_two_batch_estimates_are_unbiased():
    per_example, g2, trace = _regression()
    small_sq, big_sq = _batch_pairs(per_example, 50_000, small=8, big=32)
    assert np.mean(grad_sq_norm_estimate(small_sq, 8, big_sq, 32)) == pytest.approx(g2, rel=0.03)
    assert np.mean(trace_estimate(small_sq, 8, big_sq, 32)) == pytest.approx(trace, rel=0.03)
    # One batch size alone is biased by tr(Sigma)/B: the point of the two-batch estimator.
    assert np.mean(big_sq) > 1.3 * g2


@pytest.mark.parametrize("small,big", [(4, 64), (16, 64)])
def test_estimator_matches_exact_noise_scale(small, big):
    per_example, g2, trace = _regression()
    exact = trace / g2
    assert 5 < exact < 50  # a regime where the batch sizes used are informative
    small_sq, big_sq = _batch_pairs(per_example, 30_000, small, big, seed=0)
    # ema=0.9997 weighs ~6000 recent steps: about 2.5% noise left in the ratio.
    est = NoiseScaleEstimator(ema=0.9997)
    for s, b in zip(small_sq, big_sq):
        est.update(float(s), small, float(b), big)
    assert est.updates == 30_000
    assert est.noise_scale == pytest.approx(exact, rel=0.06)
    assert est.grad_sq_norm == pytest.approx(g2, rel=0.06)
    assert est.trace == pytest.approx(trace, rel=0.06)


def test_estimator_ema_bias_correction_and_reset():
    est = NoiseScaleEstimator(ema=0.9)
    assert est.noise_scale is None and est.grad_sq_norm is None and est.trace is None
    # E|G_B|^2 = |G|^2 + tr/B with |G|^2 = 1, tr = 16: exact measurements give exact values
    # from the first update on (the bias correction removes the pull towards zero).
    est.update(1 + 16 / 4, 4, 1 + 16 / 16, 16)
    assert est.grad_sq_norm == pytest.approx(1.0)
    assert est.trace == pytest.approx(16.0)
    assert est.noise_scale == pytest.approx(16.0)
    # A second measurement with |G|^2 = 3, tr = 16: weights 0.1 * 0.9 and 0.1, normalised.
    est.update(3 + 16 / 4, 4, 3 + 16 / 16, 16)
    expected_g2 = (0.09 * 1 + 0.1 * 3) / 0.19
    assert est.grad_sq_norm == pytest.approx(expected_g2)
    assert est.noise_scale == pytest.approx(16 / expected_g2)
    est.reset()
    assert est.updates == 0 and est.noise_scale is None


def test_noise_scale_undefined_when_grad_norm_estimate_not_positive():
    est = NoiseScaleEstimator(ema=0.0)
    # The big batch's norm is so small that the |G|^2 estimate is negative.
    est.update(10.0, 4, 0.5, 16)
    assert est.grad_sq_norm < 0
    assert est.noise_scale is None


@pytest.mark.parametrize("args", [(1.0, 16, 1.0, 16), (1.0, 32, 1.0, 16), (1.0, 0, 1.0, 16)])
def test_batch_sizes_must_differ(args):
    with pytest.raises(ValueError, match="small_batch"):
        NoiseScaleEstimator().update(*args)


def test_ema_must_be_in_range():
    with pytest.raises(ValueError, match="ema"):
        NoiseScaleEstimator(ema=1.0)


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))


def _mean_grad(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    loss = torch.nn.functional.mse_loss(model(x), y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return torch.cat([g.reshape(-1) for g in grads])


@pytest.mark.parametrize("sizes,mean_over_batch", [([3, 5, 4], True), ([4, 4], False)])
def test_micro_batch_norms_match_direct_gradients(sizes, mean_over_batch):
    model = _model()
    torch.manual_seed(1)
    x, y = torch.randn(sum(sizes), 5), torch.randn(sum(sizes), 2)
    chunks = list(zip(torch.split(x, sizes), torch.split(y, sizes)))
    direct_small = [_mean_grad(model, cx, cy).pow(2).sum().item() for cx, cy in chunks]
    direct_big = _mean_grad(model, x, y).pow(2).sum().item()

    norms = MicroBatchGradNorms()
    # Stale gradients from a previous step must not leak into the first micro-batch.
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    model.zero_grad(set_to_none=False)
    norms.begin_step(model.parameters())
    for cx, cy in chunks:
        scale = len(cx) / len(x) if mean_over_batch else 1.0
        (torch.nn.functional.mse_loss(model(cx), cy) * scale).backward()
        norms.after_micro_batch(model.parameters(), len(cx), loss_scale=scale)
    sample = norms.end_step(model.parameters())

    assert isinstance(sample, GradNormSample)
    assert sample.small_sq_norm == pytest.approx(np.mean(direct_small), rel=1e-5)
    assert sample.small_batch == pytest.approx(len(sizes) / sum(1 / b for b in sizes))
    assert sample.big_sq_norm == pytest.approx(direct_big, rel=1e-5)
    assert sample.big_batch == sum(sizes)


def test_micro_batch_norms_with_grads_set_to_none_and_repeated_steps():
    model = _model()
    norms = MicroBatchGradNorms()
    torch.manual_seed(2)
    for _ in range(2):  # the buffer is reused across steps
        x, y = torch.randn(6, 5), torch.randn(6, 2)
        model.zero_grad(set_to_none=True)
        norms.begin_step(model.parameters())
        for cx, cy in zip(x.split(3), y.split(3)):
            (torch.nn.functional.mse_loss(model(cx), cy) * 0.5).backward()
            norms.after_micro_batch(model.parameters(), 3, loss_scale=0.5)
        sample = norms.end_step(model.parameters())
        expected = np.mean([_mean_grad(model, cx, cy).pow(2).sum().item()
                            for cx, cy in zip(x.split(3), y.split(3))])
        assert sample.small_sq_norm == pytest.approx(expected, rel=1e-5)
        assert sample.big_sq_norm == pytest.approx(_mean_grad(model, x, y).pow(2).sum().item(),
                                                   rel=1e-5)


def test_micro_batch_norms_reject_misuse():
    model = _model()
    norms = MicroBatchGradNorms()
    x, y = torch.randn(4, 5), torch.randn(4, 2)
    norms.begin_step(model.parameters())
    torch.nn.functional.mse_loss(model(x), y).backward()
    norms.after_micro_batch(model.parameters(), 4)
    with pytest.raises(RuntimeError, match="two micro-batches"):
        norms.end_step(model.parameters())
    norms.begin_step(model.parameters())
    norms.after_micro_batch(model.parameters(), 4, loss_scale=0.5)
    with pytest.raises(ValueError, match="proportional"):
        norms.after_micro_batch(model.parameters(), 4, loss_scale=0.25)


def test_end_to_end_training_loop_measures_exact_noise_scale():
    """Linear regression in torch: the loop's measurements recover tr(Sigma)/|G|^2."""
    per_example, g2, trace = _regression(seed=3, n=256, d=8)
    exact = trace / g2
    x, y, w = _problem(seed=3, n=256, d=8)
    model = torch.nn.Linear(8, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(w)[None])
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)[:, None]

    # ema near 1: a plain average over the run, since the distribution is stationary.
    norms, est = MicroBatchGradNorms(), NoiseScaleEstimator(ema=0.999)
    gen = torch.Generator().manual_seed(4)
    micro, count = 8, 2
    for _ in range(600):  # the weights stay fixed: a stationary gradient distribution
        idx = torch.randint(256, (micro * count,), generator=gen)
        model.zero_grad()
        norms.begin_step(model.parameters())
        for part in idx.split(micro):
            loss = 0.5 * (model(xt[part]) - yt[part]).pow(2).mean() / count
            loss.backward()
            norms.after_micro_batch(model.parameters(), micro, loss_scale=1 / count)
        est.update(*norms.end_step(model.parameters()))
    assert math.isfinite(exact)
    # 600 steps leave ~5% noise; a wrong batch size or loss scale would be off by 2x or more.
    assert est.noise_scale == pytest.approx(exact, rel=0.15)
