"""Load sweeps: the same requests arriving faster and faster, and each policy's capacity.

numpy only. :func:`load_sweep` replays a trace at several ``rate_scale`` values (2 = twice
as fast as recorded) under several policies; :func:`capacity` finds, by bisection, the
highest rate whose p99 TTFT stays under an SLO; :func:`saturation_rate_scale` is the rate
above which a policy cannot keep up at all (its queue grows without bound).

Four requests replayed at their own rate and four times faster, under two policies::

    >>> import numpy as np
    >>> from packviz.trace import Trace
    >>> t = Trace(np.array([0.0, 0.5, 1.0, 1.5]), np.array([100, 300, 50, 200]), np.array([20, 5, 40, 10]))
    >>> rows = load_sweep(t, policies=("static", "continuous"), rate_scales=(1.0, 4.0), max_batch=2)
    >>> [(r["policy"], r["rate_scale"], r["completed"]) for r in rows]
    [('static', 1.0, 4), ('static', 4.0, 4), ('continuous', 1.0, 4), ('continuous', 4.0, 4)]

Capacity is only as monotone as the replay: near the boundary a faster rate can regroup
static batches and land a little lower. Bisection returns one boundary inside the bracket,
to the tolerance asked.
"""

from __future__ import annotations

import math

from ..checks import items, mapping, positive_float, positive_int
from .metrics import summary
from .scheduler import POLICIES
from .simulator import simulate

SLO_TTFT_P99_S = 5.0
"""The TTFT SLO capacity is measured against: p99 time to first token ≤ 5 s. A choice, stated: a
static server cannot go much lower at any load, because a request that arrives while a batch
decodes waits for that batch's longest generation."""
SLO_ITL_P99_S = 0.1
"""The inter-token SLO: p99 gap between two tokens of a stream ≤ 100 ms (10 tokens/s for 99% of the
gaps, faster than anyone reads). A choice, stated. Only an inter-token SLO sees a long prompt's
prefill stalling everyone's decode in the same step -- what chunked prefill exists to prevent."""
BUDGETS = (512, 1024, 2048, 4096, 8192, 16384)
"""Token budgets (vLLM's ``max_num_batched_tokens``) of :func:`budget_sweep`."""


def load_sweep(trace=None, policies=POLICIES, rate_scales=(0.25, 0.5, 1.0, 2.0, 4.0), **kwargs) -> list[dict]:
    """:func:`~packviz.serving.metrics.summary` of every (policy, rate_scale) pair, policy-major.

    ``kwargs`` go to :func:`~packviz.serving.simulator.simulate` (model, gpu, max_batch, ...).
    """
    policies = items("policies", policies, "a list of policy names, e.g. ('static', 'continuous')")
    rate_scales = items("rate_scales", rate_scales, "a list of numbers, e.g. (0.5, 1.0, 2.0)")
    positive_int("number of policies", len(policies))
    positive_int("number of rate scales", len(rate_scales))
    return [summary(simulate(trace, policy, rate_scale=r, **kwargs)) for policy in policies for r in rate_scales]


def budget_sweep(trace=None, rate_scale: float = 1.0, budgets=BUDGETS, **kwargs) -> list[dict]:
    """``chunked`` at one rate under each token budget: the trade-off between TTFT (a larger budget
    prefills a prompt in fewer steps) and ITL (a larger budget makes a decode step wait for more
    prefill). ``kwargs`` go to :func:`~packviz.serving.simulator.simulate` (``max_batch``, ...)."""
    budgets = items("budgets", budgets, "a list of token budgets, e.g. (512, 2048)")
    positive_int("number of budgets", len(budgets))
    return [summary(simulate(trace, "chunked", rate_scale=rate_scale, token_budget=b, **kwargs)) for b in budgets]


def saturation_rate_scale(trace=None, policy: str = "static", **kwargs) -> float:
    """The ``rate_scale`` at which requests arrive as fast as ``policy`` serves them with a full queue.

    That is its offline throughput (every request waiting at t = 0: batches always full)
    in requests per second ÷ the trace's own arrival rate. Above it the queue grows
    without bound; below it the server keeps up on average.
    """
    from ..trace import azure_conv

    trace = azure_conv() if trace is None else trace
    offline = summary(simulate(trace, policy, arrivals="offline", **kwargs))
    return offline["requests_per_s"] / trace.rate_per_s


def slos(slo_ttft_p99_s=SLO_TTFT_P99_S, slo_itl_p99_s=None, slo_tpot_p99_s=None) -> dict:
    """The SLOs asked for, ``{"ttft_s": s, "itl_s": s, "tpot_s": s}`` (p99 bounds; ``None`` left out)."""
    given = {"ttft_s": slo_ttft_p99_s, "itl_s": slo_itl_p99_s, "tpot_s": slo_tpot_p99_s}
    out = {k: positive_float(f"slo_{k[:-2]}_p99_s", v) for k, v in given.items() if v is not None}
    if not out:
        raise ValueError("no SLO given: set slo_ttft_p99_s, slo_itl_p99_s or slo_tpot_p99_s")
    return out


def meets(s: dict, bounds: dict) -> bool:
    """Does summary ``s`` meet every p99 bound? (A latency with no sample -- no decode -- meets it.)"""
    return all((s[key]["p99"] or 0.0) <= bound for key, bound in bounds.items())


def capacity(trace=None, policy: str = "continuous", slo_ttft_p99_s: float | None = SLO_TTFT_P99_S,
             lo: float = 0.01, hi: float = 16.0, rel_tol: float = 0.02, *, slo_itl_p99_s: float | None = None,
             slo_tpot_p99_s: float | None = None, **kwargs) -> dict:
    """The highest ``rate_scale`` in [lo, hi] whose run meets every SLO given (p99 TTFT, ITL, TPOT),
    by bisection on a log scale.

    Returns ``{"policy", "slo", "rate_scale", "requests_per_s", "output_tokens_per_s", "ttft_p99_s",
    "itl_p99_s", "tpot_p99_s", "evaluations", "note"}`` (``slo_ttft_p99_s`` too, the older key);
    ``rate_scale`` is ``0.0`` when even ``lo`` misses and ``hi`` when ``hi`` meets them (the note says which).
    """
    bounds = slos(slo_ttft_p99_s, slo_itl_p99_s, slo_tpot_p99_s)
    lo, hi, rel_tol = positive_float("lo", lo), positive_float("hi", hi), positive_float("rel_tol", rel_tol)
    if lo >= hi:
        raise ValueError(f"lo ({lo:g}) must be below hi ({hi:g})")
    runs = []

    def run(rate):
        runs.append(summary(simulate(trace, policy, rate_scale=rate, **kwargs)))
        return runs[-1]

    best, note = None, ""
    if meets(top := run(hi), bounds):
        best, note = top, f"meets the SLO even at the top of the bracket ({hi:g}x)"
    elif not meets(bottom := run(lo), bounds):
        note = f"misses the SLO even at {lo:g}x"
    else:
        best = bottom
        while hi / lo > 1 + rel_tol:
            mid = math.sqrt(lo * hi)
            if meets(s := run(mid), bounds):
                lo, best = mid, s
            else:
                hi = mid
    return {"policy": policy, "slo": {f"{k[:-2]}_p99_s": v for k, v in bounds.items()},
            "slo_ttft_p99_s": bounds.get("ttft_s"), "rate_scale": best["rate_scale"] if best else 0.0,
            "requests_per_s": best["offered_requests_per_s"] if best else 0.0,
            "output_tokens_per_s": best["output_tokens_per_s"] if best else 0.0,
            **{f"{k[:-2]}_p99_s": best[k]["p99"] if best else None for k in ("ttft_s", "itl_s", "tpot_s")},
            "evaluations": len(runs), "note": note}


def capacity_table(trace, configs, slo_itl_p99_s: float = SLO_ITL_P99_S, **kwargs) -> dict:
    """``{name: {"ttft": capacity, "ttft+itl": capacity}}``: each named configuration's :func:`capacity`
    under the p99-TTFT SLO alone, and under it with the p99-ITL SLO as well (the table notebooks 06
    and 07 print, one definition so both print the same numbers).

    ``configs``: ``{name: {"policy": ..., and simulate()'s other keyword arguments}}``, e.g.
    ``{"static, B = 32": {"policy": "static", "max_batch": 32}, "vllm-v1-like": ENGINE_CONFIGS["vllm-v1-like"]}``;
    ``kwargs`` go to every :func:`capacity` call (``hi``, ``rel_tol``, ``gpu``, ...).
    """
    configs = mapping("configs", configs, what="a dict of named configurations, {name: {'policy': ..., ...}}")
    table = {}
    for name, config in configs.items():
        kw = dict(mapping(f"configs[{name!r}]", config, ("policy",), "a dict of simulate() arguments with a 'policy'"))
        policy = kw.pop("policy")
        table[name] = {"ttft": capacity(trace, policy, **kw, **kwargs),
                       "ttft+itl": capacity(trace, policy, slo_itl_p99_s=slo_itl_p99_s, **kw, **kwargs)}
    return table


def capacities(trace=None, policies=POLICIES, slo_ttft_p99_s: float | None = SLO_TTFT_P99_S, **kwargs) -> list[dict]:
    """:func:`capacity` of each policy under the same SLOs."""
    policies = items("policies", policies, "a list of policy names, e.g. ('static', 'continuous')")
    positive_int("number of policies", len(policies))
    return [capacity(trace, p, slo_ttft_p99_s, **kwargs) for p in policies]
