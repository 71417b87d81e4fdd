"""``bsopt launch slurm``: a Slurm job array whose tasks are workers of one study.

bsopt writes a plain sbatch script (no submitit: nothing is pickled, and the script is
there to read, edit and submit again with ``sbatch``), checks it with ``sbatch
--test-only``, creates or joins the study, and submits the script with ``sbatch``. Each
array task runs one ``bsopt search --study-name NAME`` worker (``--ntasks=1``, with
``--gpus-per-task`` GPUs that Slurm shows it in ``$CUDA_VISIBLE_DEVICES``): it claims
trials until the budget is done, then exits. Slurm places the tasks; the study in the
storage is the one account of the work. The storage URL is in ``$BSOPT_STORAGE``, which
sbatch hands from the submitting environment to the job, so no password is written into
the script.

A task that dies (a node lost, ``scancel``, the time limit) leaves a trial that goes stale
and is retried, from its last checkpoint, by another worker of the study; at the time limit
Slurm's SIGTERM makes the worker give its trial back at once.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bsopt.config import StudyConfig
from bsopt.errors import UsageError
from bsopt.launch.workers import WorkerSpec, file_name, plan_workers
from bsopt.storage import mask_url

SBATCH_SECONDS = 120  # how long sbatch may take to answer before the launch gives up


@dataclass(frozen=True)
class SlurmOptions:
    """The job array's shape and where its script and logs go.

    Args:
        array: Number of array tasks, one worker each.
        gpus_per_task: GPUs for each task (``--gpus-per-task``; none when 0).
        cpus_per_task: CPUs for each task (Slurm's default when None).
        partition: The partition (Slurm's default when None).
        time: The time limit, in any form sbatch takes (``30``, ``4:00:00``, ``1-00:00:00``).
        sbatch_options: More ``#SBATCH`` lines, as sbatch spells them (``--account=ml``).
        script_dir: Where the script and the tasks' logs go (created).
        python: The interpreter the tasks run (it must exist on every node).
    """

    array: int
    gpus_per_task: int = 0
    cpus_per_task: int | None = None
    partition: str | None = None
    time: str | None = None
    sbatch_options: tuple[str, ...] = ()
    script_dir: Path = Path("bsopt-slurm")
    python: str = field(default=sys.executable)


@dataclass(frozen=True)
class SlurmLaunch:
    """A submitted job array (``job_id`` None for a dry run) and its script."""

    text: str
    storage: str  # the workers' storage URL, password masked
    script: Path | None = None
    job_id: str | None = None
    logs: str | None = None  # the log files' pattern, %a for the task


def sbatch_script(spec: WorkerSpec, options: SlurmOptions, *, storage_shown: str) -> str:
    """The batch script of the array: ``#SBATCH`` lines, then one ``bsopt search`` worker."""
    logs = options.script_dir.absolute() / f"{file_name(spec.study_name)}-%A_%a.out"
    directives = [f"--job-name=bsopt-{file_name(spec.study_name)}",
                  f"--array=0-{options.array - 1}", "--ntasks=1"]
    if options.cpus_per_task:
        directives.append(f"--cpus-per-task={options.cpus_per_task}")
    if options.gpus_per_task:  # never --gpus-per-task=0: Slurm 22.05 reads it oddly
        directives.append(f"--gpus-per-task={options.gpus_per_task}")
    if options.partition:
        directives.append(f"--partition={options.partition}")
    if options.time:
        directives.append(f"--time={options.time}")
    directives += [f"--chdir={spec.directory}", f"--output={logs}", *options.sbatch_options]
    command = shlex.join([options.python, "-m", "bsopt", *spec.argv()])
    return "\n".join([
        "#!/bin/bash",
        f"# Written by `bsopt launch slurm`: {options.array} workers of study "
        f"{spec.study_name!r} in {storage_shown}.",
        "# Each array task is one `bsopt search` worker: it joins the study by its name (the",
        "# definition and the budget are in the storage), claims trials until the budget is",
        "# done, and exits. The storage URL is $BSOPT_STORAGE, which sbatch copies from the",
        "# submitting environment; to submit this script again: BSOPT_STORAGE=URL sbatch FILE",
        *(f"#SBATCH {shlex.quote(d)}" for d in directives),
        "set -euo pipefail",
        ': "${BSOPT_STORAGE:?set BSOPT_STORAGE to the study storage URL}"',
        'echo "bsopt worker: task ${SLURM_ARRAY_TASK_ID} of job ${SLURM_ARRAY_JOB_ID} on'
        ' $(hostname), GPUs ${CUDA_VISIBLE_DEVICES:-none}"',
        f"exec {command}",
        "",
    ])


def _sbatch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise UsageError("sbatch is not on PATH: run `bsopt launch slurm` where Slurm's "
                         "commands are (a login node), or add --dry-run to see the script")
    try:
        return subprocess.run([sbatch, *args], capture_output=True, text=True, env=env,
                              timeout=SBATCH_SECONDS)
    except subprocess.TimeoutExpired:
        raise UsageError(f"sbatch did not answer in {SBATCH_SECONDS} s: is slurmctld "
                         "running? (`sinfo` says)") from None


def _refusal(result: subprocess.CompletedProcess) -> str:
    """What sbatch said, on one line."""
    lines = [line.strip().removeprefix("sbatch: error: ")
             for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    return "; ".join(lines) or f"exit status {result.returncode}"


def _new_script_path(directory: Path, stem: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        path = directory / f"{stem}-{stamp}{f'-{n}' if n else ''}.sbatch"
        if not path.exists():
            return path
    raise UsageError(f"{directory} is full of scripts for this second: try again")


def launch_slurm(config: StudyConfig, explicit: dict[str, Any], options: SlurmOptions, *,
                 dry_run: bool = False) -> SlurmLaunch:
    """Create or join the study of ``config`` and submit ``options.array`` workers to Slurm.

    In order: the study and the flags are checked (the storage only read), the script is
    written and checked by ``sbatch --test-only``, the study is created or joined, and
    the script is submitted. So a refused partition, time or GPU count leaves the storage
    as it was. ``dry_run`` stops after the check and returns the script's text.

    Raises:
        UsageError: bad input, no ``sbatch``, or sbatch refused the job.

    Example::

        config, explicit = build_config("studies/mnist_cnn.toml", {"storage": url})
        launch = launch_slurm(config, explicit, SlurmOptions(array=8, gpus_per_task=1))
        print(launch.job_id)
    """
    spec = plan_workers(config, explicit, create=False)
    storage = mask_url(spec.storage)
    text = sbatch_script(spec, options, storage_shown=storage)
    if dry_run:
        return SlurmLaunch(text, storage)
    env = {**os.environ, **spec.environment()}
    directory = options.script_dir
    try:
        directory.mkdir(parents=True, exist_ok=True)
        script = _new_script_path(directory, file_name(spec.study_name))
        script.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write the script in {directory}: {exc.strerror or exc}") \
            from None
    try:
        checked = _sbatch("--test-only", str(script), env=env)
        if checked.returncode != 0:
            raise UsageError(f"sbatch refuses the job: {_refusal(checked)} (see the script "
                             "with --dry-run)")
        plan_workers(config, explicit, create=True)  # every check, then create or join
    except BaseException:
        script.unlink(missing_ok=True)
        raise
    submitted = _sbatch("--parsable", str(script), env=env)
    if submitted.returncode != 0:
        raise UsageError(f"sbatch refused the job: {_refusal(submitted)}; the study is "
                         f"ready: once that is fixed, BSOPT_STORAGE=URL sbatch {script}")
    job_id = submitted.stdout.strip().split(";")[0]
    logs = str(options.script_dir / f"{file_name(spec.study_name)}-{job_id}_%a.out")
    return SlurmLaunch(text, storage, script=script, job_id=job_id, logs=logs)
