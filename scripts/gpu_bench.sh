#!/usr/bin/env bash
# The prefill benchmark in ONE device call (one H100): Llama-3-8B, random bf16 weights, the same
# requests run padded and packed -- scenarios trace (windows of B = 32 consecutive real requests),
# offline (the same sample packed whole), seed and uniform. Results under $OUT, rewritten after
# every step: bench.json, bench.png, bench.log, env.txt. To keep a run, copy $OUT to
# data/results/<date>-<gpu>/ and add its row to data/results/README.md.
#
#   device tool:  run(command="PACKVIZ_GIT_COMMIT=<hash> PACKVIZ_GIT_CHANGES=<git status --porcelain, comma-joined; empty if clean> bash scripts/gpu_bench.sh", timeout_s=500)
#   here, on CPU: OUT=/tmp/pv-gpu-smoke bash scripts/gpu_bench.sh --smoke
#
# Estimated timeline on an H100 (seconds from the start of the call; measured on the first run,
# 2026-11-26: probe 11 s, model 9 s, phase 1 ended at 248 s, flex's compiles took ~70 s). The
# python run stops starting steps at DEADLINE and `timeout` ends it at LIMIT: the call ends inside 7.5 min.
#    0 s  environment probe: nvidia-smi, versions, which attention methods run (env.txt)
#   12 s  python starts; Llama-3-8B built on the GPU with random weights (8.03 B parameters)
#   30 s  matmul ceiling (bf16 8192³, 3 measurements of >= 1 s each)
#   35 s  preflight: every non-compiled method once at a tiny shape (kernel, correctness)
#   40 s  phase 1, trace: padded, padded-masked, padded-sorted, dense, varlen (1 warm-up + 3 timed passes)
#  125 s  phase 1, offline: dense, varlen (the padded baselines are trace's, not re-run)
#  145 s  phase 1, seed (padded-sorted skipped: one window, nothing to regroup) and uniform
#  235 s  phase 2: flex preflight (its compile: ~40 s), then flex in every scenario (a recompile per new shape)
#  345 s  matmul ceiling again (the lower of the two is used), bench.png; python exits
#  370 s  DEADLINE: no new step starts after it; LIMIT (410 s): `timeout` interrupts the run,
#         which still writes its final status
#  440 s  worst case end of the call (probe + LIMIT + 20 s kill grace + listing)
#
# Extra arguments go to `python -m packviz bench` (e.g. --methods padded,varlen).
# The machine has torch and transformers but not packviz: it runs from the repository root.
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"   # repository root, $PY, PYTHONPATH, PACKVIZ_GIT_COMMIT
OUT="${OUT:-$PWD/bench-results}"
mkdir -p "$OUT"

probe   # the environment log: $OUT/env.txt (scripts/gpu_env.sh)

if [ "${1:-}" = "--smoke" ]; then
  shift
  ARGS=(--smoke --no-progress "$@")
  LIMIT="${LIMIT:-120}"
else
  ARGS=(--model llama-3-8b --pack-len 8192 --batch-size 32 --trace-n 64 --repeats 3
        --deadline "${DEADLINE:-370}" --no-progress "$@")
  LIMIT="${LIMIT:-410}"
fi

timeout --signal=INT --kill-after=20 "$LIMIT" "$PY" -m packviz bench --out "$OUT" "${ARGS[@]}" 2>&1 \
  | tee "$OUT/bench.log"
rc=${PIPESTATUS[0]}
ls -l "$OUT"
exit "$rc"
