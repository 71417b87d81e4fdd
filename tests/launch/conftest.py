"""Real clusters for the launchers' tests: Slurm (Debian's packages) and Ray (two nodes).

Each is started once per module that uses it and stopped with everything it started, even
when a test fails. Without Slurm's packages (or root) the Slurm tests are skipped, saying
what to install; ``.ci/run`` installs them. Ray comes with the ``test`` extra.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.launch.ray_cluster import RayCluster, ray_cluster
from tests.launch.slurm_cluster import SlurmCluster, slurm_cluster

SLURM_ABSENT = ("needs root and Debian's Slurm and MUNGE: apt-get install -y "
                "--no-install-recommends slurm-wlm munge (.ci/run does)")


@pytest.fixture(scope="module")
def slurm_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    if os.geteuid() != 0 or not all(shutil.which(p, path="/usr/sbin:/usr/bin")
                                    for p in ("slurmctld", "slurmd", "munged", "sbatch")):
        pytest.skip(SLURM_ABSENT)
    with slurm_cluster(tmp_path_factory.mktemp("slurm"), fake_gpus=2) as cluster:
        yield cluster


@pytest.fixture
def slurm(slurm_module: SlurmCluster) -> Iterator[SlurmCluster]:
    """A single-node Slurm cluster with two fake GPUs; the test's jobs cancelled after it."""
    yield slurm_module
    slurm_module.cancel_all()


@pytest.fixture(scope="module")
def ray_module() -> Iterator[RayCluster]:
    pytest.importorskip("ray")
    with ray_cluster(head_cpus=2, node2_cpus=1) as cluster:
        yield cluster


@pytest.fixture
def ray_nodes(ray_module: RayCluster) -> RayCluster:
    """A Ray cluster of two nodes (head 2 CPUs, node 2 one), node 2 back if a test killed it."""
    if not ray_module.node2_alive():
        ray_module.restart_node2()
    return ray_module
