"""The suite's numbers on the real trace: one definition per question, and their spread. numpy only.

Every notebook that quotes "the trace" takes its number from here, so they agree. Definitions:

* **the requests**: all 19,366 requests of the Azure LLM inference trace 2023 (conversation),
  in arrival order (:func:`packviz.trace.azure_conv`), prompts clipped to C = 8,192 tokens
  (one prompt is longer);
* **online** (serving): cut into consecutive windows of B = 32 -- what a server that batches B
  arrivals at a time sees. *Padded*: each window padded to its longest prompt. *Packed*: each
  window's prompts packed by best-fit decreasing into rows of C (:func:`packing.pack_in_windows`)
  -- the same requests per forward;
* **offline** (training): the whole trace packed at once by best-fit decreasing (requests that
  arrived an hour apart share a row) -- :func:`packing.pack`;
* **FLOPs**: Llama-3-8B prefill, the lm_head on each prompt's last token (what serving computes),
  padded priced ``causal`` (the baseline at its best) and ``masked`` (with its padding mask),
  packed priced ``varlen`` (see :mod:`packviz.flops`).

Per-window numbers come with their spread (p10, p50, p90 over the windows): one window is a
sample, not the trace. :func:`prefill_speedups` does the same for the FLOP model's ideal prefill
speed-up of each packed method, priced as the benchmark prices one forward of a window.

>>> s = summary()
>>> s["windows"], round(s["padded"]["utilization"], 3), round(s["packed_online"]["utilization"], 3)
(605, 0.292, 0.902)
"""

from __future__ import annotations

import functools

import numpy as np

from .checks import positive_int
from .flops import compare
from .shapes import get_shape
from .packing import pack, pack_in_windows, windows

BATCH = 32
"""B: requests per batch (a window of consecutive arrivals)."""
PACK_LEN = 8192
"""C: the rows of packed layouts, and the longest prompt (Llama-3-8B's context)."""
MODEL = "llama-3-8b"
TILE = (128, 128)
"""The (block_q, block_k) tiles the causal kernels are priced in: the benchmark's default (``BenchConfig.tile``)."""
PREFILL_METHODS = ("dense", "flex", "varlen")
"""The packed prefill methods of the benchmark, priced as :data:`packviz.flops.PRICING` prices them."""


def trace_prompts(pack_len: int = PACK_LEN, trace=None) -> np.ndarray:
    """Prompt lengths of every request in arrival order, clipped to ``pack_len``, shape (N,)."""
    from .trace import azure_conv

    trace = azure_conv() if trace is None else trace
    return np.minimum(trace.prompt_tokens, positive_int("pack_len", pack_len))


def window_table(batch_size: int = BATCH, pack_len: int = PACK_LEN, trace=None) -> dict:
    """Per window of ``batch_size`` consecutive requests: arrays of shape (K,) for K windows.

    ``real_tokens``, ``longest`` (W), ``padded_slots`` (B·W), ``padded_utilization``,
    ``packed_rows`` (BFD rows of C), ``packed_utilization`` (real ÷ rows·C). Windows are whole:
    the trace's last ``N mod B`` requests are left out.
    """
    lengths = trace_prompts(pack_len, trace)
    wins = [w for w in windows(len(lengths), positive_int("batch_size", batch_size)) if len(w) == batch_size]
    n = lengths[: len(wins) * batch_size].reshape(len(wins), batch_size)
    packed = pack_in_windows(n.ravel(), pack_len, batch_size)
    first = packed.seg_seq[np.searchsorted(packed.seg_row, np.arange(packed.num_rows))]
    rows = np.bincount(first // batch_size, minlength=len(wins))
    real, longest = n.sum(axis=1), n.max(axis=1)
    return {"real_tokens": real, "longest": longest, "padded_slots": batch_size * longest,
            "padded_utilization": real / (batch_size * longest), "packed_rows": rows,
            "packed_utilization": real / (rows * pack_len)}


def spread(x) -> dict:
    """p10, p50, p90, min and max of per-window values (JSON-ready)."""
    q = np.percentile(np.asarray(x, dtype=np.float64), [10, 50, 90])
    return {"p10": float(q[0]), "p50": float(q[1]), "p90": float(q[2]), "min": float(np.min(x)),
            "max": float(np.max(x))}


@functools.lru_cache(maxsize=8)
def summary(batch_size: int = BATCH, pack_len: int = PACK_LEN, model: str = MODEL) -> dict:
    """The canonical numbers of the shipped trace (see the module docstring). Cached: pure and ~1 s.

    ``padded`` / ``packed_online`` / ``packed_offline``: token ``utilization`` over the whole
    trace (real tokens ÷ slots) and, for the online layouts, its ``spread`` over windows.
    ``flops``: waste fractions of the padded batches (``causal`` and ``masked``) and of the
    online packed rows (``dense`` mask, ``varlen``), the ideal ``varlen_speedup`` over padded,
    and ``attention_share_of_padded_waste`` (the wasted FLOPs that are attention, not linear).
    """
    t = window_table(batch_size, pack_len)
    k = len(t["real_tokens"])
    lengths = trace_prompts(pack_len)[: k * batch_size]
    padded = pack(lengths, pack_len, "pad", batch_size=batch_size)
    online = pack_in_windows(lengths, pack_len, batch_size)
    offline = pack(lengths, pack_len, "bfd")
    c = compare(padded, online, model, lm_head="last")
    wasted = c["wasted"]["padded"]
    return {
        "requests": int(len(lengths)), "windows": k, "batch_size": batch_size, "pack_len": pack_len, "model": model,
        "real_tokens": int(lengths.sum()),
        "padded": {"utilization": padded.utilization, "spread": spread(t["padded_utilization"])},
        "packed_online": {"utilization": online.utilization, "rows": online.num_rows,
                          "spread": spread(t["packed_utilization"])},
        "packed_offline": {"utilization": offline.utilization, "rows": offline.num_rows},
        "flops": {"waste": {w: c["waste_fraction"][w] for w in ("padded", "padded-masked", "dense", "varlen")},
                  "varlen_speedup": c["speedup"]["varlen"],
                  "attention_share_of_padded_waste": wasted.attention / wasted.total if wasted.total else 0.0},
    }


# ---------------------------------------------------------------------- prefill, window by window
def window_prefill_flops(lengths, batch_size: int = BATCH, pack_len: int = PACK_LEN, model=MODEL, tile=TILE,
                         methods=PREFILL_METHODS) -> dict:
    """FLOPs of one prefill forward per window of ``batch_size`` consecutive prompts, priced as each kernel runs it.

    ``lengths``: (N,) prompt lengths in arrival order, each at most ``pack_len`` (clip them first:
    :func:`trace_prompts` does). Returns ``{"padded" | method: float64 array (K,)}``, total FLOPs of
    each of the K whole windows (the last ``N mod B`` prompts are left out), as the benchmark
    (:mod:`packviz.bench.scenarios`) prices one forward of a window: ``padded`` the (B, W) rectangle
    under a causal kernel with no mask (the baseline at its best), ``dense`` the window packed by
    best-fit decreasing into rows of C under a dense mask, ``flex`` the same rows in 128-blocks,
    ``varlen`` each prompt's own triangle; the lm_head on each prompt's last token; the causal
    kernels (``padded``, ``varlen``) in whole ``tile`` tiles (``None``: exact triangles).

    Pitfalls
    --------
    * A speed-up is a ratio of sums: the speed-up of several windows run one after another is
      ``Σ padded ÷ Σ method``, not the mean of their per-window ratios.

    >>> f = window_prefill_flops([100, 100, 50, 200, 7], batch_size=2, pack_len=256, model="tiny", tile=None)
    >>> len(f["padded"]), [round(float(x), 3) for x in f["padded"] / f["varlen"]]   # [100, 100]: nothing to win
    (2, [1.0, 1.646])
    """
    batch_size = positive_int("batch_size", batch_size)
    shape = get_shape(model)
    n = np.asarray(lengths)
    k = len(n) // batch_size
    if k == 0:
        raise ValueError(f"{len(n)} prompts do not fill one window of batch_size {batch_size}; "
                         "pass at least batch_size lengths or a smaller batch_size")
    out = {way: np.empty(k) for way in ("padded", *methods)}
    for i in range(k):
        w = n[i * batch_size:(i + 1) * batch_size]
        c = compare(pack(w, pack_len, "pad", batch_size=batch_size), pack(w, pack_len, "bfd"), shape,
                    lm_head="last", tile=tile)
        for way in out:
            out[way][i] = c[way].total
    return out


@functools.lru_cache(maxsize=8)
def prefill_speedups(batch_size: int = BATCH, pack_len: int = PACK_LEN, model: str = MODEL, tile=TILE,
                     methods=PREFILL_METHODS) -> dict:
    """The ideal prefill speed-up of each packed method over ``padded``, window by window, over the shipped trace.

    Every request in arrival order (:func:`trace_prompts`), cut into the K whole windows of
    ``batch_size`` consecutive requests (requests ``kB .. kB + B - 1``), each priced by
    :func:`window_prefill_flops`. Returns ``{"windows": K, "batch_size", "pack_len", "model",
    "tile", "speedup": {method: (K,) array}, "spread": {method: spread}, "pooled": {method: Σ
    padded ÷ Σ method over all K}}``. Cached: pure, about half a second.

    >>> s = prefill_speedups()
    >>> s["windows"], {m: round(s["spread"][m]["p50"], 2) for m in s["spread"]}
    (605, {'dense': 2.63, 'flex': 3.27, 'varlen': 3.52})
    """
    f = window_prefill_flops(trace_prompts(pack_len), batch_size, pack_len, model, tile, methods)
    speedup = {m: f["padded"] / f[m] for m in methods}
    return {"windows": len(f["padded"]), "batch_size": batch_size, "pack_len": pack_len, "model": model,
            "tile": None if tile is None else list(tile), "speedup": speedup,
            "spread": {m: spread(v) for m, v in speedup.items()},
            "pooled": {m: float(f["padded"].sum() / f[m].sum()) for m in methods}}
