"""The final weights of the best trials, kept in the study's artifact store.

A complete trial writes its final ``state_dict`` as the artifact ``weights-<study uid>-<trial
number>.pt`` and records its id on the trial (user attribute ``weights``). After each trial
the worker keeps the weights of the best ``keep_best`` trials and removes the others'
(:func:`follow_best`): O(1) per trial through a small list in the study (user attribute
``bsopt_best_weights``). Two workers finishing at once may leave an extra file behind, never
remove one of the best; :func:`sweep` at the end of a run removes what is left over.
Weights hold tensors only and are read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
from typing import Any

import optuna
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial, TrialState

from bsopt import records
from bsopt.errors import UsageError

BEST_ATTR = "bsopt_best_weights"  # study user attribute: [[value, trial number], ...], best first


def weights_id(study_uid: str, number: int) -> str:
    """The artifact id of trial ``number``'s final weights."""
    return f"weights-{study_uid}-{number}.pt"


def save_weights(store: Any, trial: optuna.Trial, study_uid: str,
                 state_dict: dict[str, Any]) -> None:
    """Write ``state_dict`` as the trial's final weights and record it on the trial."""
    import torch

    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    artifact_id = weights_id(study_uid, trial.number)
    store.write(artifact_id, buffer)
    trial.set_user_attr(records.WEIGHTS, artifact_id)


def _remove(store: Any, artifact_id: str) -> None:
    try:
        store.remove(artifact_id)
    except ArtifactNotFound:
        pass


def follow_best(study: optuna.Study, store: Any, trial: FrozenTrial, keep: int) -> None:
    """After ``trial`` finished: keep its weights if it is among the best ``keep``, else drop.

    Single-objective studies only (a Pareto front has no order): :func:`sweep` serves others.
    """
    artifact_id = trial.user_attrs.get(records.WEIGHTS)
    if artifact_id is None:
        return
    if trial.state != TrialState.COMPLETE or keep == 0:
        _remove(store, artifact_id)
        return
    if len(study.directions) > 1:  # a Pareto front has no order: sweep() keeps its first
        return
    sign = 1 if study.direction == optuna.study.StudyDirection.MINIMIZE else -1
    best = [tuple(entry) for entry in study.user_attrs.get(BEST_ATTR, [])]
    best = sorted([*best, (trial.values[0], trial.number)], key=lambda e: (sign * e[0], e[1]))
    kept, dropped = best[:keep], best[keep:]
    study.set_user_attr(BEST_ATTR, [list(e) for e in kept])
    uid = records.study_uid(study)
    for _, number in dropped:
        _remove(store, weights_id(uid, int(number)))


def sweep(study: optuna.Study, store: Any, keep: int) -> None:
    """Remove every trial's weights but those of the best ``keep`` (the Pareto front's first)."""
    best = {t.number for t in records.best_trials(study, keep)} if keep else set()
    for trial in study.get_trials(deepcopy=False):
        artifact_id = trial.user_attrs.get(records.WEIGHTS)
        if artifact_id is not None and trial.number not in best:
            _remove(store, artifact_id)


def load_weights(store: Any, trial: FrozenTrial) -> bytes:
    """The bytes of ``trial``'s final weights (a ``torch.save`` of its ``state_dict``).

    Raises:
        UsageError: the trial kept no weights, or they are gone.
    """
    artifact_id = trial.user_attrs.get(records.WEIGHTS)
    if artifact_id is None:
        raise UsageError(f"trial {trial.number} kept no weights: the study trains with "
                         "--train and the function never called run.save_weights, or it ran "
                         "with --keep-best 0, or before bsopt kept weights")
    try:
        with store.open_reader(artifact_id) as reader:
            return reader.read()
    except ArtifactNotFound:
        raise UsageError(f"the weights of trial {trial.number} ({artifact_id}) are not in this "
                         "artifact store: give the --artifact-dir the search used") from None
