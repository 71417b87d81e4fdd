"""Where a study definition comes from: defaults < a TOML file < command-line flags.

TOML keys are the flags' names (``batch_size = "16:256"`` or ``[16, 256]``, ``n_trials = 40``);
:func:`build_config` merges them and returns the fields the user set explicitly, which a join
compares with the definition stored in the study.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from bsopt.config.checks import check_type, shown
from bsopt.config.study_config import ALL_FIELDS, DEFINITION_FIELDS, FIELD_TYPES, StudyConfig
from bsopt.errors import UsageError


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
                check_type(key, value, hint)
        else:
            raise UsageError(f'{key} in {source} must be "MIN:MAX" or [MIN, MAX], '
                             f"got {shown(raw)}")
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
