"""Real engines on a real ``LlamaForCausalLM``: static padded ``generate`` and transformers' continuous batching.

torch and transformers (imported lazily where heavy): a labelled comparison for packviz's own
engine (:mod:`packviz.serving.engine`), never driven by the simulator. Both engines run
**greedy with EOS disabled**, each request for exactly its own ``max_new_tokens`` (G from
the trace), so their outputs can be compared token for token with each request run alone:

* :func:`static_generate` -- what a naive server does: FIFO batches of B, each
  left-padded to its longest prompt and run by ``model.generate`` until the batch's longest
  G; a forward pre-hook (:class:`ForwardLog`) records every forward's ``input_ids`` shape,
  so the padded prompt tokens and decode slot-steps it really ran can be counted;
* :func:`continuous_generate` -- transformers' continuous batching (paged KV cache, FIFO
  scheduler: decodes first, prefills chunked to fill ``max_batch_tokens``), through its
  manager (``init_continuous_batching`` -> ``add_request(..., max_new_tokens=G)``), since
  ``generate_batch`` takes one ``max_new_tokens`` for all requests;
* :func:`generate_alone` -- each request by itself, no padding: the reference.

Checked on transformers 5.17 (the GPU image) and 5.24: the manager's API is the same;
``ContinuousBatchingConfig`` renamed ``block_size`` to ``page_size`` (5.24 warns on the old
name), so :func:`cb_config_kwargs` looks the name up.

.. warning::
   On a CPU these timings measure Python overhead (the scheduler, ``generate``'s loop,
   tiny kernels), not GPU behaviour: use CPU runs for correctness only.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from ..model_extra import require_model_extra

require_model_extra("packviz.serving.hf")  # before torch: without it, one line naming packviz[model]
import torch

from ..trace import request_ids


def disable_eos(model) -> None:
    """No end-of-sequence token anywhere (model config and its generation config): every request runs to its G."""
    model.config.eos_token_id = None
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.eos_token_id = None


def greedy(max_new_tokens: int, pad_token_id: int = 0, eos_token_id: int | None = None):
    """A ``GenerationConfig``: greedy, no EOS, exactly ``max_new_tokens`` new tokens.

    ``generate`` disables EOS with ``None``; the continuous-batching manager spells it ``-1``.
    """
    from transformers import GenerationConfig

    return GenerationConfig(do_sample=False, max_new_tokens=int(max_new_tokens), eos_token_id=eos_token_id,
                            pad_token_id=pad_token_id, use_cache=True)


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


class ForwardLog:
    """Record the ``input_ids`` shape of every forward of ``model`` (a pre-hook, removed on exit)::

        with ForwardLog(model) as log:
            model.generate(...)
        log.shapes        # [(B, W), (B, 1), (B, 1), ...]: the prefill, then one per decode step
    """

    def __init__(self, model):
        self.model, self.shapes, self.handle = model, [], None

    def hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else (args[0] if args else None)
        if ids is not None:
            self.shapes.append(tuple(ids.shape))

    def __enter__(self) -> "ForwardLog":
        self.handle = self.model.register_forward_pre_hook(self.hook, with_kwargs=True)
        return self

    def __exit__(self, *exc) -> bool:
        self.handle.remove()
        return False


@torch.no_grad()
def generate_alone(model, prompts, max_new_tokens) -> list[list[int]]:
    """Each request by itself (batch of one, no padding): its first ``max_new_tokens[i]`` greedy tokens."""
    device = model.device
    out = []
    for ids, g in zip(prompts, max_new_tokens):
        x = torch.tensor([ids], device=device)
        y = model.generate(x, attention_mask=torch.ones_like(x), generation_config=greedy(g))
        out.append(y[0, len(ids):].tolist())
    return out


def left_pad(prompts, pad_id: int = 0, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` of shape (B, W): each prompt right-aligned, pads on the left.

    >>> ids, mask = left_pad([[5, 6, 7], [8]])
    >>> ids.tolist(), mask.tolist()
    ([[5, 6, 7], [0, 0, 8]], [[1, 1, 1], [0, 0, 1]])
    """
    w = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), w), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), w), dtype=torch.long)
    for r, p in enumerate(prompts):
        ids[r, w - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[r, w - len(p):] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def static_generate(model, prompts, max_new_tokens, batch_size: int) -> dict:
    """A naive server: consecutive batches of ``batch_size``, left-padded, ``generate`` to the batch's longest G.

    Returns ``{"outputs": [[tokens] per request], "seconds", "shapes": [[(B, L), ...] per batch],
    "prefill_pad_tokens", "decode_slot_steps", "forward_calls"}`` -- the last three counted
    from the recorded forward shapes (the first forward of a batch is its prefill).
    """
    device = model.device
    outputs, shapes = [], []
    sync(device)
    t0 = time.perf_counter()
    for start in range(0, len(prompts), batch_size):
        p, g = prompts[start:start + batch_size], list(max_new_tokens[start:start + batch_size])
        ids, mask = left_pad(p, device=device)
        with ForwardLog(model) as log:
            y = model.generate(ids, attention_mask=mask, generation_config=greedy(max(g)))
        new = y[:, ids.shape[1]:].tolist()
        outputs += [row[:n] for row, n in zip(new, g)]
        shapes.append(log.shapes)
    sync(device)
    seconds = time.perf_counter() - t0
    real = sum(len(x) for x in prompts)
    return {"outputs": outputs, "seconds": seconds, "shapes": shapes, **static_counts(shapes, real)}


def static_counts(shapes, real_prompt_tokens: int) -> dict:
    """Padded prompt tokens, decode slot-steps and forward calls from per-batch forward shapes.

    >>> static_counts([[(2, 5), (2, 1), (2, 1)], [(1, 3)]], real_prompt_tokens=4 + 5 + 3)
    {'prefill_pad_tokens': 1, 'decode_slot_steps': 4, 'forward_calls': 4}
    """
    prefill = sum(b[0][0] * b[0][1] for b in shapes if b)
    decode = sum(rows for b in shapes for rows, _ in b[1:])
    return {"prefill_pad_tokens": prefill - real_prompt_tokens, "decode_slot_steps": decode,
            "forward_calls": sum(len(b) for b in shapes)}


def cb_config_kwargs(max_batch=None, token_budget=None, num_blocks=None, page_size=None,
                     use_cuda_graph=None) -> dict:
    """Keyword arguments for ``ContinuousBatchingConfig`` on this transformers version (``None`` left out).

    Prefix sharing off (random prompts share nothing; it would also reorder requests).
    The page size is ``page_size`` on transformers >= 5.24-ish, ``block_size`` before.
    """
    from transformers import ContinuousBatchingConfig

    fields = {f.name for f in dataclasses.fields(ContinuousBatchingConfig)}
    page_key = "page_size" if "page_size" in fields else "block_size"
    kw = {"max_requests_per_batch": max_batch, "max_batch_tokens": token_budget, "num_blocks": num_blocks,
          page_key: page_size, "allow_block_sharing": False, "use_cuda_graph": use_cuda_graph}
    return {k: v for k, v in kw.items() if v is not None and k in fields}


def resolved_cb_config(manager) -> dict:
    """What the manager really runs with: cap, token budget, pages, CUDA graphs, scheduler."""
    cfg = getattr(manager, "continuous_batching_config", None)
    keys = ("max_requests_per_batch", "max_batch_tokens", "num_blocks", "page_size", "block_size",
            "use_cuda_graph", "use_async_batching", "scheduler_type", "allow_block_sharing")
    out = {k: getattr(cfg, k) for k in keys if cfg is not None and hasattr(cfg, k)}
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in out.items()}


@torch.no_grad()
def continuous_generate(model, prompts, max_new_tokens, *, max_batch=None, token_budget=None, num_blocks=None,
                        page_size=None, use_cuda_graph=None, timeout_s: float = 600.0) -> dict:
    """transformers' continuous batching: every request added at t = 0, each with its own ``max_new_tokens``.

    The manager is created and warmed up before the clock starts. Returns ``{"outputs",
    "seconds", "config"}`` (``config``: the resolved :func:`resolved_cb_config`).
    ``TimeoutError`` if the requests are not all done within ``timeout_s``;
    ``RuntimeError`` naming the first failed request.
    """
    from transformers import ContinuousBatchingConfig

    cbc = ContinuousBatchingConfig(**cb_config_kwargs(max_batch, token_budget, num_blocks, page_size, use_cuda_graph))
    manager = model.init_continuous_batching(generation_config=greedy(max(max_new_tokens), eos_token_id=-1),
                                             continuous_batching_config=cbc)
    try:
        manager.warmup()
        config = resolved_cb_config(manager)
        manager.start()
        sync(model.device)
        t0 = time.perf_counter()
        ids = [manager.add_request(p, request_id=f"r{i}", max_new_tokens=int(g), eos_token_id=-1)
               for i, (p, g) in enumerate(zip(prompts, max_new_tokens))]
        results = _collect(manager, ids, t0 + timeout_s)
        sync(model.device)
        seconds = time.perf_counter() - t0
        config["attn_implementation"] = str(model.config._attn_implementation)   # while the manager runs
    finally:
        manager.stop(block=True, timeout=30)
        manager.destroy()
    return {"outputs": [list(results[i].generated_tokens) for i in ids], "seconds": seconds, "config": config}


def _collect(manager, ids, deadline: float) -> dict:
    """Finished results by request id; errors and stalls raised."""
    results = {}
    while len(results) < len(ids):
        r = manager.get_result(timeout=0.5)
        if r is not None and r.is_finished():
            if r.error is not None:
                raise RuntimeError(f"continuous batching failed request {r.request_id}: {r.error}")
            results[r.request_id] = r
        elif r is None and not manager.is_running():
            raise RuntimeError(f"the continuous batching thread stopped with {len(ids) - len(results)} requests left")
        if time.perf_counter() > deadline:
            raise TimeoutError(f"continuous batching: {len(ids) - len(results)} of {len(ids)} requests unfinished "
                               "at the deadline")
    return results


def first_mismatch(outputs, reference) -> int | None:
    """Index of the first request whose tokens differ from the reference, or None if all are equal."""
    return next((i for i, (a, b) in enumerate(zip(outputs, reference)) if a != b),
                None if len(outputs) == len(reference) else min(len(outputs), len(reference)))


def equality_check(model, prompt_tokens, generated_tokens, batch_size: int, seed: int = 0, **cb_kwargs) -> dict:
    """Both engines against each request alone, and ``static``'s accounting against the simulator's.

    ``prompt_tokens``, ``generated_tokens``: (N,) per request. Returns a JSON-ready dict:
    ``static_equal`` / ``continuous_equal`` (every request's tokens equal to it alone),
    the first mismatch of each, the engine's counted ``prefill_pad_tokens`` /
    ``decode_slot_steps`` beside the simulator's for the same batches (offline arrivals,
    B = ``batch_size``), and the wall seconds of each run (CPU: Python overhead only).
    """
    from ..shapes import shape_from_config
    from ..trace import Trace
    from .metrics import summary
    from .simulator import simulate

    disable_eos(model)
    g = [int(x) for x in generated_tokens]
    prompts = request_ids(prompt_tokens, model.config.vocab_size, seed)
    t0 = time.perf_counter()
    alone = generate_alone(model, prompts, g)
    alone_s = time.perf_counter() - t0
    static = static_generate(model, prompts, g, batch_size)
    cont = continuous_generate(model, prompts, g, **cb_kwargs)
    trace = Trace(np.zeros(len(g)), np.asarray(prompt_tokens, dtype=np.int64), np.asarray(g, dtype=np.int64))
    sim = summary(simulate(trace, "static", model=shape_from_config(model.config), arrivals="offline",
                           max_batch=batch_size, kv_budget_tokens=10 ** 9))
    return {
        "requests": len(g), "batch_size": batch_size,
        "static_equal": first_mismatch(static["outputs"], alone) is None,
        "continuous_equal": first_mismatch(cont["outputs"], alone) is None,
        "static_first_mismatch": first_mismatch(static["outputs"], alone),
        "continuous_first_mismatch": first_mismatch(cont["outputs"], alone),
        "lengths_ok": [len(x) for x in alone] == g,
        "engine": {k: static[k] for k in ("prefill_pad_tokens", "decode_slot_steps", "forward_calls")},
        "simulator": {"prefill_pad_tokens": sim["prefill_pad_tokens"], "decode_slot_steps": sim["decode_slot_steps"],
                      "forward_calls": sim["steps"]},
        "seconds": {"alone": alone_s, "static": static["seconds"], "continuous": cont["seconds"]},
        "continuous_config": cont["config"],
    }
