"""Search: studies of batch size x learning rate, their budgets, and the workers that run them.

- :mod:`~bsopt.search.space`: the parameters ``batch_size`` and ``lr``, the grid, scaling rules;
- :mod:`~bsopt.search.samplers`: sampler and pruner names -> Optuna's own classes;
- :mod:`~bsopt.search.pruning`: :class:`BatchSizePruner`, pruning within a batch size;
- :mod:`~bsopt.search.study`: plan, create and join a study; its definition and budget;
- :mod:`~bsopt.search.worker`: one worker claiming WAITING trials until the budget is done;
- :mod:`~bsopt.search.objective`: a trial trains a network (the only module that needs torch);
- :mod:`~bsopt.search.progress`: the typed events a running search reports;
- :mod:`~bsopt.search.run`: :func:`search`, the library call behind ``bsopt search``;
- :mod:`~bsopt.search.summaries`, :mod:`~bsopt.search.export`: read-only views of studies.

It may import optuna, the storage layer, the training layer (only where a trial trains, so
that opening or reading a study does not import torch) and bsopt's leaf modules.
"""

from bsopt.search.progress import Failure, Kind, TrialProgress, WorkerExit
from bsopt.search.pruning import BatchSizePruner
from bsopt.search.run import SearchResult, prepare_study, search
from bsopt.search.samplers import PRUNERS, SAMPLERS, make_pruner, make_sampler
from bsopt.search.study import (
    StudyPlan,
    join_or_create,
    load_study,
    open_study,
    plan_study,
)
from bsopt.search.worker import StorageFull, TooManyFailures, run_worker

__all__ = [
    "PRUNERS", "SAMPLERS", "BatchSizePruner", "Failure", "Kind", "SearchResult", "StorageFull",
    "StudyPlan", "TooManyFailures", "TrialProgress", "WorkerExit",
    "join_or_create", "load_study", "make_pruner", "make_sampler", "open_study", "plan_study",
    "prepare_study", "run_worker", "search",
]
