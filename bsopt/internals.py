"""Every private name of Optuna and PyTorch that bsopt relies on, in one place.

bsopt claims WAITING trials, retries storage calls and reads studies below Optuna's public
API in a few places; each such use goes through this module, so an upgrade that renames one
breaks here, and ``tests/test_internals.py`` says so. Checked against the versions below.
Nothing here imports torch or optuna at import time: the training loop and the worker loop
both use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

OPTUNA_CHECKED = ("5.0.0",)  # the Optuna versions these names were checked against
TORCH_CHECKED = ("2.14.1", "2.15.0")

# System attributes that Optuna's RetryHeartbeatStaleTrialCallback writes on a retry, which
# its own helpers (retried_trial_number, retry_history) read: bsopt writes the same ones.
FAILED_TRIAL = "failed_trial"
RETRY_HISTORY = "retry_history"

# RDBStorage's private methods that its public ones call and that talk to the database:
# bsopt's retrying storage wraps them too (bsopt.storage), so a lost connection inside them
# is retried like one in a public call.
RDB_PRIVATE_CALLS = ("_create_new_trial", "_set_trial_param", "_get_trials",
                     "_get_best_trial_id", "_get_stale_trial_ids")
# RDBStorage's public methods that the retrying storage leaves as they are: they touch no
# database, or only through calls it retries, or only in schema administration (``optuna
# storage upgrade``). Every other public method is retried; tests/test_architecture.py fails
# when Optuna adds one that is in neither group.
RDB_PUBLIC_NOT_RETRIED = {
    "check_trial_is_updatable": "checks a state, no query",
    "create_new_trial": "calls _create_new_trial",
    "get_n_trials": "calls get_all_trials",
    "get_trial_number_from_id": "calls get_trial",
    "get_trial_params": "calls get_trial",
    "get_failed_trial_callback": "returns a setting",
    "get_heartbeat_interval": "returns a setting",
    "get_heartbeat_stale_trial_callback": "returns a setting",
    "remove_session": "closes the session",
    "get_all_versions": "schema administration",
    "get_current_version": "schema administration",
    "get_head_version": "schema administration",
    "upgrade": "schema administration",
}


def heartbeat_base() -> type:
    """Optuna's ``BaseHeartbeat``: what ``fail_stale_trials`` asks of a storage.

    Not exported by Optuna; bsopt's journal storage implements it (``record_heartbeat``,
    ``_get_stale_trial_ids``, ``get_heartbeat_interval``,
    ``get_heartbeat_stale_trial_callback``) so that dead workers' trials go stale there too.
    """
    from optuna.storages._heartbeat import BaseHeartbeat

    return BaseHeartbeat


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage object a study works on (Optuna wraps an RDB storage in a cache)."""
    return study._storage


def study_id(study: Any) -> int:
    """The storage's id of a ``Study`` or ``FrozenStudy``."""
    return study._study_id


def trial_id(trial: Any) -> int:
    """The storage's id of a ``Trial`` or ``FrozenTrial``."""
    return trial._trial_id


def fused_optimizer_devices() -> list[str]:
    """Device types on which PyTorch's fused Adam and SGD kernels run."""
    from torch.optim.optimizer import _get_fused_kernels_supported_devices

    return list(_get_fused_kernels_supported_devices())


def rdb_backend(storage: Any) -> Any:
    """The ``RDBStorage`` behind a study's storage (Optuna's cache in front of it), or None.

    bsopt reads the few trials it needs (WAITING, RUNNING) from the database itself: the
    cache re-reads every unfinished trial on each ``get_all_trials``.
    """
    from optuna.storages import RDBStorage

    backend = getattr(storage, "_backend", storage)  # optuna.storages._CachedStorage
    return backend if isinstance(backend, RDBStorage) else None


def trial_model() -> Any:
    """Optuna's ORM class of the ``trials`` table (``trial_id``, ``study_id``, ``state``)."""
    from optuna.storages._rdb.models import TrialModel

    return TrialModel


def trial_system_attribute_model() -> Any:
    """Optuna's ORM class of ``trial_system_attributes`` (``trial_id``, ``key``, ``value_json``)."""
    from optuna.storages._rdb.models import TrialSystemAttributeModel

    return TrialSystemAttributeModel


def claimed_trial(trial: Any) -> Any:
    """The ``FrozenTrial`` an ``optuna.Trial`` read when it was made (no query)."""
    return trial._cached_frozen_trial


def remember_claimed_trial(storage: Any, study_id: int, frozen: Any) -> None:
    """Tell Optuna's cache (``_CachedStorage``) of a trial claimed without reading the study.

    The cache learns of trials only by reading the whole study's unfinished ones, and its
    ``set_trial_param`` needs the trial known; bsopt claims from a few rows it read itself.
    """
    if not hasattr(storage, "_add_trials_to_cache"):
        return
    trial_id = frozen._trial_id
    with storage._lock:
        if study_id not in storage._studies:
            storage._studies[study_id] = _study_info()
        storage._add_trials_to_cache(study_id, [frozen])
        storage._studies[study_id].unfinished_trial_ids.add(trial_id)


def _study_info() -> Any:
    from optuna.storages._cached_storage import _StudyInfo

    return _StudyInfo()
