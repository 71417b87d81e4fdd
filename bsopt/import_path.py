"""``package.module:name`` strings: how a study names code, the user's own or bsopt's.

A study stores what its workers must import by name (never pickled objects), so any worker on
any machine builds the same thing. The module is imported from the working directory (put
first on ``sys.path``, as ``python -m`` does) or from the installed environment.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from typing import Any

from bsopt.errors import UsageError

# module path ":" attribute path; each part a Python identifier
IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def is_import_path(text: str) -> bool:
    """Whether ``text`` has the form ``package.module:name``."""
    return bool(IMPORT_PATH.match(text))


def load_object(path: str, what: str) -> Any:
    """The object ``path`` (``package.module:name``) names.

    Args:
        path: ``module:attribute``, the attribute may be dotted (``mod:Class.build``).
        what: What the object is for, for messages (e.g. ``"--model"``).

    Raises:
        UsageError: the path is malformed, the module cannot be imported, or it has no such
            attribute. Errors raised by the module's own code while importing keep their
            type in the message, so the user sees what broke.
    """
    if not is_import_path(path):
        raise UsageError(f"{what} {path!r} is not an import path: write package.module:name")
    module_name, _, attribute = path.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would: the user's project first
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UsageError(f"{what} {path!r}: no module named {exc.name!r} in the working "
                             "directory or the installed packages") from None
        raise UsageError(f"{what} {path!r}: importing {module_name} failed: {exc}") from None
    except Exception as exc:  # the user's module raised while it was imported
        raise UsageError(f"{what} {path!r}: importing {module_name} raised "
                         f"{type(exc).__name__}: {exc}") from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise UsageError(f"{what} {path!r}: {module_name} has no attribute {attribute!r}")
        target = getattr(target, part)
    return target
