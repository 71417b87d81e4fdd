"""bsopt: find the batch size and learning rate at which a network trains best, and show why.

The library behind the ``bsopt`` command. A study is defined by a :class:`StudyConfig`
(:func:`build_config` reads a TOML file and flags), run by :func:`search` and answered by
:func:`analyze`::

    import bsopt

    config, explicit = bsopt.build_config("studies/digits_cnn.toml", {"n_trials": 8})
    result = bsopt.search(config, explicit)
    print(bsopt.format_analysis(bsopt.analyze(result.study)))

A training script run by ``bsopt search --command`` reports each epoch with
``bsopt.report(epoch, val_loss, **metrics)`` and finds its checkpoint directory with
``bsopt.checkpoint_dir()`` (:mod:`bsopt.script`).

Names are imported on first use, so ``import bsopt`` is quick (no torch, no Optuna).
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("bsopt")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

# public name -> the module that defines it
_EXPORTS = {
    "StudyConfig": "bsopt.config",
    "build_config": "bsopt.config",
    "UsageError": "bsopt.errors",
    "search": "bsopt.search",
    "SearchResult": "bsopt.search",
    "analyze": "bsopt.analysis",
    "StudyAnalysis": "bsopt.analysis",
    "format_analysis": "bsopt.analysis",
    "report": "bsopt.script",
    "checkpoint_dir": "bsopt.script",
    "in_trial": "bsopt.script",
}

__all__ = ["SearchResult", "StudyAnalysis", "StudyConfig", "UsageError", "__version__",
           "analyze", "build_config", "checkpoint_dir", "format_analysis", "in_trial", "report",
           "search"]

if TYPE_CHECKING:
    from bsopt.analysis import StudyAnalysis, analyze, format_analysis
    from bsopt.config import StudyConfig, build_config
    from bsopt.errors import UsageError
    from bsopt.script import checkpoint_dir, in_trial, report
    from bsopt.search import SearchResult, search


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'bsopt' has no attribute {name!r}")
