"""What the subcommands share: bsopt's argument parser, common options, value types.

Defaults shown in help come from where they are defined (:func:`default`, ``%(default)s``),
never copied into the help text.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from bsopt.config import StudyConfig, check_study_name
from bsopt.config.checks import MAX_STUDY_NAME_LENGTH
from bsopt.errors import UsageError
from bsopt.network import check_port


def default(field_name: str) -> Any:
    """The default of a :class:`~bsopt.config.StudyConfig` field, for help texts."""
    (found,) = [f for f in dataclasses.fields(StudyConfig) if f.name == field_name]
    return found.default


class Parser(argparse.ArgumentParser):
    """argparse with bsopt's error line (one line, exit status 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def add_storage(parser: argparse.ArgumentParser) -> None:
    """``--storage URL``."""
    parser.add_argument("--storage", metavar="URL",
                        help="sqlite:///FILE.db, postgresql://USER:PW@HOST/DB, "
                             "grpc://HOST:PORT or journal:///ABSOLUTE/PATH.log (default: "
                             "$BSOPT_STORAGE, else sqlite:///bsopt.db)")


def add_study_name(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``--study-name NAME``, checked as a new study's name is."""
    # Checked here too, for the reading commands: the same rule as a new study's name.
    parser.add_argument("--study-name", required=required, metavar="NAME",
                        type=check_study_name,
                        help=f"at most {MAX_STUDY_NAME_LENGTH} characters, on one line")


def integer(text: str) -> int:
    """An argparse type: a whole number."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def positive_int(text: str) -> int:
    """An argparse type: a whole number above zero."""
    value = integer(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number, zero or more."""
    value = integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def json_table(text: str) -> dict[str, Any]:
    """An argparse type: a JSON object such as ``{"width": 64}``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r} ({exc.msg})") \
            from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"width\": 64}}', "
                                         f"got {text!r}")
    return value


def port(text: str) -> int:
    """An argparse type: a TCP port, 1..65535."""
    return check_port(integer(text))


def output_file(text: str) -> str:
    """A file to write: refused before any work if it cannot be, for lack of a directory."""
    path = Path(text)
    if path.is_dir():
        raise UsageError(f"{text} is a directory: give a file name in it")
    if not path.absolute().parent.is_dir():
        raise UsageError(f"directory {path.parent} does not exist: create it first")
    return text


def write(path: str, text: str) -> None:
    """Write ``text`` to ``path``; a failure is the one-line ``UsageError``."""
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:  # no permission, a full disk, ...
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
