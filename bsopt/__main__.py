"""``python -m bsopt``: the same as the ``bsopt`` command."""

from bsopt.cli import entry_point

entry_point()
