#!/usr/bin/env bash
# The GPU engine run in ONE device call (one H100 80 GB): the ceilings, packviz's engine on Llama-3-8B
# (random bf16 weights) timed step by step against its roofline, 128 real trace requests served under
# static, continuous and chunked batching beside the simulator's prediction, then prefill controls.
# What it measures and why: issues 19 ("Performance") and 21; the steps: scripts/gpu_serve.py.
# Results under $OUT, each rewritten as soon as a step (or a grid point) ends, so a time-out loses
# only the step it was in: engine.json (every figure, schema packviz.engine-run/1), calibration.json
# (the grid, schema packviz.serve-calibration/1: `python -m packviz serve --gpu calibrated` reads it),
# env.txt (versions, nvidia-smi), serve.log (everything printed, the report and targets at its end).
# To keep a run, copy $OUT to data/results/<date>-<gpu>-engine/ and add its row to data/results/README.md.
#
#   device tool:  run(command="PACKVIZ_GIT_COMMIT=<commit> PACKVIZ_GIT_CHANGES=<git status --porcelain, comma-joined; empty if clean> bash scripts/gpu_serve.sh", timeout_s=450)
#   here, on CPU: OUT=/tmp/pv-engine-smoke bash scripts/gpu_serve.sh --smoke     (tiny model, ~15 s)
#
# Estimated timeline on one H100 (seconds from the start of the call; nothing of it has run on a GPU
# yet: the figures come from the last runs (model build 11 s, 686 TFLOP/s held) and the simulator's
# H100 preset for the 128 requests (static 45 s, continuous 12 s, chunked 9 s of steps)):
#    0 s  environment probe: nvidia-smi, versions, attention methods -> env.txt
#   12 s  python starts (torch, transformers, packviz imported)
#   17 s  step 1, ceilings: nvidia-smi -q, matmul 8192³ held 1.5 s, 4 GiB copy x 5, two GEMVs
#   30 s  step 2, model: Llama-3-8B built on the GPU with random bf16 weights
#   42 s  step 3, grid: engine built (attention probe, 9 CUDA graphs captured), 17 decode points,
#         3 mixed, 8 prefill, 2 padded prefill -> calibration.json after each; the fit
#   75 s  step 4, serve: static B=32 (~60 s), continuous B=32 (~20 s), chunked 8,192 tokens (~15 s),
#         each with ~5 s of engine set-up and the simulator's predictions (fitted, preset, replay);
#         outputs are capped only if the fitted costs predict they would not fit before DEADLINE
#  185 s  step 5, prefill controls: the prefill benchmark's 2 windows padded with pad id 0 and with
#         random ids, the equal-length control, and the engine's varlen step (~45 s)
#  230 s  step 6, more windows: padded vs varlen at 8 percentiles of the ideal speed-up, each only
#         if its estimate ends before DEADLINE (~10 s each)
#  312 s  DEADLINE (300 s of python): no step starts after it; then the targets and the report
#  392 s  LIMIT (380 s of python): `timeout` interrupts it (engine.json keeps every finished step)
#  402 s  worst case end of the call (probe + LIMIT + 10 s kill grace + the listing), under 7 min
# A shorter call (e.g. a rerun): DEADLINE=200 LIMIT=280 bash scripts/gpu_serve.sh
#
# Extra arguments go to scripts/gpu_serve.py (e.g. --steps ceilings,model,grid).
# The machine has torch and transformers but not packviz: it runs from the repository root.
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"   # repository root, $PY, PYTHONPATH, PACKVIZ_GIT_COMMIT
OUT="${OUT:-$PWD/engine-results}"
mkdir -p "$OUT"

probe   # the environment log: $OUT/env.txt (scripts/gpu_env.sh)

if [ "${1:-}" = "--smoke" ]; then
  shift
  LIMIT="${LIMIT:-100}"
  ARGS=(--smoke --deadline "${DEADLINE:-80}" --limit "$LIMIT" "$@")
else
  LIMIT="${LIMIT:-380}"
  ARGS=(--deadline "${DEADLINE:-300}" --limit "$LIMIT" "$@")
fi

timeout --signal=INT --kill-after=10 "$LIMIT" "$PY" scripts/gpu_serve.py --out "$OUT" "${ARGS[@]}" 2>&1 \
  | tee "$OUT/serve.log"
rc=${PIPESTATUS[0]}
ls -l "$OUT"
exit "$rc"
