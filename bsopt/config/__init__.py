"""The study definition: :class:`StudyConfig`, its checks, and where it comes from.

- :mod:`~bsopt.config.study_config`: the frozen dataclass (definition and run fields);
- :mod:`~bsopt.config.checks`: types, ranges and limits of every field;
- :mod:`~bsopt.config.sources`: defaults < TOML file < flags (:func:`build_config`).

A leaf of the package: it imports only the standard library and :mod:`bsopt.errors`, so every
layer may use it.
"""

from bsopt.config.checks import (
    DATA_MODES,
    MAX_N_TRIALS,
    OBJECTIVES,
    PRECISIONS,
    check_study_name,
    gpu_ids,
    max_workers,
    powers_of_two,
    usable_cores,
)
from bsopt.config.sources import build_config, config_from_definition, parse_range, read_toml
from bsopt.config.study_config import ALL_FIELDS, DEFINITION_FIELDS, FIELD_TYPES, StudyConfig

__all__ = [
    "ALL_FIELDS", "DATA_MODES", "DEFINITION_FIELDS", "FIELD_TYPES", "MAX_N_TRIALS", "OBJECTIVES",
    "PRECISIONS", "StudyConfig",
    "build_config", "check_study_name", "config_from_definition", "gpu_ids", "max_workers",
    "parse_range",
    "powers_of_two", "read_toml", "usable_cores",
]
