"""PyTorch Lightning: a callback that reports each validation epoch to bsopt.

Add :class:`BsoptCallback` to the ``Trainer`` of a script that bsopt runs with ``--command``::

    from bsopt.integrations.lightning import BsoptCallback, last_checkpoint

    trainer = L.Trainer(max_epochs=args.epochs, callbacks=[BsoptCallback()])
    trainer.fit(model, train_loader, val_loader, ckpt_path=last_checkpoint())

At the end of every validated epoch it saves the trainer's checkpoint as ``last.ckpt`` in the
trial's checkpoint directory (``$BSOPT_CHECKPOINT_DIR``) and then reports the epoch (counted
from 1) with the logged ``val_loss`` and every other logged scalar; ``last_checkpoint()`` is that
file when a retry of the trial finds it, so ``fit`` resumes there. A trial the pruner stops
gets SIGTERM, on which Lightning ends ``fit`` at the next step. In a ``--train`` function,
``BsoptCallback(run)`` reports through ``run.report`` instead (the pruner's decision then
raises ``optuna.TrialPruned`` out of ``fit``).

bsopt's epochs are the validated ones, counted as Lightning counts epochs: keep
``check_val_every_n_epoch=1`` (the default), or the pruner sees gaps. Needs ``lightning``
(``pip install 'bsopt[lightning]'``); ``pytorch_lightning`` works too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bsopt.script import checkpoint_dir, in_trial, report

try:
    from lightning.pytorch import Callback, LightningModule, Trainer
except ImportError:  # the older package name
    from pytorch_lightning import Callback, LightningModule, Trainer

CHECKPOINT_NAME = "last.ckpt"


def last_checkpoint() -> str | None:
    """The checkpoint a killed attempt of this trial left (for ``fit(ckpt_path=...)``), or None."""
    directory = checkpoint_dir()
    path = directory / CHECKPOINT_NAME if directory is not None else None
    return str(path) if path is not None and path.is_file() else None


class BsoptCallback(Callback):
    """Report every validation epoch to bsopt (see the module docstring).

    Args:
        run: The ``Run`` of a ``--train`` function; None (the default) reports a ``--command``
            script's epochs on its standard output (``bsopt.report``).
        monitor: The logged metric that is the validation loss.
        save_checkpoint: Save ``last.ckpt`` before each report, so that a retry resumes.
    """

    def __init__(self, run: Any = None, *, monitor: str = "val_loss",
                 save_checkpoint: bool = True) -> None:
        super().__init__()
        self.run = run
        self.monitor = monitor
        self.save_checkpoint = save_checkpoint
        self._validated = False  # since the last report

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Note that this epoch was validated (not by the sanity check before training)."""
        if not trainer.sanity_checking:
            self._validated = True

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Checkpoint, then report the epoch, once it is validated and its metrics are in.

        Here rather than at the end of validation, which Lightning runs before it averages
        the epoch's training metrics: ``train_loss`` would be the previous epoch's.
        """
        if not self._validated:
            return
        self._validated = False
        epoch = trainer.current_epoch + 1
        metrics = {name: _scalar(value) for name, value in trainer.callback_metrics.items()}
        metrics = {name: value for name, value in metrics.items() if value is not None}
        if self.monitor not in metrics:
            raise KeyError(f"BsoptCallback: no logged metric {self.monitor!r} to report (logged: "
                           f"{', '.join(sorted(metrics)) or 'none'}); log it in "
                           "validation_step with self.log, or pass monitor=")
        val_loss = metrics.pop(self.monitor)
        directory = checkpoint_dir()
        if self.run is None and self.save_checkpoint and directory is not None:
            _save(trainer, directory / CHECKPOINT_NAME)
        if not trainer.is_global_zero:
            return
        if self.run is not None:
            self.run.report(epoch, val_loss, **metrics)
        elif in_trial():
            report(epoch, val_loss, **metrics)


def _save(trainer: Trainer, path: Path) -> None:
    """``trainer.save_checkpoint`` to ``path``, whole or not at all (written, then renamed)."""
    partial = path.with_name(path.name + ".partial")
    trainer.save_checkpoint(partial)
    if trainer.is_global_zero:
        os.replace(partial, path)


def _scalar(value: Any) -> float | None:
    """A logged metric as a float, if it is one number (a 0-d or 1-element tensor, a number)."""
    if hasattr(value, "numel"):
        if value.numel() != 1:
            return None
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
