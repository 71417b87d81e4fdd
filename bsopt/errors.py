"""The one exception type for mistakes a user can make and mend."""

from __future__ import annotations


class UsageError(Exception):
    """Bad input from the user: a flag, a TOML file, a storage URL, a study that does not match.

    The CLI prints the message as one line and exits with status 2, without a traceback.
    The message says what to change. Bugs raise other exceptions and keep their traceback.
    """
