"""The training loop: epochs over a dataset's batches, gradient accumulation, warmup, metrics.

One ``Trainer`` trains one model with one (batch size, lr). It knows nothing of Optuna: the
objective (``bsopt.search.objective``) calls :meth:`Trainer.run_epoch` and reports each
:class:`EpochResult` to the trial. The data are in memory or streamed
(:mod:`bsopt.training.data`): the trainer draws each epoch's order from its own seeded
generator either way, so both paths train alike and a resumed trial continues exactly.
``state_dict``/``load_state_dict`` make a checkpoint (model, optimizer, RNG states, curves)
that contains only tensors and plain values, so it loads with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from bsopt import catalog
from bsopt.errors import UsageError
from bsopt.import_path import load_object
from bsopt.internals import fused_optimizer_devices
from bsopt.training.adam_scaling import sqrt_adam_options
from bsopt.training.data import TrialData

EVAL_BATCH = 2048


class Diverged(Exception):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainSettings:
    """How to train one trial."""

    batch_size: int
    lr: float
    epochs: int
    optimizer: str = "adam"
    momentum: float = 0.9  # SGD only
    warmup_epochs: float = 0.0  # linear warmup from 0 to lr over this many epochs
    max_micro_batch: int | None = None  # accumulate gradients over micro-batches above this
    noise_scale: bool = False  # measure the gradient noise scale (bsopt.training.noise_scale)
    seed: int = 0
    adam_scale: float | None = None  # sqrt-adam: B / B_ref, scales betas and eps (adam_scaling)
    precision: str = "fp32"  # or bf16 / fp16: forward passes under torch.autocast

    @property
    def optimizer_options(self) -> dict[str, Any]:
        """Options beyond lr and momentum: Malladi et al.'s betas and eps under sqrt-adam."""
        return {} if self.adam_scale is None else sqrt_adam_options(self.adam_scale)

    @property
    def micro_batch(self) -> int:
        """Examples per forward/backward pass."""
        if self.max_micro_batch is not None and self.batch_size > self.max_micro_batch:
            return self.max_micro_batch
        if self.noise_scale and self.batch_size >= 2:
            return self.batch_size // 2  # the estimator needs two batch sizes per step
        return self.batch_size


@dataclass
class EpochResult:
    """Metrics of one finished epoch (1-based)."""

    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    seconds: float
    samples_per_second: float
    steps: int  # optimizer steps taken since the start of training
    noise_scale: float | None = None
    grad_sq_norm: float | None = None
    grad_trace: float | None = None


@dataclass
class History:
    """The per-epoch curves so far."""

    epochs: list[EpochResult] = field(default_factory=list)

    def as_lists(self) -> dict[str, list[Any]]:
        """Curves as ``{metric: [value per epoch]}``."""
        keys = [k for k in EpochResult.__dataclass_fields__ if k != "epoch"]
        return {k: [getattr(e, k) for e in self.epochs] for k in keys}


def make_optimizer(name: str, params: Any, lr: float, momentum: float,
                   **options: Any) -> torch.optim.Optimizer:
    """The optimizer ``name`` of :data:`bsopt.catalog.OPTIMIZERS`, fused where PyTorch can.

    ``momentum`` and ``options`` (e.g. ``betas``, ``eps``) go to the optimizers that take them.

    Raises:
        UsageError: an unknown name.
    """
    if name not in catalog.OPTIMIZERS:
        raise UsageError(f"unknown optimizer {name!r}: choose "
                         f"{catalog.names(catalog.OPTIMIZERS)}")
    optimizer_class = load_object(catalog.OPTIMIZERS[name].optimizer, "--optimizer")
    takes = inspect.signature(optimizer_class).parameters
    params = list(params)
    # The unfused CPU step runs ~8 small ops per parameter tensor: a third of a batch-8 step.
    kwargs = {"lr": lr, "fused": True if _can_fuse(params) else None, "momentum": momentum,
              **options}
    return optimizer_class(params, **{k: v for k, v in kwargs.items() if k in takes})


def _can_fuse(params: list[Any]) -> bool:
    devices = set(fused_optimizer_devices())
    return bool(params) and all(
        isinstance(p, torch.Tensor) and p.is_floating_point() and p.device.type in devices
        for p in params
    )


def memory_format_for(device: torch.device, input_shape: tuple[int, ...]) -> torch.memory_format:
    """The layout batches are trained and evaluated in: channels_last for images on the CPU.

    oneDNN's convolutions run NHWC natively; NCHW costs a reorder per conv and its backward
    (channels_last measured 1.1-1.5x faster per epoch on CPU, BENCHMARKS.md).
    """
    if device.type == "cpu" and len(input_shape) == 3:
        return torch.channels_last
    return torch.contiguous_format


def evaluate(model: nn.Module, data: TrialData, split: str = "val", *,
             memory_format: torch.memory_format | None = None) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on ``split`` (``val`` or ``test``).

    ``model`` is put in eval mode for the pass and back in train mode after. Example (what
    ``bsopt evaluate`` does with a trial's weights)::

        loss, accuracy = evaluate(model, load_dataset("mnist"), "test")
    """
    if memory_format is None:
        memory_format = memory_format_for(data.device, data.input_shape)
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    model.eval()
    loss, correct, n = 0.0, 0, data.size(split)
    with torch.no_grad(), contextlib.closing(data.batches(split, EVAL_BATCH)) as batches:
        for x, y in batches:
            logits = model(x.contiguous(memory_format=memory_format))
            loss += loss_fn(logits, y).item()
            correct += int((logits.argmax(dim=1) == y).sum())
    model.train()
    return loss / n, correct / n


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse a precision the device cannot train in.

    fp16 autocast without a gradient scaler underflows small gradients, and PyTorch's
    scaler and fast fp16 kernels are CUDA's: on the CPU, bf16 is the mixed precision.

    Raises:
        UsageError: fp16 on a device other than CUDA.
    """
    if precision == "fp16" and device.type != "cuda":
        raise UsageError(f"--precision fp16 needs a CUDA device (this trial trains on "
                         f"{device.type}): use bf16 or fp32 on the CPU")


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` for bf16/fp16 on ``device``; nothing for fp32."""
    if precision not in AUTOCAST_DTYPES:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[precision])


class Trainer:
    """Trains ``model`` on ``data`` (in memory or streamed) with ``settings``, an epoch a call.

    With ``precision`` bf16 or fp16 the forward passes run under ``torch.autocast`` (weights
    and optimizer state stay fp32); fp16 (CUDA only) scales the loss with
    ``torch.amp.GradScaler``, which skips a step whose gradients overflowed.
    """

    def __init__(self, model: nn.Module, data: TrialData, settings: TrainSettings) -> None:
        torch.manual_seed(settings.seed)  # dropout; common random numbers across trials
        self.model = model
        self.data = data
        self.settings = settings
        self.device = data.device
        self.memory_format = memory_format_for(self.device, data.input_shape)
        model.to(memory_format=self.memory_format)
        self.optimizer = make_optimizer(settings.optimizer, model.parameters(), settings.lr,
                                        settings.momentum, **settings.optimizer_options)
        self.generator = torch.Generator(device="cpu").manual_seed(settings.seed)
        self.loss_fn = nn.CrossEntropyLoss(reduction="sum")
        check_precision(settings.precision, self.device)
        self.scaler = (torch.amp.GradScaler(self.device.type)
                       if settings.precision == "fp16" else None)
        self._params = [p for p in model.parameters() if p.requires_grad]
        self.steps = 0
        self.history = History()
        self.noise = None
        if settings.noise_scale:
            from bsopt.training.noise_scale import MicroBatchGradNorms, NoiseScaleEstimator

            self.noise = (MicroBatchGradNorms(), NoiseScaleEstimator())

    @property
    def epoch(self) -> int:
        """Epochs finished so far."""
        return len(self.history.epochs)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.data.size("train") / self.settings.batch_size)

    def _lr_at(self, step: int) -> float:
        warmup_steps = self.settings.warmup_epochs * self.steps_per_epoch
        if warmup_steps <= 0:
            return self.settings.lr
        return self.settings.lr * min(1.0, (step + 1) / warmup_steps)

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """One optimizer step on the batch (x, y); returns the summed loss."""
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr_at(self.steps)
        self.optimizer.zero_grad(set_to_none=True)
        params = self._params
        micro, size = self.settings.micro_batch, len(x)
        x = x.contiguous(memory_format=self.memory_format)  # a no-op for 1-channel images
        # The noise-scale estimator compares micro-batch and batch gradients: it needs two
        # micro-batches or more (a short last batch may have one).
        measure = self.noise is not None and size > micro
        if measure:
            self.noise[0].begin_step(params)
        total = 0.0
        for start in range(0, size, micro):
            xm, ym = x[start:start + micro], y[start:start + micro]
            # Summed loss over the whole batch's size: the accumulated gradient equals the
            # gradient of the full batch's mean loss.
            with autocast(self.settings.precision, self.device):
                loss = self.loss_fn(self.model(xm).float(), ym) / size
            (loss if self.scaler is None else self.scaler.scale(loss)).backward()
            total += loss.item() * size
            if measure:
                self.noise[0].after_micro_batch(params, len(xm), loss_scale=len(xm) / size)
        if measure:
            # A diverging step (a too-large lr) is a diverged trial, not a failed one: the
            # estimator refuses non-finite norms, which would otherwise fail the trial.
            if not math.isfinite(total):
                raise Diverged(f"training loss is {total} at epoch {self.epoch + 1}")
            try:
                self.noise[1].update(*self.noise[0].end_step(params))
            except ValueError as exc:
                raise Diverged(f"{exc} at epoch {self.epoch + 1}") from None
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)  # unscales first; skipped if gradients overflowed
            self.scaler.update()
        self.steps += 1
        return total

    def _evaluate(self) -> tuple[float, float]:
        return evaluate(self.model, self.data, "val", memory_format=self.memory_format)

    def run_epoch(self) -> EpochResult:
        """Train one epoch, evaluate, and return its metrics.

        Raises:
            Diverged: the training loss became NaN or infinite.
        """
        self.model.train()
        n, batch = self.data.size("train"), self.settings.batch_size
        # The epoch's order, from the trainer's generator (in the checkpoint) on both data
        # paths; a streamed path's loader workers are seeded by the trial's seed and epoch.
        order = torch.randperm(n, generator=self.generator)
        batches = self.data.train_batches(order, batch,
                                          seed=self.settings.seed * 100_003 + self.epoch)
        started = time.perf_counter()
        total = 0.0
        with contextlib.closing(batches):  # stops a streamed path's workers on an exception
            for x, y in batches:
                total += self._step(x, y)
                if not math.isfinite(total):
                    raise Diverged(f"training loss is {total} at epoch {self.epoch + 1}")
        seconds = time.perf_counter() - started
        val_loss, val_accuracy = self._evaluate()
        if not math.isfinite(val_loss):
            raise Diverged(f"validation loss is {val_loss} at epoch {self.epoch + 1}")
        result = EpochResult(
            epoch=self.epoch + 1, train_loss=total / n, val_loss=val_loss,
            val_accuracy=val_accuracy, seconds=seconds,
            samples_per_second=n / seconds if seconds > 0 else math.inf, steps=self.steps,
        )
        if self.noise is not None:
            estimator = self.noise[1]
            # Finite or None: the estimator refuses non-finite measurements.
            result.noise_scale = estimator.noise_scale
            result.grad_sq_norm = estimator.grad_sq_norm
            result.grad_trace = estimator.trace
        self.history.epochs.append(result)
        return result

    def state_dict(self) -> dict[str, Any]:
        """A checkpoint of everything needed to continue exactly (tensors and plain values)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "steps": self.steps,
            "history": [asdict(e) for e in self.history.epochs],
            **({"scaler": self.scaler.state_dict()} if self.scaler is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint made by :meth:`state_dict`."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.steps = int(state["steps"])
        self.history = History([EpochResult(**e) for e in state["history"]])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])

