"""``bsopt.script``: the report line a training script prints, and what bsopt reads in it."""

from __future__ import annotations

import math
import os
import select
import subprocess
import sys

import pytest

from bsopt.script import ACK_FD_ENV, STDOUT_PIPE_ENV, TRIAL_ENV, Report, parse_report, report_line


@pytest.mark.parametrize("text, expected", [
    ('{"epoch": 1, "val_loss": 0.5}', Report(1, 0.5)),
    ('  {"epoch": 2.0, "val_loss": 1, "acc": 0.9, "n": null}  ', Report(2, 1.0,
                                                                       {"acc": 0.9, "n": None})),
    ('{"epoch": 1, "val_loss": 0.5, "phase": "val", "ok": true, "xs": [1], "d": {}}',
     Report(1, 0.5)),  # strings, booleans, lists and objects are not metrics
    ('{"epoch": 1, "val_loss": 0.5, "' + "k" * 65 + '": 1}', Report(1, 0.5)),
    ('{"epoch": 1}', None), ('{"val_loss": 1}', None), ("[1, 2]", None), ("null", None),
    ("epoch 1 val_loss 0.5", None), ('{"epoch": 1, "val_loss": 0.5', None), ("", None),
    ('{"epoch": 1, "val_loss": 0.5} trailing', None),
])
def test_a_line_reports_an_epoch_only_as_a_json_object_with_both_keys(text, expected) -> None:
    assert parse_report(text) == expected


def test_nan_is_a_loss_and_at_most_32_metrics_are_read() -> None:
    parsed = parse_report(report_line(3, math.nan, **{f"m{i}": i for i in range(40)}))
    assert parsed is not None and parsed.epoch == 3 and math.isnan(parsed.val_loss)
    assert list(parsed.metrics) == [f"m{i}" for i in range(32)]


@pytest.mark.parametrize("text, message", [
    ('{"epoch": "1", "val_loss": 0.5}', "epoch must be a whole number from 1, got '1'"),
    ('{"epoch": 0, "val_loss": 0.5}', "got 0"),
    ('{"epoch": 1.5, "val_loss": 0.5}', "got 1.5"),
    ('{"epoch": true, "val_loss": 0.5}', "got True"),
    ('{"epoch": 1, "val_loss": "low"}', "val_loss must be a number, got 'low'"),
    ('{"epoch": 1, "val_loss": null}', "val_loss must be a number, got None"),
])
def test_a_report_with_the_wrong_types_is_an_error(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_report(text)


def run_report(env: dict[str, str], **popen) -> subprocess.Popen:
    code = "import bsopt\nbsopt.report(1, 0.25, acc=0.5)\nprint('after', flush=True)\n"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BSOPT_")}
    popen.setdefault("stdout", subprocess.PIPE)
    return subprocess.Popen([sys.executable, "-c", code], env={**environment, **env},
                            text=True, **popen)


def test_outside_bsopt_report_prints_nothing() -> None:
    out, _ = run_report({}).communicate(timeout=60)
    assert out == "after\n"


def test_run_by_bsopt_report_prints_its_line_and_waits_for_the_acknowledgement() -> None:
    ack_read, ack_write = os.pipe()
    out_read, out_write = os.pipe()
    process = run_report({TRIAL_ENV: "3", ACK_FD_ENV: str(ack_read),
                          STDOUT_PIPE_ENV: str(os.fstat(out_read).st_ino)},
                         pass_fds=(ack_read,), stdout=out_write)
    os.close(out_write)
    os.close(ack_read)
    with os.fdopen(out_read) as out:
        assert parse_report(out.readline()) == Report(1, 0.25, {"acc": 0.5})
        # It waits: nothing more comes until bsopt acknowledges epoch 1 (an older one first).
        assert select.select([out], [], [], 1.0)[0] == []
        os.write(ack_write, b"0\n")
        assert select.select([out], [], [], 0.5)[0] == []
        os.write(ack_write, b"1\n")
        assert out.readline() == "after\n"
    os.close(ack_write)
    assert process.wait(timeout=60) == 0


def test_a_script_whose_output_goes_elsewhere_does_not_wait(tmp_path) -> None:
    ack_read, ack_write = os.pipe()
    out_read, _ = os.pipe()
    with open(tmp_path / "out.txt", "w") as file:  # as `python train.py > log.txt` would
        process = run_report({TRIAL_ENV: "3", ACK_FD_ENV: str(ack_read),
                              STDOUT_PIPE_ENV: str(os.fstat(out_read).st_ino)},
                             pass_fds=(ack_read,), stdout=file)
        assert process.wait(timeout=60) == 0
    assert (tmp_path / "out.txt").read_text().splitlines()[1] == "after"
    os.close(ack_write)


def test_when_bsopt_stops_listening_report_returns() -> None:
    ack_read, ack_write = os.pipe()
    out_read, out_write = os.pipe()
    process = run_report({TRIAL_ENV: "3", ACK_FD_ENV: str(ack_read),
                          STDOUT_PIPE_ENV: str(os.fstat(out_read).st_ino)},
                         pass_fds=(ack_read,), stdout=out_write)
    os.close(out_write)
    os.close(ack_read)
    with os.fdopen(out_read) as out:
        out.readline()
        os.close(ack_write)  # as bsopt does when it ends the trial
        assert out.readline() == "after\n"
    assert process.wait(timeout=60) == 0
