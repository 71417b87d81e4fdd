"""What every field of a study definition must hold: types, ranges, names, limits.

Every field is checked against its declared type first (a bool is not a number, 2.5 is not
a whole number), then its value. Each message names the field as the user writes it and
says what to give instead.
"""

from __future__ import annotations

import json
import math
import os
import types
import typing
import unicodedata
from typing import TYPE_CHECKING, Any

from bsopt.errors import UsageError

if TYPE_CHECKING:
    from bsopt.config.study_config import StudyConfig

# what a study minimizes -> the metric it is: validation loss, training seconds
OBJECTIVES = {"loss": "val_loss", "time": "seconds"}
# how a trial holds its data: in memory where they fit (auto), or always one way
DATA_MODES = ("auto", "memory", "stream")
PRECISIONS = ("fp32", "bf16", "fp16")
MAX_N_TRIALS = 1_000_000  # a budget beyond any real study: a typo, and WAITING rows for each
MAX_STUDY_NAME_LENGTH = 512  # Optuna's studies.study_name column is String(512)
WORKERS_PER_CORE = 4  # training is compute-bound: more workers than this only share the cores
MAX_WORKERS_ENV = "BSOPT_MAX_WORKERS"
# fields the user sets under another name: ``batch_size = "16:256"`` sets two of them
USER_NAMES = {"batch_size_min": "batch_size", "batch_size_max": "batch_size",
              "lr_min": "lr", "lr_max": "lr"}


def shown(value: Any) -> str:
    """A value as the user wrote it in TOML (true, "abc", 2.5), for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"' if len(value) <= 40 else f'"{value[:40]}..."'
    return repr(value)


def check_type(name: str, value: Any, hint: Any) -> None:
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
    elif typing.get_origin(hint) is dict:  # stored in the study: JSON with string keys
        ok, what = _is_json_table(value), "a table of names and values (JSON), e.g. {width = 64}"
    else:  # a new field whose type this function does not know yet: bsopt's bug
        raise TypeError(f"no type check for field {name!r} of type {hint!r}")
    if not ok:
        raise UsageError(f"{USER_NAMES.get(name, name)} must be {what}, got {shown(value)}")


def _is_json_table(value: Any) -> bool:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        return False
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


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


def gpu_ids(text: str) -> list[int]:
    """``--gpus 0,1,3`` as GPU indices: distinct, non-negative.

    Raises:
        UsageError: anything else.
    """
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() for p in parts) or len(set(parts)) != len(parts):
        raise UsageError(f"--gpus takes distinct GPU indices separated by commas, e.g. 0,1,2,3; "
                         f"got {shown(text)}")
    return [int(p) for p in parts]


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


def _check_positive(name: str, value: float | int | None) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise UsageError(f"{name} must be positive, got {value}")


def validate(config: StudyConfig, field_types: dict[str, Any]) -> None:
    """Raise ``UsageError`` naming the first field that cannot work (type, then value).

    Args:
        config: The config to check.
        field_types: Each field's declared type (``StudyConfig``'s annotations).
    """
    for name, hint in field_types.items():
        check_type(name, getattr(config, name), hint)
    if config.study_name is not None:
        check_study_name(config.study_name)
    if (not config.objectives or len(set(config.objectives)) != len(config.objectives)
            or not set(config.objectives) <= set(OBJECTIVES)):
        raise UsageError(f"--objectives takes {', '.join(OBJECTIVES)} or "
                         f"{','.join(OBJECTIVES)} (each at most once)")
    for name in ("epochs", "batch_size_min", "batch_size_max", "lr_min", "lr_max",
                 "grid_lr_points", "n_trials", "timeout", "max_train_samples",
                 "reference_batch", "max_micro_batch", "workers", "image_size",
                 "trials_per_gpu"):
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
    if not config.lr_search_limit >= 1:
        raise UsageError(f"--lr-search-limit is a factor of at least 1, got "
                         f"{config.lr_search_limit}")
    if not 0 <= config.momentum < 1:
        raise UsageError(f"--momentum must be in [0, 1), got {config.momentum}")
    if not 0 <= config.warmup_epochs <= config.epochs:
        raise UsageError(
            f"--warmup-epochs must be between 0 and --epochs, got {config.warmup_epochs}"
        )
    if config.keep_best < 0:
        raise UsageError(f"keep-best must be 0 or more, got {config.keep_best}")
    if config.data_mode not in DATA_MODES:
        raise UsageError(f"--data-mode must be {', '.join(DATA_MODES[:-1])} or "
                         f"{DATA_MODES[-1]}, got {shown(config.data_mode)}")
    if config.precision not in PRECISIONS:
        raise UsageError(f"--precision must be {', '.join(PRECISIONS[:-1])} or "
                         f"{PRECISIONS[-1]}, got {shown(config.precision)}")
    if config.precision == "fp16" and config.noise_scale:
        # fp16's loss scaler leaves overflowed gradients for it to skip, which the noise
        # scale estimator would read as a diverged step.
        raise UsageError("--noise-scale measures fp32 or bf16 gradients: use --precision bf16")
    if config.gpus is not None:
        gpu_ids(config.gpus)
    if config.loader_workers < 0:
        raise UsageError(f"loader-workers must be 0 or more, got {config.loader_workers}")
    if config.train is not None and config.command is not None:
        raise UsageError("give --train or --command, not both: each is the whole training")
    if config.shell and config.command is None:
        raise UsageError("--shell runs a --command through /bin/sh: give the command too")
    if not powers_of_two(config.batch_size_min, config.batch_size_max):
        raise UsageError(
            f"--batch-size {config.batch_size_min}:{config.batch_size_max} holds no power of two: "
            "widen the range"
        )


def powers_of_two(low: int, high: int) -> list[int]:
    """All powers of two between ``low`` and ``high`` inclusive: the batch sizes of a study."""
    first = math.ceil(math.log2(low))
    last = math.floor(math.log2(high))
    return [2**k for k in range(first, last + 1)]
