"""A training loop of your own, tuned with ``bsopt search --train examples.train_function:train``.

Plain PyTorch: an MLP on scikit-learn's bundled 8x8 digits (offline, a second per trial).
bsopt calls ``train(run)`` once per trial; ``run`` gives the batch size, learning rate,
epochs and device to use, records each epoch (``run.report``: the curve, the pruner), keeps
a checkpoint for a retry of this trial (``run.save_state``/``run.load_state``) and the final
weights for the best trials (``run.save_weights``). Run from the repository root::

    bsopt search --train examples.train_function:train --batch-size 16:128 --lr 1e-3:1 \\
        --epochs 8 --n-trials 12 --workers 2
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from torch import nn


def _data(device: str) -> tuple[torch.Tensor, ...]:
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, val = order[:1400], order[1400:]
    return x[train].to(device), y[train].to(device), x[val].to(device), y[val].to(device)


def train(run) -> float:
    """Train one trial as ``run`` says; return the final validation loss."""
    x, y, x_val, y_val = _data(run.device)
    torch.manual_seed(run.seed)  # the same initial weights in every trial
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)).to(run.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=run.lr, momentum=0.9)
    generator = torch.Generator().manual_seed(run.seed)
    start = 0
    if (state := run.load_state()) is not None:  # a retry of a trial whose worker died
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        start = state["epoch"]
    loss_fn = nn.CrossEntropyLoss()
    val_loss = float("nan")
    for epoch in range(start + 1, run.epochs + 1):
        model.train()
        total = 0.0
        for batch in torch.randperm(len(x), generator=generator).split(run.batch_size):
            optimizer.zero_grad()
            loss = loss_fn(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        model.eval()
        with torch.no_grad():
            logits = model(x_val)
            val_loss = loss_fn(logits, y_val).item()
            accuracy = (logits.argmax(1) == y_val).float().mean().item()
        run.report(epoch, val_loss, train_loss=total / len(x), val_accuracy=accuracy,
                   examples=epoch * len(x))  # raises when the trial is pruned
        # After the report: the state saved is that of the epoch bsopt just recorded.
        run.save_state({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "generator": generator.get_state(), "epoch": epoch})
    run.save_weights(model.state_dict())
    return val_loss
