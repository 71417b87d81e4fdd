"""The science figures' data by value, and the answers as the dashboard note."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna_dashboard import get_note, save_note

from bsopt.analysis import analyze, analyze_records, answer_lines
from bsopt.records import study_records
from bsopt.visualization.note import MARKER, write_answers_note
from bsopt.visualization.report import report_html
from bsopt.visualization.science_data import best_curves, noise_lines, steps_data
from tests.analysis.test_analysis import (
    B_CRIT,
    BATCHES,
    PLANTED_TARGET,
    S_MIN,
    add,
    lr_star,
    planted_curves,
)


@pytest.fixture(scope="module")
def exact_study() -> optuna.Study:
    """Three lrs per batch size around lr* = c sqrt(B), the middle one exactly optimal."""
    study = optuna.create_study()
    for b in BATCHES:
        for factor in (0.5, 1.0, 2.0):
            attrs = planted_curves(b, lr_star(b, 0.5) * factor, 0.5)
            attrs["noise_scale"] = [float(b + e) for e in range(len(attrs["val_loss"]))]
            add(study, b, lr_star(b, 0.5) * factor, attrs)
    return study


def test_steps_data_holds_the_measured_steps_the_fitted_curve_and_both_critical_sizes(
        exact_study) -> None:
    a = analyze_records(study_records(exact_study), target_loss=PLANTED_TARGET)
    d = steps_data(a)
    assert d.batch_sizes == [r.batch_size for r in a.steps_to_target if not r.upper_bound]
    for b, s in zip(d.batch_sizes, d.steps, strict=True):
        assert s == pytest.approx(S_MIN * (1 + B_CRIT / b), rel=0.02)
    assert d.curve_b[0] == d.batch_sizes[0] and d.curve_b[-1] == d.batch_sizes[-1]
    assert d.curve_steps[0] == pytest.approx(a.critical_batch.steps(d.batch_sizes[0]))
    assert d.linear_steps[1] == pytest.approx(d.steps[0] / 2)
    assert d.b_crit == pytest.approx(B_CRIT, rel=0.05)
    # Zhang on S_min (1 + B_crit/B) from B_ref: 1.2 B_ref + 0.2 B_crit, up to interpolation
    assert d.zhang == pytest.approx(1.2 * d.batch_sizes[0] + 0.2 * B_CRIT, rel=0.1)


def test_noise_lines_are_the_medians_per_epoch(exact_study) -> None:
    lines = noise_lines(analyze(exact_study))
    assert [n.batch_size for n in lines] == BATCHES
    assert lines[0].epochs[:3] == [1, 2, 3]
    assert lines[0].b_simple[:3] == [16.0, 17.0, 18.0]


def test_b_simple_late_is_the_median_of_the_best_trials_last_epoch(exact_study) -> None:
    a = analyze(exact_study)
    epochs = len(planted_curves(16, 1e-3, 0.5)["val_loss"])
    assert a.b_simple_late == 128 + epochs - 1  # noise scale planted as B + epoch index
    assert f"B_simple late in training = {a.b_simple_late:.3g}" in "\n".join(answer_lines(a))


def test_best_curves_are_one_per_batch_size_at_its_best_lr(exact_study) -> None:
    curves = best_curves(study_records(exact_study))
    assert [c.batch_size for c in curves] == BATCHES
    for c in curves:
        assert c.lr == pytest.approx(lr_star(c.batch_size, 0.5))
        planted = planted_curves(c.batch_size, c.lr, 0.5)
        assert c.steps == [float(s) for s in planted["steps"]]
        assert c.val_loss == pytest.approx(planted["val_loss"])


def test_the_note_is_written_and_replaced_and_the_users_text_kept(exact_study) -> None:
    study = optuna.create_study()
    for t in exact_study.trials:
        study.add_trial(t)
    save_note(study, "my own remarks")
    first = write_answers_note(study, analyze(study))
    assert get_note(study) == first
    assert first.startswith("my own remarks\n\n" + MARKER)
    assert "square root" in first and "lr scaling" in first
    for _ in range(2):  # again, after more trials: replaced, not piled up
        add(study, 64, 1e-3, planted_curves(64, 1e-3, 0.5))
        second = write_answers_note(study, analyze(study))
    note = get_note(study)
    assert note == second and note.count(MARKER) == 1 and note.count("lr scaling") == 1
    assert note.count("my own remarks") == 1
    assert f"{len(study.trials)} trials" in note  # the answers of the latest trials


def test_the_report_opens_with_the_answers(exact_study) -> None:
    study = optuna.create_study()
    for t in exact_study.trials:
        study.add_trial(t)
    study.set_user_attr("bsopt_config", {})
    page = report_html(study, figures={})
    assert page.index('id="answers"') < page.index("<h2", page.index('id="answers"') + 1)
    assert "square root" in page
    assert not math.isnan(analyze(study).lr_scaling.alpha)
