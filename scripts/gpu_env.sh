# Sourced by gpu_bench.sh and gpu_serve.sh: the environment of a one-call GPU run.
# The device machine has torch and transformers but not packviz: the run starts at the repository
# root with it on PYTHONPATH, offline, unbuffered, and records the commit it measures
# (PACKVIZ_GIT_COMMIT wins: the device's copy of the tree may have no .git).
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null 2>&1 || PY=python
# no $PYTHON given and that python has no torch (a development machine): the repository's .venv, if any
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && \
   ! "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)" 2>/dev/null; then
  PY="$PWD/.venv/bin/python"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTORCH_CUDA_ALLOC_CONF="${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}"
export PACKVIZ_GIT_COMMIT="${PACKVIZ_GIT_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
# what differs from that commit: the caller passes PACKVIZ_GIT_CHANGES (empty = a clean tree) where the
# copy has no .git; left unset, the run asks git, or records "unknown"

# probe: the environment log, printed and written to $OUT/env.txt -- date, host, commit, nvidia-smi,
# the C compiler (triton builds a launcher with it at run time: FlexAttention needs one), torch,
# CUDA, cuDNN, transformers, flash-attn, and which packviz attention methods run here.
probe() {
  {
    echo "== $(date -u +%FT%TZ) $(hostname) commit $PACKVIZ_GIT_COMMIT"
    nvidia-smi || echo "nvidia-smi: not available"
    echo "C compiler: $(command -v "${CC:-gcc}" || command -v clang || echo none)"
    "$PY" -c "
import importlib.util, torch, transformers
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available(),
      'cudnn', torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
print('transformers', transformers.__version__)
print('flash_attn', 'installed' if importlib.util.find_spec('flash_attn') else 'not installed')
from packviz.attention import availability, format_availability
print(format_availability(availability()))
"
  } 2>&1 | tee "$OUT/env.txt"
}
