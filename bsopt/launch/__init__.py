"""Launchers: hand a study's workers to Slurm, Ray or Kubernetes; no scheduler of bsopt's own.

- :mod:`~bsopt.launch.workers`: what every launched worker runs (``bsopt search`` joining
  the study by name) and with which environment; the study made sure of first;
- :mod:`~bsopt.launch.slurm`: ``bsopt launch slurm``, a generated sbatch job array;
- :mod:`~bsopt.launch.ray`: ``bsopt launch ray``, Ray tasks with retries on a Ray cluster.

Kubernetes needs no code: ``storage/k8s/`` holds an Indexed Job of the same workers. Slurm,
Ray and Kubernetes place the work; the study in the storage (PostgreSQL, or a journal file
on a shared filesystem) is the one source of truth, so the budget holds however they do it.

It may import the search and storage layers and bsopt's leaf modules; Ray only where a
launch needs it (``import bsopt.launch`` does not import Ray).
"""

from bsopt.launch.ray import RayLaunch, RayOptions, launch_ray
from bsopt.launch.slurm import SlurmLaunch, SlurmOptions, launch_slurm, sbatch_script
from bsopt.launch.workers import WorkerSpec, plan_workers

__all__ = [
    "RayLaunch", "RayOptions", "SlurmLaunch", "SlurmOptions", "WorkerSpec", "launch_ray",
    "launch_slurm", "plan_workers", "sbatch_script",
]
