"""``--command "python train.py --bs {batch_size} --lr {lr}"``: the user's script, once per trial.

The command's words are split like a shell would (``shlex.split``), then each word's
placeholders are filled in, so a value never splits a word, and the program runs without a
shell. With ``shell = true`` the command goes to ``/bin/sh -c`` with each value shell-quoted.
Placeholders: ``{batch_size}``, ``{lr}`` (the learning rate to train with), ``{epochs}``,
``{trial}``, ``{seed}``, ``{device}``, ``{checkpoint_dir}`` and every parameter of the trial
(``{base_lr}`` with a scaling rule); format specs work (``{lr:.4g}``). An unknown placeholder,
an empty command or (without a shell) a program that cannot be found is a ``UsageError``
before anything is stored.

The script reports epochs on its standard output (:mod:`bsopt.script`); each is recorded by
a :class:`~bsopt.search.reporting.TrialReporter`, and then the checkpoint directory is packed
into the trial's checkpoint with the curves (:mod:`bsopt.storage.directories`), so a retry on
any machine finds the directory as it was after its last recorded epoch and is shown those
epochs again; the script prints the epochs from where it resumed (any it prints again are
skipped). A pruned or stopped trial's process group gets SIGTERM, then SIGKILL after
``$BSOPT_COMMAND_GRACE_SECONDS`` (10); a non-zero exit fails the trial with its status and the
last lines of its standard error. The trial's value is the last reported validation loss;
``weights.pt`` left in the directory (a ``state_dict``) is kept as the trial's weights.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import string
import tarfile
import threading
from pathlib import Path
from typing import Any

import optuna

from bsopt import records
from bsopt.config import StudyConfig
from bsopt.errors import UsageError
from bsopt.script import (
    BATCH_SIZE_ENV,
    CHECKPOINT_DIR_ENV,
    DEVICE_ENV,
    EPOCHS_ENV,
    LR_ENV,
    PARAMS_ENV,
    SEED_ENV,
    TRIAL_ENV,
)
from bsopt.search.progress import ProgressCallback
from bsopt.search.reporting import TrialReporter
from bsopt.search.script_process import CommandFailed, ScriptProcess
from bsopt.search.space import lr_param_name, suggest
from bsopt.search.worker import Interrupted
from bsopt.storage import resolve_url
from bsopt.storage.checkpoints import (
    CheckpointOwner,
    default_artifact_dir,
    load_checkpoint,
    remove_series_checkpoints,
    save_checkpoint,
)
from bsopt.storage.directories import (
    DirectoryTooLarge,
    clear_directory,
    pack_directory,
    unpack_directory,
)
from bsopt.storage.heartbeats import retry_series
from bsopt.storage.settings import env_seconds
from bsopt.storage.weights import save_weights

PLACEHOLDERS = ("batch_size", "lr", "epochs", "trial", "seed", "device", "checkpoint_dir")
GRACE_ENV, GRACE_SECONDS = "BSOPT_COMMAND_GRACE_SECONDS", 10.0
WEIGHTS_FILE = "weights.pt"
logger = logging.getLogger("bsopt.search.command")


def placeholders(config: StudyConfig) -> tuple[str, ...]:
    """The names a command may use: :data:`PLACEHOLDERS` and the trial's parameters."""
    return tuple(dict.fromkeys((*PLACEHOLDERS, "batch_size", lr_param_name(config))))


class _Filler(string.Formatter):
    """Fills placeholders by name only; shell-quotes each value for ``/bin/sh``."""

    def __init__(self, quote: bool) -> None:
        self.quote = quote

    def format_field(self, value: Any, format_spec: str) -> str:
        text = format(value, format_spec)
        return shlex.quote(text) if self.quote else text


def _words(config: StudyConfig) -> list[str]:
    """The command as the words to fill in (one, the whole line, with a shell).

    Raises:
        UsageError: an empty command or unbalanced quotes.
    """
    command = config.command or ""
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise UsageError(f"--command {command!r} cannot be split into words ({exc}): "
                         "check its quotes") from None
    if not words:
        raise UsageError("--command is empty: give the command that trains one trial, e.g. "
                         '"python train.py --bs {batch_size} --lr {lr}"')
    return [command] if config.shell else words


def command_argv(config: StudyConfig, values: dict[str, Any]) -> list[str]:
    """The program and arguments to run for a trial with these placeholder ``values``.

    Raises:
        UsageError: an unknown placeholder, or one that its format spec cannot format.
    """
    allowed = placeholders(config)
    filler = _Filler(quote=config.shell)
    words = []
    for word in _words(config):
        try:
            names = [name for _, name, _, _ in string.Formatter().parse(word) if name is not None]
        except ValueError as exc:
            raise UsageError(f"--command {config.command!r}: {exc} (write {{{{ and }}}} for a "
                             "literal brace)") from None
        for name in names:
            if name not in allowed:
                raise UsageError(f"--command has the unknown placeholder {{{name}}}: use "
                                 f"{', '.join('{' + n + '}' for n in allowed)}")
        try:
            words.append(filler.vformat(word, (), values))
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            raise UsageError(f"--command {config.command!r}: a placeholder cannot be "
                             f"filled in ({type(exc).__name__}: {exc})") from None
    return ["/bin/sh", "-c", words[0]] if config.shell else words


def check_command(config: StudyConfig) -> None:
    """Check the command before a study is stored (placeholders, and its program).

    Without a shell, the program must be found (on ``PATH``, or as a path) and executable
    here; with a shell, ``/bin/sh`` finds it when a trial runs (and a missing one fails
    that trial with the shell's message).

    Raises:
        UsageError: see :func:`command_argv`; or the program is not found.
    """
    sample = {"batch_size": config.batch_size_min, "lr": config.lr_min,
              lr_param_name(config): config.lr_min, "epochs": config.epochs, "trial": 0,
              "seed": config.seed, "device": "cpu", "checkpoint_dir": "/tmp/checkpoint"}
    argv = command_argv(config, sample)
    if not config.shell and shutil.which(argv[0]) is None:
        where = "is not an executable file" if os.sep in argv[0] else "is not on PATH"
        raise UsageError(f"--command: the program {argv[0]!r} {where}: check the command "
                         "(or give shell = true to run it through /bin/sh)")


class CommandObjective:
    """Run the user's command once per trial (``--command``; see the module docstring).

    Args:
        config: The study definition (``config.command`` is the command).
        device: What ``{device}`` and ``$BSOPT_DEVICE`` say (``cpu``, ``cuda``).
        artifact_store: Where checkpoints and weights go.
        stop: When set, the running command is ended and the trial re-enqueued.
        progress: Called after every recorded epoch.
    """

    def __init__(self, config: StudyConfig, device: str, *, artifact_store: Any,
                 stop: threading.Event | None = None,
                 progress: ProgressCallback | None = None) -> None:
        assert config.command is not None
        self.config = config
        self.device = device
        self.artifact_store = artifact_store
        self.stop = stop
        self.progress = progress
        self.grace = env_seconds(GRACE_ENV, GRACE_SECONDS)
        import torch

        self.threads = torch.get_num_threads()
        # Local scratch of each retry series, beside the study's checkpoints on this machine.
        self.base = Path(config.artifact_dir or default_artifact_dir(resolve_url(config.storage)))
        self._warned: set[str] = set()

    def directory(self, owner: CheckpointOwner) -> Path:
        """The checkpoint directory of a retry series (on this machine's disk)."""
        return (self.base / f"command-{owner.study}-{owner.series}").absolute()

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        batch_size, lr = suggest(trial, self.config)
        trial.set_user_attr(records.LR, lr)
        owner = CheckpointOwner(records.study_uid(trial.study), retry_series(trial))
        reporter = TrialReporter(trial, epochs=self.config.epochs, batch_size=batch_size, lr=lr,
                                 pruner_name=self.config.pruner,
                                 prune=len(self.config.objectives) == 1, progress=self.progress)
        directory = self.directory(owner)
        self._restore(trial, owner, reporter, directory)
        values = {**trial.params, "batch_size": batch_size, "lr": lr,
                  "epochs": self.config.epochs, "trial": trial.number, "seed": self.config.seed,
                  "device": self.device, "checkpoint_dir": str(directory)}
        process = ScriptProcess(command_argv(self.config, values), env=self._env(trial, values),
                                grace=self.grace, label=f"trial {trial.number}")
        try:
            with process:
                self._follow(process, trial, owner, reporter, directory)
        except optuna.TrialPruned:
            self._clear(owner, reporter, directory)
            raise
        except Interrupted:
            raise Interrupted(f"interrupted after epoch {reporter.epochs_done}") from None
        if process.returncode != 0:
            raise CommandFailed(process.failure())
        if reporter.epochs_done == 0:
            raise CommandFailed(
                'the command exited without reporting an epoch: print lines such as {"epoch": '
                '1, "val_loss": 0.5} (or call bsopt.report) after each epoch; '
                + process.stdout_summary())
        self._keep_weights(trial, owner, directory)
        self._clear(owner, reporter, directory)
        seconds = sum(s for s in reporter.curves.get(records.EPOCH_SECONDS, []) if s is not None)
        objectives = {"loss": reporter.last_val_loss, "time": seconds}
        if len(self.config.objectives) == 1:
            return float(objectives[self.config.objectives[0]])  # type: ignore[arg-type]
        return tuple(float(objectives[o]) for o in self.config.objectives)  # type: ignore[arg-type]

    def _env(self, trial: optuna.Trial, values: dict[str, Any]) -> dict[str, str]:
        return {**os.environ, TRIAL_ENV: str(trial.number),
                CHECKPOINT_DIR_ENV: values["checkpoint_dir"],
                BATCH_SIZE_ENV: str(values["batch_size"]), LR_ENV: repr(values["lr"]),
                EPOCHS_ENV: str(values["epochs"]), SEED_ENV: str(values["seed"]),
                DEVICE_ENV: values["device"], PARAMS_ENV: json.dumps(trial.params),
                "PYTHONUNBUFFERED": "1",  # a Python script's lines arrive as it prints them
                # the worker's share of the cores, as bsopt's own trainer gets (--workers)
                "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS") or str(self.threads)}

    def _follow(self, process: ScriptProcess, trial: optuna.Trial, owner: CheckpointOwner,
                reporter: TrialReporter, directory: Path) -> None:
        """Record each epoch the command reports, keep its directory, then let it go on."""
        for report in process.reports(self.stop):
            if report.epoch <= reporter.epochs_done:  # resumed from an earlier state
                process.ack(report.epoch)
                continue
            metrics = report.metrics
            try:
                reporter.report(report.epoch, report.val_loss, **metrics)
            except ValueError as exc:  # an epoch out of order: its files are not its curve's
                self._forget(trial, owner, reporter, directory)
                raise CommandFailed(f"{exc}; the retry starts over from epoch 0") from None
            self._snapshot(trial, owner, reporter, directory)
            process.ack(report.epoch)

    def _snapshot(self, trial: optuna.Trial, owner: CheckpointOwner, reporter: TrialReporter,
                  directory: Path) -> None:
        """Keep the directory and the curves as the series' checkpoint after this epoch."""
        import torch

        try:
            data = pack_directory(directory)
        except (DirectoryTooLarge, OSError) as exc:
            if "pack" not in self._warned:
                self._warned.add("pack")
                logger.warning("bsopt: trial %d: the checkpoint directory is not kept (%s): "
                               "a retry starts the script with an empty one", trial.number, exc)
            data = b""
        archive = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else None
        save_checkpoint(self.artifact_store, trial, owner,
                        {"archive": archive, "curves": reporter.curves}, reporter.epochs_done)

    def _restore(self, trial: optuna.Trial, owner: CheckpointOwner, reporter: TrialReporter,
                 directory: Path) -> None:
        """Give the directory the state of the series' checkpoint (empty without one)."""
        payload = load_checkpoint(self.artifact_store, trial, owner)
        clear_directory(directory)
        if payload is None or not isinstance(payload.get("curves"), dict):
            return
        archive = payload.get("archive")
        if archive is not None:
            try:
                unpack_directory(archive.numpy().tobytes(), directory)
            except (tarfile.TarError, OSError, AttributeError) as exc:
                logger.warning("bsopt: trial %d: the checkpoint's directory cannot be unpacked "
                               "(%s); training from the start", trial.number, exc)
                clear_directory(directory)
                return
        reporter.replay(payload["curves"])
        trial.set_user_attr(records.RESUMED_FROM_EPOCH, reporter.epochs_done)

    def _keep_weights(self, trial: optuna.Trial, owner: CheckpointOwner,
                      directory: Path) -> None:
        """Keep ``weights.pt`` (a ``state_dict``) as the trial's weights, if it left one."""
        path = directory / WEIGHTS_FILE
        if self.config.keep_best == 0 or not path.is_file():
            return
        import torch

        try:
            state = torch.load(path, weights_only=True, map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - whatever the file holds, it is not kept
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            logger.warning("bsopt: trial %d: %s is not kept: it does not load with "
                           "torch.load(weights_only=True) (%s)", trial.number, WEIGHTS_FILE,
                           reason)
            return
        if not isinstance(state, dict):
            logger.warning("bsopt: trial %d: %s holds a %s, not a state_dict: not kept",
                           trial.number, WEIGHTS_FILE, type(state).__name__)
            return
        save_weights(self.artifact_store, trial, owner.study, state)

    def _forget(self, trial: optuna.Trial, owner: CheckpointOwner, reporter: TrialReporter,
                directory: Path) -> None:
        """Drop the series' checkpoint, so that its retry starts from the beginning."""
        trial.set_user_attr(records.CHECKPOINT, None)
        self._clear(owner, reporter, directory)

    def _clear(self, owner: CheckpointOwner, reporter: TrialReporter, directory: Path) -> None:
        remove_series_checkpoints(self.artifact_store, owner,
                                  max(self.config.epochs, reporter.epochs_done))
        shutil.rmtree(directory, ignore_errors=True)
