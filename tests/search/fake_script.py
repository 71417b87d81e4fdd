"""A training script for the ``--command`` tests: no torch, quick, told by flags what to do.

Its loss falls with the epoch (``lr + 1 / epoch``, or ``--loss`` for every epoch of the trials
it names). It resumes from ``state.json`` in ``$BSOPT_CHECKPOINT_DIR`` and appends what it
saw (argv, environment, where it resumed) to ``--log`` as one JSON line per run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import bsopt

parser = argparse.ArgumentParser()
parser.add_argument("--bs", type=int, required=True)
parser.add_argument("--lr", type=float, required=True)
parser.add_argument("--epochs", type=int, required=True)
parser.add_argument("--log", type=Path, help="append what this run saw, as a JSON line")
parser.add_argument("--pids", type=Path, help="write <trial>.pid (and <trial>.child.pid)")
parser.add_argument("--sleep", type=float, default=0.0, help="seconds per epoch")
parser.add_argument("--loss", type=float, help="the loss of every epoch of --loss-trials")
parser.add_argument("--loss-trials", type=int, nargs="*", default=[])
parser.add_argument("--hang-after", type=int, help="after this epoch, trials of --loss-trials "
                                                    "wait for a signal")
parser.add_argument("--ignore-term", action="store_true", help="ignore SIGTERM")
parser.add_argument("--grandchild", action="store_true", help="start a process that lingers")
parser.add_argument("--crash-unless", type=Path, help="crash at epoch 2 unless this file is "
                                                      "there (it is made first: crash once)")
parser.add_argument("--garbage", action="store_true", help="print junk between the reports")
parser.add_argument("--plain", action="store_true", help="print the JSON lines by hand")
parser.add_argument("--no-reports", action="store_true", help="train and print no epoch")
parser.add_argument("--bad-report", action="store_true", help='print {"epoch": "one", ...}')
parser.add_argument("--weights-from", type=Path, help="copy this file to weights.pt at the end")
parser.add_argument("--skip-epoch", type=int, help="never report this epoch")
parser.add_argument("--kill-self", action="store_true", help="die by SIGKILL after epoch 1")
args = parser.parse_args()

trial = int(os.environ["BSOPT_TRIAL"])
directory = bsopt.checkpoint_dir()
assert directory is not None and directory.is_dir(), directory
if args.ignore_term:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if args.pids:
    (args.pids / f"{trial}.pid").write_text(str(os.getpid()))
if args.grandchild:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    (args.pids / f"{trial}.child.pid").write_text(str(child.pid))
state_file = directory / "state.json"
start = json.loads(state_file.read_text())["epoch"] if state_file.exists() else 0
if args.log:
    seen = {"trial": trial, "argv": sys.argv[1:], "resumed_from": start,
            "files": sorted(p.name for p in directory.iterdir()),
            "env": {k: v for k, v in os.environ.items() if k.startswith("BSOPT_")}}
    with open(args.log, "a") as log:
        log.write(json.dumps(seen) + "\n")
if args.crash_unless and not args.crash_unless.exists():
    args.crash_unless.touch()
    crash_at = 2
else:
    crash_at = None
if args.garbage:
    sys.stdout.buffer.write(b"\xff\xfe not utf-8\n[1, 2, 3]\n{\"epoch\": 1}\nnull\n{broken\n")
    print("\x1b[2K 10%|##        | 1/10 \r", end="", flush=True)  # a progress bar, no newline

for epoch in range(start + 1, args.epochs + 1):
    time.sleep(args.sleep)
    if epoch == crash_at:
        print("about to divide", file=sys.stderr)
        print(1 / 0)
    loss = args.loss if trial in args.loss_trials else args.lr + 1 / epoch
    state_file.write_text(json.dumps({"epoch": epoch}))  # the checkpoint, then the report
    if args.no_reports or epoch == args.skip_epoch:
        print(f"epoch {epoch}: loss {loss}")
        continue
    if args.bad_report:
        print(json.dumps({"epoch": "one", "val_loss": loss}), flush=True)
        continue
    metrics = {"train_loss": 2 * loss, "examples": epoch * 100, "phase": "val", "ok": True,
               "lr": 99.0}
    if args.plain:
        print(json.dumps({"epoch": epoch, "val_loss": loss, **metrics}))
    else:
        bsopt.report(epoch, loss, **metrics)
    if args.kill_self:
        print("about to die", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would
    if args.garbage:
        print(f"epoch {epoch} done {{not json}}\n", flush=True)
        print("{\"epoch\": 99}", file=sys.stderr, flush=True)
    if epoch == args.hang_after and trial in args.loss_trials:
        while True:
            time.sleep(1)
if args.weights_from:
    shutil.copy(args.weights_from, directory / "weights.pt")
print("finished", file=sys.stderr)
