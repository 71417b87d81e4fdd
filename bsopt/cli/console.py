"""What the CLI prints: the live progress line, tables of trials and studies."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, TextIO

import optuna

from bsopt import records
from bsopt.config import OBJECTIVES
from bsopt.search.progress import Kind, TrialProgress
from bsopt.text import table


def best_table(trials: Sequence[optuna.trial.FrozenTrial], objectives: Sequence[str],
               scores: dict[int, dict[str, Any]] | None = None) -> str:
    """The best trials as a table (:func:`bsopt.records.trial_summary` of each).

    With ``scores`` (``bsopt evaluate``'s), the test loss and accuracy too.
    """
    summaries = [records.trial_summary(t, objectives, scores) for t in trials]
    tested = any(s[records.TEST_LOSS] is not None for s in summaries)
    rows = [[s["number"], s["batch_size"], s["lr"], *s["values"].values(), s["val_accuracy"],
             s["epochs"], s["train_seconds"],
             *([s[records.TEST_LOSS], s[records.TEST_ACCURACY]] if tested else [])]
            for s in summaries]
    return table(["trial", "batch_size", "lr", *(OBJECTIVES[o] for o in objectives),
                  "val_acc", "epochs", "train_s", *(["test_loss", "test_acc"] if tested else [])],
                 rows)


class ProgressPrinter:
    """Prints one line per trial; on a terminal the line follows the trial epoch by epoch."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty()
        self.current: str | None = None

    def _prefix(self, event: TrialProgress) -> str:
        worker = f"[w{event.worker}] " if event.worker is not None else ""
        lr_text = f"lr={event.lr:.3g}" if event.lr is not None else ""
        return f"{worker}trial {event.trial:>4}  B={event.batch_size!s:>5}  {lr_text:<11}"

    def __call__(self, event: TrialProgress) -> None:
        if event.kind == Kind.EPOCH:
            self.current = self._prefix(event)
            if self.live:
                accuracy = ("" if event.val_accuracy is None
                            else f"  acc {event.val_accuracy:.3f}")
                line = (f"{self.current}  epoch {event.epoch}/{event.epochs}  "
                        f"val_loss {event.val_loss:.4f}{accuracy}")
                self.stream.write("\r\x1b[K" + line)
                self.stream.flush()
        elif event.kind == Kind.END:
            # The first line of an error: a script's stderr is on the lines after it.
            outcome = ((event.error or "").partition("\n")[0]
                       or (f"val_loss {event.values[0]:.4f}" if event.values else ""))
            line = (f"{self._prefix(event)}  {event.state:<8}  {outcome}  "
                    f"({event.seconds or 0:.1f} s)")
            self.stream.write(("\r\x1b[K" if self.live else "") + line + "\n")
            self.stream.flush()
