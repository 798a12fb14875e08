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

from ..checks import positive_float, positive_int
from .metrics import summary
from .scheduler import POLICIES
from .simulator import simulate

SLO_TTFT_P99_S = 5.0
"""The SLO capacity is measured against: p99 time to first token ≤ 5 s. A choice, stated: a
static server cannot go much lower at any load, because a request that arrives while a
batch decodes waits for that batch's longest generation."""


def load_sweep(trace=None, policies=POLICIES, rate_scales=(0.25, 0.5, 1.0, 2.0, 4.0), **kwargs) -> list[dict]:
    """:func:`~packviz.serving.metrics.summary` of every (policy, rate_scale) pair, policy-major.

    ``kwargs`` go to :func:`~packviz.serving.simulator.simulate` (model, gpu, max_batch, ...).
    """
    return [summary(simulate(trace, policy, rate_scale=r, **kwargs)) for policy in policies for r in rate_scales]


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


def capacity(trace=None, policy: str = "continuous", slo_ttft_p99_s: float = SLO_TTFT_P99_S, lo: float = 0.01,
             hi: float = 16.0, rel_tol: float = 0.02, **kwargs) -> dict:
    """The highest ``rate_scale`` in [lo, hi] whose p99 TTFT ≤ ``slo_ttft_p99_s``, by bisection (log scale).

    Returns ``{"policy", "slo_ttft_p99_s", "rate_scale", "requests_per_s", "output_tokens_per_s",
    "ttft_p99_s", "evaluations", "note"}``; ``rate_scale`` is ``0.0`` when even ``lo`` misses the
    SLO and ``hi`` when ``hi`` meets it (the note says which).
    """
    slo = positive_float("slo_ttft_p99_s", slo_ttft_p99_s)
    lo, hi, rel_tol = positive_float("lo", lo), positive_float("hi", hi), positive_float("rel_tol", rel_tol)
    if lo >= hi:
        raise ValueError(f"lo ({lo:g}) must be below hi ({hi:g})")
    runs = []

    def run(rate):
        s = summary(simulate(trace, policy, rate_scale=rate, **kwargs))
        runs.append(s)
        return s

    best, note = None, ""
    top = run(hi)
    if top["ttft_s"]["p99"] <= slo:
        best, note = top, f"meets the SLO even at the top of the bracket ({hi:g}x)"
    elif (bottom := run(lo))["ttft_s"]["p99"] > slo:
        note = f"misses the SLO even at {lo:g}x"
    else:
        best = bottom
        while hi / lo > 1 + rel_tol:
            mid = math.sqrt(lo * hi)
            s = run(mid)
            if s["ttft_s"]["p99"] <= slo:
                lo, best = mid, s
            else:
                hi = mid
    return {"policy": policy, "slo_ttft_p99_s": slo, "rate_scale": best["rate_scale"] if best else 0.0,
            "requests_per_s": best["offered_requests_per_s"] if best else 0.0,
            "output_tokens_per_s": best["output_tokens_per_s"] if best else 0.0,
            "ttft_p99_s": best["ttft_s"]["p99"] if best else None, "evaluations": len(runs), "note": note}


def capacities(trace=None, policies=POLICIES, slo_ttft_p99_s: float = SLO_TTFT_P99_S, **kwargs) -> list[dict]:
    """:func:`capacity` of each policy under the same SLO."""
    positive_int("number of policies", len(tuple(policies)))
    return [capacity(trace, p, slo_ttft_p99_s, **kwargs) for p in policies]
