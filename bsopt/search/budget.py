"""A study's budget, enqueued a chunk at a time: exact, and cheap to claim at any size.

The budget of ``n_trials`` is a sequence of *slots* 0..n-1: for the grid sampler each slot
is one grid point (in a seeded random order), otherwise an empty trial that the sampler
fills in. A new study enqueues the first chunk (``$BSOPT_ENQUEUE_CHUNK``, default 128) as
WAITING trials; every trial carries its slot (system attribute ``bsopt:slot``), and the
last trial of a chunk carries the *refill token* ``bsopt:refill = [start, end]``: the slots
of the next chunk. Whoever claims the token enqueues that chunk before running the trial,
so claims never read more than a chunk's worth of WAITING trials.

Why the budget stays exact: a claim (WAITING -> RUNNING) is atomic in every storage, so
each token is claimed by exactly one worker, and the token is created last, so its chunk
is only enqueued once the chunk before it is whole. A token holder that dies goes stale;
its retry (which copies the system attributes, the token included) is claimed by another
worker, which finds how far the dead one got (the slots present) and enqueues the rest.
The holder beats its trial's heartbeat while it refills, and every 16 slots checks that
its trial is still RUNNING (not failed as stale), stopping if not. The one case left is a
holder cut off for longer than the grace period that comes back in the middle of those 16
slots: both it and its retry's claimer may enqueue a few (Optuna's retries share that
window).

The study user attribute ``bsopt_enqueued`` counts the slots enqueued so far, written by
the token holder after its chunk; a study made before chunks has none (everything was
enqueued at once).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from bsopt.config import StudyConfig, config_from_definition
from bsopt.internals import FAILED_TRIAL, storage_of, study_id, trial_id
from bsopt.records import CONFIG_ATTR, SLOT_ATTR
from bsopt.search.space import grid_points
from bsopt.storage.claims import trials_in_states

ENQUEUED_ATTR = "bsopt_enqueued"  # study user attribute: budget slots enqueued so far
REFILL_ATTR = "bsopt:refill"  # trial system attribute: [start, end] of the chunk to enqueue
CHUNK_ENV = "BSOPT_ENQUEUE_CHUNK"
CHUNK_TRIALS = 128
HELD_CHECK_EVERY = 16  # slots between a refilling token holder's checks that it holds it


def chunk_size() -> int:
    """Budget trials enqueued at a time: ``$BSOPT_ENQUEUE_CHUNK`` or 128 (at least 1)."""
    try:
        return max(1, int(os.environ.get(CHUNK_ENV, CHUNK_TRIALS)))
    except ValueError:
        return CHUNK_TRIALS


def budget_params(config: StudyConfig, points: list[dict[str, Any]] | None = None
                  ) -> Callable[[int], dict[str, Any]]:
    """The fixed parameters of each slot: a grid point, or none (the sampler chooses).

    The grid's order is seeded and uses only ``Random.random`` (whose sequence Python
    keeps across versions), so every worker on every machine agrees on it.
    """
    if config.sampler != "grid":
        return lambda _slot: {}
    points = grid_points(config) if points is None else points
    rng = random.Random(config.seed)
    keys = [rng.random() for _ in points]
    order = sorted(range(len(points)), key=keys.__getitem__)
    return lambda slot: points[order[slot]]


def enqueue_slots(study: optuna.Study, config: StudyConfig, start: int, end: int, *,
                  points: list[dict[str, Any]] | None = None,
                  each: Callable[[], None] | None = None,
                  still_held: Callable[[], bool] | None = None) -> None:
    """Enqueue the budget slots ``start``..``end - 1``; the last carries the next token.

    ``still_held`` is asked every ``HELD_CHECK_EVERY`` slots: a token holder whose trial
    was failed as stale meanwhile stops there, and leaves the rest to its retry's claimer.
    """
    assert config.n_trials is not None
    params = budget_params(config, points)
    for slot in range(start, end):
        if (still_held is not None and (slot - start) % HELD_CHECK_EVERY == 0
                and slot > start and not still_held()):
            return
        system_attrs: dict[str, Any] = {SLOT_ATTR: slot}
        if fixed := params(slot):  # none for the other samplers: one write less per trial
            system_attrs["fixed_params"] = fixed
        if slot == end - 1 and end < config.n_trials:
            system_attrs[REFILL_ATTR] = [end, min(end + chunk_size(), config.n_trials)]
        study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING,
                                                  system_attrs=system_attrs))
        if each is not None:
            each()
    # Counted also when nothing was left to add: a holder killed after its last slot and
    # before this line leaves the count to its retry.
    _count_enqueued(study, end)


def _count_enqueued(study: optuna.Study, end: int) -> None:
    storage = storage_of(study)
    # The count only grows. Two holders of successive chunks may write close together; the
    # later chunk's holder reads back and writes again if an older count landed after its own.
    for _ in range(3):
        if storage.get_study_user_attrs(study_id(study)).get(ENQUEUED_ATTR, 0) >= end:
            return
        storage.set_study_user_attr(study_id(study), ENQUEUED_ATTR, end)


def enqueue_first_chunk(study: optuna.Study, config: StudyConfig,
                        each: Callable[[], None] | None = None) -> None:
    """What a new study enqueues: the first chunk of its budget."""
    assert config.n_trials is not None
    enqueue_slots(study, config, 0, min(chunk_size(), config.n_trials), each=each)


def refill(study: optuna.Study, trial: FrozenTrial) -> None:
    """Enqueue the next chunk if the trial just claimed carries the refill token.

    The caller beats the trial's heartbeat meanwhile: a refill can take longer than the
    grace period on a loaded database.
    """
    trial_system_attrs = trial.system_attrs
    span = trial_system_attrs.get(REFILL_ATTR)
    if span is None:
        return
    start, end = span
    attrs = storage_of(study).get_study_user_attrs(study_id(study))
    definition = attrs.get(CONFIG_ATTR)
    if attrs.get(ENQUEUED_ATTR, 0) >= end or definition is None:
        return  # a retry of a token whose chunk is whole
    if FAILED_TRIAL in trial_system_attrs:
        # The token's first holder died, perhaps half-way: go on after the slots it made.
        # Read once per dead token holder, not per claim.
        present = [t.system_attrs.get(SLOT_ATTR, -1) for t in study.get_trials(deepcopy=False)]
        start = max([start, *(s + 1 for s in present if start <= s < end)])
    storage = storage_of(study)

    def still_held() -> bool:
        return storage.get_trial(trial_id(trial)).state == TrialState.RUNNING

    enqueue_slots(study, config_from_definition(definition), start, end, still_held=still_held)


def is_refilling(trial: FrozenTrial) -> bool:
    """Whether a RUNNING trial's worker may be enqueueing the next chunk right now."""
    return REFILL_ATTR in trial.system_attrs


def budget_left(study: optuna.Study) -> int:
    """Trials still to run: the WAITING ones and the slots not yet enqueued.

    Failed trials are re-enqueued, so they are among the WAITING ones. Reads the study's
    attributes and its WAITING trials (a chunk or so), never the whole study.
    """
    storage = storage_of(study)
    attrs = storage.get_study_user_attrs(study_id(study))
    n_trials = (attrs.get(CONFIG_ATTR) or {}).get("n_trials")
    waiting = len(trials_in_states(storage, study_id(study), (TrialState.WAITING,)))
    if n_trials is None:
        return waiting
    return waiting + max(0, int(n_trials) - int(attrs.get(ENQUEUED_ATTR, n_trials)))
