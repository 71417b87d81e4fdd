"""What the CLI prints: the live progress line, tables of trials and studies."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, TextIO

import optuna

from bsopt import records
from bsopt.text import table


def trial_rows(trials: Sequence[optuna.trial.FrozenTrial]) -> list[list[Any]]:
    """Rows of the best-trials table."""
    rows = []
    for t in trials:
        accuracy = t.user_attrs.get(records.VAL_ACCURACY) or [None]
        rows.append([t.number, t.params.get("batch_size"), records.effective_lr(t),
                     *(t.values or [None]), accuracy[-1],
                     len(t.user_attrs.get(records.VAL_LOSS, [])),
                     t.user_attrs.get(records.TRAIN_SECONDS)])
    return rows


def best_table(trials: Sequence[optuna.trial.FrozenTrial], objectives: Sequence[str]) -> str:
    """The best trials as a table."""
    names = ["val_loss" if o == "loss" else "seconds" for o in objectives]
    return table(["trial", "batch_size", "lr", *names, "val_acc", "epochs", "train_s"],
                 trial_rows(trials))


class ProgressPrinter:
    """Prints one line per trial; on a terminal the line follows the trial epoch by epoch."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty()
        self.current: str | None = None

    def _prefix(self, event: dict[str, Any]) -> str:
        worker = f"[w{event['worker']}] " if "worker" in event else ""
        batch = event.get("batch_size")
        lr = event.get("lr")
        lr_text = f"lr={lr:.3g}" if lr is not None else ""
        return f"{worker}trial {event['trial']:>4}  B={batch!s:>5}  {lr_text:<11}"

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "epoch":
            self.current = self._prefix(event)
            if self.live:
                line = (f"{self.current}  epoch {event['epoch']}/{event['epochs']}  "
                        f"val_loss {event['val_loss']:.4f}  acc {event['val_accuracy']:.3f}")
                self.stream.write("\r\x1b[K" + line)
                self.stream.flush()
        elif kind == "end":
            values = event.get("values")
            outcome = f"val_loss {values[0]:.4f}" if values else ""
            if event.get("error"):
                outcome = event["error"]
            prefix = self._prefix(event)
            line = (f"{prefix}  {event['state']:<8}  {outcome}  "
                    f"({event['seconds']:.1f} s)")
            self.stream.write(("\r\x1b[K" if self.live else "") + line + "\n")
            self.stream.flush()
