"""Time single serving steps: the points the simulator's cost model is fitted to.

torch. A point is one kind of step a server runs (:data:`packviz.serving.calibration.KINDS`),
given as ``{"kind", "batch", "tokens", "context"}`` and laid out as a scheduler plan by
:func:`~packviz.serving.calibration.point_plan`::

    prefill         batch rows of ``tokens`` new tokens
    padded_prefill  batch rows of width ``tokens``, half of them half as long and padded
    decode          batch rows of one token over ``context`` cached ones (random K/V)
    mixed           batch decodes over ``context`` beside one prefill of ``tokens``

Two engines time them:

* **packviz's engine** (:func:`calibrate`): the step executed exactly as a serving run executes
  it -- :meth:`~packviz.serving.engine.run.Engine.execute`, decode steps replayed from CUDA
  graphs on a GPU. Each point holds ``seconds`` (wall time between step ends, median) and
  ``gpu_seconds`` (CUDA events around the forward; ``None`` on CPU). This is the calibration the
  simulator is fitted to (``"engine": "packviz"`` in ``calibration.json``).
* **transformers' forward** (:func:`hf_measure`, a labelled comparison): a ``DynamicCache``
  that concatenates K/V every step and repeats them for GQA, timed with the profiler.

Token ids and cached K/V are random (never zeros: some kernels run measurably faster on zeros).
"""

from __future__ import annotations

import inspect
import time

import numpy as np

from ..model_extra import require_model_extra

require_model_extra("packviz.serving.stepcost")  # before torch: without it, one line naming packviz[model]
import torch

from .calibration import point_plan
from .hf import sync


# ---------------------------------------------------------------------- the grid
def grid(prefill_tokens, decode_batches, decode_contexts, max_cached_tokens: int,
         padded=((8, 1024),), prefill_batches=((4, 2048), (16, 1024)), mixed=()) -> list[dict]:
    """Calibration points: prefills of one row, a few batched and padded ones, decodes over a grid,
    and ``mixed`` steps given as (decodes, context, chunk tokens).

    Decode points whose cache (batch × context tokens) exceeds ``max_cached_tokens`` are left out.

    >>> [p["kind"][0] + str(p["batch"]) for p in grid([128], [1, 64], [4096], 65536, padded=(), prefill_batches=(),
    ...                                                 mixed=((8, 512, 256),))]
    ['p1', 'd1', 'm8']
    """
    points = [{"kind": "prefill", "batch": 1, "tokens": int(n), "context": 0} for n in prefill_tokens]
    points += [{"kind": "prefill", "batch": int(b), "tokens": int(n), "context": 0} for b, n in prefill_batches]
    points += [{"kind": "padded_prefill", "batch": int(b), "tokens": int(n), "context": 0} for b, n in padded]
    points += [{"kind": "decode", "batch": int(b), "tokens": 1, "context": int(c)}
               for b in decode_batches for c in decode_contexts if b * c <= max_cached_tokens]
    points += [{"kind": "mixed", "batch": int(b), "tokens": int(n), "context": int(c)} for b, c, n in mixed]
    return points


# ---------------------------------------------------------------------- packviz's engine
def point_regions(plan) -> dict:
    """{request: KV tokens} a point's plan reads and writes: each decode its context and token, each piece its row."""
    sizes = {r: c + 1 for r, c in zip(plan.decodes, plan.contexts)}
    sizes.update({p.request: p.done + p.tokens + p.pad for p in plan.prefills})
    return sizes


def engine_for(model, points, cuda_graphs=None):
    """An :class:`~packviz.serving.engine.run.Engine` whose cache holds the largest point, filled with random K/V."""
    from .engine.run import Engine

    plans = [point_plan(p) for p in points]
    capacity = max(sum(point_regions(plan).values()) for plan in plans)
    max_batch = max(max(len(plan.decodes), 1) for plan in plans)
    longest = max(max(point_regions(plan).values()) for plan in plans)

    def no_admissions(plan, r):
        raise RuntimeError("calibration steps admit no requests")
    engine = Engine(model, capacity, max_batch, longest, no_admissions, {}, cuda_graphs=cuda_graphs)
    engine.cache.kv.normal_(generator=torch.Generator(device=engine.device).manual_seed(0))
    return engine


def time_plan(engine, plan, sizes: dict, repeats: int = 5, warmup: int = 2, seed: int = 0) -> dict:
    """Execute ``plan`` on ``engine`` ``warmup + repeats`` times over fresh regions of ``sizes``
    ({request: KV tokens}) holding random token ids; ``{"seconds", "gpu_seconds", "runs", "graphed"}``
    (medians; ``runs``: every timed wall time). The regions are freed afterwards."""
    rng = np.random.default_rng(seed)
    for r, n in sizes.items():
        engine.cache.allocate(r, n)
        engine.seqs[r] = rng.integers(1, engine.llama.vocab, n).tolist()
    wall, gpu = [], []
    try:
        for i in range(warmup + repeats):
            sync(engine.device)
            engine.mark = time.perf_counter()
            seconds = engine.execute(plan)
            if i >= warmup:
                wall.append(seconds)
                gpu.append(engine.gpu_seconds[-1])
    finally:
        for r in sizes:
            engine.cache.free(r)
    return {"seconds": float(np.median(wall)), "gpu_seconds": None if gpu[0] is None else float(np.median(gpu)),
            "runs": wall, "graphed": engine.graphed[-1]}


def time_step(engine, point: dict, repeats: int = 5, warmup: int = 2, seed: int = 0) -> dict:
    """Time one calibration point on ``engine`` (:func:`time_plan` of its plan); the point with
    ``seconds`` and ``gpu_seconds`` (medians), ``graphed`` and ``engine: "packviz"`` added."""
    plan = point_plan(point)
    t = time_plan(engine, plan, point_regions(plan), repeats, warmup, seed)
    return {**point, "seconds": t["seconds"], "gpu_seconds": t["gpu_seconds"], "graphed": t["graphed"],
            "engine": "packviz"}


def calibrate(model, points, repeats: int = 5, cuda_graphs=None, deadline=None, on_point=None) -> list[dict]:
    """Every point timed on packviz's engine, in order. ``deadline``: a ``time.perf_counter()`` value
    after which no point starts; ``on_point(point)``: called after each (e.g. to write a file)."""
    engine = engine_for(model, points, cuda_graphs)
    out = []
    for point in points:
        if deadline is not None and time.perf_counter() > deadline:
            break
        out.append(time_step(engine, point, repeats))
        if on_point is not None:
            on_point(out[-1])
    return out


# ---------------------------------------------------------------------- transformers (the comparison)
def cache_kwarg(model) -> str:
    """The forward's name for the KV cache: ``cache`` (transformers >= 5.2x) or ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def random_cache(model, batch: int, context: int, seed: int = 0):
    """A ``DynamicCache`` holding ``context`` random K/V tokens per row, shape (batch, kv_heads, context, head_dim)."""
    from transformers import DynamicCache

    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    g = torch.Generator(device=model.device).manual_seed(seed)
    cache = DynamicCache(config=cfg)
    for layer in range(cfg.num_hidden_layers):
        shape = (batch, cfg.num_key_value_heads, context, head_dim)
        k = torch.randn(shape, generator=g, device=model.device, dtype=model.dtype)
        cache.update(k, torch.randn(shape, generator=g, device=model.device, dtype=model.dtype), layer)
    return cache


def _ids(model, batch: int, tokens: int, seed: int) -> torch.Tensor:
    g = torch.Generator(device=model.device).manual_seed(seed)
    return torch.randint(1, model.config.vocab_size, (batch, tokens), generator=g, device=model.device)


def kernel_seconds(fn) -> float | None:
    """Seconds the GPU spends in kernels during one call of ``fn``: the CUDA kernel durations the
    profiler records, summed (one stream, so they do not overlap). ``None`` on a CPU, or when the
    profiler cannot see the GPU.

    Beside the wall time this splits a step into device work and host overhead: a decode step of
    an eager model can take several times its kernels' time when Python and kernel launches, not
    the GPU, set the pace.
    """
    if fn.device.type != "cuda":
        return None
    try:
        from torch.profiler import ProfilerActivity, profile

        sync(fn.device)
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn()
            sync(fn.device)
        total = sum(getattr(e, "self_device_time_total", 0) or getattr(e, "self_cuda_time_total", 0)
                    for e in prof.key_averages())
        return total / 1e6 if total > 0 else None
    except Exception:  # noqa: BLE001 -- a profiler that cannot run here must not cost the calibration
        return None


def _median_seconds(fn, repeats: int) -> float:
    fn()                                   # warm-up (allocator, cuBLAS heuristics)
    times = []
    for _ in range(repeats):
        sync(fn.device)
        t0 = time.perf_counter()
        fn()
        sync(fn.device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


class _Step:
    """A callable forward with its device (what :func:`_median_seconds` times)."""

    def __init__(self, model, make_kwargs):
        self.model, self.make_kwargs, self.device = model, make_kwargs, model.device

    @torch.no_grad()
    def __call__(self):
        return self.model(**self.make_kwargs(), use_cache=True, logits_to_keep=1)


def hf_time_prefill(model, batch: int, tokens: int, padded: bool = False, repeats: int = 3, seed: int = 0) -> dict:
    """Seconds of one prefill forward of (batch, tokens); ``padded``: half the rows left-padded to half length."""
    ids = _ids(model, batch, tokens, seed)
    mask = None
    if padded:
        mask = torch.ones_like(ids)
        mask[: batch // 2, : tokens - tokens // 2] = 0        # rows 0 .. B/2-1 hold tokens // 2 real tokens
    step = _Step(model, lambda: {"input_ids": ids, "attention_mask": mask})
    kind = "padded_prefill" if padded else "prefill"
    return {"kind": kind, "batch": batch, "tokens": tokens, "context": 0, "seconds": _median_seconds(step, repeats),
            "gpu_seconds": kernel_seconds(step)}


def hf_time_decode(model, batch: int, context: int, repeats: int = 5, seed: int = 0) -> dict:
    """Seconds of one decode forward: ``batch`` rows, one token each, over ``context`` cached tokens.

    The cache grows by one token per timed call (``context`` + the repeats, a rounding error).
    A 2-D mask with the first position masked makes SDPA take the padded-batch path, as in ``generate``.
    """
    cache = random_cache(model, batch, context, seed)
    ids = _ids(model, batch, 1, seed)
    key = cache_kwarg(model)

    def kwargs():
        n = cache.get_seq_length()
        mask = torch.ones(batch, n + 1, dtype=torch.long, device=model.device)
        mask[:, 0] = 0
        pos = torch.full((batch, 1), n, dtype=torch.long, device=model.device)
        return {"input_ids": ids, "attention_mask": mask, "position_ids": pos, key: cache}

    step = _Step(model, kwargs)
    seconds = _median_seconds(step, repeats)
    gpu = kernel_seconds(step)
    del cache
    return {"kind": "decode", "batch": batch, "tokens": 1, "context": context, "seconds": seconds, "gpu_seconds": gpu}


def hf_measure(model, point: dict, repeats: int = 3) -> dict:
    """Time one calibration point on transformers' forward (a DynamicCache): the labelled comparison."""
    if point["kind"] == "decode":
        return hf_time_decode(model, point["batch"], point["context"], repeats=max(repeats, 3))
    return hf_time_prefill(model, point["batch"], point["tokens"], padded=point["kind"] == "padded_prefill",
                        repeats=repeats)


