"""What a replay measured: throughput, latency percentiles, the waste, and where the time went.

numpy only. :func:`summary` turns a :class:`~packviz.serving.simulator.SimResult` (or an engine's
:class:`~packviz.serving.simulator.EngineResult`) into one JSON-ready dict (the ``python -m
packviz serve --json`` contract); :func:`format_table` prints several side by side.

Latency (seconds; ``p50``/``p90``/``p99``):

* TTFT -- per request, first token - arrival (queueing + its prefill step);
* TPOT -- per request, (finish - first token) / (G - 1): its mean time per output token after the
  first, requests with G > 1;
* ITL -- per token: every gap between two tokens of a request, i.e. each decode step's duration
  once for every request it gave a token (a chunk of a long prompt in the same step shows here);
* e2e -- finish - arrival; queue -- first scheduled - arrival.

The numbers behind "GPU utilization is high, but throughput is low":

* ``gpu_busy_fraction`` -- the share of the makespan in which some kernel runs: what
  ``nvidia-smi`` reports as "GPU utilization". Priced: each step's roofline time (its per-step
  host overhead is a gap between kernels, not busy); an engine run: CUDA events around each
  step's forward (``None`` on a CPU);
* ``mfu`` -- model FLOPs utilization: FLOPs the requests needed ÷ (datasheet peak FLOP/s ×
  makespan) (``useful_flop_fraction``, its older name);
* ``mbu`` -- model bandwidth utilization: bytes that had to move (the weights once per step, and
  the KV cache of live requests, read and written) ÷ (datasheet bandwidth × makespan);
* ``time_split_s`` -- the makespan cut into slices that add up to it: ``useful`` (the requests'
  FLOPs at peak), then what was computed for nothing, each at peak -- ``padding``,
  ``idle_slots``, ``recompute``, ``dense_attention`` -- then ``below_peak`` (the rest of the busy
  time: memory-bound steps and kernels below peak), ``host`` (gaps between steps) and
  ``waiting`` (no request to run: the arrivals set the pace).
"""

from __future__ import annotations

import numpy as np

from ..checks import exact_sum, instance_of, items, mapping
from .simulator import EngineResult, Ledger, SimResult

QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
RESULT = "a SimResult (what simulate() or run_engine() returns)"
SUMMARY = "a summary() dict (summary(simulate(...)))"
MAX_EXPANDED_ITL = 2**20
"""Decode steps of closed-form spans that :func:`itl_percentiles` expands into one sample each (8 MB per
array); a run with more (a request of a billion tokens) has its percentiles counted in closed form."""


def percentiles(x) -> dict:
    """``{"p50", "p90", "p99"}`` of the finite values of ``x`` (all ``None`` if there are none).

    >>> percentiles([1.0, 2.0, 3.0, float("nan")])
    {'p50': 2.0, 'p90': 2.8, 'p99': 2.98}
    """
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if not x.size:
        return {"p50": None, "p90": None, "p99": None}
    q = np.percentile(x, [50, 90, 99])
    return {"p50": round(float(q[0]), 12), "p90": round(float(q[1]), 12), "p99": round(float(q[2]), 12)}


def weighted_percentiles(values, weights) -> dict:
    """``{"p50", "p90", "p99"}`` of ``values`` where value i counts ``weights[i]`` times: the smallest
    value whose cumulative weight reaches q of the total (all ``None`` without weight).

    >>> weighted_percentiles([0.02, 0.5], [99, 1])           # 99 gaps of 20 ms and one of 500 ms
    {'p50': 0.02, 'p90': 0.02, 'p99': 0.02}
    >>> weighted_percentiles([0.02, 0.5], [98, 2])["p99"]
    0.5
    """
    v, w = np.asarray(values, dtype=np.float64), np.asarray(weights, dtype=np.float64)
    if not v.size or w.sum() <= 0:
        return {"p50": None, "p90": None, "p99": None}
    order = np.argsort(v, kind="stable")
    v, cum = v[order], np.cumsum(w[order])
    idx = np.searchsorted(cum, np.array([0.5, 0.9, 0.99]) * cum[-1] * (1 - 1e-12), side="left")
    return {q: round(float(v[i]), 12) for q, i in zip(("p50", "p90", "p99"), idx)}


def span_counts(x: float, spans: np.ndarray) -> np.ndarray:
    """How many steps of each span take at most ``x`` seconds, shape (S,), for spans (S, 7) of
    ``(u0, u1, v0, v1, overhead, k, count)``: step j (1 .. k) takes ``max(u0 + u1 j, v0 + v1 j) + overhead``,
    computed exactly as :meth:`Ledger.itl_samples` computes it (non-decreasing in j: slopes >= 0).

    >>> span_counts(2.5, np.array([[0.0, 1.0, 0.0, 0.0, 0.0, 10, 1], [5.0, 0.0, 0.0, 0.0, 0.0, 3, 1]]))
    array([2, 0])
    """
    u0, u1, v0, v1, o, k = (spans[:, i] for i in range(6))

    def step(j):
        return np.maximum(u0 + u1 * j, v0 + v1 * j) + o

    with np.errstate(divide="ignore", invalid="ignore"):
        est = np.minimum(*(np.where(b > 0, np.floor((x - o - a) / b), np.where(a + o <= x, k, 0.0))
                           for a, b in ((u0, u1), (v0, v1))))
    j = np.clip(np.nan_to_num(est, nan=0.0), 0, k)
    while True:                                       # float rounding: a step or two either way
        up = (j < k) & (step(j + 1) <= x)
        down = (j > 0) & (step(np.maximum(j, 1)) > x)
        if not (up.any() or down.any()):
            return j.astype(np.int64)
        j = j + up - down


def span_percentiles(steps: np.ndarray, spans: np.ndarray) -> dict:
    """:func:`weighted_percentiles` of single steps (M, 2) ``(seconds, weight)`` and closed-form spans (S, 7)
    (:func:`span_counts`; each step weighs ``count``), without expanding the spans: for each quantile, the
    smallest step time whose cumulative weight reaches it, by bisection over the float64 values (64 halvings)."""
    w_steps, w_spans = steps[:, 1].sum(), (spans[:, 5] * spans[:, 6]).sum()
    if w_steps + w_spans <= 0:
        return dict.fromkeys(QUANTILES)

    def weight_upto(x):
        return steps[steps[:, 0] <= x, 1].sum() + (spans[:, 6] * span_counts(x, spans)).sum()

    first = np.maximum(spans[:, 0] + spans[:, 1], spans[:, 2] + spans[:, 3]) + spans[:, 4]
    last = np.maximum(spans[:, 0] + spans[:, 1] * spans[:, 5], spans[:, 2] + spans[:, 3] * spans[:, 5]) + spans[:, 4]
    low = max(np.concatenate([steps[:, 0], first]).min(), 0.0)
    high = np.concatenate([steps[:, 0], last]).max()
    out = {}
    for name, q in QUANTILES.items():
        target = q * (w_steps + w_spans) * (1 - 1e-12)
        a, b = int(np.float64(low).view(np.int64)), int(np.float64(high).view(np.int64))  # >= 0: bits sort as values
        while a < b:
            mid = (a + b) // 2
            if weight_upto(float(np.int64(mid).view(np.float64))) >= target:
                b = mid
            else:
                a = mid + 1
        out[name] = round(float(np.int64(a).view(np.float64)), 12)
    return out


def itl_percentiles(ledger: Ledger) -> dict:
    """``{"p50", "p90", "p99"}`` of the run's inter-token gaps: :func:`weighted_percentiles` of
    :meth:`Ledger.itl_samples` while the spans hold at most :data:`MAX_EXPANDED_ITL` steps, else the same
    numbers counted in closed form (:func:`span_percentiles`: memory independent of a request's length)."""
    instance_of("ledger", ledger, Ledger, "a Ledger (a run's .ledger: simulate(...).ledger)")
    if sum(k for _, k, _ in ledger.itl_spans) <= MAX_EXPANDED_ITL:
        return weighted_percentiles(*ledger.itl_samples())
    steps = np.array(ledger.itl_steps, dtype=np.float64).reshape(-1, 2)
    spans = np.array([(*line, k, count) for line, k, count in ledger.itl_spans], dtype=np.float64).reshape(-1, 7)
    return span_percentiles(steps, spans)


def time_split(r: SimResult, makespan: float) -> dict | None:
    """The makespan in seconds by where it went (module docstring); ``None`` when the busy time or the
    peak is unknown. ``below_peak`` is what remains of the busy time once the FLOPs run at peak: at
    least 0 whenever the clock's rates do not exceed the datasheet's."""
    led, peak = r.ledger, r.cost.peak_flops
    if led.busy_s is None or peak <= 0:
        return None
    at_peak = {"useful": r.useful_flops / peak, **{k: v / peak for k, v in led.waste_flops.items()}}
    waiting = makespan - led.busy_s - led.host_s          # no step running; float noise below 0 is 0
    return {**at_peak, "below_peak": led.busy_s - sum(at_peak.values()), "host": led.host_s,
            "waiting": max(0.0, waiting) if waiting > -1e-9 * makespan else waiting}


def latencies(r: SimResult) -> dict:
    """Per-request latencies, arrays of shape (N,) (``tpot_s`` NaN where G = 1)."""
    instance_of("r", r, SimResult, RESULT)
    a, g = r.trace.arrival_s, r.trace.generated_tokens
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(g > 1, (r.finish_s - r.first_token_s) / np.maximum(g - 1, 1), np.nan)
    return {"ttft_s": r.first_token_s - a, "tpot_s": tpot, "e2e_s": r.finish_s - a, "queue_s": r.start_s - a}


def share(part: float, whole: float) -> float | None:
    """part / whole, or None when there is no whole (a device without a datasheet peak, no busy time)."""
    return part / whole if whole > 0 else None


def engine_summary(r: EngineResult, makespan: float) -> dict:
    """What only an executed run has: the attention path, the KV layout, step and kernel times."""
    gpu = [x for x in r.gpu_seconds if x is not None]
    return {
        "attention": r.attention, "attention_why": r.attention_why, "cuda_graphs": r.cuda_graphs,
        "kv_layout": r.kv_layout,
        "kv_capacity_tokens": r.kv_capacity_tokens, "kv_compactions": r.kv_compactions,
        "device": r.device, "dtype": r.dtype, "sampling": "greedy (argmax), EOS ignored",
        "steps_graphed": int(sum(r.graphed)), "step_ms": percentiles(np.asarray(r.step_seconds) * 1e3),
        "gpu_event_seconds": float(sum(gpu)) if gpu else None,
        "gpu_event_fraction": share(sum(gpu), makespan) if gpu else None,
    }


def summary(r: SimResult) -> dict:
    """Everything a replay measured, JSON-ready (see the module docstring for the definitions).

    Every number is finite or ``None`` (strict JSON): ``offered_requests_per_s`` is ``None`` when every
    request arrives at one instant (``offline``, or one timestamp), and ``offered_rate_note`` says so.
    """
    instance_of("r", r, SimResult, RESULT)
    tr, led = r.trace, r.ledger
    p_sum, g_sum = exact_sum(tr.prompt_tokens), exact_sum(tr.generated_tokens)
    makespan = float(np.nanmax(r.finish_s) - tr.arrival_s.min())
    useful_steps = g_sum - len(tr)
    rate = tr.rate_per_s if np.isfinite(tr.rate_per_s) else None
    lat = latencies(r)
    out = {
        "policy": r.config.policy, "num_requests": len(tr), "completed": int(np.isfinite(r.finish_s).sum()),
        "prompt_tokens": p_sum, "generated_tokens": g_sum,
        "prefill_pad_tokens": led.prefill_pad_tokens, "prefill_tokens_computed": led.prefill_tokens,
        "decode_slot_steps": led.decode_slot_steps, "decode_useful_steps": useful_steps,
        "decode_wasted_slot_steps": led.decode_idle_slot_steps,
        "output_tokens_per_s": g_sum / makespan, "total_tokens_per_s": (p_sum + g_sum) / makespan,
        "requests_per_s": len(tr) / makespan, "makespan_s": makespan,
        **{k: percentiles(v) for k, v in lat.items()}, "itl_s": itl_percentiles(led),
        "gpu_busy_fraction": None if led.busy_s is None else led.busy_s / makespan,
        "host_fraction": led.host_s / makespan,
        "mfu": share(r.useful_flops, r.cost.peak_flops * makespan),
        "mbu": share(led.live_bytes, r.cost.peak_bytes_per_s * makespan),
        "useful_flop_fraction": share(r.useful_flops, r.cost.peak_flops * makespan),
        "time_split_s": time_split(r, makespan), "waste_flops": dict(led.waste_flops),
        "flops_spent": led.flops, "flops_useful": r.useful_flops, "bytes_live": led.live_bytes, "steps": led.steps,
        "kv_budget_tokens": r.kv_budget_tokens,
        "kv_reserved_mean_tokens": led.kv_reserved_token_s / makespan,
        "kv_used_mean_tokens": led.kv_used_token_s / makespan,
        "kv_used_over_reserved": led.kv_used_token_s / led.kv_reserved_token_s if led.kv_reserved_token_s else 1.0,
        "kv_reserved_peak_tokens": led.kv_reserved_peak, "kv_used_peak_tokens": led.kv_used_peak,
        "preemptions": led.preemptions, "recomputed_tokens": led.recomputed_tokens,
        "arrivals": r.arrivals, "rate_scale": r.rate_scale, "offered_requests_per_s": rate,
        "offered_rate_note": None if rate is not None else "every request arrives at one instant (offline arrivals, "
                                                           "one timestamp or one request): no finite arrival rate",
        "timestamps": tr.timestamps or None,
        "max_batch": r.config.max_batch, "token_budget": r.config.token_budget,
        "padded_attention": r.config.padded_attention, "ragged_attention": r.config.ragged_attention,
        "model": r.model, "gpu": r.cost.as_dict(), "trace": tr.name, "seconds": r.seconds, "clock": r.clock,
    }
    if isinstance(r, EngineResult):       # busy there: kernel time from CUDA events, not the steps' wall time
        out["engine"] = engine_summary(r, makespan)
    return out


def _pct(key: str, q: str, scale: float = 1.0):
    return lambda s: None if s[key][q] is None else s[key][q] * scale


COLUMNS = (
    ("policy", 13, lambda s: s["policy"], "{}"),
    ("out tok/s", 9, lambda s: s["output_tokens_per_s"], "{:,.0f}"),
    ("makespan s", 10, lambda s: s["makespan_s"], "{:,.0f}"),
    ("TTFT p50", 9, _pct("ttft_s", "p50"), "{:,.2f}"),
    ("TTFT p99", 9, _pct("ttft_s", "p99"), "{:,.2f}"),
    ("TPOT p50 ms", 11, _pct("tpot_s", "p50", 1e3), "{:,.1f}"),
    ("ITL p99 ms", 10, _pct("itl_s", "p99", 1e3), "{:,.1f}"),
    ("pad tokens", 12, lambda s: s["prefill_pad_tokens"], "{:,}"),
    ("slot waste", 10, lambda s: s["decode_wasted_slot_steps"] / max(1, s["decode_slot_steps"]), "{:.1%}"),
    ("KV used", 8, lambda s: s["kv_used_over_reserved"], "{:.1%}"),
    ("busy", 6, lambda s: s["gpu_busy_fraction"], "{:.1%}"),
    ("MFU", 6, lambda s: s["mfu"], "{:.1%}"),
    ("MBU", 6, lambda s: s["mbu"], "{:.1%}"),
    ("sim s", 6, lambda s: s["seconds"], "{:.2f}"),
)
"""The columns of :func:`format_table`: header, width, value from a summary, format."""
TABLE_KEYS = ("policy", "output_tokens_per_s", "makespan_s", "ttft_s", "tpot_s", "itl_s", "prefill_pad_tokens",
              "decode_slot_steps", "decode_wasted_slot_steps", "kv_used_over_reserved", "gpu_busy_fraction", "mfu",
              "mbu", "seconds")
"""The summary keys :data:`COLUMNS` read (``seconds`` last: the column ``seconds=False`` leaves out)."""
SUMMARY_KEYS = ("policy", "trace", "num_requests", "arrivals", "rate_scale", "model", "max_batch", "token_budget",
                "gpu", "completed", "makespan_s", "seconds", "output_tokens_per_s", "total_tokens_per_s", "ttft_s",
                "tpot_s", "itl_s", "e2e_s", "queue_s", "prefill_pad_tokens", "decode_slot_steps",
                "decode_useful_steps", "decode_wasted_slot_steps", "kv_used_over_reserved", "preemptions",
                "gpu_busy_fraction", "mfu", "mbu")
"""The summary keys :func:`format_summary` reads."""


def summary_list(summaries, keys=("policy",)) -> list:
    """``summaries`` (a list of :func:`summary` dicts, each holding ``keys``) as a list; else ``TypeError`` /
    ``ValueError`` naming the first that is not one.

    >>> summary_list([{}])
    Traceback (most recent call last):
    ...
    ValueError: summaries[0] has no 'policy': it must be a summary() dict (summary(simulate(...)))
    """
    out = items("summaries", summaries, "a list of summary() dicts, e.g. [summary(simulate(trace, 'static'))]")
    return [mapping(f"summaries[{i}]", s, keys, SUMMARY) for i, s in enumerate(out)]


def format_table(summaries, seconds: bool = True) -> str:
    """Summaries side by side, one row each.

    Latencies in seconds (TPOT in ms); "slot waste": decode slot-steps that produced
    nothing; "KV used": KV used ÷ reserved over time; "busy" and "useful": the two
    utilisations of the module docstring; "sim s": the simulation's own wall time (left
    out with ``seconds=False``, e.g. where output must not vary from run to run).
    """
    def cell(width, value, fmt, left=False):
        text = "-" if value is None else fmt.format(value)
        return f"{text:<{width}}" if left else f"{text:>{width}}"

    cols = COLUMNS if seconds else COLUMNS[:-1]
    summaries = summary_list(summaries, TABLE_KEYS[:len(TABLE_KEYS) - (not seconds)])
    head = " ".join(cell(w, h, "{}", left=i == 0) for i, (h, w, _, _) in enumerate(cols))
    rows = [" ".join(cell(w, get(s), fmt, left=i == 0) for i, (_, w, get, fmt) in enumerate(cols))
            for s in summaries]
    return "\n".join([head] + rows)


def format_summary(s: dict) -> str:
    """One replay in words and numbers: what ran, throughput, latency, the waste, the two utilisations."""
    mapping("s", s, SUMMARY_KEYS, SUMMARY)

    def sec(v):
        return f"{v:,.0f}" if v >= 100 else f"{v:.2f}" if v >= 1 else f"{v:.3f}"

    def pct(key):
        d = s[key]
        return "-" if d["p50"] is None else "  ".join(f"{q} {sec(d[q])}" for q in ("p50", "p90", "p99"))

    def ratio(key):
        return "-" if s[key] is None else f"{s[key]:.1%}"

    gpu = s["gpu"]
    waste = s["decode_wasted_slot_steps"] / max(1, s["decode_slot_steps"])
    lines = [
        f"{s['policy']}: {s['trace']}" + (f" (TIMESTAMP read as {s['timestamps']})" if s.get("timestamps") else "")
        + f", {s['num_requests']:,} requests ({s['arrivals']} arrivals"
        + (f", rate x{s['rate_scale']:g}" if s["arrivals"] == "trace" else "") + f"), {s['model']}, max batch "
        f"{s['max_batch']}" + (f", token budget {s['token_budget']:,}" if s["policy"] == "chunked" else ""),
        f"GPU:        {gpu['note'] or gpu['name']}",
        f"completed:  {s['completed']:,} of {s['num_requests']:,} in {s['makespan_s']:,.1f} s " + (
            f"(executed; {s['seconds']:.2f} s with set-up)" if s.get("clock") == "executed" else
            f"(simulated; {s['seconds']:.2f} s to simulate)"),
        f"throughput: {s['output_tokens_per_s']:,.0f} output tokens/s, {s['total_tokens_per_s']:,.0f} total tokens/s",
        f"TTFT s:     {pct('ttft_s')}",
        f"TPOT s:     {pct('tpot_s')}",
        f"ITL s:      {pct('itl_s')}",
        f"e2e s:      {pct('e2e_s')}",
        f"queue s:    {pct('queue_s')}",
        f"waste:      {s['prefill_pad_tokens']:,} prompt pad tokens; {s['decode_slot_steps']:,} decode slot-steps for "
        f"{s['decode_useful_steps']:,} needed ({waste:.1%} idle); KV used/reserved {s['kv_used_over_reserved']:.1%}"
        + (f"; {s['preemptions']:,} preemptions" if s["preemptions"] else ""),
        f"GPU busy:   {ratio('gpu_busy_fraction')} of the time (what nvidia-smi calls utilization); MFU "
        f"{ratio('mfu')} (useful FLOPs / peak), MBU {ratio('mbu')} (bytes that had to move / peak bandwidth)",
    ]
    if s.get("time_split_s"):
        t = s["time_split_s"]
        lines.append("time went:  " + ", ".join(f"{k.replace('_', ' ')} {v / s['makespan_s']:.1%}" for k, v in t.items()))
    e = s.get("engine")
    if e:
        gpu_ms = "" if e["gpu_event_seconds"] is None else f"; CUDA events {e['gpu_event_seconds']:.2f} s in all"
        lines += [f"engine:     {e['device']} {e['dtype']}, attention {e['attention']} ({e['attention_why']}), "
                  f"{e['steps_graphed']:,} of {s['steps']:,} steps from CUDA graphs",
                  f"step ms:    p50 {e['step_ms']['p50']:.3g}  p90 {e['step_ms']['p90']:.3g}  "
                  f"p99 {e['step_ms']['p99']:.3g} (wall, per step){gpu_ms}",
                  f"KV cache:   {e['kv_layout']}"]
    return "\n".join(lines)
