"""Attach bsopt's figures to studies and launch optuna-dashboard on a storage.

Figures are stored with optuna-dashboard's own ``save_plotly_graph_object``: the figure's
JSON goes into study *system* attributes ``dashboard:plot_data:<id>:<i>``, cut into pieces
of 2045 characters, and the dashboard draws every stored figure on the study's page. Each
bsopt figure has a fixed id (``bsopt-<key>``), so attaching again overwrites the pieces in
place (pieces left over from a longer previous figure are blanked) instead of adding a copy.
The pieces are written one by one, so attach from one process at a time.
"""

from __future__ import annotations

from typing import Any

import optuna
from plotly import graph_objects as go

from bsopt.network import check_address, warn_if_exposed
from bsopt.records import CONFIG_ATTR
from bsopt.visualization.figures import study_figures

GRAPH_ID_PREFIX = "bsopt-"


def graph_object_id(key: str) -> str:
    """The dashboard graph-object id of the figure ``key``."""
    # No ":" in ids: optuna-dashboard finds a figure's pieces by the prefix "<id>:", so an
    # id "a:b" would be read as part of figure "a".
    return GRAPH_ID_PREFIX + key


def attach_figures(study: optuna.Study, figures: dict[str, go.Figure] | None = None) -> int:
    """Store the study's figures where optuna-dashboard shows them, replacing earlier ones.

    Args:
        study: The study; its storage is written (one system attribute per 2 kB of figure).
        figures: The figures by key; default: every figure of the study
            (:func:`bsopt.visualization.figures.study_figures`).

    Returns:
        The number of figures attached.
    """
    # Imported here: optuna_dashboard pulls in scikit-learn (seconds) at import time.
    from optuna_dashboard import save_plotly_graph_object

    figures = study_figures(study) if figures is None else figures
    for key, figure in figures.items():
        save_plotly_graph_object(study, figure, graph_object_id=graph_object_id(key))
    return len(figures)


def is_bsopt_study(storage: optuna.storages.BaseStorage, study_id: int) -> bool:
    """True if the study holds a bsopt definition or a trial with a ``batch_size`` param."""
    if CONFIG_ATTR in storage.get_study_user_attrs(study_id):
        return True
    trials = storage.get_all_trials(study_id, deepcopy=False)
    return any("batch_size" in t.params for t in trials)


def refresh_all(storage: optuna.storages.BaseStorage) -> list[str]:
    """Attach fresh figures to every bsopt study in ``storage``; other studies are left alone.

    Returns:
        The names of the studies refreshed.
    """
    names = []
    for frozen in storage.get_all_studies():
        if is_bsopt_study(storage, storage.get_study_id_from_name(frozen.study_name)):
            attach_figures(optuna.load_study(study_name=frozen.study_name, storage=storage))
            names.append(frozen.study_name)
    return names


def dashboard_url(host: str, port: int) -> str:
    """The address to open in a browser."""
    if ":" in host and not host.startswith("["):  # IPv6 literal
        host = f"[{host}]"
    return f"http://{host}:{port}/dashboard/"


def open_storage(storage: str | optuna.storages.BaseStorage) -> optuna.storages.BaseStorage:
    """The storage object for a URL (an existing SQLite file only), or ``storage`` itself."""
    if isinstance(storage, optuna.storages.BaseStorage):
        return storage
    from bsopt.storage import open_existing_storage

    return open_existing_storage(storage)  # never serve a fresh, empty database


def run_dashboard(
    storage: str | optuna.storages.BaseStorage,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    refresh: bool = True,
    artifact_store: Any = None,
) -> None:
    """Refresh the figures of every bsopt study, then serve optuna-dashboard (blocks).

    Args:
        storage: A storage URL (``sqlite:///...``, ``postgresql://...``) or an Optuna storage.
        host: The address to bind; anything but a loopback address exposes the dashboard,
            which has no authentication, to the network (a warning is printed).
        port: The port to listen on.
        refresh: Attach freshly computed figures to every bsopt study before serving.
        artifact_store: An Optuna artifact store, so the dashboard can list trial artifacts.

    Raises:
        UsageError: a missing SQLite file, or an address that cannot be listened on.
    """
    from optuna_dashboard import run_server

    check_address(host, port)  # before the refresh, which can take a while
    storage = open_storage(storage)
    if refresh:
        names = refresh_all(storage)
        print(f"bsopt figures refreshed on {len(names)} studies", flush=True)
    warn_if_exposed(host, "the dashboard (no login)")
    print(f"optuna-dashboard: {dashboard_url(host, port)}", flush=True)
    run_server(storage, host=host, port=port, artifact_store=artifact_store)
