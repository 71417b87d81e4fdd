from __future__ import annotations

import io
import json
import shutil
import socket
from wsgiref.util import setup_testing_defaults

import optuna
import optuna_dashboard
import plotly.graph_objects as go
import pytest
from optuna.trial import TrialState
from optuna_dashboard import save_plotly_graph_object, wsgi
from optuna_dashboard._custom_plot_data import SYSTEM_ATTR_PLOT_DATA, get_plotly_graph_objects

from bsopt import network
from bsopt.cli import main
from bsopt.errors import UsageError
from bsopt.records import CONFIG_ATTR
from bsopt.storage import make_storage
from bsopt.visualization import dashboard
from bsopt.visualization.figures import FIGURE_KEYS, study_figures

STUDY = "test-dashboard-a"


def plant(storage, make_trial, name: str = STUDY) -> optuna.Study:
    """A bsopt study: 4 complete trials at batch sizes 16..128 and one pruned trial."""
    study = optuna.create_study(study_name=name, storage=storage)
    study.set_user_attr(CONFIG_ATTR, {"study_name": name, "epochs": 2})
    for i in range(4):
        study.add_trial(make_trial(16 * 2**i, 1e-3 * (i + 1), [1.0, 0.5 + 0.1 * i]))
    study.add_trial(make_trial(32, 0.5, [3.0], state=TrialState.PRUNED))
    return study


@pytest.fixture(scope="module")
def template_db(tmp_path_factory, make_trial):
    """A SQLite file holding the planted study, built once (creating the schema is slow)."""
    path = tmp_path_factory.mktemp("template") / "s.db"
    storage = make_storage(f"sqlite:///{path}", heartbeat=False)
    plant(storage, make_trial)
    storage.engine.dispose()
    return path


@pytest.fixture
def sqlite_url(tmp_path, template_db):
    """A fresh copy of the planted SQLite study."""
    shutil.copy(template_db, tmp_path / "s.db")
    return f"sqlite:///{tmp_path}/s.db"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def planted_url(request, sqlite_url, make_trial) -> str:
    """The planted study's URL: a copy of the SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return sqlite_url
    url = request.getfixturevalue("postgres_url")
    storage = make_storage(url, heartbeat=False)
    plant(storage, make_trial)
    storage.engine.dispose()
    return url


@pytest.fixture
def storage(planted_url):
    """The planted study's storage."""
    storage = make_storage(planted_url, heartbeat=False)
    yield storage
    storage.engine.dispose()  # PostgreSQL: so that the database can be dropped


@pytest.fixture
def study(storage) -> optuna.Study:
    return optuna.load_study(study_name=STUDY, storage=storage)


def plot_attrs(storage, study) -> dict[str, str]:
    return {
        k: v
        for k, v in storage.get_study_system_attrs(study._study_id).items()
        if k.startswith(SYSTEM_ATTR_PLOT_DATA)
    }


def ids(attrs: dict[str, str]) -> set[str]:
    """Graph-object ids in ``dashboard:plot_data:<id>:<piece>`` keys."""
    return {k[len(SYSTEM_ATTR_PLOT_DATA) :].rsplit(":", 1)[0] for k in attrs}


def test_attach_twice_keeps_one_copy_of_each_figure(storage, study, make_trial):
    assert dashboard.attach_figures(study) == len(FIGURE_KEYS)
    first = plot_attrs(storage, study)
    study.add_trial(make_trial(16, 0.2, [0.9, 0.3]))  # new data: the figures change
    assert dashboard.attach_figures(study) == len(FIGURE_KEYS)
    second = plot_attrs(storage, study)
    assert ids(second) == ids(first) == {f"bsopt-{k}" for k in FIGURE_KEYS}

    # optuna-dashboard's own loader, on a fresh connection, reads back the latest figures.
    reloaded = optuna.load_study(study_name=study.study_name, storage=storage)
    stored = get_plotly_graph_objects(storage.get_study_system_attrs(reloaded._study_id))
    assert sorted(stored) == sorted(f"bsopt-{k}" for k in FIGURE_KEYS)
    expected = study_figures(reloaded)
    for key in FIGURE_KEYS:
        assert json.loads(stored[f"bsopt-{key}"]) == json.loads(expected[key].to_json())
    best = json.loads(stored["bsopt-best_lr_by_batch"])["data"][0]
    assert best["y"][0] == pytest.approx(0.2)  # the trial added before the second attach


def test_a_shorter_figure_replaces_a_longer_one(storage, study):
    big = go.Figure(go.Scatter(x=list(range(3000)), y=list(range(3000))))
    small = go.Figure(go.Scatter(x=[1], y=[2]))
    dashboard.attach_figures(study, {"x": big})
    dashboard.attach_figures(study, {"x": small})
    stored = get_plotly_graph_objects(storage.get_study_system_attrs(study._study_id))
    assert list(stored) == ["bsopt-x"]
    assert json.loads(stored["bsopt-x"]) == json.loads(small.to_json())
    pieces = plot_attrs(storage, study)
    assert "" in pieces.values()  # the longer figure's surplus pieces are blanked


def test_the_dashboard_api_serves_the_figures(sqlite_url):
    storage = make_storage(sqlite_url, heartbeat=False)
    study = optuna.load_study(study_name=STUDY, storage=storage)
    dashboard.attach_figures(study)
    environ = {
        "PATH_INFO": f"/api/studies/{study._study_id}",
        "REQUEST_METHOD": "GET",
        "wsgi.input": io.BytesIO(),
    }
    setup_testing_defaults(environ)
    statuses = []
    app = wsgi(storage)
    body = b"".join(app(environ, lambda status, headers, exc_info=None: statuses.append(status)))
    assert statuses == ["200 OK"]
    objects = json.loads(body)["plotly_graph_objects"]
    assert sorted(o["id"] for o in objects) == sorted(f"bsopt-{k}" for k in FIGURE_KEYS)
    titles = {json.loads(o["graph_object"])["layout"]["title"]["text"] for o in objects}
    assert "Best learning rate by batch size" in titles


def test_refresh_all_skips_studies_that_are_not_bsopt(storage):
    other = optuna.create_study(study_name="test-dashboard-other", storage=storage)
    other.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    names = dashboard.refresh_all(storage)
    assert STUDY in names and "test-dashboard-other" not in names
    assert plot_attrs(storage, other) == {}


def test_graph_object_ids_are_valid_and_unambiguous():
    ids = [dashboard.graph_object_id(k) for k in FIGURE_KEYS]
    # optuna-dashboard finds a figure's pieces by the prefix "<id>:"; no id may contain ":".
    assert all(":" not in i for i in ids) and len(set(ids)) == len(ids)
    study = optuna.create_study()
    with pytest.raises(ValueError):  # the dashboard's own check, which ours must pass
        save_plotly_graph_object(study, go.Figure(), graph_object_id="a b")
    for i in ids:
        save_plotly_graph_object(study, go.Figure(), graph_object_id=i)


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("127.0.1.1", True),
        ("0.0.0.0", False),
        ("192.168.1.5", False),
        ("::", False),
        ("gpu-box.example", False),
    ],
)
def test_is_loopback(host, loopback):
    assert network.is_loopback(host) is loopback


def test_dashboard_url():
    assert dashboard.dashboard_url("127.0.0.1", 8080) == "http://127.0.0.1:8080/dashboard/"
    assert dashboard.dashboard_url("::1", 9000) == "http://[::1]:9000/dashboard/"


@pytest.fixture
def served(monkeypatch):
    """Replace the blocking server by a recorder of its arguments."""
    calls = []
    monkeypatch.setattr(optuna_dashboard, "run_server", lambda s, **kw: calls.append((s, kw)))
    return calls


@pytest.fixture
def port() -> int:
    """A port no one listens on right now (the dashboard checks it before serving)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_dashboard_refreshes_and_serves(sqlite_url, served, port, capsys):
    storage = make_storage(sqlite_url, heartbeat=False)
    study = optuna.load_study(study_name=STUDY, storage=storage)
    dashboard.run_dashboard(storage, port=port)
    out, err = capsys.readouterr()
    assert served == [(storage, {"host": "127.0.0.1", "port": port, "artifact_store": None})]
    assert f"http://127.0.0.1:{port}/dashboard/" in out and err == ""
    attrs = storage.get_study_system_attrs(study._study_id)
    assert len(get_plotly_graph_objects(attrs)) == len(FIGURE_KEYS)


def test_run_dashboard_warns_when_reachable_from_the_network(sqlite_url, served, port, capsys):
    dashboard.run_dashboard(sqlite_url, host="0.0.0.0", port=port, refresh=False)
    out, err = capsys.readouterr()
    assert served[0][1]["host"] == "0.0.0.0" and f"http://0.0.0.0:{port}/dashboard/" in out
    assert err.startswith("warning:") and "0.0.0.0" in err and len(err.splitlines()) == 1


def test_run_dashboard_opens_a_url_without_refreshing(sqlite_url, served, port):
    dashboard.run_dashboard(sqlite_url, port=port, refresh=False)
    storage = served[0][0]
    assert isinstance(storage, optuna.storages.BaseStorage)
    study = optuna.load_study(study_name=STUDY, storage=storage)
    assert plot_attrs(storage, study) == {}


def test_run_dashboard_refuses_a_missing_sqlite_file(tmp_path, served, port):
    with pytest.raises(UsageError, match="no study database"):
        dashboard.run_dashboard(f"sqlite:///{tmp_path}/typo.db", port=port)
    assert served == [] and not (tmp_path / "typo.db").exists()


def test_cli_plots_attaches_the_figures(planted_url, capsys):
    assert main(["plots", "--storage", planted_url, "--study-name", STUDY]) == 0
    assert f"attached {len(FIGURE_KEYS)} figures to study {STUDY!r}" in capsys.readouterr().out
    storage = make_storage(planted_url, heartbeat=False)
    study = optuna.load_study(study_name=STUDY, storage=storage)
    stored = get_plotly_graph_objects(storage.get_study_system_attrs(study._study_id))
    assert sorted(stored) == sorted(f"bsopt-{k}" for k in FIGURE_KEYS)
    storage.engine.dispose()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["dashboard", "--storage", "sqlite:///{tmp}/typo.db", "--port", "{port}"],
         "no study database at"),
        (["dashboard", "--storage", "sqlite:///{tmp}", "--port", "{port}"], "is a directory"),
        (["dashboard", "--port", "eighty"], "expected an integer, got 'eighty'"),
        (["dashboard", "--storage", "sqlite:///{tmp}/s.db", "--port", "70000"],
         "--port must be between 1 and 65535, got 70000"),
        (["dashboard", "--storage", "sqlite:///{tmp}/s.db", "--host", "no-such-host.invalid",
          "--port", "{port}"], "cannot listen on no-such-host.invalid"),
        (["dashboard", "--storage", "sqlite:///{tmp}/s.db", "--host"], "expected one argument"),
        (["plots", "--storage", "sqlite:///{tmp}/s.db", "--study-name", "nope"],
         "no study named 'nope'"),
        (["plots", "--storage", "sqlite:///{tmp}/s.db"], "--study-name"),
    ],
    ids=["missing-file", "directory", "bad-port", "port-out-of-range", "unknown-host",
         "host-without-value", "no-such-study", "no-study-name"],
)
def test_cli_bad_input_is_one_line_exit_2(
    argv, message, tmp_path, sqlite_url, served, port, capsys
):
    before = sorted(tmp_path.glob("*.db"))
    assert main([a.format(tmp=tmp_path, port=port) for a in argv]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("bsopt: error:") and message in err and err.count("\n") == 1
    assert served == [] and sorted(tmp_path.glob("*.db")) == before  # nothing served or made


def test_cli_dashboard_refuses_a_port_in_use(sqlite_url, served, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["dashboard", "--storage", sqlite_url, "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1 port {port}" in err and "--port" in err
    assert err.count("\n") == 1 and served == []
