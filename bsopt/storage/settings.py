"""The environment variables that tune storages: heartbeats, the grace period, retries.

- ``$BSOPT_HEARTBEAT_SECONDS`` (10): how often a running trial records a heartbeat;
- ``$BSOPT_GRACE_SECONDS`` (30): how long without one before the trial counts as dead and is
  failed and retried;
- ``$BSOPT_STORAGE_RETRY_SECONDS`` (120): how long a call waits out a lost connection.
"""

from __future__ import annotations

import os

from bsopt.errors import UsageError

HEARTBEAT_ENV, HEARTBEAT_SECONDS = "BSOPT_HEARTBEAT_SECONDS", 10
GRACE_ENV, GRACE_SECONDS = "BSOPT_GRACE_SECONDS", 30
RETRY_ENV, RETRY_SECONDS = "BSOPT_STORAGE_RETRY_SECONDS", 120.0


def env_seconds(name: str, default: float) -> float:
    """A positive number of seconds from the environment variable ``name``, else ``default``.

    Raises:
        UsageError: the variable is set but is not a positive number.
    """
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UsageError(f"${name} must be a positive number of seconds, got {text!r}")
    return value
