"""Config precedence (defaults < TOML < flags) and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from bsopt.config import StudyConfig, build_config, config_from_definition, read_toml
from bsopt.errors import UsageError

STUDIES = Path(__file__).resolve().parent.parent / "studies"


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
    ('sampler = "annealing"', "unknown sampler 'annealing'"),
    ('pruner = "wilcoxon"', "unknown pruner"),
    ('dataset = "imagenet"', "unknown dataset"),
    ('model = "resnet"', "unknown model"),
    ('batch_size = "256:16"', "reversed"),
    ('lr = "1:1e-3"', "reversed"),
    ("lr = [0, 1]", "must be positive"),
    ("epochs = 0", "must be positive"),
    ('batch_size = "17:31"', "no power of two"),
    ('epochs = "five"', "bad value"),
])
def test_bad_toml_is_one_clear_usage_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        build_config(write(tmp_path, text))


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        read_toml(tmp_path / "nope.toml")


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
