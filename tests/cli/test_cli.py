"""The CLI in-process: help, real runs (bad input: test_bad_input.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from bsopt.cli import main
from tests.helpers import QUICK_FLAGS


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/cli.db"


def studies_in(url: str) -> list[str]:
    return optuna.get_all_study_names(url)


@pytest.mark.parametrize("argv", [["--help"], ["search", "--help"], ["studies", "--help"],
                                  ["best", "--help"], ["export", "--help"]])
def test_help_exits_zero(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    assert "usage: bsopt" in capsys.readouterr().out


def test_an_absent_dataset_creates_no_study(tmp_path: Path, db: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["search", "--storage", db, "--dataset", "mnist", "--data-dir", str(tmp_path / "no")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "could not be downloaded" in err and err.count("\n") == 1
    assert not Path(db.removeprefix("sqlite:///")).exists()  # checked before it is created


def test_storage_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/env.db"
    monkeypatch.setenv("BSOPT_STORAGE", url)
    monkeypatch.chdir(tmp_path)
    assert main(["search", *QUICK_FLAGS, "--n-trials", "1", "--sampler", "random"]) == 0
    assert studies_in(url) == ["digits-cnn"]
    assert not (tmp_path / "bsopt.db").exists()


@pytest.mark.slow
def test_search_then_studies_best_export(tmp_path: Path, db: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["search", "--storage", db, "--study-name", "s1", "--sampler", "random",
            "--n-trials", "3", *QUICK_FLAGS]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "study 's1'" in out and "3 complete" in out
    assert "batch_size" in out and "bsopt dashboard --storage" in out
    assert len(re.findall(r"^trial +\d+ +B=", out, flags=re.M)) == 3  # a line per trial

    assert main(["studies", "--storage", db]) == 0
    listing = capsys.readouterr().out
    assert "s1" in listing and "random" in listing

    assert main(["best", "--storage", db, "--study-name", "s1", "--json"]) == 0
    best = json.loads(capsys.readouterr().out)["best_trial"]
    study = optuna.load_study(study_name="s1", storage=db)
    assert best["number"] == study.best_trial.number
    assert best["values"]["loss"] == pytest.approx(study.best_value)

    out_csv = tmp_path / "t.csv"
    assert main(["export", "--storage", db, "--study-name", "s1", "--format", "csv",
                 "-o", str(out_csv)]) == 0
    lines = out_csv.read_text().splitlines()
    assert len(lines) == 4 and "val_loss" in lines[0] and "batch_size" in lines[0]
    assert main(["export", "--storage", db, "--study-name", "s1", "--format", "json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["definition"]["sampler"] == "random"
    assert len(exported["trials"]) == 3
    assert all(len(t["user_attrs"]["val_loss"]) == 1 for t in exported["trials"])

    # A second identical run has nothing left to do.
    assert main(argv) == 0
    assert len(optuna.load_study(study_name="s1", storage=db).trials) == 3


def test_reading_commands_never_create_a_database(db: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["studies"], ["best", "--study-name", "x"], ["analyze", "--study-name", "x"],
                 ["export", "--study-name", "x"], ["plots", "--study-name", "x"]):
        assert main([*argv, "--storage", db]) == 2
        assert "no study database at" in capsys.readouterr().err
    assert not Path(db.removeprefix("sqlite:///")).exists()


def test_best_and_export_of_a_missing_study(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    main(["search", "--storage", db, "--n-trials", "1", "--timeout", "0.001"])
    capsys.readouterr()
    assert main(["best", "--storage", db, "--study-name", "nope"]) == 2
    assert "no study named 'nope'" in capsys.readouterr().err
    assert main(["export", "--storage", db, "--study-name", "nope"]) == 2


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run([sys.executable, "-m", "bsopt", "--help"], capture_output=True,
                            text=True, check=True)
    assert "usage: bsopt" in result.stdout


def test_a_study_name_of_the_longest_length_runs_end_to_end(
        db: str, capsys: pytest.CaptureFixture[str]) -> None:
    # 512 characters: Optuna's column holds them, and no file name is made from them (the
    # checkpoints are named by the study's id), which a 255-byte name limit would refuse.
    name = "n" * 512
    assert main(["search", "--storage", db, "--study-name", name, "--sampler", "random",
                 "--n-trials", "1", "--dataset", "digits", "--max-train-samples", "64",
                 "--epochs", "1", "--batch-size", "16:16"]) == 0
    (trial,) = optuna.load_study(study_name=name, storage=db).trials
    assert trial.state == optuna.trial.TrialState.COMPLETE
    capsys.readouterr()
    assert main(["best", "--storage", db, "--study-name", name, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["study_name"] == name


def test_a_script_that_keeps_crashing_is_one_error_line_each_trial_one_line(
        tmp_path: Path, db: str, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "crash.py"
    script.write_text("import sys\nprint('one', file=sys.stderr)\nprint('two', file=sys.stderr)\n"
                      "raise SystemExit('three: out of patience')\n")
    argv = ["search", "--storage", db, "--study-name", "crash", "--n-trials", "1",
            "--command", f"{sys.executable} {script} --lr {{lr}}"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    ends = [line for line in captured.out.splitlines() if line.startswith("trial")]
    assert len(ends) == 3 and all(
        "FAIL      CommandFailed: the command exited with status 1: three: out of patience"
        in line for line in ends)
    assert "[trial 0] two" in captured.err  # the script's stderr, marked, as it came
    last = captured.err.splitlines()[-1]
    assert last == ("bsopt: error: 3 trials failed in a row; the last with CommandFailed: the "
                    "command exited with status 1: three: out of patience; each trial's "
                    "fail_reason is in `bsopt export`")
