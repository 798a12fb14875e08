#!/usr/bin/env bash
# The GPU benchmark in ONE call (device tool, one H100): Llama-3-8B with random bf16 weights,
# padded vs packed prefill on the trace / seed / uniform scenarios. Under 8 minutes in all:
# the bench stops starting new steps at DEADLINE seconds and `timeout` ends it at LIMIT;
# bench.json is rewritten after every step, so an interrupted run keeps what it measured.
#
#   device tool:  bash scripts/gpu_bench.sh                  (results under $OUT)
#   here, on CPU: OUT=/tmp/pv-gpu-smoke bash scripts/gpu_bench.sh --smoke
#
# Extra arguments go to `python -m packviz bench` (e.g. --methods padded,varlen).
# The machine has torch and transformers but not packviz: it runs from the repository root.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/bench-results}"
PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null 2>&1 || PY=python
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTORCH_CUDA_ALLOC_CONF="${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}"
mkdir -p "$OUT"

{
  echo "== $(date -u +%FT%TZ) $(hostname)"
  nvidia-smi || echo "nvidia-smi: not available"
  # FlexAttention needs triton to build a C launcher at run time: a C compiler and Python.h
  echo "C compiler: $(command -v "${CC:-gcc}" || command -v clang || echo none)"
  "$PY" -c "
import torch, transformers
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())
print('transformers', transformers.__version__)
from packviz.attention import availability, format_availability
print(format_availability(availability()))
"
} 2>&1 | tee "$OUT/env.txt"

if [ "${1:-}" = "--smoke" ]; then
  shift
  ARGS=(--smoke --no-progress "$@")
  LIMIT="${LIMIT:-120}"
else
  # --no-progress: a non-interactive run logs one line per method instead of a tqdm bar
  # (whose carriage-return redraws would crowd the log tail the device tool returns)
  ARGS=(--model llama-3-8b --pack-len 8192 --batch-size 32 --trace-n 96 --repeats 3
        --deadline "${DEADLINE:-370}" --no-progress "$@")
  LIMIT="${LIMIT:-440}"
fi

timeout --signal=INT --kill-after=20 "$LIMIT" "$PY" -m packviz bench --out "$OUT" "${ARGS[@]}" 2>&1 \
  | tee "$OUT/bench.log"
rc=${PIPESTATUS[0]}
ls -l "$OUT"
exit "$rc"
