"""One self-contained HTML report of a study: definition, trial counts, best trials, figures.

The file embeds Plotly's JavaScript once (with the first figure), so it opens offline and
can be mailed or archived as it is. Escaping uses the standard library's ``html`` only.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import optuna
import plotly.graph_objects as go
from optuna.trial import TrialState

from bsopt.analysis import analyze_records, answer_lines
from bsopt.config import OBJECTIVES
from bsopt.errors import UsageError
from bsopt.records import (
    CONFIG_ATTR,
    TEST_ACCURACY,
    TEST_LOSS,
    best_trials,
    state_counts,
    study_objectives,
    study_records,
    test_scores,
    trial_summary,
)
from bsopt.visualization.figures import figures_from_records

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.figure { margin: 1em 0 2em; }
"""


def _cell(value: Any) -> str:
    """A table cell: numbers right-aligned and shortened, everything else escaped text."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "<td>-</td>"
    if isinstance(value, float):
        return f'<td class="num">{value:.4g}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value}</td>'
    if isinstance(value, list | tuple):
        text = ", ".join(map(str, value))
    elif isinstance(value, dict):
        text = json.dumps(value)
    else:
        text = str(value)
    return f"<td>{html.escape(text)}</td>"


def _html_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>\n" for row in rows)
    return f"<table>\n<tr>{head}</tr>\n{body}</table>\n"


def _definition_section(study: optuna.Study) -> str:
    definition = study.user_attrs.get(CONFIG_ATTR)
    if isinstance(definition, dict) and definition:
        body = _html_table(("field", "value"), definition.items())
    else:
        body = "<p>This study holds no bsopt definition (it was not created by bsopt).</p>\n"
    return '<h2 id="definition">Study definition</h2>\n' + body


def _trials_section(study: optuna.Study) -> str:
    counts = state_counts(study)
    by_state = [(s.name, counts[s.name]) for s in TrialState if s.name in counts]
    return '<h2 id="trials">Trials</h2>\n' + _html_table(
        ("state", "trials"), [*by_state, ("total", sum(counts.values()))]
    )


def _best_section(study: optuna.Study, n_best: int) -> str:
    ranking = (
        "the Pareto front of validation loss and training time"
        if len(study.directions) > 1
        else "lowest final validation loss"
    )
    head = f'<h2 id="best">Best trials ({ranking}, top {n_best})</h2>\n'
    objectives = study_objectives(study)
    scores = test_scores(study)
    best = [trial_summary(t, objectives, scores) for t in best_trials(study, n_best)]
    if not best:
        return head + "<p>No complete trial yet.</p>\n"
    tested = any(s[TEST_LOSS] is not None for s in best)
    header = ("trial", "batch size", "lr", *(OBJECTIVES[o] for o in objectives),
              "val accuracy", "epochs", "seconds",
              *(("test loss", "test accuracy") if tested else ()))
    rows = [(s["number"], s["batch_size"], s["lr"], *s["values"].values(), s["val_accuracy"],
             s["epochs"], s["train_seconds"],
             *((s[TEST_LOSS], s[TEST_ACCURACY]) if tested else ())) for s in best]
    return head + _html_table(header, rows)


def _answers_section(study: optuna.Study) -> str:
    """``bsopt analyze``'s answers, first: what a reader of the report came for."""
    lines = answer_lines(analyze_records(study_records(study), study_name=study.study_name))
    items = "".join(f"<li>{html.escape(line)}</li>\n" for line in lines)
    return f'<h2 id="answers">Answers (bsopt analyze)</h2>\n<ul>\n{items}</ul>\n'


def _figures_section(figures: dict[str, go.Figure]) -> str:
    parts = ['<h2 id="figures">Figures</h2>\n']
    for i, (key, figure) in enumerate(figures.items()):
        # Plotly's JavaScript goes in once, with the first figure; the others reuse it.
        div = figure.to_html(full_html=False, include_plotlyjs=i == 0, div_id=f"figure-{key}")
        parts.append(f'<div class="figure">\n{div}\n</div>\n')
    return "".join(parts)


def report_html(
    study: optuna.Study, figures: dict[str, go.Figure] | None = None, *, n_best: int = 10
) -> str:
    """The report as one HTML document (see :func:`write_report`)."""
    figures = figures_from_records(study_records(study)) if figures is None else figures
    name = html.escape(study.study_name)
    return "".join([
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>bsopt report: {name}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<h1>bsopt report: {name}</h1>\n",
        _answers_section(study),
        _definition_section(study),
        _trials_section(study),
        _best_section(study, n_best),
        _figures_section(figures),
        "</body>\n</html>\n",
    ])


def write_report(study: optuna.Study, path: str | Path, *, n_best: int = 10) -> Path:
    """Write one self-contained HTML report of ``study`` that opens offline.

    Args:
        study: The study to report on.
        path: The HTML file to write (its directory must exist).
        n_best: How many of the best trials to list.

    Returns:
        The path written.

    Raises:
        UsageError: the file cannot be written (no such directory, a directory, no permission).
    """
    path = Path(path)
    page = report_html(study, n_best=n_best)
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write the report to {path}: {exc.strerror or exc}") from None
    return path
