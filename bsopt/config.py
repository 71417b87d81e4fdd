"""The study definition: one frozen dataclass, built from defaults < TOML file < CLI flags.

The *definition* fields describe the study and are stored in it (see ``bsopt.study``), so
every worker, the dashboard, the analysis and plain ``optuna.load_study`` users see the same
thing. The *run* fields (storage, timeout, device, ...) belong to one invocation only.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import types
import typing
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bsopt.errors import UsageError

SAMPLERS = ("grid", "random", "tpe", "gp", "cmaes", "qmc")
PRUNERS = ("batch-asha", "batch-median", "median", "asha", "hyperband", "none")
# dataset -> number of classes (chance-level cross-entropy is ln of it: bsopt.pruning)
NUM_CLASSES = {"digits": 10, "mnist": 10, "fashion-mnist": 10, "cifar10": 10, "synthetic": 10}
DATASETS = tuple(NUM_CLASSES)
MODELS = ("cnn", "mlp")
OPTIMIZERS = ("sgd", "adam")
DEVICES = ("auto", "cpu", "cuda")
LR_SCALINGS = ("none", "linear", "sqrt")
OBJECTIVES = ("loss", "time")
MAX_N_TRIALS = 1_000_000  # a budget beyond any real study: a typo, and WAITING rows for each
MAX_STUDY_NAME_LENGTH = 512  # Optuna's studies.study_name column is String(512)
WORKERS_PER_CORE = 4  # training is compute-bound: more workers than this only share the cores
MAX_WORKERS_ENV = "BSOPT_MAX_WORKERS"


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines a batch-size x learning-rate study, and how to run it."""

    # --- definition: stored in the study, identical for every worker ---
    study_name: str | None = None  # None: "<dataset>-<model>"
    sampler: str = "tpe"
    pruner: str = "batch-asha"
    n_trials: int | None = None  # total budget of complete + pruned trials; None: grid size or 20
    dataset: str = "digits"
    model: str = "cnn"
    epochs: int = 5
    batch_size_min: int = 16
    batch_size_max: int = 256
    lr_min: float = 1e-4
    lr_max: float = 1.0
    grid_lr_points: int = 5  # learning rates per batch size in the grid sampler's grid
    optimizer: str = "adam"
    momentum: float = 0.9  # SGD only
    seed: int = 0
    max_train_samples: int | None = None  # train on a subset so a trial is quick
    lr_scaling: str = "none"  # sample base_lr at reference_batch, train at base_lr*(B/B0)^k
    reference_batch: int = 64
    warmup_epochs: float = 0.0  # linear warmup from 0 to lr (Goyal et al. 2017)
    max_micro_batch: int | None = None  # larger batches run as accumulated micro-batches
    noise_scale: bool = False  # measure the gradient noise scale during training
    objectives: tuple[str, ...] = ("loss",)

    # --- run: this invocation only, never stored ---
    storage: str | None = field(default=None, compare=False)
    timeout: float | None = field(default=None, compare=False)
    data_dir: str | None = field(default=None, compare=False)
    device: str = field(default="auto", compare=False)
    workers: int = field(default=1, compare=False)
    artifact_dir: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        validate(self)

    @property
    def name(self) -> str:
        """The study's name: the one given, or ``<dataset>-<model>``."""
        return self.study_name or f"{self.dataset}-{self.model}"

    def definition(self) -> dict[str, Any]:
        """The fields stored in the study, as JSON-ready values."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.compare}
        out["study_name"] = self.name
        out["objectives"] = list(self.objectives)
        return out

    def replace(self, **changes: Any) -> StudyConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


DEFINITION_FIELDS = tuple(f.name for f in dataclasses.fields(StudyConfig) if f.compare)
ALL_FIELDS = tuple(f.name for f in dataclasses.fields(StudyConfig))
# field -> declared type, the one statement of what each field holds (checked by validate)
FIELD_TYPES: dict[str, Any] = typing.get_type_hints(StudyConfig)
# fields the user sets under another name: ``batch_size = "16:256"`` sets two of them
_USER_NAMES = {"batch_size_min": "batch_size", "batch_size_max": "batch_size",
               "lr_min": "lr", "lr_max": "lr"}


def _shown(value: Any) -> str:
    """A value as the user wrote it in TOML (true, "abc", 2.5), for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"' if len(value) <= 40 else f'"{value[:40]}..."'
    return repr(value)


def _check_type(name: str, value: Any, hint: Any) -> None:
    """Raise ``UsageError`` unless ``value`` is of the declared type ``hint``.

    A bool is not a number (Python says it is: ``True == 1``), a float is not a whole
    number (``epochs = 2.5`` is refused, not truncated); a whole number is a fine float.
    """
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType):
        if value is None and type(None) in args:
            return
        (hint,) = [a for a in args if a is not type(None)]
    if hint is bool:
        ok, what = isinstance(value, bool), "true or false"
    elif hint is int:
        ok, what = isinstance(value, int) and not isinstance(value, bool), "a whole number"
    elif hint is float:
        ok, what = isinstance(value, int | float) and not isinstance(value, bool), "a number"
    elif hint is str:
        ok, what = isinstance(value, str), "a string"
    elif typing.get_origin(hint) is tuple:
        ok = isinstance(value, tuple) and all(isinstance(v, str) for v in value)
        what = 'a list of strings such as ["loss", "time"]'
    else:  # a new field whose type this function does not know yet: bsopt's bug
        raise TypeError(f"no type check for field {name!r} of type {hint!r}")
    if not ok:
        raise UsageError(f"{_USER_NAMES.get(name, name)} must be {what}, got {_shown(value)}")


def check_study_name(name: str) -> str:
    """Return ``name`` if it can name a study, else raise ``UsageError`` saying why.

    Optuna stores at most 512 characters; a control character or line break would break
    bsopt's one-line output and the commands it prints.
    """
    if not name:
        raise UsageError("the study name is empty: give a name, or leave --study-name out "
                         "for <dataset>-<model>")
    if len(name) > MAX_STUDY_NAME_LENGTH:
        raise UsageError(f"the study name is {len(name)} characters long: give at most "
                         f"{MAX_STUDY_NAME_LENGTH}")
    bad = [c for c in name if unicodedata.category(c) in ("Cc", "Zl", "Zp")]
    if bad:
        raise UsageError(f"the study name holds the control character {bad[0]!r}: "
                         "give a name on one line of printable characters")
    return name


def usable_cores() -> int:
    """The CPU cores this process may run on (honours taskset and container CPU sets)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def max_workers() -> int:
    """The most ``--workers`` allowed: ``$BSOPT_MAX_WORKERS``, else 4 x the usable cores.

    Raises:
        UsageError: ``$BSOPT_MAX_WORKERS`` is set but is not a positive whole number.
    """
    text = os.environ.get(MAX_WORKERS_ENV)
    if not text:
        return WORKERS_PER_CORE * usable_cores()
    if not text.strip().isdigit() or int(text) < 1:
        raise UsageError(f"${MAX_WORKERS_ENV} must be a positive whole number, got {text!r}")
    return int(text)


def _check_workers(workers: int) -> None:
    limit = max_workers()
    if workers <= limit:
        return
    if os.environ.get(MAX_WORKERS_ENV):
        raise UsageError(f"--workers {workers} is more than ${MAX_WORKERS_ENV}={limit}: "
                         f"lower it, or raise ${MAX_WORKERS_ENV}")
    raise UsageError(
        f"--workers {workers} is more than {limit} ({WORKERS_PER_CORE} x the "
        f"{usable_cores()} usable cores): lower it, or set ${MAX_WORKERS_ENV}={workers} "
        "to start that many anyway"
    )


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UsageError(f"unknown {name} {value!r}: choose one of {', '.join(choices)}")


def _check_positive(name: str, value: float | int | None) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise UsageError(f"{name} must be positive, got {value}")


def validate(config: StudyConfig) -> None:
    """Raise ``UsageError`` naming the first field that cannot work (type, then value)."""
    for name, hint in FIELD_TYPES.items():
        _check_type(name, getattr(config, name), hint)
    if config.study_name is not None:
        check_study_name(config.study_name)
    _check_choice("sampler", config.sampler, SAMPLERS)
    _check_choice("pruner", config.pruner, PRUNERS)
    _check_choice("dataset", config.dataset, DATASETS)
    _check_choice("model", config.model, MODELS)
    _check_choice("optimizer", config.optimizer, OPTIMIZERS)
    _check_choice("device", config.device, DEVICES)
    _check_choice("lr scaling", config.lr_scaling, LR_SCALINGS)
    for objective in config.objectives:
        _check_choice("objective", objective, OBJECTIVES)
    if len(set(config.objectives)) != len(config.objectives) or not config.objectives:
        raise UsageError("--objectives takes loss, time or loss,time (each at most once)")
    for name in ("epochs", "batch_size_min", "batch_size_max", "lr_min", "lr_max",
                 "grid_lr_points", "n_trials", "timeout", "max_train_samples",
                 "reference_batch", "max_micro_batch", "workers"):
        _check_positive(name.replace("_", "-"), getattr(config, name))
    if config.n_trials is not None and config.n_trials > MAX_N_TRIALS:
        raise UsageError(f"n-trials must be at most {MAX_N_TRIALS} (the study's total "
                         f"budget), got {config.n_trials}")
    _check_workers(config.workers)
    if config.batch_size_min > config.batch_size_max:
        raise UsageError(
            f"--batch-size {config.batch_size_min}:{config.batch_size_max} is reversed: "
            "give MIN:MAX with MIN <= MAX"
        )
    if config.lr_min > config.lr_max:
        raise UsageError(
            f"--lr {config.lr_min:g}:{config.lr_max:g} is reversed: give MIN:MAX with MIN <= MAX"
        )
    if not 0 <= config.seed < 2**32:  # numpy's generators (Optuna's samplers) take no more
        raise UsageError(f"seed must be between 0 and {2**32 - 1}, got {config.seed}")
    if not 0 <= config.momentum < 1:
        raise UsageError(f"--momentum must be in [0, 1), got {config.momentum}")
    if not 0 <= config.warmup_epochs <= config.epochs:
        raise UsageError(
            f"--warmup-epochs must be between 0 and --epochs, got {config.warmup_epochs}"
        )
    if not powers_of_two(config.batch_size_min, config.batch_size_max):
        raise UsageError(
            f"--batch-size {config.batch_size_min}:{config.batch_size_max} holds no power of two: "
            "widen the range"
        )


def parse_range(text: str, flag: str, kind: type = float) -> tuple[Any, Any]:
    """Parse ``MIN:MAX`` (or a single value, meaning MIN = MAX) for ``flag``."""
    parts = str(text).split(":")
    if len(parts) not in (1, 2):
        raise UsageError(f"{flag} takes MIN:MAX, got {text!r}")
    try:
        values = [kind(p) for p in parts]
    except ValueError:
        raise UsageError(
            f"{flag} takes MIN:MAX with {kind.__name__} values, got {text!r}"
        ) from None
    return values[0], values[-1]


def _coerce_ranges(values: dict[str, Any], source: str) -> dict[str, Any]:
    """Turn ``batch_size``/``lr`` ranges (``"16:256"`` or ``[16, 256]``) into min/max fields.

    ``objectives`` given as ``"loss,time"`` or a list becomes a tuple; anything else is
    left for :func:`validate` to refuse with the field's name.
    """
    out = dict(values)
    for key in ("batch_size", "lr"):
        if key not in out:
            continue
        raw = out.pop(key)
        hint = FIELD_TYPES[f"{key}_min"]
        if isinstance(raw, str):
            low, high = parse_range(raw, f"{key} in {source}", hint)
        elif isinstance(raw, list) and len(raw) == 2:
            low, high = raw
            for value in raw:  # the same check as the fields', under the name the user wrote
                _check_type(key, value, hint)
        else:
            raise UsageError(f'{key} in {source} must be "MIN:MAX" or [MIN, MAX], '
                             f"got {_shown(raw)}")
        out[f"{key}_min"], out[f"{key}_max"] = low, high
    objectives = out.get("objectives")
    if isinstance(objectives, str):
        out["objectives"] = tuple(s.strip() for s in objectives.split(",") if s.strip())
    elif isinstance(objectives, list):
        out["objectives"] = tuple(objectives)
    return out


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a study TOML file into config fields (flat keys named like the CLI flags)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"config file {path} is a directory: give a .toml file") from None
    except OSError as exc:  # permissions, a device, ...
        raise UsageError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"config file {path} is not a UTF-8 text file: give a .toml "
                         "file") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from None
    raw = {key.replace("-", "_"): value for key, value in raw.items()}
    values = _coerce_ranges(raw, str(path))
    unknown = sorted(set(values) - set(ALL_FIELDS))
    if unknown:
        raise UsageError(
            f"unknown key {unknown[0]!r} in {path}; known keys: "
            + ", ".join(k for k in ALL_FIELDS if not k.endswith(("_min", "_max")))
            + ", batch_size, lr"
        )
    return values


def build_config(
    toml_path: str | Path | None = None, flags: dict[str, Any] | None = None
) -> tuple[StudyConfig, dict[str, Any]]:
    """Build the config from defaults < TOML file < flags.

    Returns the config and the fields the user set explicitly (TOML or flags), which a
    join compares against the stored definition.
    """
    explicit: dict[str, Any] = {}
    if toml_path is not None:
        explicit.update(read_toml(toml_path))
    explicit.update(_coerce_ranges({k: v for k, v in (flags or {}).items() if v is not None},
                                   "the flags"))
    return StudyConfig(**explicit), explicit


def config_from_definition(definition: dict[str, Any], **run: Any) -> StudyConfig:
    """Rebuild a config from a definition stored in a study, plus run fields."""
    known = {k: v for k, v in definition.items() if k in DEFINITION_FIELDS}
    if "objectives" in known:
        known["objectives"] = tuple(known["objectives"])
    return StudyConfig(**known, **run)


def powers_of_two(low: int, high: int) -> list[int]:
    """All powers of two between ``low`` and ``high`` inclusive: the batch sizes of a study."""
    first = math.ceil(math.log2(low))
    last = math.floor(math.log2(high))
    return [2**k for k in range(first, last + 1)]
