"""Config precedence (defaults < TOML < flags) and validation."""

from __future__ import annotations

import os
import typing
from pathlib import Path

import pytest

from bsopt.config import (
    FIELD_TYPES,
    StudyConfig,
    build_config,
    config_from_definition,
    read_toml,
)
from bsopt.config.checks import MAX_STUDY_NAME_LENGTH, WORKERS_PER_CORE
from bsopt.errors import UsageError
from tests.helpers import REPO

STUDIES = REPO / "studies"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


def test_defaults_when_nothing_given() -> None:
    config, explicit = build_config()
    assert config == StudyConfig()
    assert explicit == {}
    assert config.name == "digits-cnn"


def test_toml_overrides_defaults_and_flags_override_toml(tmp_path: Path) -> None:
    path = write(tmp_path, 'sampler = "random"\nepochs = 7\nbatch_size = "32:512"\n'
                           'lr = [1e-3, 0.5]\n')
    config, explicit = build_config(path, {"epochs": 3, "seed": None})
    assert config.sampler == "random"  # from TOML
    assert config.epochs == 3  # flag wins over TOML
    assert (config.batch_size_min, config.batch_size_max) == (32, 512)
    assert (config.lr_min, config.lr_max) == (1e-3, 0.5)
    assert config.seed == 0  # None means "not given": the default stays
    assert set(explicit) == {"sampler", "epochs", "batch_size_min", "batch_size_max",
                             "lr_min", "lr_max"}


def test_flag_ranges_parse() -> None:
    config, _ = build_config(None, {"batch_size": "16:256", "lr": "1e-3:1"})
    assert (config.batch_size_min, config.batch_size_max, config.lr_min, config.lr_max) == (
        16, 256, 1e-3, 1.0)


@pytest.mark.parametrize("text, message", [
    ("epochs = [", "not valid TOML"),
    ("colour = 1", "unknown key 'colour'"),
    ('batch_size = "256:16"', "reversed"),
    ('lr = "1:1e-3"', "reversed"),
    ("lr = [0, 1]", "must be positive"),
    ("epochs = 0", "must be positive"),
    ('batch_size = "17:31"', "no power of two"),
    ('epochs = "five"', 'epochs must be a whole number, got "five"'),
    ("epochs = 2.5", "epochs must be a whole number, got 2.5"),
    ("n_trials = true", "n_trials must be a whole number, got true"),
    ("study_name = 5", "study_name must be a string, got 5"),
    ('study_name = ""', "the study name is empty"),
    ("noise_scale = 1", "noise_scale must be true or false, got 1"),
    ("objectives = 5", "objectives must be a list of strings"),
    ("objectives = [1]", "objectives must be a list of strings"),
    ('seed = "abc"', 'seed must be a whole number, got "abc"'),
    ("seed = -1", "seed must be between 0 and 4294967295"),
    ('batch_size = ["a", "b"]', 'batch_size must be a whole number, got "a"'),
    ("batch_size = [16.0, 64]", "batch_size must be a whole number, got 16.0"),
    ('lr = [1e-3, "x"]', 'lr must be a number, got "x"'),
    ("lr = 5", 'lr in .* must be "MIN:MAX" or \\[MIN, MAX\\], got 5'),
    ("n_trials = 1000001", "n-trials must be at most 1000000"),
    ("workers = 100000", "BSOPT_MAX_WORKERS"),
])
def test_bad_toml_is_one_clear_usage_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        build_config(write(tmp_path, text))


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        read_toml(tmp_path / "nope.toml")


def test_unreadable_files_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is a directory"):
        read_toml(tmp_path)
    binary = tmp_path / "b.toml"
    binary.write_bytes(b"\xff\xfe\x00epochs = 2")
    with pytest.raises(UsageError, match="not a UTF-8 text file"):
        read_toml(binary)


# A value of the wrong type for each kind of field, and one of the right type that is not
# the field's own type (an int for a float).
WRONG = {bool: 1, int: 2.5, float: "0.5", str: 5, tuple: ["loss"]}


@pytest.mark.parametrize("name", FIELD_TYPES)
def test_every_field_is_checked_for_its_type(name: str) -> None:
    hint = FIELD_TYPES[name]
    kinds = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    kind = typing.get_origin(kinds[0]) or kinds[0]
    for value in [WRONG[kind], *([True] if kind is not bool else [])]:  # True is no number
        with pytest.raises(UsageError, match=rf"^({name}|batch_size|lr) must be .*, got"):
            StudyConfig(**{name: value})


def test_a_whole_number_is_a_fine_float_and_none_a_fine_optional() -> None:
    config = StudyConfig(momentum=0, warmup_epochs=1, lr_min=1, lr_max=1, timeout=None)
    assert (config.momentum, config.lr_min) == (0, 1)


@pytest.mark.parametrize("name, message", [
    ("", "is empty"),
    ("x" * 513, "513 characters long: give at most 512"),
    ("a\nb", "control character '\\\\n'"),
    ("a\tb", "control character"),
    ("a\u2028b", "control character"),
])
def test_bad_study_names(name: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        StudyConfig(study_name=name)


def test_a_512_character_name_and_optunas_limit() -> None:
    from optuna.storages._rdb.models import MAX_INDEXED_STRING_LENGTH

    assert MAX_STUDY_NAME_LENGTH == MAX_INDEXED_STRING_LENGTH  # the column's width
    assert StudyConfig(study_name="é" * 512).name == "é" * 512


def test_workers_are_capped_at_a_multiple_of_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BSOPT_MAX_WORKERS", raising=False)
    cap = WORKERS_PER_CORE * len(os.sched_getaffinity(0))
    assert StudyConfig(workers=cap).workers == cap
    with pytest.raises(UsageError, match=f"--workers {cap + 1} is more than {cap} "
                                         rf"\(4 x the .* usable cores\).*BSOPT_MAX_WORKERS"):
        StudyConfig(workers=cap + 1)
    monkeypatch.setenv("BSOPT_MAX_WORKERS", str(cap + 1))
    assert StudyConfig(workers=cap + 1).workers == cap + 1
    monkeypatch.setenv("BSOPT_MAX_WORKERS", "many")
    with pytest.raises(UsageError, match="BSOPT_MAX_WORKERS must be a positive whole number"):
        StudyConfig()


@pytest.mark.parametrize("path", sorted(STUDIES.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_study_definitions_are_valid(path: Path) -> None:
    config, _ = build_config(path)
    assert config.name == path.stem.replace("_", "-")


def test_definition_round_trips_and_leaves_out_run_fields() -> None:
    config = StudyConfig(sampler="grid", epochs=2, storage="sqlite:///x.db", workers=3,
                         objectives=("loss", "time"))
    definition = config.definition()
    assert "storage" not in definition and "workers" not in definition
    assert definition["study_name"] == "digits-cnn"
    again = config_from_definition(definition, storage="sqlite:///y.db")
    assert again.definition() == definition
    assert again.storage == "sqlite:///y.db"
