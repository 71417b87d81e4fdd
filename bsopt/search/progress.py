"""What a running search tells its caller: one typed event per finished epoch and trial.

Events cross from worker processes to the process that started them through a queue, so
they are plain frozen dataclasses; :class:`~bsopt.cli.console.ProgressPrinter` prints them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum


class Kind(str, Enum):
    """What happened."""

    EPOCH = "epoch"  # a trial finished an epoch
    DIVERGED = "diverged"  # a trial's loss became NaN or infinite (it is pruned)
    END = "end"  # a trial ended: complete, pruned or failed


@dataclass(frozen=True)
class TrialProgress:
    """One trial's progress: an epoch it finished, or how it ended."""

    kind: Kind
    trial: int  # the trial's number
    batch_size: int | None
    lr: float | None  # the learning rate it trains with
    epoch: int | None = None  # EPOCH: which (1-based) ...
    epochs: int | None = None  # ... of how many
    val_loss: float | None = None
    val_accuracy: float | None = None
    state: str | None = None  # END: COMPLETE, PRUNED or FAIL
    values: tuple[float, ...] | None = None  # END: the objective values of a complete trial
    seconds: float | None = None  # END: wall time of the trial in this worker
    error: str | None = None  # END: why it failed
    worker: int | None = None  # set for the worker processes of ``--workers N``

    def from_worker(self, worker: int) -> TrialProgress:
        """This event, marked as coming from worker process ``worker``."""
        return replace(self, worker=worker)


ProgressCallback = Callable[[TrialProgress], None]


class Failure(str, Enum):
    """Why a worker stopped before the study's budget was done."""

    TOO_MANY_FAILURES = "too many failures"  # trials keep raising: the objective is broken
    DISK_FULL = "disk full"  # the storage's disk filled up
    ABORTED = "aborted"  # a second Ctrl-C
    BUG = "bug"  # an unexpected exception (its traceback is in the worker's output)
    DIED = "died"  # killed (OOM, kill -9): its trial is retried by the others


@dataclass(frozen=True)
class WorkerExit:
    """How one worker process ended, as it tells the process that started it."""

    worker: int
    interrupted: bool = False  # stopped mid-trial by Ctrl-C or SIGTERM
    failure: Failure | None = None
    message: str = ""
