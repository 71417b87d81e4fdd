from __future__ import annotations

import re

import optuna
import pytest
from optuna.trial import TrialState

from bsopt.cli import main
from bsopt.records import CONFIG_ATTR
from bsopt.storage import make_storage
from bsopt.visualization.figures import FIGURE_KEYS
from bsopt.visualization.report import write_report

DEFINITION = {
    "study_name": "digits-<cnn>",
    "sampler": "tpe",
    "epochs": 2,
    "lr_min": 1e-4,
    "objectives": ["loss"],
    "max_train_samples": None,
}


@pytest.fixture(scope="module")
def study(make_trial) -> optuna.Study:
    """A study (read only by these tests): 3 complete, 1 pruned, 1 failed trial."""
    study = optuna.create_study(study_name="digits-<cnn>")
    study.set_user_attr(CONFIG_ATTR, DEFINITION)
    for batch, lr, loss in ((16, 1e-3, 0.7), (64, 4e-3, 0.3), (256, 1.6e-2, 0.5)):
        study.add_trial(
            make_trial(
                batch, lr, [1.0, loss], val_accuracy=[0.5, 1 - loss], epoch_seconds=[2.0, 3.0]
            )
        )
    study.add_trial(make_trial(32, 0.5, [4.0], state=TrialState.PRUNED))
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))
    return study


@pytest.fixture(scope="module")
def page(study, tmp_path_factory) -> str:
    path = write_report(study, tmp_path_factory.mktemp("out") / "report.html")
    return path.read_text(encoding="utf-8")


def test_report_is_self_contained(page):
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not re.search(r"""<script[^>]*\bsrc\s*=\s*["']?(https?:)?//""", page)
    # Plotly's bundle is embedded exactly once, before the first figure is drawn.
    assert page.count("* plotly.js v") == 1
    assert page.index("Plotly.newPlot") > page.index("* plotly.js v")


def test_report_holds_every_figure(page):
    for key in FIGURE_KEYS:
        assert f'id="figure-{key}"' in page
    assert page.count("Plotly.newPlot") == len(FIGURE_KEYS)


def test_report_shows_the_definition_escaped(page):
    section = page[page.index('id="definition"') : page.index('id="trials"')]
    assert "<td>sampler</td><td>tpe</td>" in section
    assert '<td>lr_min</td><td class="num">0.0001</td>' in section
    assert "<td>max_train_samples</td><td>-</td>" in section
    assert "digits-&lt;cnn&gt;" in section and "digits-<cnn>" not in page


def test_report_counts_states_and_ranks_the_best_trials(page):
    counts = page[page.index('id="trials"') : page.index('id="best"')]
    # One row per state that occurs, in Optuna's order, then the total.
    assert re.findall(r"<tr><td>(\w+)</td>", counts) == ["COMPLETE", "PRUNED", "FAIL", "total"]
    assert '<td>COMPLETE</td><td class="num">3</td>' in counts
    assert '<td>PRUNED</td><td class="num">1</td>' in counts
    assert '<td>total</td><td class="num">5</td>' in counts

    best = page[page.index('id="best"') : page.index('id="figures"')]
    assert "lowest final validation loss, top 10" in best
    rows = re.findall(r"<tr>(.*?)</tr>", best)[1:]
    # Complete trials only, best first: trials 1 (loss 0.3), 2 (0.5), 0 (0.7).
    assert [re.match(r'<td class="num">(\d+)</td>', r).group(1) for r in rows] == ["1", "2", "0"]
    assert rows[0] == (
        '<td class="num">1</td><td class="num">64</td><td class="num">0.004</td>'
        '<td class="num">0.3</td><td class="num">0.7</td><td class="num">2</td>'
        '<td class="num">5</td>'
    )


def test_report_of_an_empty_study(tmp_path):
    study = optuna.create_study(study_name="empty")
    page = write_report(study, tmp_path / "r.html").read_text()
    assert "no bsopt definition" in page and "No complete trial yet" in page
    assert all(f'id="figure-{key}"' in page for key in FIGURE_KEYS)


def test_report_of_a_two_objective_study_lists_the_pareto_front(tmp_path, make_trial):
    study = optuna.create_study(directions=["minimize", "minimize"])
    for batch, loss, seconds in ((16, 0.3, 9.0), (64, 0.4, 3.0), (256, 0.5, 4.0)):
        trial = make_trial(batch, 1e-3, [1.0, loss])
        trial.values = [loss, seconds]  # loss and training time
        study.add_trial(trial)
    page = write_report(study, tmp_path / "r.html").read_text()
    best = page[page.index('id="best"') : page.index('id="figures"')]
    assert "Pareto front" in best
    # Batch 256 is slower and worse than batch 64: it is not on the front.
    batches = re.findall(r'<tr><td class="num">\d+</td><td class="num">(\d+)</td>', best)
    assert sorted(batches) == ["16", "64"]


@pytest.fixture
def stored_study_url(storage_url, make_trial) -> str:
    """A fresh SQLite file or PostgreSQL database holding one small bsopt study, ``digits-cnn``."""
    storage = make_storage(storage_url, heartbeat=False)
    study = optuna.create_study(study_name="digits-cnn", storage=storage)
    study.set_user_attr(CONFIG_ATTR, {**DEFINITION, "study_name": "digits-cnn"})
    for batch, lr, loss in ((16, 1e-3, 0.7), (64, 4e-3, 0.3), (256, 1.6e-2, 0.5)):
        study.add_trial(make_trial(batch, lr, [1.0, loss]))
    storage.engine.dispose()  # PostgreSQL: so that the database can be dropped
    return storage_url


def test_cli_report_writes_the_report(stored_study_url, tmp_path, capsys):
    out = tmp_path / "report.html"
    argv = ["report", "--storage", stored_study_url, "--study-name", "digits-cnn", "-o", str(out)]
    assert main(argv) == 0
    assert capsys.readouterr().out == f"wrote {out}\n"
    page = out.read_text(encoding="utf-8")
    assert "<h1>bsopt report: digits-cnn</h1>" in page
    assert '<td>COMPLETE</td><td class="num">3</td>' in page
    assert all(f'id="figure-{key}"' in page for key in FIGURE_KEYS)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--study-name", "nope", "-o", "{tmp}/r.html"], "no study named 'nope'"),
        (["--study-name", "digits-cnn", "-o", "{tmp}/missing/r.html"], "missing does not exist"),
        (["--study-name", "digits-cnn", "-o", "{tmp}"], "is a directory"),
        (["-o", "{tmp}/r.html"], "--study-name"),
    ],
    ids=["no-such-study", "no-such-directory", "a-directory", "no-study-name"],
)
def test_cli_report_bad_input_is_one_line_exit_2(argv, message, tmp_path, make_trial, capsys):
    url = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(study_name="digits-cnn", storage=url)
    study.add_trial(make_trial(16, 1e-3, [1.0, 0.5]))
    assert main(["report", "--storage", url, *(a.format(tmp=tmp_path) for a in argv)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bsopt: error:") and message in err and err.count("\n") == 1
    assert not (tmp_path / "r.html").exists()
