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
