"""The exception types for mistakes a user can make and mend."""

from __future__ import annotations


class UsageError(Exception):
    """Bad input from the user: a flag, a TOML file, a storage URL, a study that does not match.

    The CLI prints the message as one line and exits with status 2, without a traceback.
    The message says what to change. Bugs raise other exceptions and keep their traceback.
    """


class DiskFull(UsageError):
    """The disk holding the storage (or its checkpoints) is full: free space and run again.

    Met before a command has changed anything, it is a usage error like any other (exit 2).
    A worker that meets it in the middle of a trial stops instead (``bsopt.search.worker``).
    """
