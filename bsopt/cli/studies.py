"""``bsopt studies``, ``best``, ``export``: what the studies in a storage hold."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bsopt.cli.options import add_storage, add_study_name, output_file, write


def add_studies(sub: Any) -> None:
    p = sub.add_parser("studies", help="list the studies in a storage with their counts")
    add_storage(p)
    p.set_defaults(func=cmd_studies)


def cmd_studies(args: argparse.Namespace) -> int:
    from bsopt.search.summaries import list_studies
    from bsopt.text import table

    rows = list_studies(args.storage)
    if not rows:
        print("no studies")
        return 0
    print(table(["study", "sampler", "dataset", "model", "budget", "complete", "pruned",
                 "fail", "running", "waiting", "best"],
                [[r.name, r.sampler, r.dataset, r.model, r.budget, *r.counts_row(), r.best_value]
                 for r in rows]))
    return 0


def add_best(sub: Any) -> None:
    p = sub.add_parser("best", help="print the best trial of a study")
    add_study_name(p)
    add_storage(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--save-model", metavar="FILE.pt", type=output_file,
                   help="write the best trial's final weights (a state_dict) to FILE.pt")
    p.add_argument("--artifact-dir", metavar="DIR",
                   help="where the search kept checkpoints and weights, if it was given one")
    p.set_defaults(func=cmd_best)


def cmd_best(args: argparse.Namespace) -> int:
    from bsopt.cli.console import best_table
    from bsopt.search.summaries import best_trial_summary, save_best_model

    if args.save_model:
        trial = save_best_model(args.storage, args.study_name, args.save_model,
                                artifact_dir=args.artifact_dir)
        print(f"wrote the weights of trial {trial.number} to {args.save_model}",
              file=sys.stderr)
    summary = best_trial_summary(args.storage, args.study_name)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print(best_table(summary.trials, summary.objectives))
    return 0


def add_export(sub: Any) -> None:
    p = sub.add_parser("export", help="write every trial with its params, value and curves")
    add_study_name(p)
    add_storage(p)
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.add_argument("-o", "--output", metavar="FILE", type=output_file,
                   help="default: standard output")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from bsopt.search.export import export_study
    from bsopt.storage import open_existing

    text = export_study(open_existing(args.storage, args.study_name), args.format)
    if args.output:
        write(args.output, text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
