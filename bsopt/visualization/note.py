"""The answers of ``bsopt analyze`` as the study's note in optuna-dashboard.

optuna-dashboard shows a Markdown note on each study's page (``optuna_dashboard.save_note``,
which replaces the note as a whole). bsopt writes its answers after a marker line and keeps
whatever the user wrote before it, so analyzing again replaces bsopt's part, never piles it
up, and never deletes the user's own text.
"""

from __future__ import annotations

import optuna
from optuna_dashboard import get_note, save_note

from bsopt.analysis import StudyAnalysis, answer_note

MARKER = "<!-- bsopt analyze: everything below is rewritten by each `bsopt analyze` -->"


def write_answers_note(study: optuna.Study, analysis: StudyAnalysis) -> str:
    """Write the analysis's answers as the study's dashboard note; returns the note written."""
    own = get_note(study).split(MARKER, 1)[0].rstrip()
    body = (own + "\n\n" if own else "") + MARKER + "\n\n" + answer_note(analysis)
    save_note(study, body)
    return body
