"""``bsopt storage-proxy``: serve a storage to workers through Optuna's gRPC storage proxy.

Workers that cannot (or should not) hold database connections reach the study with
``--storage grpc://HOST:PORT``; the proxy holds the one pool of connections (with the same
retries as any bsopt storage) and Optuna's gRPC client caches finished trials.

Optuna's heartbeats do not pass through the proxy (``GrpcStorageProxy`` does not implement
``BaseHeartbeat``, and its protocol has no call for them). So a worker behind the proxy
counts up its trial's system attribute ``bsopt:beat`` instead, and the proxy's
:class:`HeartbeatRelay` records an Optuna heartbeat whenever that count moves and fails the
stale trials of bsopt studies, which are retried as usual. Checkpoints do not pass either:
they go to ``./bsopt-artifacts`` on each worker unless ``--artifact-dir`` names a shared
directory. The proxy has no authentication or encryption: it binds 127.0.0.1 unless told
otherwise, and warns when bound beyond it; serve it on a trusted network only.
"""

from __future__ import annotations

import logging
import sys
import threading
import warnings
from typing import Any, TextIO

import optuna
from optuna.trial import TrialState

from bsopt.errors import UsageError
from bsopt.internals import study_id, trial_id
from bsopt.interrupts import sigterm_as_keyboard_interrupt
from bsopt.network import check_address, warn_if_exposed
from bsopt.records import CONFIG_ATTR
from bsopt.storage.factory import make_storage
from bsopt.storage.heartbeats import PROXY_BEAT_ATTR, retry_failed_trial
from bsopt.storage.urls import JOURNAL_SCHEME, mask_url, resolve_url

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 13000
logger = logging.getLogger("bsopt.storage.proxy")


class HeartbeatRelay:
    """Turns the beats of workers behind the proxy into heartbeats; fails stale trials.

    Args:
        storage: The proxied RDB storage, with heartbeats and a stale-trial callback.
    """

    def __init__(self, storage: optuna.storages.RDBStorage) -> None:
        self.storage = storage
        self._beats: dict[int, Any] = {}  # trial id -> the last beat count seen

    def step(self) -> None:
        """Look at the running trials of every bsopt study once."""
        beats: dict[int, Any] = {}
        for frozen in self.storage.get_all_studies():
            if CONFIG_ATTR not in frozen.user_attrs:
                continue  # not bsopt's: its trials are none of the relay's business
            running = self.storage.get_all_trials(study_id(frozen), deepcopy=False,
                                                  states=(TrialState.RUNNING,))
            for trial in running:
                beat = trial.system_attrs.get(PROXY_BEAT_ATTR)
                if beat is None:
                    continue  # a worker on the database itself records its own heartbeats
                beats[trial_id(trial)] = beat
                if self._beats.get(trial_id(trial)) != beat:
                    self.storage.record_heartbeat(trial_id(trial))
            if running:
                study = optuna.load_study(study_name=frozen.study_name, storage=self.storage)
                with warnings.catch_warnings():  # "fail_stale_trials is experimental"
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    optuna.storages.fail_stale_trials(study)
        self._beats = beats

    def run(self, stop: threading.Event) -> None:
        """Step every heartbeat interval until ``stop`` is set."""
        interval = float(self.storage.get_heartbeat_interval() or 10)
        while not stop.wait(interval):
            try:
                self.step()
            except Exception as exc:  # the database is away: the next step tries again
                logger.warning("bsopt: heartbeat relay: %s: %s", type(exc).__name__, exc)


def serve_storage_proxy(storage_url: str | None, *, host: str = DEFAULT_HOST,
                        port: int = DEFAULT_PORT, out: TextIO | None = None) -> None:
    """Serve ``storage_url`` on ``host:port`` until Ctrl-C or SIGTERM.

    Args:
        storage_url: An ``sqlite:///`` or ``postgresql://`` URL (default as for ``search``).
        host: The address to listen on (``0.0.0.0``: every interface, with a warning: the
            proxy has no authentication).
        port: The port to listen on.
        out: Where to print the status lines (standard output).

    Raises:
        UsageError: the storage cannot be reached, is itself a proxy, or the address
            cannot be listened on.
    """
    url = resolve_url(storage_url)
    if url.startswith("grpc://"):
        raise UsageError(f"--storage {mask_url(url)} is a proxy already: give the database URL")
    if url.startswith(JOURNAL_SCHEME):  # its beats are the journal's own: no relay for them
        raise UsageError(f"--storage {url} is a journal file, which workers open directly on "
                         "the shared filesystem: serve an sqlite:// or postgresql:// database")
    check_address(host, port)  # before the storage is opened (and maybe created)
    backend = make_storage(url, stale_trial_callback=retry_failed_trial)
    out = out or sys.stdout
    stop = threading.Event()
    relay = threading.Thread(target=HeartbeatRelay(backend).run, args=(stop,),
                             name="heartbeat-relay", daemon=True)
    relay.start()
    warn_if_exposed(host, "the storage (no authentication, no encryption)")
    print(f"serving {mask_url(url)} on {host}:{port}; workers use "
          f"--storage grpc://{_public_host(host)}:{port} (Ctrl-C stops)", file=out, flush=True)
    with sigterm_as_keyboard_interrupt():
        try:
            # Optuna's cache in front of the database, as its documentation advises.
            optuna.storages.run_grpc_proxy_server(optuna.storages.get_storage(backend),
                                                  host=host, port=port)
        except RuntimeError as exc:  # grpc: "Failed to bind to address"
            raise UsageError(f"cannot listen on {host}:{port} ({exc}): pick another --port") \
                from None
        except KeyboardInterrupt:
            print("storage proxy stopped", file=out, flush=True)
        finally:
            stop.set()


def _public_host(host: str) -> str:
    return "HOST" if host in ("0.0.0.0", "::", "") else host
