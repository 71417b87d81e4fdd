"""The process of one ``--command`` trial: started, read line by line, and ended, always.

:class:`ScriptProcess` starts the command in a session (and process group) of its own, with
standard input closed and its output on pipes:

- standard output is read by a thread, line by line (a ``\\r`` ends a line too, so progress
  bars do not hide a report); lines that report an epoch (:func:`bsopt.script.parse_report`)
  are handed to the trial, the others are dropped, their last few kept for messages;
- standard error goes on to the worker's standard error, each line marked with the trial,
  and its last lines are kept for the trial's ``fail_reason``;
- each handled report line is acknowledged on a pipe of its own (``bsopt.report`` waits for
  it, so the script stands still while bsopt records the epoch and keeps its directory).

Ending it: SIGTERM to the whole process group, SIGKILL after a grace period; once the
command has exited, whatever it left running in its group is killed. A small watcher
process (a second interpreter, started in a session of its own) holds one end of a pipe
from the worker: when the worker dies, even by ``kill -9``, the pipe closes and the watcher
kills the command's process group, so no training outlives its worker.
"""

from __future__ import annotations

import collections
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO

from bsopt.script import ACK_FD_ENV, STDOUT_PIPE_ENV, Report, parse_report
from bsopt.search.worker import Interrupted

TAIL_LINES = 10  # lines of output kept for the trial's messages
MAX_LINE = 1 << 16  # longer lines are read in pieces (none of them reports an epoch)
MAX_TAIL_CHARS = 500  # per kept line
POLL_SECONDS = 0.1
DRAIN_SECONDS = 1.0  # how long output may trail the command's exit before it is cut
# The watcher: wait on the pipe; at its end without a word from the worker, kill the group.
WATCHER = ("import os, signal, sys\n"
           "if not os.read(0, 1):\n"
           "    try: os.killpg(int(sys.argv[1]), signal.SIGKILL)\n"
           "    except OSError: pass\n")


class CommandFailed(Exception):
    """The command could not run, exited with an error, or broke the report contract."""


def _tail(lines: collections.deque[str]) -> str:
    return "\n".join(f"  {line}" for line in lines)


class ScriptProcess:
    """One run of the command (see the module docstring); a context manager.

    Args:
        argv: The program and its arguments (``/bin/sh -c ...`` for a shell command).
        env: Its environment.
        grace: Seconds between SIGTERM and SIGKILL.
        label: Marks its standard error lines on the worker's (``trial 7``).
        stderr: Where its standard error goes on to (the worker's).
    """

    def __init__(self, argv: list[str], *, env: dict[str, str], grace: float, label: str,
                 stderr: TextIO | None = None) -> None:
        self.argv = argv
        self.env = env
        self.grace = grace
        self.label = label
        self.stderr = stderr or sys.stderr
        self.stdout_tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._lines: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._popen: subprocess.Popen[bytes] | None = None
        self._watcher: subprocess.Popen[bytes] | None = None
        self._watch_fd: int | None = None
        self._ack_fd: int | None = None
        self._exited = False

    # --- starting --------------------------------------------------------------------

    def __enter__(self) -> ScriptProcess:
        self.start()
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        self.close()

    def start(self) -> None:
        """Start the command, its readers and its watcher.

        Raises:
            CommandFailed: the program cannot be run (missing, not executable).
        """
        out_read, out_write = os.pipe()
        ack_read, ack_write = os.pipe()
        env = {**self.env, ACK_FD_ENV: str(ack_read),
               STDOUT_PIPE_ENV: str(os.fstat(out_read).st_ino)}
        try:
            self._popen = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out_write, stderr=subprocess.PIPE,
                env=env, pass_fds=(ack_read,), start_new_session=True)
        except OSError as exc:
            for fd in (out_read, out_write, ack_read, ack_write):
                os.close(fd)
            raise CommandFailed(f"cannot run {self.argv[0]!r}: {exc.strerror or exc}") from None
        finally:
            if self._popen is not None:
                os.close(out_write)
                os.close(ack_read)
        os.set_blocking(ack_write, False)  # a script that never reads them must not block us
        self._ack_fd = ack_write
        self._start_watcher()
        assert self._popen.stderr is not None
        self._threads = [
            threading.Thread(target=self._read_stdout, args=(os.fdopen(out_read, "rb"),),
                             name=f"{self.label} stdout", daemon=True),
            threading.Thread(target=self._read_stderr, args=(self._popen.stderr,),
                             name=f"{self.label} stderr", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _start_watcher(self) -> None:
        assert self._popen is not None
        watch_read, watch_write = os.pipe()
        try:
            self._watcher = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", WATCHER, str(self._popen.pid)],
                stdin=watch_read, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True)
        except OSError:  # no interpreter to run it: the command still runs, unwatched
            os.close(watch_write)
            watch_write = None  # type: ignore[assignment]
        finally:
            os.close(watch_read)
        self._watch_fd = watch_write

    # --- reading ---------------------------------------------------------------------

    def _read_stdout(self, stream: Any) -> None:
        with stream:
            for chunk in iter(lambda: stream.readline(MAX_LINE), b""):
                for piece in chunk.replace(b"\r", b"\n").split(b"\n"):
                    text = piece.decode("utf-8", "replace").strip()
                    if not text:
                        continue
                    try:
                        found = parse_report(text) if len(chunk) < MAX_LINE else None
                    except ValueError as exc:
                        self._lines.put(("bad", f"it printed {text[:200]!r}: {exc}"))
                        continue
                    if found is None:
                        self.stdout_tail.append(text[:MAX_TAIL_CHARS])
                    else:
                        self._lines.put(("report", found))
        self._lines.put(("end", None))

    def _read_stderr(self, stream: Any) -> None:
        with stream:
            for chunk in iter(lambda: stream.readline(MAX_LINE), b""):
                text = chunk.decode("utf-8", "replace").rstrip("\r\n")
                try:
                    self.stderr.write(f"[{self.label}] {text}\n")
                    self.stderr.flush()
                except (OSError, ValueError):  # the worker's stderr is gone: keep reading
                    pass
                if text.strip():
                    self.stderr_tail.append(text.rstrip()[:MAX_TAIL_CHARS])

    def reports(self, stop: Any = None) -> Iterator[Report]:
        """The epochs the command reports, as they come, until it has exited.

        Raises:
            Interrupted: ``stop`` was set (the process is still running: close it).
            CommandFailed: it printed a report line that breaks the contract.
        """
        exited_at: float | None = None
        while True:
            if stop is not None and stop.is_set():
                raise Interrupted("stop requested")
            try:
                kind, item = self._lines.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if exited_at is None and self.poll_exited():
                    exited_at = time.monotonic()
                elif exited_at is not None and time.monotonic() - exited_at > DRAIN_SECONDS:
                    self._kill_group(signal.SIGKILL)  # its leftovers hold the output open
                continue
            if kind == "end":
                break
            if kind == "bad":
                raise CommandFailed(f"the command broke the report contract: {item}")
            yield item
        while not self.poll_exited():  # output closed; the process ends next, as a rule
            if stop is not None and stop.is_set():
                raise Interrupted("stop requested")
            time.sleep(POLL_SECONDS / 10)

    def ack(self, epoch: int) -> None:
        """Tell the command that its line of ``epoch`` is handled (``bsopt.report`` waits)."""
        if self._ack_fd is None:
            return
        try:
            os.write(self._ack_fd, f"{epoch}\n".encode())
        except OSError:  # not read (full) or no reader left: it does not wait for them
            pass

    # --- ending ----------------------------------------------------------------------

    def poll_exited(self) -> bool:
        """Whether the command has exited (it is not reaped, so its group id stays its own)."""
        if not self._exited and self._popen is not None:
            try:
                info = os.waitid(os.P_PID, self._popen.pid,
                                 os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:  # reaped already
                info = True
            self._exited = info is not None
        return self._exited

    def _kill_group(self, signum: int) -> None:
        if self._popen is None or self._popen.returncode is not None:
            return  # reaped: its id may belong to another process by now
        try:
            os.killpg(self._popen.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def terminate(self) -> None:
        """SIGTERM to the command's group; SIGKILL once it has exited or after the grace."""
        if self._popen is None:
            return
        if not self.poll_exited():
            self._kill_group(signal.SIGTERM)
            self._close_acks()  # a script waiting for one would wait through its SIGTERM
            deadline = time.monotonic() + self.grace
            while not self.poll_exited() and time.monotonic() < deadline:
                time.sleep(0.01)
        self._kill_group(signal.SIGKILL)

    def close(self) -> None:
        """End the command if it still runs, kill what it left, reap it, stop the watcher."""
        if self._popen is None:
            return
        self.terminate()
        self._popen.wait()
        for thread in self._threads:
            thread.join(timeout=5)
        self._close_acks()
        if self._watch_fd is not None:
            try:
                os.write(self._watch_fd, b"x")  # done: the group is gone, kill nothing
            except OSError:
                pass
            os.close(self._watch_fd)
            self._watch_fd = None
        if self._watcher is not None:
            try:
                self._watcher.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._watcher.kill()

    def _close_acks(self) -> None:
        if self._ack_fd is not None:
            os.close(self._ack_fd)
            self._ack_fd = None

    @property
    def returncode(self) -> int | None:
        """The command's exit status once closed (negative: killed by that signal)."""
        return None if self._popen is None else self._popen.returncode

    @property
    def pid(self) -> int | None:
        """The command's process id (and process group id)."""
        return None if self._popen is None else self._popen.pid

    def failure(self) -> str:
        """Why the command failed, from its exit status and the last lines it wrote."""
        status = self.returncode
        if status is not None and status < 0:
            try:
                name = signal.Signals(-status).name
            except ValueError:
                name = f"signal {-status}"
            what = f"the command was killed by {name}"
        else:
            what = f"the command exited with status {status}"
        if not self.stderr_tail:
            return what + (" and wrote nothing on stderr" if status else "")
        return f"{what}: {self.stderr_tail[-1]}\nthe last lines of its stderr:\n" + _tail(
            self.stderr_tail)

    def stdout_summary(self) -> str:
        """The last lines of standard output that reported nothing, for messages."""
        if not self.stdout_tail:
            return "it printed nothing on stdout"
        return "the last lines of its stdout:\n" + _tail(self.stdout_tail)
