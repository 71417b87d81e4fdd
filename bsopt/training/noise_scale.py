"""The gradient noise scale B_simple = tr(Sigma) / |G|^2, measured during training.

McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch Training"
(arXiv:1812.06162), Appendix A.1: the squared norm of a mean gradient over a batch of B
examples drawn with replacement has expectation ``E|G_B|^2 = |G|^2 + tr(Sigma) / B``, where G
is the true gradient and Sigma the per-example gradient covariance. Measuring it at two batch
sizes B_small < B_big gives unbiased estimates of both terms::

    |G|^2     = (B_big |G_Bbig|^2 - B_small |G_Bsmall|^2) / (B_big - B_small)
    tr(Sigma) = (|G_Bsmall|^2 - |G_Bbig|^2) / (1 / B_small - 1 / B_big)

Each step's estimates are very noisy (the |G|^2 estimate is often negative when the noise
scale is much larger than the batch), so :class:`NoiseScaleEstimator` smooths the two terms
separately with exponential moving averages and only then takes their ratio, as the paper
recommends: a ratio of noisy estimates is biased and heavy-tailed.

The cheap measurement during training is :class:`MicroBatchGradNorms`: split each optimizer
step's batch into two or more micro-batches (as gradient accumulation does anyway); each
micro-batch's gradient is a "small" measurement and the accumulated full-batch gradient is
the "big" one. It costs one extra gradient-sized buffer and a few vector operations per
micro-batch, and nothing when the training loop does not call it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

import torch


def grad_sq_norm_estimate(
    small_sq_norm: float, small_batch: float, big_sq_norm: float, big_batch: float
) -> float:
    """Unbiased estimate of |G|^2 from one pair of measurements (McCandlish et al. 2018, A.1).

    Args:
        small_sq_norm: |G_Bsmall|^2, squared norm of a mean gradient over ``small_batch`` examples.
        small_batch: B_small.
        big_sq_norm: |G_Bbig|^2, squared norm of a mean gradient over ``big_batch`` examples.
        big_batch: B_big, larger than B_small.
    """
    _check_batches(small_batch, big_batch)
    return (big_batch * big_sq_norm - small_batch * small_sq_norm) / (big_batch - small_batch)


def trace_estimate(
    small_sq_norm: float, small_batch: float, big_sq_norm: float, big_batch: float
) -> float:
    """Unbiased estimate of tr(Sigma) from one pair of measurements (McCandlish et al. 2018, A.1).

    Args:
        small_sq_norm: |G_Bsmall|^2, squared norm of a mean gradient over ``small_batch`` examples.
        small_batch: B_small.
        big_sq_norm: |G_Bbig|^2, squared norm of a mean gradient over ``big_batch`` examples.
        big_batch: B_big, larger than B_small.
    """
    _check_batches(small_batch, big_batch)
    return (small_sq_norm - big_sq_norm) / (1.0 / small_batch - 1.0 / big_batch)


def _check_batches(small_batch: float, big_batch: float) -> None:
    if not 0 < small_batch < big_batch:
        raise ValueError(
            f"need 0 < small_batch < big_batch, got small_batch={small_batch}, "
            f"big_batch={big_batch}"
        )


class NoiseScaleEstimator:
    """Running estimate of |G|^2, tr(Sigma) and B_simple = tr(Sigma) / |G|^2.

    Each :meth:`update` turns one (small, big) pair of squared gradient norms into unbiased
    estimates of |G|^2 and tr(Sigma) and folds them into two exponential moving averages,
    bias-corrected like Adam's moments so the first updates are not pulled towards zero.
    The noise scale is the ratio of the two averages (McCandlish et al. 2018, Appendix A.1).

    Args:
        ema: Weight of the past in the moving averages, in [0, 1). The default 0.95 averages
            over roughly 1 / (1 - ema) = 20 steps: enough to tame the per-step noise, short
            enough to follow the noise scale as it grows during training. 0 keeps only the
            latest step; use values near 1 (0.99, 0.999) for a stationary estimate.

    Example::

        est = NoiseScaleEstimator(ema=0.95)
        est.update(small_sq_norm=2.0, small_batch=32, big_sq_norm=1.2, big_batch=128)
        est.noise_scale  # tr(Sigma) / |G|^2, or None while |G|^2 <= 0
    """

    def __init__(self, ema: float = 0.95) -> None:
        if not 0.0 <= ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {ema}")
        self.ema = ema
        self.reset()

    def reset(self) -> None:
        """Forget every update (e.g. at the start of a new trial)."""
        self._sq_norm_avg = 0.0
        self._trace_avg = 0.0
        self._weight = 0.0  # 1 - ema**updates: the bias correction
        self.updates = 0

    def update(
        self, small_sq_norm: float, small_batch: float, big_sq_norm: float, big_batch: float
    ) -> float | None:
        """Fold in one measurement; return the current noise scale.

        Args:
            small_sq_norm: |G_Bsmall|^2 (e.g. the mean over micro-batches of their squared
                gradient norms).
            small_batch: B_small (for micro-batches of unequal size, their harmonic mean size).
            big_sq_norm: |G_Bbig|^2, the squared norm of the full batch's mean gradient.
            big_batch: B_big, larger than ``small_batch``.
        """
        sq_norm = grad_sq_norm_estimate(small_sq_norm, small_batch, big_sq_norm, big_batch)
        trace = trace_estimate(small_sq_norm, small_batch, big_sq_norm, big_batch)
        if not (math.isfinite(sq_norm) and math.isfinite(trace)):
            raise ValueError(
                f"non-finite gradient norms: small={small_sq_norm}, big={big_sq_norm}"
            )
        self._sq_norm_avg = self.ema * self._sq_norm_avg + (1.0 - self.ema) * sq_norm
        self._trace_avg = self.ema * self._trace_avg + (1.0 - self.ema) * trace
        self._weight = self.ema * self._weight + (1.0 - self.ema)
        self.updates += 1
        return self.noise_scale

    @property
    def grad_sq_norm(self) -> float | None:
        """Smoothed estimate of |G|^2 (None before the first update; may be negative)."""
        return self._sq_norm_avg / self._weight if self.updates else None

    @property
    def trace(self) -> float | None:
        """Smoothed estimate of tr(Sigma) (None before the first update)."""
        return self._trace_avg / self._weight if self.updates else None

    @property
    def noise_scale(self) -> float | None:
        """B_simple = tr(Sigma) / |G|^2, or None while undefined (no update yet, |G|^2 <= 0)."""
        if not self.updates or self._sq_norm_avg <= 0.0:
            return None
        # The bias corrections of numerator and denominator are equal and cancel.
        return self._trace_avg / self._sq_norm_avg


class GradNormSample(NamedTuple):
    """One optimizer step's measurement, in the argument order of ``NoiseScaleEstimator.update``."""

    small_sq_norm: float  # mean over micro-batches of |g_micro|^2
    small_batch: float  # harmonic mean of the micro-batch sizes
    big_sq_norm: float  # |G_B|^2 of the full batch's mean gradient
    big_batch: float  # examples in the full batch


class MicroBatchGradNorms:
    """Squared gradient norms of each micro-batch and of the full batch, read off ``p.grad``.

    Gradient accumulation leaves ``p.grad`` holding the running sum of the micro-batches'
    gradients, so each micro-batch's gradient is the change of ``p.grad`` across its backward
    pass. One buffer holds the previous ``p.grad``; nothing else is copied, and the norms
    stay on the device until :meth:`end_step` (one synchronisation per optimizer step).

    Call order per optimizer step (at least two micro-batches)::

        norms = MicroBatchGradNorms()
        estimator = NoiseScaleEstimator()
        ...
        optimizer.zero_grad()
        norms.begin_step(model.parameters())
        for x, y in micro_batches:
            (loss_fn(model(x), y) * len(x) / batch_size).backward()
            norms.after_micro_batch(model.parameters(), len(x), loss_scale=len(x) / batch_size)
        estimator.update(*norms.end_step(model.parameters()))  # before clipping or step()
        optimizer.step()

    ``loss_scale`` is the factor the micro-batch's *mean* loss was multiplied by before
    ``backward()``; it must be proportional to the micro-batch size (``b / B`` for a mean over
    the full batch, or 1 for equal micro-batches whose gradients are summed), so that the
    accumulated ``p.grad`` is proportional to the full batch's mean gradient. Call
    :meth:`end_step` before gradient clipping, weight decay or anything else touches
    ``p.grad`` (with ``torch.amp.GradScaler``: before ``unscale_``, and with
    ``scaler.get_scale()`` included in ``loss_scale``). Parameters must come in the same
    order on every call.
    """

    def __init__(self) -> None:
        self._previous: list[torch.Tensor] = []
        self._small_sum: torch.Tensor | float = 0.0
        self._inverse_sizes = 0.0  # sum of 1/b: for the harmonic mean micro-batch size
        self._examples = 0
        self._count = 0
        self._scale_per_example: float | None = None

    @staticmethod
    def _params(params: Iterable[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
        return [p for p in params if p.requires_grad]

    @torch.no_grad()
    def begin_step(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Start an optimizer step: remember ``p.grad`` (None counts as zero).

        Args:
            params: The model's parameters, e.g. ``model.parameters()``.
        """
        params = self._params(params)
        if len(self._previous) != len(params) or any(
            (b.shape, b.device, b.dtype) != (p.shape, p.device, p.dtype)
            for b, p in zip(self._previous, params)
        ):
            self._previous = [torch.zeros_like(p, memory_format=torch.contiguous_format)
                              for p in params]
        for buffer, p in zip(self._previous, params):
            if p.grad is None:
                buffer.zero_()
            else:
                buffer.copy_(p.grad)
        self._small_sum = 0.0
        self._inverse_sizes = 0.0
        self._examples = 0
        self._count = 0
        self._scale_per_example = None

    @torch.no_grad()
    def after_micro_batch(
        self, params: Iterable[torch.nn.Parameter], micro_batch_size: int, *,
        loss_scale: float = 1.0,
    ) -> None:
        """Record the gradient of the micro-batch whose ``backward()`` just ran.

        Args:
            params: The same parameters as given to :meth:`begin_step`, in the same order.
            micro_batch_size: Examples in this micro-batch.
            loss_scale: Factor the micro-batch's mean loss was multiplied by before
                ``backward()``; must be proportional to ``micro_batch_size`` within a step.
        """
        if micro_batch_size <= 0 or loss_scale <= 0:
            raise ValueError("micro_batch_size and loss_scale must be positive")
        params = self._params(params)
        if len(params) != len(self._previous):
            raise RuntimeError("call begin_step() with the same parameters first")
        per_example = loss_scale / micro_batch_size
        if self._scale_per_example is None:
            self._scale_per_example = per_example
        elif not math.isclose(per_example, self._scale_per_example, rel_tol=1e-6):
            raise ValueError(
                "loss_scale must be proportional to micro_batch_size within a step "
                f"(got {loss_scale} for {micro_batch_size} examples)"
            )
        sq_norm = None
        for buffer, p in zip(self._previous, params):
            if p.grad is None:
                continue  # unused so far this step: its micro-batch gradient is zero
            buffer.sub_(p.grad)  # buffer = -(this micro-batch's scaled gradient)
            flat = buffer.view(-1)
            term = torch.dot(flat, flat)
            sq_norm = term if sq_norm is None else sq_norm + term
            buffer.copy_(p.grad)
        if sq_norm is not None:
            self._small_sum = self._small_sum + sq_norm.double() / loss_scale**2
        self._inverse_sizes += 1.0 / micro_batch_size
        self._examples += micro_batch_size
        self._count += 1

    @torch.no_grad()
    def end_step(self, params: Iterable[torch.nn.Parameter]) -> GradNormSample:
        """Finish the step: the squared norms of the micro-batch and full-batch mean gradients.

        Args:
            params: The same parameters, with ``p.grad`` holding the accumulated gradient.

        Returns:
            ``(small_sq_norm, small_batch, big_sq_norm, big_batch)``, ready for
            ``NoiseScaleEstimator.update(*sample)``.
        """
        if self._count < 2:
            raise RuntimeError(
                "the noise scale needs at least two micro-batches per step "
                f"(got {self._count}): split the batch before calling after_micro_batch()"
            )
        big = None
        for p in self._params(params):
            if p.grad is not None:
                flat = p.grad.reshape(-1)
                term = torch.dot(flat, flat)
                big = term if big is None else big + term
        # p.grad = sum_i s_i g_i with s_i = k * b_i, so p.grad = k * B * G_B.
        scale = self._scale_per_example * self._examples
        big_sq_norm = float(big.double() / scale**2) if big is not None else 0.0
        small_sum = float(self._small_sum)
        return GradNormSample(
            small_sq_norm=small_sum / self._count,
            small_batch=self._count / self._inverse_sizes,
            big_sq_norm=big_sq_norm,
            big_batch=float(self._examples),
        )
