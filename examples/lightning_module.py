"""A PyTorch Lightning module tuned by bsopt (``--command`` mode, through ``BsoptCallback``).

The CNN of ``examples/train_script.py`` on the 8x8 digits, as a ``LightningModule``::

    pip install 'bsopt[lightning]'
    bsopt search --study-name digits-lightning --n-trials 8 --epochs 4 --command \\
        "python examples/lightning_module.py --bs {batch_size} --lr {lr} --epochs {epochs}"

``BsoptCallback`` reports each validation epoch to bsopt and saves ``last.ckpt`` in the trial's
checkpoint directory first; ``last_checkpoint()`` resumes a retried trial from it. Under Slurm,
Lightning would take the job for its own and requeue it on SIGUSR1: the Slurm plugin below
turns that off (bsopt retries a dead worker's trial itself).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.plugins.environments import SLURMEnvironment
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the data and network of the plain script
import train_script  # noqa: E402

import bsopt  # noqa: E402
from bsopt.integrations.lightning import BsoptCallback, last_checkpoint  # noqa: E402


class DigitsModule(L.LightningModule):
    """The plain script's CNN, trained with Adam at ``lr``."""

    def __init__(self, lr: float) -> None:
        super().__init__()
        self.lr = lr
        self.model = train_script.make_model()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _index: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self.model(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _index: int) -> None:
        x, y = batch
        logits = self.model(x)
        self.log("val_loss", nn.functional.cross_entropy(logits, y))
        self.log("val_accuracy", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bs", type=int, default=32, help="batch size (default 32)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate (1e-3)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs (default 5)")
    parser.add_argument("--samples", type=int, help="train on the first N examples only")
    args = parser.parse_args(argv)
    L.seed_everything(0, verbose=False)
    train_x, train_y, val_x, val_y = train_script.load_digits(args.samples)
    train = DataLoader(TensorDataset(train_x, train_y), batch_size=args.bs, shuffle=True)
    val = DataLoader(TensorDataset(val_x, val_y), batch_size=256)
    trainer = L.Trainer(
        max_epochs=args.epochs, accelerator=os.environ.get("BSOPT_DEVICE", "auto").split(":")[0],
        callbacks=[BsoptCallback()], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        plugins=[SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else None)
    model = DigitsModule(args.lr)
    trainer.fit(model, train, val, ckpt_path=last_checkpoint())
    if (directory := bsopt.checkpoint_dir()) is not None:  # kept for the best trial
        torch.save(model.model.state_dict(), directory / "weights.pt")


if __name__ == "__main__":
    main()
