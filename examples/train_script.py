"""A plain PyTorch training script, tuned by bsopt as it is (``--command`` mode).

A small CNN on scikit-learn's bundled 8x8 digits (offline, a second or two per trial)::

    bsopt search --study-name digits-script --n-trials 8 --epochs 4 \\
        --command "python examples/train_script.py --bs {batch_size} --lr {lr} --epochs {epochs}"

It runs on its own too (``python examples/train_script.py --bs 32 --lr 1e-3 --epochs 3``).
What makes it tunable is three things, all optional outside bsopt:

- after each epoch it saves its state in ``bsopt.checkpoint_dir()`` and then calls
  ``bsopt.report(epoch, val_loss, ...)``, which prints the JSON line bsopt reads;
- at the start it resumes from that state if it is there (a retry of a killed trial);
- at the end it saves the weights as ``weights.pt`` there, which bsopt keeps for the best
  trial.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

import bsopt

SPLIT_SEED = 1234  # the same train/validation split in every trial


def load_digits(samples: int | None = None) -> tuple[torch.Tensor, ...]:
    """(train_x, train_y, val_x, val_y): the digits as 1x8x8 images, one sixth for validation."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = (x - x.mean()) / x.std()
    y = torch.tensor(bunch.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(SPLIT_SEED))
    val, train = order[: len(x) // 6], order[len(x) // 6:]
    if samples is not None:
        train, val = train[:samples], val[: max(1, samples // 5)]
    return x[train], y[train], x[val], y[val]


def make_model() -> nn.Module:
    """conv 16 -> max-pool -> fc 64 -> fc 10, for 1x8x8 images."""
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(16 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) on ``x``, ``y``."""
    model.eval()
    with torch.no_grad():
        logits = model(x)
    model.train()
    loss = nn.functional.cross_entropy(logits, y).item()
    return loss, (logits.argmax(1) == y).float().mean().item()


def train(batch_size: int, lr: float, epochs: int, *, data: tuple[torch.Tensor, ...],
          checkpoint_dir: Path | None, report=bsopt.report, seed: int = 0) -> float:
    """Train, resuming from ``checkpoint_dir/state.pt``; report every epoch; the last loss."""
    train_x, train_y, val_x, val_y = data
    torch.manual_seed(seed)
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)  # the data order
    start, val_loss = 0, float("nan")
    state_path = checkpoint_dir / "state.pt" if checkpoint_dir else None
    if state_path is not None and state_path.exists():  # a retry: go on from there
        state = torch.load(state_path, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        start = state["epoch"]
    for epoch in range(start + 1, epochs + 1):
        started, total = time.perf_counter(), 0.0
        for batch in torch.randperm(len(train_x), generator=generator).split(batch_size):
            loss = nn.functional.cross_entropy(model(train_x[batch]), train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        val_loss, accuracy = evaluate(model, val_x, val_y)
        if state_path is not None:  # first the checkpoint, then the report
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "generator": generator.get_state(), "epoch": epoch},
                       state_path.with_suffix(".tmp"))
            state_path.with_suffix(".tmp").replace(state_path)
        report(epoch, val_loss, train_loss=total / len(train_x), val_accuracy=accuracy,
               epoch_seconds=time.perf_counter() - started, examples=epoch * len(train_x))
        if not bsopt.in_trial():
            print(f"epoch {epoch}: val_loss {val_loss:.4f}, accuracy {accuracy:.3f}",
                  file=sys.stderr)
    if checkpoint_dir is not None:
        torch.save(model.state_dict(), checkpoint_dir / "weights.pt")
    return val_loss


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bs", type=int, default=32, help="batch size (default 32)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate (1e-3)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs (default 5)")
    parser.add_argument("--samples", type=int, help="train on the first N examples only")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and data order (0)")
    args = parser.parse_args(argv)
    return train(args.bs, args.lr, args.epochs, data=load_digits(args.samples),
                 checkpoint_dir=bsopt.checkpoint_dir(), seed=args.seed)


if __name__ == "__main__":
    main()
