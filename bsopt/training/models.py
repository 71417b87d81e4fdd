"""The reference CNN and MLP (see :mod:`bsopt.catalog`), adapting to the input's shape.

Each is built as ``Network(input_shape, num_classes)``, the signature of every model factory
bsopt calls, so ``--model cnn`` and ``--model package.module:factory`` build alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from bsopt import catalog
from bsopt.errors import UsageError
from bsopt.import_path import is_import_path, load_object


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose mask is drawn with ``torch.rand`` instead of ``bernoulli_``.

    The same distribution (each element kept with probability 1 - p, scaled by 1 / (1 - p)),
    but PyTorch's CPU ``bernoulli_`` draws ~3x slower than ``rand`` (0.9 ms against 0.3 ms
    for the CNN's 16x64x12x12 activations), which made dropout a tenth of a batch-16 step
    (BENCHMARKS.md). Only the random stream differs from ``nn.Dropout``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        # CUDA's dropout is one fused kernel with a byte mask: only the CPU path is slow.
        if not self.training or not 0 < self.p < 1 or self.inplace or x.device.type != "cpu":
            return super().forward(x)
        keep = (torch.rand_like(x) >= self.p).to(x.dtype).mul_(1 / (1 - self.p))
        return x * keep


class _ChannelsLastToContiguous(torch.autograd.Function):
    """``x.contiguous()`` of a channels-last ``x`` whose gradient comes back channels-last."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x.contiguous()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return grad.contiguous(memory_format=torch.channels_last)


class Flatten(nn.Flatten):
    """``nn.Flatten`` that hands a channels-last input its gradient in channels-last layout.

    Flattening a channels-last tensor copies it to NCHW order, and autograd returns the
    gradient in that order; the max-pool's backward below then converts its whole input
    (4x larger) to NCHW in every step, 0.6 ms of a 7 ms batch-16 step on the CPU. Converting
    the small gradient back instead keeps the layers below in one layout.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(
                memory_format=torch.channels_last):
            x = _ChannelsLastToContiguous.apply(x)
        return super().forward(x)


class ReferenceCNN(nn.Module):
    """conv 32 -> conv 64 -> max-pool -> dropout -> fc 128 -> fc classes: the reference CNN.

    3x3 convolutions without padding, as in the articles; inputs smaller than 6x6 get padding
    so that the 8x8 digits fit too.
    """

    def __init__(self, input_shape: tuple[int, int, int] = (1, 28, 28),
                 num_classes: int = 10) -> None:
        super().__init__()
        in_channels, height, width = input_shape
        padding = 1 if min(height, width) < 6 else 0
        out_h, out_w = (height - 4 + 4 * padding) // 2, (width - 4 + 4 * padding) // 2
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=padding), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=padding), nn.ReLU(),
            nn.MaxPool2d(2), Dropout(0.25), Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(64 * out_h * out_w, 128), nn.ReLU(), Dropout(0.5),
            nn.Linear(128, num_classes),
        )

    def forward(self, x):  # noqa: D102
        return self.classifier(self.features(x))


class ReferenceMLP(nn.Module):
    """flatten -> fc 256 -> fc 128 -> fc classes: the reference MLP (784-256-128-10 on MNIST)."""

    def __init__(self, input_shape: tuple[int, int, int] = (1, 28, 28),
                 num_classes: int = 10) -> None:
        super().__init__()
        in_channels, height, width = input_shape
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(in_channels * height * width, 256), nn.ReLU(),
            nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, num_classes),
        )

    def forward(self, x):  # noqa: D102
        return self.net(x)


ModelFactory = Callable[[tuple[int, int, int], int], nn.Module]


def model_factory(model: str, model_args: Mapping[str, Any] | None = None) -> ModelFactory:
    """The factory of the network ``model`` names: a reference network, or the user's own.

    Args:
        model: ``cnn`` or ``mlp`` (:mod:`bsopt.catalog`), or ``package.module:factory``,
            imported from the working directory or the installed packages.
        model_args: Keyword arguments the user's factory is called with (the TOML table
            ``[model_args]``); the reference networks take none.

    Returns:
        ``build(input_shape, num_classes) -> nn.Module``, calling the factory as
        ``factory(input_shape, num_classes, **model_args)``.

    Raises:
        UsageError: an unknown name, a module or attribute that is not there, or arguments
            for a reference network; building raises it too when the factory raises or
            returns something that is not a ``torch.nn.Module``.
    """
    args = dict(model_args or {})
    if model in catalog.MODELS:
        if args:
            raise UsageError(f"model_args are keyword arguments of a model factory given as "
                             f"package.module:name; the reference {model} takes none")
        target = catalog.MODELS[model].factory
    elif is_import_path(model):
        target = model
    else:
        raise UsageError(f"unknown model {model!r}: choose {catalog.names(catalog.MODELS)}, "
                         "or give your factory as package.module:name")
    factory = load_object(target, "--model")
    if not callable(factory):
        raise UsageError(f"--model {model} is a {type(factory).__name__}, not a factory to call")

    def build(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
        try:
            network = factory(input_shape, num_classes, **args)
        except Exception as exc:
            raise UsageError(f"--model {model}: {target}(input_shape={input_shape}, "
                             f"num_classes={num_classes}{''.join(f', {k}=...' for k in args)})"
                             f" raised {type(exc).__name__}: {exc}") from None
        if not isinstance(network, nn.Module):
            raise UsageError(f"--model {model} returned a {type(network).__name__}, not a "
                             "torch.nn.Module")
        return network

    return build


def build_model(name: str, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """The reference network ``name`` (``cnn`` or ``mlp``) for inputs of ``input_shape``.

    Raises:
        UsageError: an unknown name.
    """
    return model_factory(name)(input_shape, num_classes)
