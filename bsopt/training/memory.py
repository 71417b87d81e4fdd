"""How much memory one training step needs, measured without allocating a whole batch.

A step holds the parameters, their gradients and the optimizer state (fixed), plus every
tensor autograd saves for the backward pass (``torch.autograd.graph.saved_tensors_hooks``),
which grows with the batch. Steps of one and two examples give the fixed part and what each
example adds, so the estimate for any batch size costs two tiny steps.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

MB = 1024 * 1024


def static_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Parameters and their gradients, plus the optimizer's state."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    state = sum(t.numel() * t.element_size() for s in optimizer.state.values()
                for t in s.values() if torch.is_tensor(t))
    return 2 * params + state


def training_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                  y: torch.Tensor) -> int:
    """One cross-entropy training step; returns the bytes autograd saved for the backward."""
    saved = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += tensor.numel() * tensor.element_size()
        return tensor

    optimizer.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return saved


def step_bytes(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
               y: torch.Tensor, batch_size: int) -> int:
    """Peak bytes of a step at ``batch_size``, from steps on the first one and two of ``x``.

    The two steps train ``model`` (on a clone if that matters to the caller); weights that
    autograd saves once per step do not scale, which the difference of the two removes.
    """
    one = training_step(model, optimizer, x[:1], y[:1])
    two = training_step(model, optimizer, x[:2], y[:2])
    return static_bytes(model, optimizer) + one + (two - one) * (batch_size - 1)


def estimate_memory_mb(model: nn.Module, shape: tuple[int, ...], batch_size: int,
                       optimizer: str = "adam") -> float:
    """Peak memory in MB of one training step of ``model`` at ``batch_size``, on the CPU.

    Measured on a copy, so ``model`` is untouched.
    """
    from bsopt.training.trainer import make_optimizer

    clone = copy.deepcopy(model).cpu()
    opt = make_optimizer(optimizer, clone.parameters(), 1e-3, 0.9)
    x, y = torch.randn(2, *shape), torch.zeros(2, dtype=torch.long)
    return step_bytes(clone, opt, x, y, batch_size) / MB
