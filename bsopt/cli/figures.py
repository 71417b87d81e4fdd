"""``bsopt plots``, ``report``, ``dashboard``: see the answer."""

from __future__ import annotations

import argparse
from typing import Any

from bsopt.cli.options import add_storage, add_study_name, output_file, port


def add_plots(sub: Any) -> None:
    p = sub.add_parser("plots", help="attach bsopt's figures to a study for optuna-dashboard")
    add_study_name(p)
    add_storage(p)
    p.set_defaults(func=cmd_plots)


def cmd_plots(args: argparse.Namespace) -> int:
    from bsopt.storage import open_existing
    from bsopt.visualization.dashboard import attach_figures

    count = attach_figures(open_existing(args.storage, args.study_name))
    print(f"attached {count} figures to study {args.study_name!r}; "
          "open them with `bsopt dashboard` or `optuna-dashboard URL`")
    return 0


def add_report(sub: Any) -> None:
    p = sub.add_parser("report", help="write one self-contained HTML report of a study")
    add_study_name(p)
    add_storage(p)
    p.add_argument("-o", "--output", metavar="FILE.html", default="report.html",
                   type=output_file)
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from bsopt.storage import open_existing
    from bsopt.visualization.report import write_report

    path = write_report(open_existing(args.storage, args.study_name), args.output)
    print(f"wrote {path}")
    return 0


def add_dashboard(sub: Any) -> None:
    p = sub.add_parser("dashboard", help="refresh the figures and start optuna-dashboard")
    add_storage(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    p.add_argument("--port", type=port, default=8080, help="port (8080)")
    p.add_argument("--no-refresh", action="store_true", help="serve the figures as stored")
    p.set_defaults(func=cmd_dashboard)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from bsopt.visualization.dashboard import run_dashboard

    run_dashboard(args.storage, args.host, args.port, refresh=not args.no_refresh)
    return 0
