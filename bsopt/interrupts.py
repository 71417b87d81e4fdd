"""Ctrl-C and SIGTERM: stop trials at their next step, or abort a step that must not be cut.

A terminal sends Ctrl-C (SIGINT) to a command and its worker processes; schedulers and
``kill`` send SIGTERM to the command. :func:`stop_on_signals` turns both into a request to
stop that the workers honour between optimizer steps; :func:`sigterm_as_keyboard_interrupt`
makes SIGTERM abort like Ctrl-C where there is nothing to stop cleanly (creating a study,
serving the storage proxy).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def stop_on_signals(stop: Any, *, worker_process: bool = False) -> Iterator[None]:
    """Set ``stop`` on the first Ctrl-C or SIGTERM; a second Ctrl-C aborts at once.

    A worker process started by ``--workers`` ignores Ctrl-C, which a terminal sends to it
    too: the process that started it sets ``stop`` for every worker, and a second Ctrl-C
    aborts that process only, while the workers still end their trials cleanly.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        if signum == signal.SIGINT and worker_process:
            return
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextmanager
def sigterm_as_keyboard_interrupt() -> Iterator[None]:
    """Make SIGTERM raise ``KeyboardInterrupt`` as Ctrl-C does (in the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
