#!/usr/bin/env bash
# Device check: installs image2point without a network, runs the CUDA test selection, the sparse benchmark
# on the GPU, a timed training run on the ModelNet40 sample and a whole SemanticKITTI scan, and writes ONE
# report (device_check.json + device_check.md, plus device_check.log with every step's output) into OUT.
#
#   bash benchmarks/device_check.sh [--cpu] [--data DIR] [--out DIR]
#
#   --data DIR   the data subset (default $DATA, else <repo>/../shared/data); make it with
#                python3 benchmarks/device_check.py make-data ../shared/data DIR
#   --out DIR    where the report goes (default $OUT)
#   --cpu        the same steps, small, on the CPU (or DEVICE=cpu); hides plyfile, laspy and spconv as on
#                the GPU machine (DEVICE_CHECK_HIDE overrides the list; empty hides nothing)
#   PYTHON                 interpreter with torch (default python3)
#   DEVICE_CHECK_WHEELS    a folder of extra pure-Python wheels, installed beside the package (no index)
#   DEVICE_CHECK_STEPS     comma-separated subset of env,install,tests,bench_sparse,train,scan (default all)
#
# On CUDA every step has its own time limit and the limits add up to under 8 minutes (printed first); a
# step that fails or runs out of time is reported as such and the others still run. Exit status 0 when
# no step failed or ran out of time, 1 otherwise, 2 for bad arguments.
set -u

SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
REPO="$(cd "$(dirname "$SELF")/.." && pwd)"
ALL_STEPS=(env install tests bench_sparse train scan)
KILL_AFTER_S=3
TEST_TIMEOUT_S=90  # per test on CUDA, where pytest-timeout is installed
REPORT_BUDGET_S=15

now_ms() { date +%s%3N; }

# ---------------------------------------------------------------------------------------------------
# One step, run as `device_check.sh __step NAME` under `timeout` (the settings come in the environment).

step_env() {
  # One interpreter start with torch: it costs seconds.
  "$PYTHON" -m image2point.cli env --json > "$WORK/env.json" || return 1
  cat "$WORK/env.json"
  if [ "$MODE" = cuda ]; then
    command -v nvidia-smi > /dev/null && nvidia-smi
    "$PYTHON" -c 'import json, sys
sys.exit(0 if json.load(open(sys.argv[1]))["cuda_available"] else "no CUDA device visible to torch")' "$WORK/env.json"
  fi
}

step_install() {
  if [ -n "$WHEELS" ]; then
    "$PYTHON" -m pip install --no-index --no-deps --target "$WORK/deps" "$WHEELS"/*.whl || return 1
  fi
  if ! "$PYTHON" -c 'import setuptools' 2> /dev/null; then
    echo "setuptools is not importable: bring its wheel in DEVICE_CHECK_WHEELS; the other steps run from the checkout"
    return 77
  fi
  # A copy of the package sources, so the build leaves nothing in the checkout.
  rm -rf "$WORK/src" "$WORK/site" && mkdir -p "$WORK/src" || return 1
  cp -r "$REPO/pyproject.toml" "$REPO/README.md" "$REPO/image2point" "$WORK/src/" || return 1
  "$PYTHON" -m pip install --no-deps --no-build-isolation --no-index --target "$WORK/site" "$WORK/src" || return 1
  (cd "$WORK" && PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -c '
import sys, image2point, image2point.cli
assert image2point.__file__.startswith(sys.argv[1]), image2point.__file__
print("installed:", image2point.__file__, image2point.__version__)' "$WORK/site") || return 1
  (cd "$WORK" && PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}" "$WORK/site/bin/image2point" env > /dev/null) || return 1
  echo "console script: $WORK/site/bin/image2point env ran"
}

step_tests() {
  # --device cuda: the device tests on CUDA and the CPU-vs-CUDA parity tests (see tests/conftest.py).
  # One line per test, so the log of a step stopped by its time limit shows where it was; with
  # pytest-timeout installed, a test that hangs fails alone instead of stopping the whole selection.
  local per_test=()
  if [ "$MODE" = cuda ] && "$PYTHON" -c 'import pytest_timeout' 2> /dev/null; then
    per_test=(--timeout "$TEST_TIMEOUT_S")
  fi
  "$PYTHON" -m pytest -v -p no:cacheprovider --device "$MODE" -rs --junitxml="$WORK/pytest.xml" "${per_test[@]}"
}

step_bench_sparse() {
  local size=()
  [ "$MODE" = cpu ] && size=(--quick)  # one thread: a shared CPU makes a thread pool wait
  "$PYTHON" benchmarks/bench_sparse.py --device "$MODE" "${size[@]}" --json "$WORK/bench_sparse.json"
  [ -s "$WORK/bench_sparse.json" ] || { echo "bench_sparse wrote no results"; return 1; }
}

step_train() {
  local size=(--workers 2)
  [ "$MODE" = cpu ] && size=(--small --workers 0)
  "$PYTHON" benchmarks/device_check.py train --data "$DATA" --device "$MODE" --json "$WORK/train.json" \
    --run-dir "$WORK/runs" "${size[@]}"
}

step_scan() {
  local size=()
  [ "$MODE" = cpu ] && size=(--small)
  "$PYTHON" benchmarks/device_check.py scan --data "$DATA" --device "$MODE" --json "$WORK/scan.json" "${size[@]}"
}

if [ "${1:-}" = __step ]; then
  cd "$REPO" || exit 1
  "step_$2"
  exit $?
fi

# ---------------------------------------------------------------------------------------------------
# Arguments and settings.

usage() { sed -n '2,19p' "$SELF" | sed 's/^# \{0,1\}//'; }

configure() {
  MODE="${DEVICE:-cuda}"
  DATA="${DATA:-}"
  OUT_DIR="${OUT:-}"
  while [ $# -gt 0 ]; do
    case "$1" in
      --cpu) MODE=cpu ;;
      --data) DATA="${2:-}"; shift ;;
      --out) OUT_DIR="${2:-}"; shift ;;
      -h|--help) usage; exit 0 ;;
      *) echo "device_check.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
  done
  case "$MODE" in cpu|cuda) ;; *) echo "device_check.sh: DEVICE must be cpu or cuda, got $MODE" >&2; exit 2 ;; esac
  IFS=, read -r -a STEPS <<< "${DEVICE_CHECK_STEPS:-$(IFS=,; echo "${ALL_STEPS[*]}")}"
  for step in "${STEPS[@]}"; do
    case " ${ALL_STEPS[*]} " in *" $step "*) ;; *)
      echo "device_check.sh: DEVICE_CHECK_STEPS: unknown step $step (steps: ${ALL_STEPS[*]})" >&2; exit 2 ;; esac
  done
  [ -n "$OUT_DIR" ] || { echo "device_check.sh: give --out DIR (or set OUT)" >&2; exit 2; }
  DATA="${DATA:-$REPO/../shared/data}"
  [ -d "$DATA" ] || { echo "device_check.sh: data folder $DATA not found (--data DIR)" >&2; exit 2; }
  mkdir -p "$OUT_DIR" || exit 2
  OUT_DIR="$(cd "$OUT_DIR" && pwd)"
  DATA="$(cd "$DATA" && pwd)"
  PYTHON="${PYTHON:-python3}"
  WHEELS="${DEVICE_CHECK_WHEELS:-}"
  WORK="${DEVICE_CHECK_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/device_check.XXXXXX")}"
  mkdir -p "$WORK" && : > "$WORK/steps.tsv"
  LOG="$OUT_DIR/device_check.log"
  : > "$LOG"

  # Seconds per step. CUDA: the limits add up to under 8 minutes with the report. CPU: two shared cores.
  if [ "$MODE" = cuda ]; then
    declare -gA BUDGET=([env]=20 [install]=45 [tests]=170 [bench_sparse]=100 [train]=60 [scan]=40)
    HIDE="${DEVICE_CHECK_HIDE-}"
  else
    declare -gA BUDGET=([env]=60 [install]=180 [tests]=900 [bench_sparse]=600 [train]=600 [scan]=300)
    HIDE="${DEVICE_CHECK_HIDE-plyfile,laspy,spconv}"
  fi

  PYTHONPATH_PARTS="$REPO:$WORK/deps"
  if [ -n "$HIDE" ]; then
    "$PYTHON" "$REPO/benchmarks/device_check.py" hide-modules "$WORK/hide" "$HIDE" > /dev/null || exit 1
    PYTHONPATH_PARTS="$WORK/hide:$PYTHONPATH_PARTS"
  fi
  export MODE DATA WORK WHEELS PYTHON
  export PYTHONPATH="$PYTHONPATH_PARTS${PYTHONPATH:+:$PYTHONPATH}"
  export IMAGE2POINT_BENCH_DATA="$DATA" PYTHONUNBUFFERED=1 MPLBACKEND=Agg PIP_DISABLE_PIP_VERSION_CHECK=1

  STARTED="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  START_MS="$(now_ms)"
  TOTAL_BUDGET=$REPORT_BUDGET_S
  PLAN=""
  for step in "${STEPS[@]}"; do
    TOTAL_BUDGET=$((TOTAL_BUDGET + BUDGET[$step] + KILL_AFTER_S))
    PLAN="$PLAN $step ${BUDGET[$step]} s,"
  done
  {
    echo "device check on $MODE: ${#STEPS[@]} steps, at most $TOTAL_BUDGET s ($((TOTAL_BUDGET / 60)) min $((TOTAL_BUDGET % 60)) s) in all"
    echo "time limit per step:${PLAN%,} (+${KILL_AFTER_S} s to stop), report ${REPORT_BUDGET_S} s"
    echo "repository $REPO; data $DATA; report in $OUT_DIR; work folder $WORK"
    [ -n "$HIDE" ] && echo "hidden packages (import as absent): $HIDE"
  } | tee -a "$LOG"
}

# ---------------------------------------------------------------------------------------------------
# Steps and report.

run_step() {
  local name="$1" budget="${BUDGET[$1]}" start rc status seconds
  echo "=== step $name (limit $budget s) ===" | tee -a "$LOG"
  start="$(now_ms)"
  timeout --kill-after="$KILL_AFTER_S" "$budget" bash "$SELF" __step "$name" 2>&1 | tee "$WORK/$name.log" | tee -a "$LOG"
  rc="${PIPESTATUS[0]}"
  seconds="$(awk -v ms=$(( $(now_ms) - start )) 'BEGIN { printf "%.1f", ms / 1000 }')"
  case "$rc" in
    0) status=passed ;;
    77) status=skipped ;;
    124|137) status=timeout ;;
    *) status=failed ;;
  esac
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$seconds" "$budget" "$WORK/$name.log" >> "$WORK/steps.tsv"
  echo "=== step $name: $status in $seconds s (exit $rc) ===" | tee -a "$LOG"
}

REPORTED=0
write_report() {
  [ "$REPORTED" = 1 ] && return
  REPORTED=1
  local total_s rc
  total_s="$(awk -v ms=$(( $(now_ms) - START_MS )) 'BEGIN { printf "%.0f", ms / 1000 }')"
  timeout "$REPORT_BUDGET_S" "$PYTHON" "$REPO/benchmarks/device_check.py" report "$WORK" "$OUT_DIR" \
    --setting "device=$MODE" --setting "started=$STARTED" --setting "wall_s=$total_s" \
    --setting "budget_s=$TOTAL_BUDGET" --setting "data=$DATA" --setting "hidden_packages=${HIDE:-none}" \
    --setting "command=bash benchmarks/device_check.sh $( [ "$MODE" = cpu ] && echo '--cpu ')--data DATA --out OUT" \
    2>&1 | tee -a "$LOG"
  rc="${PIPESTATUS[0]}"
  if [ "$rc" != 0 ]; then
    echo "the Python report failed; writing the step table alone" | tee -a "$LOG"
    { echo "# Device check: $MODE (step table only: the report writer failed)"; echo;
      echo "| step | status | exit code | seconds | budget s |"; echo "|---|---|---|---|---|";
      awk -F'\t' '{ printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }' "$WORK/steps.tsv"; } > "$OUT_DIR/device_check.md"
    awk -F'\t' 'BEGIN { printf "{\"report_writer_failed\": true, \"steps\": [" }
      { printf "%s{\"name\": \"%s\", \"status\": \"%s\", \"exit_code\": %s, \"seconds\": %s, \"budget_s\": %s}",
        (NR > 1 ? ", " : ""), $1, $2, $3, $4, $5 } END { print "]}" }' "$WORK/steps.tsv" > "$OUT_DIR/device_check.json"
  fi
  echo "wall time ${total_s} s; report: $OUT_DIR/device_check.md, $OUT_DIR/device_check.json" | tee -a "$LOG"
}

# Bash has parsed every function before main runs, so an edit of this file cannot change a run midway.
main() {
  configure "$@"
  trap write_report EXIT
  trap 'echo "device check interrupted" | tee -a "$LOG"; exit 130' INT TERM

  for step in "${STEPS[@]}"; do
    run_step "$step"
  done
  write_report
  cat "$OUT_DIR/device_check.md"
  # A skipped step (the install without setuptools) is reported, not a failure.
  if awk -F'\t' '$2 == "failed" || $2 == "timeout" { bad = 1 } END { exit bad ? 0 : 1 }' "$WORK/steps.tsv"; then
    exit 1
  fi
  exit 0
}

main "$@"
