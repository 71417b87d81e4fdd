"""Create, join and resume a study; its definition and budget live in the study itself.

A new study enqueues its whole budget as WAITING trials: one per grid point for the grid
sampler, otherwise empty ones that the sampler fills in when a worker claims them. Claiming a
WAITING trial is atomic in every Optuna storage, so N workers on a budget of T finish exactly
T trials between them, and every grid point is evaluated once. A failed trial is re-enqueued
(``bsopt.worker``), so failures do not use the budget.

Creating a study is all or nothing. The creator writes a unique id and a progress counter
(``bsopt_creating``) first, then the budget, and the definition (``StudyConfig.definition()``
as the study user attribute ``bsopt_config``) last: a joiner waits for the definition and
never sees a half-made study. Ctrl-C or SIGTERM while the budget is enqueued deletes the
half-made study; a creator that died (kill -9) stops counting, and the next command to open
the study deletes what it left and creates it afresh.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
import uuid
from collections import Counter
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from bsopt.config import DEFINITION_FIELDS, StudyConfig, config_from_definition
from bsopt.errors import UsageError
from bsopt.interrupts import sigterm_as_keyboard_interrupt
from bsopt.records import CONFIG_ATTR, UID_ATTR
from bsopt.samplers import make_pruner, make_sampler
from bsopt.space import default_n_trials, grid_points

BUDGET_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
CREATING_ATTR = "bsopt_creating"  # study user attribute: the creator's progress counter
CREATION_STALL_SECONDS = 15.0  # a creator whose counter stands still this long has died
FOREIGN_WAIT_SECONDS = 5.0  # how long a study without any bsopt mark may be a creator's
PROGRESS_EVERY_SECONDS = 0.5  # how often the creator moves its counter
logger = logging.getLogger("bsopt.study")


def directions(config: StudyConfig) -> list[str]:
    """Minimize validation loss (and training seconds with ``--objectives loss,time``)."""
    return ["minimize"] * len(config.objectives)


def _stored_definition(storage: optuna.storages.BaseStorage | None,
                       name: str) -> dict[str, Any] | None:
    """The definition stored in study ``name``; None if there is no such study (any more).

    ``storage`` None is a database that holds no study yet. Waits while another process
    creates the study. A half-made study whose creator died is deleted, so that the caller
    creates it afresh.

    Raises:
        UsageError: the study exists but was not made by bsopt.
    """
    if storage is None:
        return None
    seen: Any = None
    since = time.monotonic()
    while True:
        try:
            study_id = storage.get_study_id_from_name(name)
        except KeyError:
            return None
        attrs = storage.get_study_user_attrs(study_id)
        if (definition := attrs.get(CONFIG_ATTR)) is not None:
            return definition
        counter = attrs.get(CREATING_ATTR)
        if counter != seen:  # the creator is alive: it moved its counter
            seen, since = counter, time.monotonic()
        waited = time.monotonic() - since
        trials = storage.get_all_trials(study_id, deepcopy=False)
        untouched = all(t.state == TrialState.WAITING for t in trials)
        if counter is None and (not untouched or waited > FOREIGN_WAIT_SECONDS):
            raise UsageError(
                f"study {name!r} exists but has no bsopt definition (made by another tool?): "
                "pick another --study-name"
            )
        if counter is not None and waited > CREATION_STALL_SECONDS and untouched:
            logger.warning("bsopt: study %r was left half-made by a creator that stopped; "
                           "creating it afresh", name)
            try:
                storage.delete_study(study_id)
            except KeyError:  # another process deleted it first
                pass
            return None
        time.sleep(0.2)


def differing_fields(stored: dict[str, Any], explicit: dict[str, Any]) -> list[str]:
    """The definition fields the user set explicitly to values unlike the stored ones."""
    requested = StudyConfig(**{**{k: v for k, v in stored.items() if k in DEFINITION_FIELDS},
                               "objectives": tuple(stored.get("objectives", ("loss",))),
                               **explicit}).definition()
    return [f for f in DEFINITION_FIELDS if f in explicit and requested[f] != stored.get(f)]


def _refuse_join(name: str, stored: dict[str, Any], explicit: dict[str, Any],
                 fields: list[str]) -> UsageError:
    requested = ", ".join(f"{f}={explicit[f]!r}" for f in fields)
    existing = ", ".join(f"{f}={stored.get(f)!r}" for f in fields)
    return UsageError(
        f"study {name!r} was created with {existing}; this run asks for {requested}: "
        "drop those flags to join it, or choose a new --study-name"
    )


def load_study(storage: optuna.storages.BaseStorage, name: str,
               run: dict[str, Any] | None = None) -> tuple[optuna.Study, StudyConfig]:
    """Load an existing bsopt study and its config (with ``run`` fields for this process).

    Raises:
        UsageError: no such study, or not a bsopt study.
    """
    definition = _stored_definition(storage, name)
    if definition is None:
        raise UsageError(f"no study named {name!r} in this storage: "
                         "`bsopt studies` lists the studies there")
    config = config_from_definition(definition, **(run or {}))
    study = optuna.load_study(study_name=name, storage=storage, sampler=make_sampler(config),
                              pruner=make_pruner(config))
    return study, config


def config_in_force(config: StudyConfig, storage: optuna.storages.BaseStorage | None,
                    explicit: dict[str, Any] | None = None) -> StudyConfig:
    """The config a run of ``config`` will use, checked, without writing anything.

    For an existing study: its stored definition plus this run's fields, after checking
    that the explicit fields agree with it. For a new one: ``config`` with its budget set.
    ``storage`` None is a database that holds no study yet (not opened, so not created).

    Raises:
        UsageError: the explicit fields contradict the stored definition, or the budget
            does not fit the grid.
    """
    explicit = explicit or {}
    stored = _stored_definition(storage, config.name)
    if stored is not None:
        fields = differing_fields(stored, {k: v for k, v in explicit.items()
                                           if k in DEFINITION_FIELDS and k != "study_name"})
        if fields:
            raise _refuse_join(config.name, stored, explicit, fields)
        return config_from_definition(stored, **_run_fields(config))
    n_trials = config.n_trials or default_n_trials(config)
    if config.sampler == "grid" and n_trials > len(grid_points(config)):
        raise UsageError(f"--n-trials {n_trials} exceeds the grid's {len(grid_points(config))} "
                         "points: lower it or add --grid-lr-points")
    return config.replace(n_trials=n_trials)


def _run_fields(config: StudyConfig) -> dict[str, Any]:
    return {"storage": config.storage, "timeout": config.timeout, "data_dir": config.data_dir,
            "device": config.device, "workers": config.workers,
            "artifact_dir": config.artifact_dir}


def open_study(config: StudyConfig, storage: optuna.storages.BaseStorage,
               explicit: dict[str, Any] | None = None) -> tuple[optuna.Study, StudyConfig]:
    """Create the study ``config.name``, or join it if it exists.

    A join uses the stored definition; fields the user set explicitly (``explicit``) must
    agree with it. Nothing is written to the storage before every check has passed.

    Returns:
        The study and the config in force (the stored definition plus this run's fields).

    Raises:
        UsageError: the explicit fields contradict the stored definition, or the budget
            does not fit the grid.
    """
    exists = _stored_definition(storage, config.name) is not None
    config = config_in_force(config, storage, explicit)
    if exists:
        return load_study(storage, config.name, _run_fields(config))
    with sigterm_as_keyboard_interrupt():
        try:
            study = optuna.create_study(study_name=config.name, storage=storage,
                                        directions=directions(config),
                                        sampler=make_sampler(config), pruner=make_pruner(config))
        except optuna.exceptions.DuplicatedStudyError:  # another worker created it just now
            return open_study(config, storage, explicit)
        try:
            study.set_user_attr(CREATING_ATTR, 0)  # first: this study is bsopt's, being made
            study.set_user_attr(UID_ATTR, uuid.uuid4().hex)
            _enqueue_budget(study, config, grid_points(config))
            # Written last: a joiner waits for it, so it never sees a half-made study.
            study.set_user_attr(CONFIG_ATTR, config.definition())
        except BaseException:
            # Ctrl-C, SIGTERM or a storage that gave up: take back the half-made study, so
            # that the same command creates it whole next time.
            with contextlib.suppress(Exception):
                storage.delete_study(study._study_id)
            raise
    return study, config


def _enqueue_budget(study: optuna.Study, config: StudyConfig,
                    points: list[dict[str, Any]]) -> None:
    """Enqueue the budget, moving the creation counter so joiners know the creator lives."""
    assert config.n_trials is not None
    if config.sampler == "grid":
        # A random order (seeded): a run stopped early still covers the whole grid roughly.
        chosen = random.Random(config.seed).sample(points, config.n_trials)
    else:
        chosen = [{} for _ in range(config.n_trials)]
    counter, moved = 0, -math.inf
    for params in chosen:
        if time.monotonic() - moved >= PROGRESS_EVERY_SECONDS:
            counter += 1
            study.set_user_attr(CREATING_ATTR, counter)
            moved = time.monotonic()
        study.enqueue_trial(params, skip_if_exists=False)


def budget_left(study: optuna.Study) -> int:
    """Trials still to run: the WAITING ones (failed ones are re-enqueued)."""
    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def state_counts(study: optuna.Study) -> dict[str, int]:
    """Trials by state name (COMPLETE, PRUNED, FAIL, RUNNING, WAITING)."""
    return dict(Counter(t.state.name for t in study.get_trials(deepcopy=False)))


def best_trials(study: optuna.Study, n: int = 5) -> list[FrozenTrial]:
    """The ``n`` complete trials with the lowest first objective (the Pareto front if several)."""
    if len(study.directions) > 1:
        return list(study.best_trials)[:n] if n else list(study.best_trials)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(complete, key=lambda t: t.values[0])[:n]


def study_config(study: optuna.Study) -> dict[str, Any] | None:
    """The definition stored in a study (what ``optuna.load_study`` users read too)."""
    return study.user_attrs.get(CONFIG_ATTR)
