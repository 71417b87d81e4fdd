#!/usr/bin/env bash
# The CUDA paths of bsopt, end to end, in a few minutes on a machine with a GPU:
#   a search on one GPU, a search with two workers (one GPU each where there are two),
#   bsopt profile (samples/s per batch size), a search resumed after kill -9, bf16 and fp16.
# Prints PASS or FAIL per check and exits 1 if any failed.
#
#   bash benchmarks/gpu_check.sh                               # on the GPU machine
#   BSOPT_GPU_CHECK_DEVICE=cpu bash benchmarks/gpu_check.sh    # the script itself, on a CPU
#
# $PYTHON is the interpreter with bsopt installed (python). On the CPU, fp16 is expected to
# be refused with one line and exit status 2 (bsopt trains fp16 only on CUDA).
set -u
DEVICE="${BSOPT_GPU_CHECK_DEVICE:-cuda}"
PYTHON="${PYTHON:-python}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/bsopt-gpu-check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
export BSOPT_HEARTBEAT_SECONDS=1 BSOPT_GRACE_SECONDS=3  # a killed worker's trial goes stale fast
TINY=(--dataset digits --max-train-samples 256 --epochs 2 --batch-size 16:64 --sampler random
      --pruner none)
failed=0

bsopt() { timeout 600 "$PYTHON" -m bsopt "$@"; }

report() {  # report NAME STATUS [DETAIL]
  if [ "$2" -eq 0 ]; then echo "PASS $1${3:+ ($3)}"; else echo "FAIL $1${3:+ ($3)}"; failed=1; fi
}

# What the study's trials say: "<complete> <devices> <precisions> <resumed>".
trials() {
  "$PYTHON" - "$1" "$2" <<'EOF'
import sys, optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.load_study(study_name=sys.argv[2], storage=sys.argv[1])
done = [t for t in study.trials if t.state.name == "COMPLETE"]
print(len(done), ",".join(sorted({t.user_attrs.get("device", "?") for t in done})),
      ",".join(sorted({t.user_attrs.get("precision", "?") for t in done})),
      sum("resumed_from_epoch" in t.user_attrs for t in done))
EOF
}

search_check() {  # search_check NAME EXPECTED_COMPLETE FLAGS...
  local name="$1" expected="$2"; shift 2
  local url="sqlite:///$WORK/$name.db"
  if bsopt search --storage "$url" --study-name "$name" --device "$DEVICE" "${TINY[@]}" "$@" \
      >"$WORK/$name.log" 2>&1; then
    read -r complete devices precisions _ < <(trials "$url" "$name")
    [ "$complete" = "$expected" ]
    report "$name" $? "$complete complete trials on $devices, $precisions"
  else
    report "$name" 1 "exit $?: $(tail -n 1 "$WORK/$name.log")"
  fi
}

search_check search-1-device 3 --n-trials 3
gpus=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
search_check search-2-workers 4 --n-trials 4 --workers 2 \
  $([ "$DEVICE" != cpu ] && [ "$gpus" -lt 2 ] && echo --trials-per-gpu 2)
search_check precision-bf16 2 --n-trials 2 --precision bf16
if [ "$DEVICE" = cpu ]; then  # refused, in one line, exit 2: fp16 is CUDA's
  bsopt search --storage "sqlite:///$WORK/fp16.db" --device cpu "${TINY[@]}" --precision fp16 \
    >"$WORK/fp16.log" 2>&1
  status=$?
  [ "$status" -eq 2 ] && grep -q "needs a CUDA device" "$WORK/fp16.log"
  report precision-fp16 $? "on the CPU: exit $status, $(tail -n 1 "$WORK/fp16.log")"
else
  search_check precision-fp16 2 --n-trials 2 --precision fp16
fi

# bsopt profile: samples/s per batch size on the device.
if bsopt profile --device "$DEVICE" --model cnn --batch-sizes 16:256 --steps 3 \
    >"$WORK/profile.log" 2>&1; then
  report profile 0 "$(tail -n 1 "$WORK/profile.log")"
  echo "samples/s per batch size on $DEVICE:"
  awk 'NR > 2 && $1 ~ /^[0-9]+$/ {print "  batch " $1 ": " $3 " samples/s"}' "$WORK/profile.log"
else
  report profile 1 "$(tail -n 1 "$WORK/profile.log")"
fi

# Resume after kill -9: a search killed in the middle of a trial, then run again.
url="sqlite:///$WORK/kill.db"
long=(--storage "$url" --study-name kill --device "$DEVICE" --dataset digits
      --max-train-samples 1000 --epochs 40 --batch-size 16:16 --lr 1e-3:1e-3 --sampler random
      --pruner none --n-trials 2)
setsid "$PYTHON" -m bsopt search "${long[@]}" >"$WORK/kill.log" 2>&1 &
victim=$!
"$PYTHON" - "$url" <<'EOF'
import sys, time, optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
deadline = time.monotonic() + 300
while time.monotonic() < deadline:  # a trial past its first epoch: its checkpoint is in
    try:
        trials = optuna.load_study(study_name="kill", storage=sys.argv[1]).trials
    except Exception:
        trials = []
    if any(t.state.name == "RUNNING" and "checkpoint" in t.user_attrs for t in trials):
        sys.exit(0)
    time.sleep(0.2)
sys.exit(1)
EOF
seen=$?
kill -9 -- "-$victim" 2>/dev/null; wait "$victim" 2>/dev/null
if [ "$seen" -eq 0 ] && bsopt search --storage "$url" --study-name kill --device "$DEVICE" \
    >"$WORK/resume.log" 2>&1; then
  read -r complete devices _ resumed < <(trials "$url" kill)
  [ "$complete" = 2 ] && [ "$resumed" -ge 1 ]
  report resume-after-kill-9 $? "$complete complete, $resumed resumed from a checkpoint"
else
  report resume-after-kill-9 1 "$(tail -n 1 "$WORK/resume.log" 2>/dev/null)"
fi

[ "$failed" -eq 0 ] && echo "ALL PASS on $DEVICE" || echo "SOME FAILED on $DEVICE"
exit "$failed"
