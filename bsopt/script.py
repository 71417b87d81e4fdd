"""The training script's side of ``bsopt search --command``: its environment and report line.

bsopt runs the command once per trial with these environment variables set:

- ``BSOPT_TRIAL``: the trial's number (set only when bsopt runs the script);
- ``BSOPT_CHECKPOINT_DIR``: a directory of the trial's own, kept for its retry: write your
  checkpoint there and read it back when you start (a retry of a killed trial finds it);
- ``BSOPT_BATCH_SIZE``, ``BSOPT_LR``, ``BSOPT_EPOCHS``, ``BSOPT_SEED``, ``BSOPT_DEVICE``;
  ``BSOPT_PARAMS``: every parameter of the trial as a JSON object.

The script reports each finished epoch by printing one line on its standard output that is a
JSON object with at least ``epoch`` (1, 2, ...) and ``val_loss``::

    {"epoch": 3, "val_loss": 0.412, "train_loss": 0.38, "val_accuracy": 0.91}

Other keys with numbers are recorded as curves; every other line is ignored. :func:`report`
prints that line, and does nothing when the script is not run by bsopt. Run by bsopt, it then
waits until bsopt has recorded the epoch and kept the checkpoint directory: a retry resumes
from exactly the state of that epoch, and a trial the pruner stops is stopped there (its
process gets SIGTERM).

A leaf of the package: standard library only, so ``import bsopt`` in a script stays instant.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

TRIAL_ENV = "BSOPT_TRIAL"
CHECKPOINT_DIR_ENV = "BSOPT_CHECKPOINT_DIR"
BATCH_SIZE_ENV = "BSOPT_BATCH_SIZE"
LR_ENV = "BSOPT_LR"
EPOCHS_ENV = "BSOPT_EPOCHS"
SEED_ENV = "BSOPT_SEED"
DEVICE_ENV = "BSOPT_DEVICE"
PARAMS_ENV = "BSOPT_PARAMS"
# bsopt's acknowledgements of report lines: the file descriptor they arrive on, and the inode
# of the pipe bsopt reads the script's output from (a script whose output goes elsewhere
# must not wait for them).
ACK_FD_ENV = "BSOPT_ACK_FD"
STDOUT_PIPE_ENV = "BSOPT_STDOUT_PIPE"

MAX_METRICS = 32  # per line: beyond them, a line is more likely a log record than an epoch
MAX_METRIC_NAME = 64


@dataclass(frozen=True)
class Report:
    """One epoch as a script reported it."""

    epoch: int
    val_loss: float
    metrics: dict[str, float | None] = field(default_factory=dict)


def in_trial() -> bool:
    """Whether this process is a trial's command, run by ``bsopt search --command``."""
    return bool(os.environ.get(TRIAL_ENV))


def checkpoint_dir() -> Path | None:
    """The trial's checkpoint directory (``$BSOPT_CHECKPOINT_DIR``), or None outside bsopt."""
    path = os.environ.get(CHECKPOINT_DIR_ENV)
    return Path(path) if path and in_trial() else None


def report_line(epoch: int, val_loss: float, **metrics: Any) -> str:
    """The JSON line that reports ``epoch`` (numbers such as 0-d tensors become floats)."""
    values = {"epoch": int(epoch), "val_loss": _number(val_loss)}
    values.update({name: _number(value) for name, value in metrics.items()})
    return json.dumps(values)


def report(epoch: int, val_loss: float, **metrics: Any) -> None:
    """Report a finished epoch to bsopt: print its JSON line (only when run by bsopt).

    Call it after the epoch's checkpoint is written in :func:`checkpoint_dir`: bsopt keeps
    the directory as it is when the line arrives, and this call returns once it has.

    Args:
        epoch: The epoch just finished, counting from 1.
        val_loss: Its validation loss (what the study minimizes).
        **metrics: Other numbers of the epoch (``train_loss``, ``val_accuracy``, ...).

    Example::

        for epoch in range(start + 1, epochs + 1):
            ...
            torch.save(state, bsopt.checkpoint_dir() / "state.pt")
            bsopt.report(epoch, val_loss, train_loss=train_loss)
    """
    if not in_trial():
        return
    sys.stdout.write(report_line(epoch, val_loss, **metrics) + "\n")
    sys.stdout.flush()
    _wait_for_ack(int(epoch))


def _number(value: Any) -> Any:
    """``value`` as a JSON number where it is one (``torch.Tensor`` and numpy scalars too)."""
    if isinstance(value, int | float) or value is None:
        return value
    item = getattr(value, "item", None)
    return item() if callable(item) else value


_acks: BinaryIO | None = None
_acks_closed = False


def _wait_for_ack(epoch: int) -> None:
    """Block until bsopt acknowledges the line of ``epoch`` (if it listens on our output)."""
    global _acks, _acks_closed
    if _acks_closed:
        return
    if _acks is None:
        fd, pipe = os.environ.get(ACK_FD_ENV), os.environ.get(STDOUT_PIPE_ENV)
        try:
            listening = pipe is not None and os.fstat(sys.stdout.fileno()).st_ino == int(pipe)
            _acks = os.fdopen(int(fd), "rb") if listening and fd else None
        except (OSError, ValueError, AttributeError):  # stdout redirected, no such fd
            _acks = None
        if _acks is None:
            _acks_closed = True
            return
    while True:
        try:
            line = _acks.readline()
        except OSError:
            line = b""
        if not line:  # bsopt stopped listening (it is ending this trial)
            _acks_closed = True
            return
        if line.strip() == str(epoch).encode():
            return


def parse_report(text: str) -> Report | None:
    """The epoch a line of a script's output reports, or None if it reports none.

    A line reports an epoch when it is a JSON object with the keys ``epoch`` and
    ``val_loss``. Of its other keys, those holding numbers (or null) are metrics; strings,
    booleans, lists and objects are left out, as are names longer than 64 characters and
    keys beyond the first 32.

    Raises:
        ValueError: the object has both keys, but ``epoch`` is not a whole number from 1 or
            ``val_loss`` not a number.
    """
    text = text.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return None
    try:
        values = json.loads(text)
    except ValueError:
        return None
    if not isinstance(values, dict) or "epoch" not in values or "val_loss" not in values:
        return None
    epoch, val_loss = values.pop("epoch"), values.pop("val_loss")
    if isinstance(epoch, float) and math.isfinite(epoch) and epoch.is_integer():
        epoch = int(epoch)
    if not _is_number(epoch) or isinstance(epoch, float) or epoch < 1:
        raise ValueError(f"epoch must be a whole number from 1, got {epoch!r}")
    if not _is_number(val_loss):
        raise ValueError(f"val_loss must be a number, got {val_loss!r}")
    metrics = {name: value for name, value in list(values.items())[:MAX_METRICS]
               if len(name) <= MAX_METRIC_NAME and (value is None or _is_number(value))}
    return Report(epoch, float(val_loss), metrics)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
