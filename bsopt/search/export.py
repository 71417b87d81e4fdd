"""Every trial of a study, with params, value, state and curves, as CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import optuna

from bsopt import records
from bsopt.records import json_ready, study_config

FORMATS = ("csv", "json")


def trial_dicts(study: optuna.Study) -> list[dict[str, Any]]:
    """One dict per trial: number, state, params, effective lr, values, user attributes."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        rows.append(json_ready({
            "number": trial.number,
            "state": trial.state.name,
            "batch_size": trial.params.get("batch_size"),
            "lr": records.effective_lr(trial),
            "params": dict(trial.params),
            "values": list(trial.values) if trial.values else None,
            "datetime_start": trial.datetime_start.isoformat() if trial.datetime_start else None,
            "datetime_complete": (trial.datetime_complete.isoformat()
                                  if trial.datetime_complete else None),
            "intermediate_values": {str(k): v for k, v in trial.intermediate_values.items()},
            "user_attrs": dict(trial.user_attrs),
        }))
    return rows


def export_study(study: optuna.Study, fmt: str) -> str:
    """The study's trials as ``csv`` (curves as JSON cells) or ``json`` (with the definition)."""
    rows = trial_dicts(study)
    scores = records.test_scores(study)
    for row in rows:
        row.update({records.TEST_LOSS: None, records.TEST_ACCURACY: None,
                    **{k: v for k, v in scores.get(row["number"], {}).items()
                       if k in (records.TEST_LOSS, records.TEST_ACCURACY)}})
    if fmt == "json":
        return json.dumps({"study_name": study.study_name, "definition": study_config(study),
                           "trials": rows}, indent=2)
    buffer = io.StringIO()
    scalar = ["number", "state", "batch_size", "lr", "value", "datetime_start",
              "datetime_complete", records.TEST_LOSS, records.TEST_ACCURACY]
    curves = [c for c in records.CURVES if any(c in r["user_attrs"] for r in rows)]
    writer = csv.DictWriter(buffer, fieldnames=scalar + ["params", *curves, "pruned_reason",
                                                         "fail_reason"])
    writer.writeheader()
    for row in rows:
        attrs = row["user_attrs"]
        writer.writerow({
            **{k: row[k] for k in scalar if k != "value"},
            "value": row["values"][0] if row["values"] else "",
            "params": json.dumps(row["params"]),
            **{c: json.dumps(attrs[c]) if c in attrs else "" for c in curves},
            "pruned_reason": attrs.get(records.PRUNED_REASON, ""),
            "fail_reason": attrs.get(records.FAIL_REASON, ""),
        })
    return buffer.getvalue()
