"""``bsopt storage-proxy``: workers share a PostgreSQL study through Optuna's gRPC proxy."""

from __future__ import annotations

import ipaddress
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from bsopt import records
from bsopt.cli import main
from bsopt.search.worker import claim_trial
from bsopt.storage import make_storage
from bsopt.storage.heartbeats import PROXY_BEAT_ATTR, retry_failed_trial
from bsopt.storage.proxy import HeartbeatRelay

TIMEOUT = 300  # seconds: only against a hang, never an assertion about speed
StartBsopt = Callable[..., subprocess.Popen]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
@pytest.mark.postgres
def test_workers_share_a_study_through_the_proxy(postgres_url: str,
                                                 bsopt_process: StartBsopt) -> None:
    # The server trusts local connections, so it accepts (and ignores) this password.
    url = postgres_url.replace("postgres@", "postgres:s3cret@")
    port = str(free_port())
    proxy = bsopt_process("storage-proxy", "--storage", url, "--host", "127.0.0.1",
                          "--port", port)
    banner = proxy.stdout.readline()
    assert f"on 127.0.0.1:{port}" in banner and "postgres:***@" in banner
    assert "s3cret" not in banner

    run = bsopt_process("search", "--storage", f"grpc://127.0.0.1:{port}", "--study-name",
                        "proxied", "--sampler", "random", "--n-trials", "6", "--workers", "2",
                        "--dataset", "digits", "--max-train-samples", "200", "--epochs", "2")
    out, err = run.communicate(timeout=TIMEOUT)
    assert run.returncode == 0, out + err
    assert f"grpc://127.0.0.1:{port}" in out and "6 " in out

    study = optuna.load_study(study_name="proxied", storage=url.replace(
        "postgresql://", "postgresql+psycopg://"))  # the database itself, not the proxy
    assert len(study.trials) == 6  # the budget holds through the proxy too
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    assert study.user_attrs[records.CONFIG_ATTR]["n_trials"] == 6
    # The workers beat through the proxy (Optuna's heartbeats cannot pass it).
    assert all(t.system_attrs[PROXY_BEAT_ATTR] >= 1 for t in study.trials)

    proxy.send_signal(signal.SIGTERM)
    rest, proxy_err = proxy.communicate(timeout=TIMEOUT)
    assert proxy.returncode == 0 and "storage proxy stopped" in rest
    assert "s3cret" not in rest + proxy_err


def test_a_proxy_of_a_proxy_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["storage-proxy", "--storage", "grpc://127.0.0.1:13000"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a proxy already" in err


def test_the_relay_fails_the_trial_of_a_worker_that_stopped_beating(sqlite_url: str) -> None:
    # What reaches the database through the proxy: claims and beats in a system attribute.
    behind_proxy = optuna.create_study(storage=make_storage(sqlite_url, heartbeat=False),
                                       study_name="s")
    behind_proxy.set_user_attr(records.CONFIG_ATTR, {"n_trials": 2})
    for x in (0.1, 0.2):
        behind_proxy.enqueue_trial({"x": x})
    alive, dead = claim_trial(behind_proxy), claim_trial(behind_proxy)
    assert alive is not None and dead is not None
    proxied = make_storage(sqlite_url, heartbeat_interval=1, grace_period=1,
                           stale_trial_callback=retry_failed_trial)
    relay = HeartbeatRelay(proxied)
    beats = 0
    deadline = time.monotonic() + TIMEOUT  # against a hang only
    while behind_proxy.trials[dead.number].state == TrialState.RUNNING:
        assert time.monotonic() < deadline
        beats += 1
        proxied.set_trial_system_attr(alive._trial_id, PROXY_BEAT_ATTR, beats)
        if beats == 1:  # the dead worker beat once, then never again
            proxied.set_trial_system_attr(dead._trial_id, PROXY_BEAT_ATTR, 1)
        relay.step()
        time.sleep(0.5)
    trials = behind_proxy.trials
    assert trials[alive.number].state == TrialState.RUNNING  # it kept beating
    assert trials[dead.number].state == TrialState.FAIL
    (retry,) = trials[2:]  # re-enqueued once, with its parameters
    assert retry.state == TrialState.WAITING and retry.system_attrs["failed_trial"] == 1


def listening_addresses(port: int) -> set[str]:
    """The local addresses with a socket listening on ``port``, as the kernel lists them.

    IPv4 addresses that gRPC binds as IPv4-mapped IPv6 ones are given as IPv4.
    """
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            host, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(host)  # 32-bit words in host (little-endian) order
            packed = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            address = ipaddress.ip_address(packed)
            mapped = getattr(address, "ipv4_mapped", None)
            addresses.add(str(mapped or address))
    return addresses


@pytest.mark.parametrize("host, warned", [(None, False), ("0.0.0.0", True)])
def test_the_proxy_binds_localhost_unless_told_and_warns_beyond_it(
        host: str | None, warned: bool, sqlite_url: str, bsopt_process: StartBsopt) -> None:
    port = free_port()
    proxy = bsopt_process("storage-proxy", "--storage", sqlite_url, "--port", str(port),
                          *(["--host", host] if host else []))
    banner = proxy.stdout.readline()
    assert f"on {host or '127.0.0.1'}:{port}" in banner, banner
    deadline = time.monotonic() + TIMEOUT  # against a hang only
    while not listening_addresses(port):
        assert time.monotonic() < deadline and proxy.poll() is None
        time.sleep(0.1)
    if not warned:
        assert listening_addresses(port) == {"127.0.0.1"}  # not every interface
    proxy.send_signal(signal.SIGTERM)
    _, err = proxy.communicate(timeout=TIMEOUT)
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings == ([f"warning: serving on {host} exposes the storage (no authentication, "
                         "no encryption) to the network"] if warned else [])
