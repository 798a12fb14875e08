"""A small continuous-batching engine in plain PyTorch: the scheduler's plans executed on a real Llama-3.

torch and transformers (for the model's weights), imported only when an engine runs. One
file per role, as nano-vllm and gpt-fast do it:

* :mod:`.llama` -- Llama-3's forward over one ragged token stream (RMSNorm, RoPE with the
  llama3 scaling, GQA attention, SwiGLU), on a ``LlamaForCausalLM``'s own weights;
* :mod:`.attention` -- attention over the KV cache read in place, one call per layer for a
  whole mixed step: an exact per-sequence reference and FlashAttention-2 with ``seqused_k``;
* :mod:`.kv` -- the physical KV cache: one contiguous region per running request;
* :mod:`.runner` -- a plan as one token stream (``position_ids``, ``cu_seqlens``,
  ``slot_mapping``), greedy sampling, CUDA graphs for decode-only steps;
* :mod:`.run` -- :func:`run_engine`: the scheduler of :mod:`packviz.serving.scheduler`
  driven with the wall clock, returning an :class:`~packviz.serving.simulator.EngineResult`.
"""

from ...model_extra import require_model_extra

require_model_extra("packviz.serving.engine")  # before torch: without it, one line naming packviz[model]
from .run import Engine, run_engine

__all__ = ["Engine", "run_engine"]
