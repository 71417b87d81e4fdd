"""A throw-away two-node Ray cluster on loopback, for the tests of ``bsopt launch ray``.

Each node is a ``ray start --block`` process in a session of its own: the head on
127.0.0.2, node 2 on 127.0.0.3. Not 127.0.0.1: Ray rewrites it (and ``localhost``) to the
host's outside address, which this sandbox does not let processes reach; any other loopback
address is kept. A driver finds the head's raylet, never node 2's, so it survives node 2.

Killing a node means killing its session's processes (Ray's workers have process groups
of their own, but stay in the session): ``ray stop`` is never used, since it stops every
Ray process of the machine, other people's clusters included. Every default port is
replaced by a free one, the temporary directory is a short private one (Ray's Unix sockets
live there), and the head declares a silent node dead after about 3 s instead of 15.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

HEAD_IP, NODE2_IP = "127.0.0.2", "127.0.0.3"
STOP_GRACE_SECONDS = 3.0  # SIGTERM makes a node drain for up to 30 s: kill after this
FAST_HEALTH_CHECKS = {"RAY_health_check_initial_delay_ms": "1000",
                      "RAY_health_check_period_ms": "1000",
                      "RAY_health_check_timeout_ms": "10000",  # a busy raylet is not dead
                      "RAY_health_check_failure_threshold": "3"}
# Count the alive nodes through the GCS (no driver): exit 0 once there are argv[2].
_PROBE = """\
import sys, time
from ray._raylet import GcsClient
client, deadline = GcsClient(address=sys.argv[1]), time.monotonic() + float(sys.argv[3])
while time.monotonic() < deadline:
    try:
        nodes = client.get_all_node_info(timeout=5).values()
        if sum(n.state == 0 for n in nodes) >= int(sys.argv[2]):
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.3)
sys.exit(1)
"""


def free_port(ip: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((ip, 0))
        return probe.getsockname()[1]


def _pids(select: Callable[[int, Callable[[], bytes]], bool]) -> list[int]:
    """Live processes for which ``select(session id, read environ)`` holds."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError, ValueError):
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] != "Z" and select(int(fields[3]),
                                           lambda e=entry: (e / "environ").read_bytes()):
                found.append(int(entry.name))
    return found


@dataclass
class RayCluster:
    """A running cluster: its address and its nodes' ``ray start`` processes."""

    address: str  # HEAD_IP:PORT, for $RAY_ADDRESS
    nodes: dict[str, subprocess.Popen]
    start_node2: Callable[[], None]

    def node_pids(self, name: str) -> list[int]:
        """Every process of one node, its Ray workers and their children included."""
        return _pids(lambda sid, _environ: sid == self.nodes[name].pid)

    def node2_alive(self) -> bool:
        return self.nodes["node2"].poll() is None

    def kill_node2(self) -> None:
        """SIGKILL every process of node 2, as a machine that is switched off."""
        for pid in self.node_pids("node2"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.nodes["node2"].pid, signal.SIGKILL)
        self.nodes["node2"].wait(10)

    def restart_node2(self) -> None:
        """A fresh node 2 (a new node id) once the old one is gone."""
        if self.node2_alive():
            self.kill_node2()
        self.start_node2()


@contextlib.contextmanager
def ray_cluster(*, head_cpus: int, node2_cpus: int,
                timeout: float = 120) -> Iterator[RayCluster]:
    """Start the head and node 2, yield once both are alive, then stop every process."""
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Unix socket paths
    cluster_id = uuid.uuid4().hex[:12]  # in every process's environment, to find them all
    ray = str(Path(sys.executable).parent / "ray")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1", TEST_RAY_CLUSTER=cluster_id)
    address = f"{HEAD_IP}:{free_port(HEAD_IP)}"

    def common() -> list[str]:  # each node has a dashboard agent, on a port of its own
        return ["--block", "--disable-usage-stats", "--log-style=record", "--log-color=false",
                f"--object-store-memory={80 * 2**20}",
                f"--dashboard-agent-listen-port={free_port()}"]

    nodes: dict[str, subprocess.Popen] = {}

    def start(name: str, argv: list[str], node_env: dict[str, str], alive: int) -> None:
        with open(temp / f"{name}.log", "ab") as log:
            nodes[name] = subprocess.Popen(argv, env=node_env, stdout=log,
                                           stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True)
        probe = subprocess.run([sys.executable, "-c", _PROBE, address, str(alive),
                                str(timeout)], env=env, timeout=timeout + 60)
        if probe.returncode != 0 or nodes[name].poll() is not None:
            raise RuntimeError(f"Ray node {name} did not come up: see {temp / f'{name}.log'}")

    def start_node2() -> None:
        start("node2", [ray, "start", f"--address={address}", f"--node-ip-address={NODE2_IP}",
                        f"--num-cpus={node2_cpus}", f"--resources={json.dumps({'node2': 1})}",
                        *common()], env, 2)

    try:
        start("head", [ray, "start", "--head", f"--node-ip-address={HEAD_IP}",
                       f"--port={address.split(':')[1]}", f"--num-cpus={head_cpus}",
                       "--include-dashboard=false", f"--dashboard-port={free_port()}",
                       f"--ray-client-server-port={free_port()}", f"--temp-dir={temp}",
                       *common()], {**env, **FAST_HEALTH_CHECKS}, 1)
        start_node2()
        yield RayCluster(address, nodes, start_node2)
    finally:
        _stop(nodes, f"TEST_RAY_CLUSTER={cluster_id}".encode())
        shutil.rmtree(temp, ignore_errors=True)


def _stop(nodes: dict[str, subprocess.Popen], marker: bytes) -> None:
    """SIGTERM both nodes, then SIGKILL whatever of theirs is left after a few seconds."""
    def ours(sid: int, environ: Callable[[], bytes]) -> bool:
        return sid in sessions or marker in environ().split(b"\0")

    sessions = {node.pid for node in nodes.values()}  # start_new_session: sid == pid
    for node in nodes.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while time.monotonic() < deadline and _pids(ours):
        time.sleep(0.2)
    for _ in range(3):
        left = _pids(ours)
        if not left:
            break
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.3)
    for node in nodes.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.wait(5)
