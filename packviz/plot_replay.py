"""A replay against a real server drawn against the simulator's prediction for the same requests.

matplotlib's own idiom: ``ax=None`` in, Axes out, an explicit figsize, a pyplot-free
:class:`~packviz.plot.PackvizFigure` (so :func:`~packviz.plot.with_alt` can give it alt text).
Both curves come from result objects (:class:`~packviz.serving.simulator.SimResult` and its replay
subclass), so an engine run draws the same way.
"""

from __future__ import annotations

import numpy as np

from .checks import instance_of, one_of
from .plot import new_axes
from .serving.metrics import latencies
from .serving.replay import ReplayResult
from .serving.simulator import SimResult

MEASURED, PREDICTED = "#d62728", "#1f77b4"

LATENCY_KEYS = ("ttft_s", "tpot_s", "e2e_s")
"""The per-request latencies :func:`latency_cdf` draws."""


def two_runs(result, predicted) -> None:
    """``TypeError`` (one line, naming the argument) unless both are run results."""
    instance_of("result", result, SimResult, "a ReplayResult (what replay or load_replay returns) or another SimResult")
    instance_of("predicted", predicted, SimResult, "a SimResult (what simulate returns for the same requests)")



def token_times(r) -> tuple[np.ndarray, np.ndarray]:
    """(times (K,), tokens (K,)): when output tokens reached the client, sorted. A replay: every streamed chunk,
    carrying its share of the request's tokens; another run: each request's G tokens spread evenly from its first
    token to its last (what a simulator knows)."""
    if isinstance(r, ReplayResult):
        done = [x for x in r.records if x.error is None and x.events_s]
        t = np.concatenate([x.events_s for x in done])
        k = np.concatenate([np.full(len(x.events_s), x.received / len(x.events_s)) for x in done])
    else:
        g = r.trace.generated_tokens
        ok = np.isfinite(r.finish_s)
        frac = [np.linspace(0, 1, n) if n > 1 else np.ones(1) for n in g[ok]]
        t = np.concatenate([a + f * (b - a) for a, b, f in zip(r.first_token_s[ok], r.finish_s[ok], frac)])
        k = np.ones(len(t))
    order = np.argsort(t, kind="stable")
    return t[order], k[order]


def replay_vs_prediction(result, predicted, ax=None, labels=("measured", "predicted")):
    """Output tokens delivered over time, measured (a replay) against predicted (a simulation of the same
    requests); the legend gives each run's output tokens/s and TTFT p50. Time from each run's first arrival."""
    two_runs(result, predicted)
    ax = new_axes(ax, (7.5, 3.6))
    for r, label, color, style in ((result, labels[0], MEASURED, "-"), (predicted, labels[1], PREDICTED, "--")):
        t, k = token_times(r)
        t = t - r.trace.arrival_s.min()
        ttft = np.nanmedian(latencies(r)["ttft_s"])
        rate = k.sum() / t[-1] if t[-1] > 0 else float("nan")
        ax.step(np.r_[0.0, t], np.r_[0.0, np.cumsum(k)], where="post", color=color, ls=style, lw=1.8,
                label=f"{label}: {rate:,.0f} tok/s, TTFT p50 {ttft * 1e3:,.0f} ms")
    ax.set_xlabel("seconds since the first request")
    ax.set_ylabel("output tokens delivered")
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), fontsize=8, frameon=False)  # above: never over a curve
    ax.grid(alpha=0.3)
    return ax


def latency_cdf(result, predicted, key: str = "ttft_s", ax=None, labels=("measured", "predicted")):
    """The cumulative distribution of a per-request latency (``ttft_s``, ``tpot_s``, ``e2e_s``), both runs."""
    two_runs(result, predicted)
    one_of("key", key, LATENCY_KEYS)
    ax = new_axes(ax, (4.5, 3.4))
    for r, label, color, style in ((result, labels[0], MEASURED, "-"), (predicted, labels[1], PREDICTED, "--")):
        x = np.sort(latencies(r)[key][np.isfinite(latencies(r)[key])])
        ax.step(x * 1e3, np.arange(1, len(x) + 1) / len(x), where="post", color=color, ls=style, lw=1.8, label=label)
    ax.set_xlabel(f"{key.removesuffix('_s').upper()} (ms)")
    ax.set_ylabel("share of requests")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    return ax
