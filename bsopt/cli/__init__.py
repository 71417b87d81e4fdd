"""The ``bsopt`` command: parse flags, build a config, make one library call, print.

Every subcommand is a parser function plus a command function whose body is a call into the
library (``bsopt.cli.search``, ``studies``, ``figures``, ``science``, ``serve``,
``launch``). Mistakes a user can make (``UsageError``) print one line and exit with 2;
trials that keep failing or a disk that fills up mid-study exit with 1; Ctrl-C with 130.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from bsopt.cli import figures, launch, science, serve, studies
from bsopt.cli import search as search_command
from bsopt.cli.options import Parser
from bsopt.errors import UsageError

EXIT_USAGE = 2


COMMANDS: list[Callable[[Any], None]] = [
    search_command.add_search, studies.add_studies, studies.add_best, studies.add_evaluate,
    studies.add_export,
    figures.add_plots, figures.add_report, figures.add_dashboard, science.add_analyze,
    science.add_profile, serve.add_storage_proxy, launch.add_launch,
]


def build_parser() -> Parser:
    """The ``bsopt`` argument parser with every subcommand."""
    from bsopt import __version__

    parser = Parser(prog="bsopt", description="Find the batch size and learning rate at "
                    "which a network trains best, and show why.")
    parser.add_argument("--version", action="version", version=f"bsopt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bsopt`` command; returns the exit status."""
    import warnings

    import optuna

    from bsopt.search import StorageFull, TooManyFailures

    # bsopt prints its own progress; Optuna's per-trial log lines and its notes that
    # heartbeats are experimental would only repeat or distract.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"bsopt: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TooManyFailures as exc:  # the objective keeps failing: say so, no traceback
        first = (str(exc).splitlines() or [""])[0]  # a script's stderr follows on more lines
        print(f"bsopt: error: {first}; each trial's fail_reason is in `bsopt export`",
              file=sys.stderr)
        return 1
    except StorageFull as exc:  # mid-study: trials ran, so not a usage error
        print(f"bsopt: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bsopt: aborted", file=sys.stderr)
        return 130


def entry_point() -> None:
    sys.exit(main())

