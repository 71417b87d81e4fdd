"""The built-in networks and datasets by name: what ``--model cnn`` and ``--dataset mnist`` mean.

This is the one place that names them. Each entry points at its code by import path (the way
a user names their own model or data) and states what is known without loading anything, so
the command line, the study definition and ``bsopt profile`` can use the names without
importing torch.

The reference networks are those of the articles bsopt follows: the CNN (conv 32 -> conv 64 ->
max-pool -> dropout -> fc 128 -> fc 10, Adam lr 1e-3, batch 64, 10 epochs on MNIST) and the
MLP (784-256-128-10, SGD lr 0.01, batch sizes 16..128, 20 epochs).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BuiltinModel:
    """A reference network: ``factory(input_shape, num_classes) -> nn.Module``."""

    factory: str  # import path, "module:attribute"
    description: str


@dataclass(frozen=True)
class BuiltinDataset:
    """A dataset bsopt knows, by the loader contract of ``bsopt.training.sources``.

    ``loader(data_dir) -> (train, val, test)``: each split an ``(images N x C x H x W,
    labels N)`` pair of tensors (or a torch Dataset); a val or test of None is held out of
    train by the fixed rule of ``bsopt.training.splits`` (a sixth each). The same contract
    as a user's ``--dataset package.module:loader``; ``input_shape`` and ``num_classes``
    state here what the loader gives, so that names can be used without loading anything.
    """

    loader: str  # import path, "module:attribute"
    input_shape: tuple[int, int, int]  # (channels, height, width) of one example
    num_classes: int
    description: str


MODELS: dict[str, BuiltinModel] = {
    "cnn": BuiltinModel("bsopt.training.models:ReferenceCNN",
                        "the reference CNN: conv 32, conv 64, max-pool, dropout, fc 128, fc"),
    "mlp": BuiltinModel("bsopt.training.models:ReferenceMLP",
                        "the reference MLP: fc 256, fc 128, fc"),
}

@dataclass(frozen=True)
class BuiltinOptimizer:
    """A PyTorch optimizer by name: its class, and what bsopt passes it."""

    optimizer: str  # import path of the ``torch.optim.Optimizer`` class
    description: str


OPTIMIZERS: dict[str, BuiltinOptimizer] = {
    "sgd": BuiltinOptimizer("torch.optim:SGD", "SGD with --momentum (0 for plain SGD)"),
    "adam": BuiltinOptimizer("torch.optim:Adam", "Adam with PyTorch's default betas and eps"),
}

_BUILTIN = "bsopt.training.builtin_datasets:"
DATASETS: dict[str, BuiltinDataset] = {
    "digits": BuiltinDataset(_BUILTIN + "digits", (1, 8, 8), 10,
                             "scikit-learn's bundled 8x8 digits (offline)"),
    "mnist": BuiltinDataset(_BUILTIN + "mnist", (1, 28, 28), 10, "MNIST through torchvision"),
    "fashion-mnist": BuiltinDataset(_BUILTIN + "fashion_mnist", (1, 28, 28), 10,
                                    "Fashion-MNIST through torchvision"),
    "cifar10": BuiltinDataset(_BUILTIN + "cifar10", (3, 32, 32), 10,
                              "CIFAR-10 through torchvision"),
    "synthetic": BuiltinDataset(_BUILTIN + "synthetic", (1, 28, 28), 10,
                                "random 28x28 images labelled by a fixed random teacher"),
}


def names(catalog: dict[str, object]) -> str:
    """``a, b or c``: the names of a catalog, for messages and help."""
    keys = list(catalog)
    return keys[0] if len(keys) == 1 else ", ".join(keys[:-1]) + " or " + keys[-1]
