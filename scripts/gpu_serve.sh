#!/usr/bin/env bash
# The GPU serving run in ONE call (device tool, one H100 80 GB): Llama-3-8B with random bf16 weights.
# (a) calibration: prefill time against tokens, decode step time against running requests and
#     context length -> $OUT/calibration.json, the simulator's calibration file (--gpu calibrated);
# (b) 96 real requests of the Azure conversation trace (a contiguous window, prompts as recorded,
#     outputs capped at 128 tokens), all at t = 0, served by static padded `generate` in batches of
#     16 and by transformers' continuous batching (16 running at most, 2,048 tokens per step), eager
#     and with CUDA graphs: measured output tokens/s of each beside the simulator's prediction with
#     the calibrated costs -> $OUT/serve.json. Each calibration point also records its kernels' own
#     time (the profiler), so a step's wall time splits into GPU work and host overhead.
#
#   device tool:  PACKVIZ_GIT_COMMIT=<commit> bash scripts/gpu_serve.sh          (results under $OUT)
#   here, on CPU: OUT=/tmp/pv-serve-smoke bash scripts/gpu_serve.sh --smoke      (tiny model, ~10 s)
#
# Estimated timeline on one H100 (8 minutes at most in all; the first run, 2026-11-26, 128 requests
# and two engines, took 4.6 min: static 131 s, continuous 89 s):
#   0:00  environment probe: nvidia-smi, versions -> env.txt                         ~15 s
#   0:15  python start, Llama-3-8B built on the GPU (random bf16 weights)             ~20 s
#   0:35  preflight: each engine once on 2 tiny requests (CUDA graphs captured)       ~10-40 s
#   1:15  calibration: 10 prefill points + 14 decode points, wall and kernel time     ~40 s
#   1:55  static generate: 96 requests in 6 batches of 16 (up to 127 decode steps)   ~100 s
#   3:35  continuous batching, eager: the same 96 requests                            ~70 s
#   4:45  continuous batching, CUDA graphs: the same 96 requests                      ~30-70 s
#   5:55  simulator predictions, serve.json                                           ~1 s
# No step starts after DEADLINE (330 s); `timeout` ends python at LIMIT (420 s) + 20 s grace.
# serve.json is rewritten after every step, calibration.json after every point.
#
# Extra arguments go to scripts/gpu_serve.py (e.g. --requests 64 --output-cap 32).
# The machine has torch and transformers but not packviz: it runs from the repository root.
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"   # repository root, $PY, PYTHONPATH, PACKVIZ_GIT_COMMIT
OUT="${OUT:-$PWD/serve-results}"
mkdir -p "$OUT"

probe   # the environment log: $OUT/env.txt (scripts/gpu_env.sh)

if [ "${1:-}" = "--smoke" ]; then
  shift
  ARGS=(--smoke --deadline "${DEADLINE:-50}" --limit "${LIMIT:-60}" "$@")
  LIMIT="${LIMIT:-60}"
else
  LIMIT="${LIMIT:-420}"
  ARGS=(--deadline "${DEADLINE:-330}" --limit "$LIMIT" "$@")
fi

timeout --signal=INT --kill-after=20 "$LIMIT" "$PY" scripts/gpu_serve.py --out "$OUT" "${ARGS[@]}" 2>&1 \
  | tee "$OUT/serve.log"
rc=${PIPESTATUS[0]}
ls -l "$OUT"
exit "$rc"
