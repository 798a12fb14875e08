"""What a replay measured: throughput, latency percentiles, the waste, and the two utilisations.

numpy only. :func:`summary` turns a :class:`~packviz.serving.simulator.SimResult` into one
JSON-ready dict (the ``python -m packviz serve --json`` contract); :func:`format_table`
prints several side by side.

Latency, per request (seconds; ``p50``/``p90``/``p99`` over requests):

* TTFT -- first token - arrival (queueing + its prefill step);
* TPOT -- (finish - first token) / (G - 1), requests with G > 1;
* e2e -- finish - arrival; queue -- first scheduled - arrival.

The two numbers that answer "utilisation high, throughput low":

* ``gpu_busy_fraction`` -- the share of the makespan during which some step runs: what
  ``nvidia-smi``'s "GPU utilization" reports (the share of time one or more kernels ran); for
  an engine run, the device time between CUDA events around each step's forward (``None`` on a CPU);
* ``useful_flop_fraction`` -- FLOPs the requests needed ÷ (datasheet peak FLOP/s × makespan):
  the share of the peak turned into useful work (pads, junk decodes and recomputation excluded).
"""

from __future__ import annotations

import numpy as np

from .simulator import EngineResult, SimResult


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


def latencies(r: SimResult) -> dict:
    """Per-request latencies, arrays of shape (N,) (``tpot_s`` NaN where G = 1)."""
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
    """Everything a replay measured, JSON-ready (see the module docstring for the definitions)."""
    tr, led = r.trace, r.ledger
    p_sum, g_sum = int(tr.prompt_tokens.sum()), int(tr.generated_tokens.sum())
    makespan = float(np.nanmax(r.finish_s) - tr.arrival_s.min())
    useful_steps = int((tr.generated_tokens - 1).sum())
    lat = latencies(r)
    out = {
        "policy": r.config.policy, "num_requests": len(tr), "completed": int(np.isfinite(r.finish_s).sum()),
        "prompt_tokens": p_sum, "generated_tokens": g_sum,
        "prefill_pad_tokens": led.prefill_pad_tokens, "prefill_tokens_computed": led.prefill_tokens,
        "decode_slot_steps": led.decode_slot_steps, "decode_useful_steps": useful_steps,
        "decode_wasted_slot_steps": led.decode_idle_slot_steps,
        "output_tokens_per_s": g_sum / makespan, "total_tokens_per_s": (p_sum + g_sum) / makespan,
        "requests_per_s": len(tr) / makespan, "makespan_s": makespan,
        **{k: percentiles(v) for k, v in lat.items()},
        "gpu_busy_fraction": led.busy_s / makespan,
        "useful_flop_fraction": share(r.useful_flops, r.cost.peak_flops * makespan),
        "useful_flop_fraction_busy": share(r.useful_flops, r.cost.peak_flops * led.busy_s),
        "flops_spent": led.flops, "flops_useful": r.useful_flops, "steps": led.steps,
        "kv_budget_tokens": r.kv_budget_tokens,
        "kv_reserved_mean_tokens": led.kv_reserved_token_s / makespan,
        "kv_used_mean_tokens": led.kv_used_token_s / makespan,
        "kv_used_over_reserved": led.kv_used_token_s / led.kv_reserved_token_s if led.kv_reserved_token_s else 1.0,
        "kv_reserved_peak_tokens": led.kv_reserved_peak, "kv_used_peak_tokens": led.kv_used_peak,
        "preemptions": led.preemptions, "recomputed_tokens": led.recomputed_tokens,
        "arrivals": r.arrivals, "rate_scale": r.rate_scale, "offered_requests_per_s": tr.rate_per_s if np.isfinite(tr.rate_per_s) else None,
        "max_batch": r.config.max_batch, "token_budget": r.config.token_budget,
        "padded_attention": r.config.padded_attention, "ragged_attention": r.config.ragged_attention,
        "model": r.model, "gpu": r.cost.as_dict(), "trace": tr.name, "seconds": r.seconds, "clock": r.clock,
    }
    if isinstance(r, EngineResult):       # busy: kernel time from CUDA events, not the steps' wall time
        out["engine"] = engine_summary(r, makespan)
        out["gpu_busy_fraction"] = out["engine"]["gpu_event_fraction"]
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
    ("pad tokens", 12, lambda s: s["prefill_pad_tokens"], "{:,}"),
    ("slot waste", 10, lambda s: s["decode_wasted_slot_steps"] / max(1, s["decode_slot_steps"]), "{:.1%}"),
    ("KV used", 8, lambda s: s["kv_used_over_reserved"], "{:.1%}"),
    ("busy", 6, lambda s: s["gpu_busy_fraction"], "{:.1%}"),
    ("useful", 7, lambda s: s["useful_flop_fraction"], "{:.1%}"),
    ("sim s", 6, lambda s: s["seconds"], "{:.2f}"),
)
"""The columns of :func:`format_table`: header, width, value from a summary, format."""


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
    head = " ".join(cell(w, h, "{}", left=i == 0) for i, (h, w, _, _) in enumerate(cols))
    rows = [" ".join(cell(w, get(s), fmt, left=i == 0) for i, (_, w, get, fmt) in enumerate(cols))
            for s in summaries]
    return "\n".join([head] + rows)


def format_summary(s: dict) -> str:
    """One replay in words and numbers: what ran, throughput, latency, the waste, the two utilisations."""
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
        f"{s['policy']}: {s['trace']}, {s['num_requests']:,} requests ({s['arrivals']} arrivals"
        + (f", rate x{s['rate_scale']:g}" if s["arrivals"] == "trace" else "") + f"), {s['model']}, max batch "
        f"{s['max_batch']}" + (f", token budget {s['token_budget']:,}" if s["policy"] == "chunked" else ""),
        f"GPU:        {gpu['note'] or gpu['name']}",
        f"completed:  {s['completed']:,} of {s['num_requests']:,} in {s['makespan_s']:,.1f} s " + (
            f"(executed; {s['seconds']:.2f} s with set-up)" if s.get("clock") == "executed" else
            f"(simulated; {s['seconds']:.2f} s to simulate)"),
        f"throughput: {s['output_tokens_per_s']:,.0f} output tokens/s, {s['total_tokens_per_s']:,.0f} total tokens/s",
        f"TTFT s:     {pct('ttft_s')}",
        f"TPOT s:     {pct('tpot_s')}",
        f"e2e s:      {pct('e2e_s')}",
        f"queue s:    {pct('queue_s')}",
        f"waste:      {s['prefill_pad_tokens']:,} prompt pad tokens; {s['decode_slot_steps']:,} decode slot-steps for "
        f"{s['decode_useful_steps']:,} needed ({waste:.1%} idle); KV used/reserved {s['kv_used_over_reserved']:.1%}"
        + (f"; {s['preemptions']:,} preemptions" if s["preemptions"] else ""),
        f"GPU busy:   {ratio('gpu_busy_fraction')} of the time (what nvidia-smi calls utilization); useful work "
        f"{ratio('useful_flop_fraction')} of peak FLOP/s",
    ]
    e = s.get("engine")
    if e:
        gpu_ms = "" if e["gpu_event_seconds"] is None else f"; CUDA events {e['gpu_event_seconds']:.2f} s in all"
        lines += [f"engine:     {e['device']} {e['dtype']}, attention {e['attention']} ({e['attention_why']}), "
                  f"{e['steps_graphed']:,} of {s['steps']:,} steps from CUDA graphs",
                  f"step ms:    p50 {e['step_ms']['p50']:.3g}  p90 {e['step_ms']['p90']:.3g}  "
                  f"p99 {e['step_ms']['p99']:.3g} (wall, per step){gpu_ms}",
                  f"KV cache:   {e['kv_layout']}"]
    return "\n".join(lines)
