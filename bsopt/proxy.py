"""``bsopt storage-proxy``: serve a storage to workers through Optuna's gRPC storage proxy.

Workers that cannot (or should not) hold database connections reach the study with
``--storage grpc://HOST:PORT``; the proxy holds the one pool of connections (with the same
retries as any bsopt storage) and Optuna's gRPC client caches finished trials.

What the proxy does not carry: Optuna's heartbeats (``GrpcStorageProxy`` does not implement
``BaseHeartbeat``), so a worker that dies behind the proxy leaves its trial RUNNING until a
worker connected to the database directly fails it (never, without heartbeats from the
dead one: re-run it by hand, see the README); and checkpoints, which go to ``./bsopt-artifacts``
on each worker unless ``--artifact-dir`` names a shared directory. The proxy has no
authentication or encryption: serve it on a trusted network only.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import optuna

from bsopt.errors import UsageError
from bsopt.storage import make_storage, mask_url, resolve_url

DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 13000


def serve_storage_proxy(storage_url: str | None, *, host: str = DEFAULT_HOST,
                        port: int = DEFAULT_PORT, out: TextIO | None = None) -> None:
    """Serve ``storage_url`` on ``host:port`` until Ctrl-C or SIGTERM.

    Args:
        storage_url: An ``sqlite:///`` or ``postgresql://`` URL (default as for ``search``).
        host: The address to listen on (``0.0.0.0``: every interface).
        port: The port to listen on.
        out: Where to print the one status line (standard output).

    Raises:
        UsageError: the storage cannot be reached, is itself a proxy, or the port is taken.
    """
    url = resolve_url(storage_url)
    if url.startswith("grpc://"):
        raise UsageError(f"--storage {url} is a proxy already: give the database URL")
    # Heartbeats cannot pass through the proxy, so none are configured behind it.
    storage = optuna.storages.get_storage(make_storage(url, heartbeat=False))
    out = out or sys.stdout
    print(f"serving {mask_url(url)} on {host}:{port}; workers use "
          f"--storage grpc://{_public_host(host)}:{port} (Ctrl-C stops)", file=out, flush=True)
    with _sigterm_as_keyboard_interrupt():
        try:
            optuna.storages.run_grpc_proxy_server(storage, host=host, port=port)
        except RuntimeError as exc:  # grpc: "Failed to bind to address"
            raise UsageError(f"cannot listen on {host}:{port} ({exc}): pick another --port") \
                from None
        except KeyboardInterrupt:
            print("storage proxy stopped", file=out, flush=True)


def _public_host(host: str) -> str:
    return "HOST" if host in ("0.0.0.0", "::", "") else host


@contextmanager
def _sigterm_as_keyboard_interrupt() -> Iterator[None]:
    """Make SIGTERM stop the server as Ctrl-C does (main thread only)."""
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
