"""A throw-away single-node Slurm cluster on 127.0.0.1, for the tests of ``bsopt launch slurm``.

Debian's ``slurm-wlm`` and ``munge`` (Slurm 22.05, MUNGE 0.5), run as root (slurmd must be
root to start jobs). Everything lives in one work directory: slurm.conf, cgroup.conf,
gres.conf, the MUNGE key and socket, state and spool directories, pid files and logs; the
ports are free ones, so two test sessions can each run a cluster. Nothing under /etc, /run
or /var is used. Client commands find the cluster through ``$SLURM_CONF`` (``info.env``).

Found on the way (22.05): slurmd loads a cgroup plugin even with ``proctrack/linuxproc``
and ``task/none`` (``cgroup/v1`` only checks the mount); it does not create its spool
directory; the node's topology and memory must be what ``slurmd -C`` says, or the node
drains; munged refuses a socket below pytest's 0700 directories unless ``--force``; there
is no accounting, so ``sacct`` does not work (``scontrol`` does); fake GPUs are gres files
that are symlinks to /dev/null, against which ``--gpus-per-task`` is scheduled for real.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

SBIN = Path("/usr/sbin")
MAX_SOCKET_PATH = 100  # MUNGE's and slurmd's Unix sockets must fit in 108 bytes
NODE = "node0"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class SlurmCluster:
    """A running cluster: its work directory and the environment of its client commands."""

    workdir: Path
    env: dict[str, str]  # os.environ without Slurm's variables, plus SLURM_CONF

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a Slurm client command (``squeue``, ``scontrol``, ...) on this cluster."""
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True,
                              check=check, timeout=60)

    def tasks(self, job_id: str) -> dict[str, tuple[str, str]]:
        """``{"JOB_TASK": (state, exit code)}`` of an array, from ``scontrol``."""
        shown = self.run("scontrol", "-o", "show", "job", job_id, check=False).stdout
        states = {}
        for line in shown.splitlines():
            fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
            key = f"{fields.get('ArrayJobId', fields.get('JobId'))}_{fields.get('ArrayTaskId')}"
            states[key] = (fields.get("JobState", "?"), fields.get("ExitCode", "?"))
        return states

    def wait(self, job_id: str, timeout: float) -> dict[str, tuple[str, str]]:
        """Wait until no task of the job is queued or running; how each ended."""
        deadline = time.monotonic() + timeout
        while self.run("squeue", "-h", "-j", job_id, check=False).stdout.strip():
            assert time.monotonic() < deadline, self.run("squeue", check=False).stdout
            time.sleep(0.5)
        return self.tasks(job_id)

    def cancel_all(self) -> None:
        """Cancel every job of this cluster and wait for the queue to empty."""
        self.run("scancel", "--full", "--user=root", check=False)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            queued = self.run("squeue", "-h", check=False)
            if queued.returncode != 0 or not queued.stdout.strip():
                return
            time.sleep(0.3)


def _node_hardware() -> str:
    """The node's line for slurm.conf, with what slurmd itself measures (``slurmd -C``)."""
    shown = subprocess.run([SBIN / "slurmd", "-C"], capture_output=True, text=True,
                           check=True).stdout
    found = {k: int(v) for k, v in re.findall(
        r"(CPUs|SocketsPerBoard|CoresPerSocket|ThreadsPerCore|RealMemory)=(\d+)", shown)}
    return (f"CPUs={found['CPUs']} Sockets={found['SocketsPerBoard']} "
            f"CoresPerSocket={found['CoresPerSocket']} ThreadsPerCore={found['ThreadsPerCore']} "
            f"RealMemory={found['RealMemory'] - 64}")  # above what slurmd sees drains the node


def _write_config(workdir: Path, munge_socket: Path, fake_gpus: int) -> Path:
    for directory in ("state", f"spool/{NODE}", "log", "run"):
        (workdir / directory).mkdir(parents=True, exist_ok=True)
    gres, gres_types = "", ""
    if fake_gpus:  # device files Slurm accepts: symlinks to /dev/null
        devices = workdir / "dev"
        devices.mkdir(exist_ok=True)
        for i in range(fake_gpus):
            if not (devices / f"gpu{i}").is_symlink():
                (devices / f"gpu{i}").symlink_to("/dev/null")
        gres, gres_types = f" Gres=gpu:{fake_gpus}", "GresTypes=gpu\n"
        (workdir / "gres.conf").write_text(
            f"NodeName={NODE} Name=gpu File={devices}/gpu[0-{fake_gpus - 1}]\n")
    (workdir / "cgroup.conf").write_text(
        "CgroupPlugin=cgroup/v1\nCgroupMountpoint=/sys/fs/cgroup\nIgnoreSystemd=yes\n")
    conf = workdir / "slurm.conf"
    conf.write_text(f"""\
ClusterName=bsopttest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={workdir}/state
SlurmdSpoolDir={workdir}/spool/%n
SlurmctldPidFile={workdir}/run/slurmctld.pid
SlurmdPidFile={workdir}/run/slurmd-%n.pid
SlurmctldLogFile={workdir}/log/slurmctld.log
SlurmdLogFile={workdir}/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1,sched_min_interval=100000
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=600
InactiveLimit=0
KillWait=5
MailProg=/bin/true
{gres_types}NodeName={NODE} NodeAddr=127.0.0.1 NodeHostname={socket.gethostname()} \
{_node_hardware()}{gres} State=UNKNOWN
PartitionName=debug Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
""")
    return conf


def _processes_of(sessions: set[int], marker: bytes) -> list[int]:
    """Live processes in the daemons' sessions or with ``marker`` in their environment.

    slurmstepd calls setsid(): the jobs are found by the ``SLURM_CONF=`` they inherit.
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError, ValueError):
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] != "Z" and (int(fields[3]) in sessions
                                     or marker in (entry / "environ").read_bytes().split(b"\0")):
                found.append(int(entry.name))
    return found


def _wait(condition: Callable[[], bool], seconds: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            tails = [f"--- {f.name}\n{f.read_text(errors='replace')[-1500:]}"
                     for f in sorted(log.glob("*"))]
            raise RuntimeError(f"{what} after {seconds} s\n" + "\n".join(tails))
        time.sleep(0.2)


@contextlib.contextmanager
def slurm_cluster(workdir: Path, *, fake_gpus: int = 0) -> Iterator[SlurmCluster]:
    """munged, slurmctld and slurmd on 127.0.0.1 until the block ends, then nothing left.

    Yields once ``sinfo`` shows the node idle (about 1.5 s). At the end every job is
    cancelled, the daemons are stopped, and any process of theirs still alive is killed.
    """
    workdir = workdir.resolve()
    munge = workdir / "munge"
    munge.mkdir(parents=True, exist_ok=True)
    os.chmod(munge, 0o755)  # munged: the socket's directory must be a+x, not g+w or o+w
    socket_path = munge / "munge.socket"
    if len(str(workdir / "spool" / NODE / NODE)) + 24 > MAX_SOCKET_PATH:
        raise ValueError(f"{workdir} is too long a path for Unix sockets")
    key = munge / "munge.key"
    subprocess.run([SBIN / "mungekey", "--create", "--force", "--keyfile", key], check=True)
    conf = _write_config(workdir, socket_path, fake_gpus)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "SBATCH_", "SALLOC_", "SRUN_", "SQUEUE_"))}
    env["SLURM_CONF"] = str(conf)
    log = workdir / "log"
    daemons: dict[str, subprocess.Popen] = {}

    def start(name: str, *argv: object) -> None:
        with open(log / f"{name}.out", "wb") as out:
            daemons[name] = subprocess.Popen([str(a) for a in argv], env=env, stdout=out,
                                             stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, start_new_session=True)

    def idle() -> bool:
        for name, daemon in daemons.items():
            if daemon.poll() is not None:
                raise RuntimeError(f"{name} exited with {daemon.returncode}: see {log}")
        shown = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], env=env,
                               capture_output=True, text=True, timeout=30)
        return f"{NODE} idle" in shown.stdout

    try:
        start("munged", SBIN / "munged", "--foreground", "--force", "--socket", socket_path,
              "--key-file", key, "--pid-file", munge / "munged.pid", "--log-file",
              log / "munged.log", "--seed-file", munge / "munged.seed", "--num-threads", "2")
        _wait(socket_path.exists, 30, "munged did not start", log)
        start("slurmctld", SBIN / "slurmctld", "-D", "-c", "-i", "-f", conf)
        start("slurmd", SBIN / "slurmd", "-D", "-N", NODE, "-f", conf)
        _wait(idle, 60, f"node {NODE} not idle", log)
        yield SlurmCluster(workdir, env)
    finally:
        _stop(daemons, env)


def _stop(daemons: dict[str, subprocess.Popen], env: dict[str, str]) -> None:
    sessions = {d.pid for d in daemons.values()}  # start_new_session: sid == pid
    if "slurmctld" in daemons and daemons["slurmctld"].poll() is None:
        SlurmCluster(Path(), env).cancel_all()
    for name in ("slurmd", "slurmctld", "munged"):  # the others need MUNGE to say goodbye
        daemon = daemons.get(name)
        if daemon is not None and daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(10)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(5)
    marker = f"SLURM_CONF={env['SLURM_CONF']}".encode()
    for _ in range(3):
        left = _processes_of(sessions, marker)
        if not left:
            return
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
