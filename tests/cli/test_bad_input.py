"""Every kind of bad input to the CLI: exit 2, one line, no traceback, the storage untouched.

Each case runs ``bsopt`` in-process (no training) against a real SQLite file in one of a
few starting states, and compares the storage before and after: no database file where
there was none, and an existing file byte-identical with the same content.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import sys
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy

from bsopt.cli import main
from bsopt.config import StudyConfig
from bsopt.records import CONFIG_ATTR
from bsopt.storage import sqlalchemy_url
from tests.helpers import png

PLANTED = "planted"
LONG_NAME = "n" * 10_000


@dataclass(frozen=True)
class Case:
    """One bad command.

    ``setup`` is the state of the storage file ``s.db`` before the command: ``none`` (no
    file), ``study`` (a bsopt study with trials), ``empty`` (0 bytes), ``random``/``text``
    (not a database), ``truncated``/``overwritten`` (a study database damaged), ``dir`` (a
    directory), ``full`` (the study on a filesystem with no space left), ``damaged-journal``
    (a journal file with a line that is not JSON).
    In ``argv``, ``{db}`` is the storage URL, ``{tmp}`` the test's directory and ``{toml}``
    a TOML file holding ``toml``, ``{port}`` a free port. ``files`` are written into the
    test's directory (the working directory) first: a user's loader module, an image folder.
    """

    id: str
    argv: tuple[str, ...]
    message: str
    setup: str = "none"
    toml: str | bytes | None = None
    files: tuple[tuple[str, str | bytes], ...] = ()


def search(*flags: str, setup: str = "none", toml: str | bytes | None = None,
           message: str, id: str, files: dict[str, str | bytes] | None = None) -> Case:
    return Case(id, ("search", "--storage", "{db}", *flags), message, setup, toml,
                tuple((files or {}).items()))


def loader_case(body: str, message: str, id: str, *flags: str) -> Case:
    """A ``--dataset MODULE:load`` whose module (written for this case alone) is ``body``."""
    module = "bad_loader_" + id.replace("-", "_")  # modules are cached by name: one each
    return search("--dataset", f"{module}:load", *flags, message=message, id=id,
                  files={f"{module}.py": "import torch\n\n" + body})


def images(*paths: str, **sized: tuple[int, int]) -> dict[str, str | bytes]:
    """An image folder under imgs/: an 8x8 PNG at each path, and one of a size at each key."""
    files: dict[str, str | bytes] = {f"imgs/{p}": png() for p in paths}
    files.update({f"imgs/{p.replace('__', '/')}.png": png(size) for p, size in sized.items()})
    return files


GOOD_FOLDER = ("train/cat/0.png", "train/cat/1.png", "train/dog/0.png", "train/dog/1.png",
               "val/cat/0.png", "val/dog/0.png")
TENSORS = "x = torch.zeros(12, 1, 2, 2)\ny = torch.arange(12) % 2\n"


def toml_case(text: str | bytes, message: str, id: str) -> Case:
    return search("--config", "{toml}", toml=text, message=message, id=id)


# The user's own code the cases below name (written into the test's working directory).
USER_CODE = """
from torch import nn

NOT_CALLABLE = 3


def raises(input_shape, num_classes):
    raise ValueError("no such layer")


def not_a_module(input_shape, num_classes):
    return 42
"""

CASES = [
    # --- the user's own model and training function ---
    search("--model", "nosuchmodule:build", message="no module named 'nosuchmodule'",
           id="model-no-module"),
    search("--model", "usercode:nothere", message="has no attribute 'nothere'",
           id="model-no-name"),
    search("--model", "usercode:raises", message="raised ValueError: no such layer",
           id="model-raises"),
    search("--model", "usercode:not_a_module", message="returned a int, not a torch.nn.Module",
           id="model-not-a-module"),
    search("--model", "usercode:NOT_CALLABLE", message="not a factory to call",
           id="model-not-callable"),
    search("--model", "resnet 18", message="unknown model 'resnet 18'", id="model-not-a-path"),
    search("--model", "cnn", "--model-args", '{{"width": 2}}',
           message="the reference cnn takes none", id="model-args-for-cnn"),
    search("--model-args", "[1]", message="expected a JSON object", id="model-args-not-object"),
    toml_case("model_args = 5", "model_args must be a table", id="toml-model-args-int"),
    search("--train", "nosuchmodule:train", message="no module named 'nosuchmodule'",
           id="train-no-module"),
    search("--train", "usercode:NOT_CALLABLE", message="not a function", id="train-not-callable"),
    search("--train", "usercode:raises", "--command", "python x.py", message="not both",
           id="train-and-command"),
    # --- flags (the cases test_cli.py had) ---
    search("--sampler", "annealing", message="unknown sampler 'annealing'", id="sampler"),
    search("--pruner", "wilcoxon", message="unknown pruner", id="pruner"),
    search("--dataset", "imagenet", message="unknown dataset", id="dataset"),
    search("--model", "resnet", message="unknown model", id="model"),
    search("--batch-size", "256:16", message="reversed", id="batch-size-reversed"),
    search("--lr", "1:0.001", message="reversed", id="lr-reversed"),
    search("--lr", "0:1", message="must be positive", id="lr-zero"),
    search("--lr", "a:b", message="MIN:MAX", id="lr-text"),
    search("--batch-size=-16:64", message="must be positive", id="batch-size-negative"),
    search("--n-trials", "ten", message="expected an integer", id="n-trials-text"),
    search("--n-trials", "0", message="must be positive", id="n-trials-zero"),
    search("--epochs=-1", message="must be positive", id="epochs-negative"),
    search("--sampler", "grid", "--n-trials", "100", "--grid-lr-points", "2",
           message="exceeds the grid", id="grid-too-small"),
    search("--frobnicate", message="unrecognized arguments", id="unknown-flag"),
    search("--n-trials", "1000001", message="at most 1000000", id="n-trials-huge"),
    search("--workers", "1000", message="BSOPT_MAX_WORKERS", id="workers-unbounded"),
    search("--workers", "1000", "--study-name", PLANTED, setup="study",
           message="BSOPT_MAX_WORKERS", id="workers-unbounded-join"),
    # --- --command: checked before the study is stored ({{ }}: a brace, in argv here) ---
    search("--command", "python train.py --bs {{bs}}", message="unknown placeholder {bs}: use "
           "{batch_size}, {lr}", id="command-unknown-placeholder"),
    search("--command", "python train.py {{}}", message="unknown placeholder {}",
           id="command-positional-placeholder"),
    search("--command", "python train.py {{lr", message="expected '}' before end of string",
           id="command-open-brace"),
    search("--command", "python train.py --lr {{lr:d}}", message="cannot be filled in",
           id="command-bad-format-spec"),
    search("--command", "", message="--command is empty", id="command-empty"),
    search("--command", "   ", message="--command is empty", id="command-blank"),
    search("--command", "python 'train.py", message="check its quotes", id="command-quotes"),
    search("--command", "no-such-program-bsopt --lr {{lr}}",
           message="the program 'no-such-program-bsopt' is not on PATH", id="command-no-program"),
    search("--command", "./no-such-script.sh --lr {{lr}}", message="is not an executable file",
           id="command-no-script"),
    search("--shell", message="--shell runs a --command through /bin/sh: give the command",
           id="shell-without-command"),
    search("--train", "m:f", "--command", "true", message="give --train or --command, not both",
           id="train-and-command"),
    search("--study-name", PLANTED, "--command", "true --lr {{lr}}", setup="study",
           message="was created with command=None", id="command-join-other-study"),
    toml_case('command = "python train.py --bs {bs}"', "unknown placeholder {bs}",
              id="toml-command-placeholder"),
    toml_case("command = 5", "command must be a string, got 5", id="toml-command-int"),
    toml_case("shell = true", "--shell runs a --command", id="toml-shell-without-command"),
    toml_case('command = "true"\nshell = "yes"', "shell must be true or false",
              id="toml-shell-string"),
    # --- names ---
    search("--study-name", "", message="empty", id="name-empty"),
    search("--study-name", LONG_NAME, message="at most 512", id="name-10000-chars"),
    search("--study-name", "a\nb", message="control character", id="name-newline"),
    Case("best-name-empty", ("best", "--storage", "{db}", "--study-name", ""), "empty", "study"),
    Case("best-name-long", ("best", "--storage", "{db}", "--study-name", LONG_NAME),
         "at most 512", "study"),
    # --- TOML files ---
    toml_case("epochs = [\n", "is not valid TOML", id="toml-malformed"),
    toml_case("epochs = 2.5", "epochs must be a whole number, got 2.5", id="toml-epochs-float"),
    # Names are checked by their registries, when the study is planned: nothing is stored.
    toml_case('sampler = "annealing"', "unknown sampler 'annealing'", id="toml-sampler"),
    toml_case('pruner = "wilcoxon"', "unknown pruner", id="toml-pruner"),
    toml_case('dataset = "imagenet"', "unknown dataset", id="toml-dataset"),
    toml_case('model = "resnet"', "unknown model", id="toml-model"),
    toml_case('optimizer = "lamb"', "unknown optimizer", id="toml-optimizer"),
    toml_case('lr_scaling = "cubic"', "unknown lr scaling", id="toml-lr-scaling"),
    toml_case('device = "tpu"', "unknown device", id="toml-device"),
    toml_case("study_name = 5", "study_name must be a string", id="toml-name-int"),
    toml_case("n_trials = true", "n_trials must be a whole number, got true",
              id="toml-n-trials-bool"),
    toml_case('batch_size = ["a", "b"]', "batch_size", id="toml-batch-size-strings"),
    toml_case('lr = [1e-3, "x"]', "lr", id="toml-lr-string"),
    toml_case("batch_size = [16.5, 64]", "batch_size", id="toml-batch-size-float"),
    toml_case("objectives = 5", "objectives", id="toml-objectives-int"),
    toml_case('seed = "abc"', "seed must be a whole number", id="toml-seed-string"),
    toml_case("seed = 1.5", "seed must be a whole number", id="toml-seed-float"),
    toml_case("noise_scale = 1", "noise_scale must be true or false", id="toml-bool-int"),
    toml_case('momentum = "high"', "momentum must be a number", id="toml-momentum-string"),
    toml_case("n_trials = 10000000", "at most 1000000", id="toml-n-trials-huge"),
    toml_case(bytes(range(256)), "is not a UTF-8 text file", id="toml-binary"),
    Case("toml-directory", ("search", "--storage", "{db}", "--config", "{tmp}"),
         "is a directory"),
    # --- data: a user's loader, an image folder, how the data are held ---
    search("--dataset", "no_such_module_xyz:load", message="no module named "
           "'no_such_module_xyz' in the working directory", id="loader-missing-module"),
    loader_case("def other():\n    pass\n", "has no attribute 'load'", "loader-missing-name"),
    loader_case("raise ImportError('needs pandas')\n", "importing", "loader-import-fails"),
    loader_case("def load(data_dir):\n    raise FileNotFoundError('train.csv')\n",
                "raised FileNotFoundError: train.csv", "loader-raises"),
    loader_case("def load():\n    return 'train.csv'\n", "returned a str: return (train, val) "
                "or (train, val, test)", "loader-returns-str"),
    loader_case(TENSORS + "def load():\n    return [(x, y)] * 4\n", "returned a 4-tuple",
                "loader-returns-4"),
    loader_case(TENSORS + "def load():\n    return (x, y), 5\n",
                "returned a int as its val split", "loader-returns-int-split"),
    loader_case(TENSORS + "def load():\n    return (x.byte(), y), None\n", "give floats",
                "loader-uint8"),
    loader_case("class D(torch.utils.data.Dataset):\n    def __len__(self):\n        return 12\n"
                "    def __getitem__(self, i):\n        return torch.zeros(2), i % 2\n"
                "def load():\n    return D(), D()\n", "num_classes, classes or targets",
                "loader-streamed-classes-unknown", "--data-mode", "stream"),
    search("--dataset", "digits", "--image-size", "16", message="has its own size",
           id="image-size-builtin"),
    search("--data-mode", "disk", message="--data-mode must be auto, memory or stream",
           id="data-mode"),
    toml_case('data_mode = "disk"', "--data-mode must be auto, memory or stream",
              id="toml-data-mode"),
    search("--precision", "fp8", message="--precision must be fp32, bf16 or fp16",
           id="precision"),
    toml_case('precision = "half"', "--precision must be fp32, bf16 or fp16",
              id="toml-precision"),
    search("--precision", "fp16", "--device", "cpu", message="--precision fp16 needs a CUDA",
           id="fp16-on-cpu"),
    search("--precision", "fp16", "--noise-scale", message="use --precision bf16",
           id="fp16-noise-scale"),
    search("--gpus", "0,1", "--device", "cpu", message="place workers on CUDA devices",
           id="gpus-on-cpu"),
    search("--gpus", "0,x", message="--gpus takes distinct GPU indices", id="gpus-malformed"),
    search("--gpus", "1,1", message="--gpus takes distinct GPU indices", id="gpus-twice"),
    search("--trials-per-gpu", "0", message="must be positive", id="trials-per-gpu-zero"),
    search("--trials-per-gpu", "2", "--device", "cpu", message="place workers on CUDA",
           id="trials-per-gpu-on-cpu"),
    search("--loader-workers=-1", message="must be 0 or more", id="loader-workers-negative"),
    search("--dataset", "imagefolder:", message="needs a directory", id="imagefolder-empty"),
    search("--dataset", "imagefolder:nowhere", message="nowhere does not exist",
           id="imagefolder-missing"),
    search("--dataset", "imagefolder:imgs", files=images(*GOOD_FOLDER[:4]),
           message="imgs/val is missing", id="imagefolder-no-val"),
    search("--dataset", "imagefolder:imgs", files=images("train/0.png", "val/0.png"),
           message="holds no class folders", id="imagefolder-no-classes"),
    search("--dataset", "imagefolder:imgs", files=images(*GOOD_FOLDER, val__dog__big=(9, 9)),
           message="differ in size", id="imagefolder-mixed-sizes"),
    search("--dataset", "imagefolder:imgs",
           files={**images(*GOOD_FOLDER), "imgs/train/cat/2.png": b"not an image"},
           message="2.png is not an image PIL can read", id="imagefolder-corrupt"),
    search("--dataset", "imagefolder:imgs", files=images(*GOOD_FOLDER, "val/bird/0.png"),
           message="lacks: bird", id="imagefolder-extra-class"),
    # --- storage URLs and files ---
    Case("postgres-port-text",
         ("search", "--storage", "postgresql://u:pw@127.0.0.1:notaport/db"), "port"),
    Case("sqlite-directory", ("search", "--storage", "sqlite:///{tmp}"), "is a directory"),
    search(setup="dir", message="is a directory", id="sqlite-file-is-directory"),
    Case("sqlite-memory", ("search", "--storage", "sqlite:///:memory:"),
         "in-memory SQLite cannot be shared by workers"),
    Case("sqlite-memory-short", ("studies", "--storage", "sqlite://"),
         "in-memory SQLite cannot be shared by workers"),
    Case("mysql", ("search", "--storage", "mysql://localhost/x"), "unsupported storage URL"),
    Case("missing-dir", ("search", "--storage", "sqlite:////nonexistent-dir/x.db"),
         "does not exist"),
    Case("unreachable-postgres",
         ("search", "--storage", "postgresql://nobody:secret@127.0.0.1:1/x"),
         "cannot reach storage"),
    Case("unreachable-proxy", ("search", "--storage", "grpc://u:secret@127.0.0.1:1"),
         "cannot reach storage proxy grpc://u:***@127.0.0.1:1"),
    search(setup="random", message="is not an SQLite database", id="search-random-bytes"),
    search(setup="text", message="is not an SQLite database", id="search-text-file"),
    search("--study-name", PLANTED, setup="truncated", message="is damaged",
           id="search-truncated"),
    search("--study-name", PLANTED, setup="overwritten", message="is damaged",
           id="search-overwritten"),
    search("--study-name", PLANTED, setup="full", message="is full: free space",
           id="search-disk-full"),
    # --- journal files: absolute paths only; reading never creates one ---
    Case("journal-relative", ("search", "--storage", "journal://study.log"),
         "needs an absolute path"),
    Case("journal-dot-relative", ("studies", "--storage", "journal://./study.log"),
         "needs an absolute path"),
    Case("journal-missing-dir", ("search", "--storage", "journal:///nonexistent-dir/s.log"),
         "does not exist"),
    Case("journal-directory", ("search", "--storage", "journal://{tmp}"), "is a directory"),
    Case("journal-file-is-directory", ("search", "--storage", "journal://{tmp}/s.db"),
         "is a directory", "dir"),
    Case("journal-not-a-journal", ("search", "--storage", "journal://{tmp}/s.db"),
         "is not an Optuna journal file", "text"),
    Case("journal-random-bytes", ("studies", "--storage", "journal://{tmp}/s.db"),
         "is not an Optuna journal file", "random"),
    Case("journal-damaged", ("best", "--storage", "journal://{tmp}/s.db", "--study-name",
                             PLANTED), "is damaged", "damaged-journal"),
    Case("journal-studies-no-file", ("studies", "--storage", "journal://{tmp}/s.db"),
         "no study journal at"),
    Case("journal-export-no-file", ("export", "--storage", "journal://{tmp}/s.db",
                                    "--study-name", PLANTED), "no study journal at"),
    Case("journal-search-bad-flag", ("search", "--storage", "journal://{tmp}/s.db",
                                     "--sampler", "annealing"), "unknown sampler"),
    Case("journal-behind-proxy", ("storage-proxy", "--storage", "journal://{tmp}/s.db"),
         "is a journal file"),
    # --- launchers: refused before any job is submitted or study created ---
    Case("launch-no-launcher", ("launch",), "required"),
    Case("slurm-array-zero", ("launch", "slurm", "--storage", "{db}", "--array", "0"),
         "must be positive"),
    Case("slurm-gpus-negative", ("launch", "slurm", "--storage", "{db}", "--array", "2",
                                 "--gpus-per-task=-1"), "must be 0 or more"),
    Case("slurm-unknown-search-flag", ("launch", "slurm", "--storage", "{db}", "--array", "2",
                                       "--", "--frobnicate"), "unrecognized arguments"),
    Case("slurm-storage-after-dashes", ("launch", "slurm", "--array", "2", "--",
                                        "--storage", "{db}"), "give --storage before --"),
    Case("slurm-unknown-sampler", ("launch", "slurm", "--storage", "{db}", "--array", "2",
                                   "--dry-run", "--", "--sampler", "annealing"),
         "unknown sampler 'annealing'"),
    Case("slurm-contradicts-study", ("launch", "slurm", "--storage", "{db}", "--study-name",
                                     PLANTED, "--array", "2", "--", "--epochs", "9"),
         "was created with epochs=2", "study"),
    Case("slurm-not-a-database", ("launch", "slurm", "--storage", "{db}", "--array", "2",
                                  "--dry-run"), "is not an SQLite database", "random"),
    Case("slurm-journal-relative", ("launch", "slurm", "--storage", "journal://x.log",
                                    "--array", "2"), "needs an absolute path"),
    Case("ray-workers-zero", ("launch", "ray", "--storage", "{db}", "--workers", "0"),
         "must be positive"),
    Case("ray-gpus-negative", ("launch", "ray", "--storage", "{db}", "--workers", "1",
                               "--gpus-per-worker=-1"), "must be 0 or more"),
    Case("ray-unreachable", ("launch", "ray", "--storage", "{db}", "--workers", "1",
                             "--address", "127.0.0.1:1"), "cannot reach the Ray cluster"),
    Case("ray-bad-address", ("launch", "ray", "--storage", "{db}", "--workers", "1",
                             "--address", "nowhere"), "use HOST:PORT"),
    # --- reading commands never write: not even Optuna's schema into an empty file ---
    Case("studies-empty-file", ("studies", "--storage", "{db}"),
         "not a bsopt/Optuna database", "empty"),
    Case("studies-random", ("studies", "--storage", "{db}"), "is not an SQLite database",
         "random"),
    Case("studies-text", ("studies", "--storage", "{db}"), "is not an SQLite database",
         "text"),
    Case("studies-directory", ("studies", "--storage", "{db}"), "is a directory", "dir"),
    Case("export-truncated", ("export", "--storage", "{db}", "--study-name", PLANTED),
         "is damaged", "truncated"),
    Case("export-overwritten", ("export", "--storage", "{db}", "--study-name", PLANTED),
         "is damaged", "overwritten"),
    *[Case(f"{command}-empty-file", (command, "--storage", "{db}", "--study-name", PLANTED),
           "not a bsopt/Optuna database", "empty")
      for command in ("best", "export", "plots", "report", "analyze")],
    Case("dashboard-empty-file", ("dashboard", "--storage", "{db}", "--port", "{port}"),
         "not a bsopt/Optuna database", "empty"),
    Case("best-missing-study", ("best", "--storage", "{db}", "--study-name", "nope"),
         "no study named 'nope'", "study"),
    Case("studies-no-file", ("studies", "--storage", "{db}"), "no study database at"),
    # --- output files ---
    Case("export-no-such-dir", ("export", "--storage", "{db}", "--study-name", PLANTED,
                                "-o", "/nonexistent/dir/x.csv"), "does not exist", "study"),
    Case("export-to-directory", ("export", "--storage", "{db}", "--study-name", PLANTED,
                                 "-o", "{tmp}"), "is a directory", "study"),
    Case("report-to-directory", ("report", "--storage", "{db}", "--study-name", PLANTED,
                                 "-o", "{tmp}"), "is a directory", "study"),
    Case("profile-plot-bad-path", ("profile", "--plot", "/nonexistent/dir/p.html"),
         "does not exist"),
    # --- ports ---
    Case("proxy-port-70000", ("storage-proxy", "--storage", "{db}", "--port", "70000"),
         "between 1 and 65535", "study"),
    Case("proxy-port-0", ("storage-proxy", "--storage", "{db}", "--port", "0"),
         "between 1 and 65535", "study"),
    Case("dashboard-port-70000", ("dashboard", "--storage", "{db}", "--port", "70000"),
         "between 1 and 65535", "study"),
]


@pytest.fixture(scope="session")
def planted_db(tmp_path_factory: pytest.TempPathFactory, make_trial: Callable[..., Any]) -> Path:
    """A real SQLite database with a bsopt study (2 finished trials, 1 waiting), made once."""
    path = tmp_path_factory.mktemp("planted") / "planted.db"
    storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
    study = optuna.create_study(study_name=PLANTED, storage=storage)
    study.set_user_attr(CONFIG_ATTR, StudyConfig(study_name=PLANTED, n_trials=3, epochs=2,
                                                 batch_size_max=32).definition())
    study.add_trial(make_trial(16, 1e-3, [0.5, 0.4]))
    study.add_trial(make_trial(32, 1e-2, [0.6, 0.3]))
    study.enqueue_trial({})
    storage.engine.dispose()
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def damage(planted: bytes, how: str) -> bytes:
    if how == "truncated":
        return planted[: len(planted) // 2]
    middle = len(planted) // 4
    return planted[:middle] + b"\xa5" * (len(planted) // 2) + planted[3 * middle:]


def set_up(case: Case, tmp_path: Path, planted: Path, request: pytest.FixtureRequest) -> Path:
    """Put ``s.db`` (or the directory holding it) in the state the case starts from."""
    (tmp_path / "usercode.py").write_text(USER_CODE)
    path = tmp_path / "s.db"
    if case.setup == "full":
        disk = request.getfixturevalue("small_disk")
        path = disk.path / "s.db"
        shutil.copy(planted, path)
        disk.fill()
    elif case.setup == "study":
        shutil.copy(planted, path)
    elif case.setup in ("truncated", "overwritten"):
        path.write_bytes(damage(planted.read_bytes(), case.setup))
    elif case.setup == "empty":
        path.touch()
    elif case.setup == "random":
        path.write_bytes(os.urandom(8192))
    elif case.setup == "text":
        path.write_text("batch_size,lr\n16,0.001\n" * 100)
    elif case.setup == "dir":
        path.mkdir()
    elif case.setup == "damaged-journal":  # a journal line, then one that is not JSON
        path.write_text('{"op_code": 0, "worker_id": "w", "study_name": "planted", '
                        '"directions": [1]}\n{"op_code": 4, "worker_id\n{}\n')
    return path


def snapshot(path: Path) -> Any:
    """What a command could change: the file's bytes and, read afresh, its SQL content."""
    if not path.exists():
        return None
    if path.is_dir():
        return sorted(p.name for p in path.iterdir())
    try:  # read-only: the snapshot itself writes nothing
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
            dump: list[str] | str = list(connection.iterdump())
    except sqlite3.DatabaseError as exc:
        dump = str(exc)
    return path.read_bytes(), dump


def test_the_table_checks_what_it_says(planted_db: Path) -> None:
    # The damaged copies must be damaged for SQLite, else their cases test nothing.
    for how in ("truncated", "overwritten"):
        with pytest.raises(sqlite3.DatabaseError):
            with closing(sqlite3.connect(":memory:")) as connection:
                connection.deserialize(damage(planted_db.read_bytes(), how))
                list(connection.iterdump())


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_is_one_line_exit_2_and_changes_no_storage(
        case: Case, tmp_path: Path, planted_db: Path, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # a default ./bsopt.db would show up in the listing below
    monkeypatch.delenv("BSOPT_STORAGE", raising=False)
    monkeypatch.delenv("BSOPT_MAX_WORKERS", raising=False)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # no __pycache__ of a loader here
    path = set_up(case, tmp_path, planted_db, request)
    for name, content in case.files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            (tmp_path / name).write_bytes(content)
        else:
            (tmp_path / name).write_text(content)
    toml = tmp_path / "study.toml"
    if case.toml is not None:
        toml.write_bytes(case.toml if isinstance(case.toml, bytes) else case.toml.encode())
    argv = [a.format(db=f"sqlite:///{path}", tmp=tmp_path, toml=toml, port=free_port())
            for a in case.argv]
    listing = sorted(p.name for p in tmp_path.iterdir())
    before = snapshot(path)

    status = main(argv)

    err = capsys.readouterr().err
    assert (status, err.count("\n")) == (2, 1), err
    assert err.startswith("bsopt: error:") and case.message in err, err
    assert "Traceback" not in err and "secret" not in err and "pw@" not in err
    assert snapshot(path) == before
    wal_files = ("-wal", "-shm", "-journal")
    assert [n for n in sorted(p.name for p in tmp_path.iterdir())
            if not n.endswith(wal_files)] == [n for n in listing if not n.endswith(wal_files)]


@pytest.mark.postgres
def test_a_long_name_is_refused_before_postgresql_is_touched_and_512_characters_fit(
        postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from bsopt.search.study import join_or_create
    from bsopt.storage import make_storage

    assert main(["search", "--storage", postgres_url, "--study-name", LONG_NAME]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "at most 512" in err and "Traceback" not in err
    engine = sqlalchemy.create_engine(sqlalchemy_url(postgres_url))
    assert sqlalchemy.inspect(engine).get_table_names() == []  # not even Optuna's tables
    engine.dispose()
    name = "é" * 512  # the limit, in characters (two bytes each in UTF-8)
    study, _ = join_or_create(StudyConfig(study_name=name, n_trials=1), make_storage(postgres_url))
    assert optuna.get_all_study_names(make_storage(postgres_url, create=False)) == [name]
