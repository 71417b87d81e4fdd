"""Create, join and resume a study; its definition and budget live in the study itself.

A new study enqueues the first chunk of its budget as WAITING trials: one per grid point for
the grid sampler, otherwise empty ones that the sampler fills in when a worker claims them;
the workers enqueue the next chunks as they go (``bsopt.search.budget``). Claiming a WAITING
trial is atomic in every Optuna storage, so N workers on a budget of T finish exactly T trials
between them, and every grid point is evaluated once. A failed trial is re-enqueued
(``bsopt.search.worker``), so failures do not use the budget.

Creating a study is all or nothing. The creator writes a unique id and a progress counter
(``bsopt_creating``) first, then the budget, and the definition (``StudyConfig.definition()``
as the study user attribute ``bsopt_config``) last: a joiner waits for the definition and
never sees a half-made study. Ctrl-C or SIGTERM while the first chunk is enqueued deletes the
half-made study; a creator that died (kill -9) stops counting, and the next command to open
the study deletes what it left and creates it afresh.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
import uuid
import warnings
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from bsopt.config import DEFINITION_FIELDS, OBJECTIVES, StudyConfig, config_from_definition
from bsopt.errors import UsageError
from bsopt.internals import study_id
from bsopt.interrupts import sigterm_as_keyboard_interrupt
from bsopt.records import CONFIG_ATTR, UID_ATTR
from bsopt.search.budget import chunk_size, enqueue_slots
from bsopt.search.samplers import make_pruner, make_sampler
from bsopt.search.space import default_n_trials, grid_points, search_space

BUDGET_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
CREATING_ATTR = "bsopt_creating"  # study user attribute: the creator's progress counter
CREATION_STALL_SECONDS = 15.0  # a creator whose counter stands still this long has died
FOREIGN_WAIT_SECONDS = 5.0  # how long a study without any bsopt mark may be a creator's
PROGRESS_EVERY_SECONDS = 0.5  # how often the creator moves its counter
logger = logging.getLogger("bsopt.search.study")


def metric_names(config: StudyConfig) -> list[str]:
    """The objectives' names (``val_loss``, ``seconds``), in the order of :func:`directions`."""
    return [OBJECTIVES[o] for o in config.objectives]


def directions(config: StudyConfig) -> list[str]:
    """Minimize validation loss (and training seconds with ``--objectives loss,time``)."""
    return ["minimize"] * len(config.objectives)


def _stored_definition(storage: optuna.storages.BaseStorage | None, name: str, *,
                       repair: bool = False) -> dict[str, Any] | None:
    """The definition stored in study ``name``; None if there is no such study (any more).

    ``storage`` None is a database that holds no study yet. Waits while another process
    creates the study. A half-made study whose creator died counts as no study; with
    ``repair`` it is deleted, so that the caller creates it afresh (without, nothing is
    written: the checks before a search run write nothing).

    Raises:
        UsageError: the study exists but was not made by bsopt.
    """
    if storage is None:
        return None
    seen: Any = None
    since = time.monotonic()
    while True:
        try:
            sid = storage.get_study_id_from_name(name)
        except KeyError:
            return None
        attrs = storage.get_study_user_attrs(sid)
        if (definition := attrs.get(CONFIG_ATTR)) is not None:
            return definition
        counter = attrs.get(CREATING_ATTR)
        if counter != seen:  # the creator is alive: it moved its counter
            seen, since = counter, time.monotonic()
        waited = time.monotonic() - since
        trials = storage.get_all_trials(sid, deepcopy=False)
        untouched = all(t.state == TrialState.WAITING for t in trials)
        if counter is None and (not untouched or waited > FOREIGN_WAIT_SECONDS):
            raise UsageError(
                f"study {name!r} exists but has no bsopt definition (made by another tool?): "
                "pick another --study-name"
            )
        if counter is not None and waited > CREATION_STALL_SECONDS and untouched:
            if repair:
                logger.warning("bsopt: study %r was left half-made by a creator that "
                               "stopped; creating it afresh", name)
                with contextlib.suppress(KeyError):  # another process deleted it first
                    storage.delete_study(sid)
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


def load_study(storage: optuna.storages.BaseStorage, config: StudyConfig) -> optuna.Study:
    """Load the existing study of ``config`` (the config in force) with its sampler and pruner."""
    return optuna.load_study(study_name=config.name, storage=storage,
                             sampler=make_sampler(config), pruner=make_pruner(config))


@dataclass(frozen=True)
class StudyPlan:
    """What a run of a study will do, decided from one read of its stored definition."""

    config: StudyConfig  # in force: the stored definition and this run's fields, or the new one
    exists: bool  # the study existed (with its definition) when it was read
    explicit: dict[str, Any]  # the fields the user set, which a join must agree with


def plan_study(config: StudyConfig, storage: optuna.storages.BaseStorage | None,
               explicit: dict[str, Any] | None = None) -> StudyPlan:
    """Read the stored definition once and decide the config in force; writes nothing.

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
        config = _joined(config, stored, explicit)
    for check in (make_sampler, make_pruner, search_space):
        check(config)  # the names their registries own, checked before anything is stored
    if stored is not None:
        return StudyPlan(config, True, explicit)
    n_trials = config.n_trials or default_n_trials(config)
    if config.sampler == "grid" and n_trials > len(grid_points(config)):
        raise UsageError(f"--n-trials {n_trials} exceeds the grid's {len(grid_points(config))} "
                         "points: lower it or add --grid-lr-points")
    return StudyPlan(config.replace(n_trials=n_trials), False, explicit)


def _joined(config: StudyConfig, stored: dict[str, Any],
            explicit: dict[str, Any]) -> StudyConfig:
    """The stored definition with this run's fields, refusing explicit fields that differ."""
    fields = differing_fields(stored, {k: v for k, v in explicit.items()
                                       if k in DEFINITION_FIELDS and k != "study_name"})
    if fields:
        raise _refuse_join(config.name, stored, explicit, fields)
    return config_from_definition(stored, **run_fields(config))


def run_fields(config: StudyConfig) -> dict[str, Any]:
    """This invocation's fields of ``config`` (storage, device, ...), which are never stored."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if not f.compare}


def open_study(plan: StudyPlan, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """Create the planned study, or load it if it exists.

    A study another process created after the plan was made is joined as if it had
    existed (its definition must agree with the explicit fields).

    Raises:
        UsageError: the study another process created contradicts the explicit fields.
    """
    if plan.exists:
        return load_study(storage, plan.config)
    config = plan.config
    with sigterm_as_keyboard_interrupt():
        for _ in range(2):  # once more after repairing a half-made study
            try:
                study = optuna.create_study(study_name=config.name, storage=storage,
                                            directions=directions(config),
                                            sampler=make_sampler(config),
                                            pruner=make_pruner(config))
                break
            except optuna.exceptions.DuplicatedStudyError:  # created since the plan
                stored = _stored_definition(storage, config.name, repair=True)
                if stored is not None:
                    return load_study(storage, _joined(config, stored, plan.explicit))
        else:
            raise UsageError(f"study {config.name!r} keeps being created and deleted by "
                             "other processes: run the command again")
        try:
            study.set_user_attr(CREATING_ATTR, 0)  # first: this study is bsopt's, being made
            study.set_user_attr(UID_ATTR, uuid.uuid4().hex)
            with warnings.catch_warnings():  # experimental since Optuna 3.2, still there
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(metric_names(config))  # labels in optuna-dashboard
            _enqueue_budget(study, config, grid_points(config))
            # Written last: a joiner waits for it, so it never sees a half-made study.
            study.set_user_attr(CONFIG_ATTR, config.definition())
        except BaseException:
            # Ctrl-C, SIGTERM or a storage that gave up: take back the half-made study, so
            # that the same command creates it whole next time.
            with contextlib.suppress(Exception):
                storage.delete_study(study_id(study))
            raise
    return study


def join_or_create(config: StudyConfig, storage: optuna.storages.BaseStorage,
                   explicit: dict[str, Any] | None = None) -> tuple[optuna.Study, StudyConfig]:
    """Plan and open the study of ``config`` in one call: the study and the config in force.

    Example::

        study, in_force = join_or_create(StudyConfig(study_name="x"), make_storage(url))
    """
    plan = plan_study(config, storage, explicit)
    return open_study(plan, storage), plan.config


def _enqueue_budget(study: optuna.Study, config: StudyConfig,
                    points: list[dict[str, Any]]) -> None:
    """Enqueue the first chunk, moving the creation counter so joiners know the creator lives."""
    counter, moved = 0, -math.inf

    def each() -> None:
        nonlocal counter, moved
        if time.monotonic() - moved >= PROGRESS_EVERY_SECONDS:
            counter += 1
            study.set_user_attr(CREATING_ATTR, counter)
            moved = time.monotonic()

    each()
    assert config.n_trials is not None
    enqueue_slots(study, config, 0, min(chunk_size(), config.n_trials), points=points, each=each)
