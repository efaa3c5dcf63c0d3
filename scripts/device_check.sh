#!/usr/bin/env bash
# The accelerator checks, in one call that fits in minutes (../shared/DEVICE.md: what the machine has and what to
# carry). First, here: scripts/device_wheels.sh (the wheels the machine lacks, into .whl). Then:
#
#   bash scripts/device_check.sh $OUT            on the accelerator machine, with carry [".whl"] (timeout_s ~420)
#   PARTS=bench bash scripts/device_check.sh $OUT     a rerun of one part (tests, bench, student; comma-separated)
#   WHEELS= PY=.venv/bin/python DEVICE=cpu STEPS=4096 N_ENVS=8 MEMORY=20000 scripts/device_check.sh /tmp/check
#                                                the same script on a CPU, to test it first
#
# Writes OUT/log.txt and one JSON line per figure to OUT/figures.jsonl:
#   1. the tests that need CUDA (tests/test_hardware.py on the GPU: a run moves GPU -> CPU -> GPU);
#   2. `workbench bench --device $DEVICE` (every ratio against a baseline measured in the same run), into
#      OUT/bench.json section by section, so that a time limit keeps what was measured;
#   3. one Atari Breakout net3 student (tau 1) of $STEPS env steps (default 800k), its wall time and % of teacher.
# Each part has its own time limit (LIMIT_TESTS, LIMIT_BENCH, LIMIT_STUDENT seconds), so that the whole stays under
# 7 minutes, leaves room for a rerun, and a part that overruns still leaves the others' figures.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-device-check}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-800000}
PY=${PY:-python3}
mkdir -p "$OUT"
LOG="$OUT/log.txt"
FIG="$OUT/figures.jsonl"
: > "$FIG"
PARTS=${PARTS:-tests,bench,student}
part() { [[ ",$PARTS," == *",$1,"* ]]; }
WHEELS=${WHEELS-.whl}  # WHEELS= (empty) on a CPU rehearsal: the wheels are the device's Python 3.12's
if [ -n "$WHEELS" ] && [ -d "$WHEELS" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$WHEELS"/*.whl >> "$LOG" 2>&1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
{ date; nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"; nproc; "$PY" -c "import torch; print(torch.__version__, torch.cuda.is_available())"; } >> "$LOG" 2>&1
# Without the envs every part fails on its first import: say so at once, not three times over minutes.
if ! "$PY" -c "import gymnasium, ale_py, minatar, workbench.cli" >> "$LOG" 2>&1; then
  echo "{\"part\": \"imports\", \"rc\": 1, \"fix\": \"run scripts/device_wheels.sh here and carry .whl\"}" >> "$FIG"
  cat "$FIG"
  exit 1
fi

if part tests; then
  t0=$SECONDS
  timeout "${LIMIT_TESTS:-90}" "$PY" -m pytest -q -p no:cacheprovider tests/test_hardware.py \
    -k "gpu or device or mirror or refused" >> "$LOG" 2>&1
  echo "{\"part\": \"cuda tests\", \"rc\": $?, \"seconds\": $((SECONDS - t0))}" >> "$FIG"
fi

if part bench; then
  t0=$SECONDS
  timeout "${LIMIT_BENCH:-130}" "$PY" -m workbench bench --quick --device "$DEVICE" --out "$OUT/bench.json" \
    > /dev/null 2>> "$LOG"
  echo "{\"part\": \"bench\", \"rc\": $?, \"seconds\": $((SECONDS - t0)), \"file\": \"bench.json\"}" >> "$FIG"
fi

part student || { cat "$FIG"; exit 0; }
t0=$SECONDS
# The run folder lives outside OUT: its checkpoint holds the replay memory (400k Atari frames: 2.8 GB), which is not
# worth bringing back; its card, config and metrics are copied to OUT/student. One checkpoint, at the end: a
# checkpoint every 50k steps would write that memory 16 times inside the timed run.
RUN_DIR=${RUN_DIR:-/tmp/device-check-student}
rm -rf "$RUN_DIR" "$OUT/student"
mkdir -p "$OUT/student"
# The demo recipe's updates per env step (0.5 per vector step of 8 envs), whatever the number of envs. 256 envs, two
# overlapped halves of 128: the prototype ran 2 x 64 envs at 13,604 steps/s (800k in 59 s) and 2 x 128 at 18,640
# (43 s) on 16 cores (../shared/DEVICE.md); the workbench's loop does more per step than the prototype's. No
# evaluations during the run (the demo preset plays 10 episodes every 50k steps: 16 rounds inside the time limit,
# outside the timed training); the card's final evaluation is the figure.
N_ENVS=${N_ENVS:-256}
UPS=$("$PY" -c "print(0.5 * $N_ENVS / 8)")
timeout "${LIMIT_STUDENT:-150}" "$PY" -m workbench distill --teacher atari-breakout --preset-net net3 --tau 1 \
  --total-steps "$STEPS" --n-envs "$N_ENVS" --updates-per-step "$UPS" --memory-size "${MEMORY:-400000}" \
  --eval-episodes 10 --eval-every 0 --log-every "${LOG_EVERY:-50000}" --checkpoint-every "$STEPS" \
  --device "$DEVICE" --quiet --out "$RUN_DIR" > "$OUT/student.json" 2>> "$LOG"
rc=$?
cp "$RUN_DIR"/card.json "$RUN_DIR"/config.json "$RUN_DIR"/metrics.jsonl "$OUT/student/" 2>/dev/null
# Its speed from the last metrics line, also when the time limit cut the run off (rc 124).
speed=$("$PY" - "$OUT/student/metrics.jsonl" <<'PYEOF'
import json, sys
try:
    rows = [json.loads(line) for line in open(sys.argv[1])]
except OSError:
    rows = []
last = rows[-1] if rows else {}
sec = last.get("train_seconds") or last.get("wall_seconds")
print(json.dumps({"env_steps": last.get("step"), "train_seconds": sec,
                  "env_steps_per_s": round(last["step"] / sec, 1) if sec else None}))
PYEOF
)
echo "{\"part\": \"atari breakout net3 student\", \"rc\": $rc, \"seconds\": $((SECONDS - t0)), \"steps\": $STEPS, \"n_envs\": $N_ENVS, \"progress\": $speed, \"file\": \"student.json\"}" >> "$FIG"
cat "$FIG"
