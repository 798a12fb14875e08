"""Pictures of serving replays: slots over time, KV reserved vs used, load curves (matplotlib, no pyplot).

Every function takes ``ax=None`` (or ``axes=None``) and returns what it drew on; with
``None`` it makes its own pyplot-free :class:`~packviz.plot.PackvizFigure` of an explicit
``figsize`` (Jupyter shows it as PNG). What :func:`slot_timeline` draws, one row per slot::

    slot 0 ▓▓████████████████
    slot 1 ▓▓██████░░░░░░░░░░   ▓ prefill   █ decoding (one colour per request)
    slot 2 ▓▓███░░░░░░░░░░░░░   ░ slot held by a finished request, decoding nothing (static)
"""

from __future__ import annotations

import numpy as np
from matplotlib.patches import Patch

from .colors import OKABE_ITO, PAD_COLOR, color_index, palette
from .plot import PackvizFigure


POLICY_COLORS = {"static": OKABE_ITO[5], "static-packed": OKABE_ITO[0], "continuous": OKABE_ITO[2],
                 "chunked": OKABE_ITO[4]}
"""One colour per policy in every picture (Okabe-Ito: vermillion, orange, green, blue)."""


def _new_ax(ax, figsize):
    if ax is not None:
        return ax
    return PackvizFigure(figsize=figsize, layout="constrained").add_subplot()


def slot_neighbours(result) -> np.ndarray:
    """Pairs of requests that touch in :func:`slot_timeline`, shape (E, 2), each pair once (a < b).

    Touching: one after the other on the same slot, or on adjacent slots at overlapping times
    (from start to release). O(N²) in the requests: for pictures of a few dozen.
    """
    start, end, slot = (np.asarray(x) for x in (result.start_s, result.release_s, result.slot))
    n = len(start)
    later = (start[None, :] >= start[:, None]) & (np.arange(n)[None, :] != np.arange(n)[:, None])
    same = (slot[None, :] == slot[:, None]) & later
    nxt = np.where(same, start[None, :], np.inf).argmin(axis=1)  # the next occupant of each request's slot
    pairs = [(i, int(nxt[i])) for i in range(n) if same[i].any()]
    near = (np.abs(slot[None, :] - slot[:, None]) == 1) & (start[None, :] < end[:, None]) & (start[:, None] < end[None, :])
    pairs += [tuple(ij) for ij in np.argwhere(np.triu(near, 1)).tolist()]
    return np.unique(np.sort(np.asarray(pairs, dtype=np.int64).reshape(-1, 2), axis=1), axis=0)


def slot_timeline(result, ax=None, title=None, t_max=None, figsize=(10, 2.8)):
    """Each request as a bar on the slot it ran in: prefill, decode, and (static) the idle wait.

    ``result``: a :class:`~packviz.serving.simulator.SimResult`. ``t_max``: the time axis' end
    (share it between two policies to compare them on one scale).
    """
    ax = _new_ax(ax, figsize)
    r = result
    end = t_max if t_max is not None else float(np.max(r.release_s)) * 1.01
    index = color_index(np.argsort(r.start_s, kind="stable"), slot_neighbours(r), len(r.trace))
    colors = palette(max(len(OKABE_ITO), int(index.max(initial=0)) + 1))  # requests that touch never share one
    for i in range(len(r.trace)):
        color, y = colors[index[i]], int(r.slot[i])
        ax.barh(y, r.first_token_s[i] - r.start_s[i], left=r.start_s[i], color="#333333", height=0.8)
        ax.barh(y, r.finish_s[i] - r.first_token_s[i], left=r.first_token_s[i], color=color, height=0.8,
                edgecolor="white", linewidth=0.8)
        if r.finish_s[i] - r.first_token_s[i] > 0.04 * end:
            ax.text((r.first_token_s[i] + r.finish_s[i]) / 2, y, f"r{i}", ha="center", va="center", fontsize=7)
        if r.release_s[i] > r.finish_s[i]:
            ax.barh(y, r.release_s[i] - r.finish_s[i], left=r.finish_s[i], color=PAD_COLOR, height=0.8,
                    hatch="///", edgecolor="white", linewidth=0)
    slots = int(r.slot.max()) + 1
    ax.set_yticks(range(slots), [f"slot {s}" for s in range(slots)], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, end)
    ax.set_xlabel("time (s, simulated)")
    ax.set_title(title or r.config.policy, fontsize=10)
    ax.legend(handles=[Patch(color="#333333", label="prefill"), Patch(color=OKABE_ITO[0], label="decoding (request rN)"),
                       Patch(facecolor=PAD_COLOR, hatch="///", edgecolor="white", label="slot idle, held")],
              fontsize=7, loc="lower right", framealpha=0.9)
    return ax


def _paired_bars(ax, summaries, left, right, colors, labels, share):
    """Two bars per policy (``left`` grey, ``right`` coloured), the right one labelled with ``share(l, r)``."""
    names = [s["policy"] for s in summaries]
    x = np.arange(len(names))
    lv, rv = [s[left] for s in summaries], [s[right] for s in summaries]
    ax.bar(x - 0.2, lv, width=0.4, color=colors[0], label=labels[0])
    ax.bar(x + 0.2, rv, width=0.4, color=colors[1], label=labels[1])
    for xi, lo, ri in zip(x, lv, rv):
        ax.text(xi + 0.2, ri, share(lo, ri), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, names, fontsize=9)


def kv_bars(summaries, ax=None, title="KV cache: reserved vs used (mean over time)", figsize=(7, 3)):
    """Mean KV tokens reserved and used per policy (``summaries`` from :func:`~packviz.serving.metrics.summary`)."""
    from matplotlib.ticker import StrMethodFormatter

    ax = _new_ax(ax, figsize)
    _paired_bars(ax, summaries, "kv_reserved_mean_tokens", "kv_used_mean_tokens", (PAD_COLOR, OKABE_ITO[4]),
                 ("reserved", "used"), lambda r, u: f"{u / r:.0%}" if r else "")
    ax.set_ylabel("KV tokens")
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return ax


def load_curves(rows, axes=None, slo_s=None, figsize=(11, 3.6)):
    """Throughput and p99 TTFT against offered load, one line per policy (``rows``: load-sweep summaries).

    Returns the two Axes. ``slo_s``: a dashed line at the TTFT SLO.
    """
    if axes is None:
        fig = PackvizFigure(figsize=figsize, layout="constrained")
        axes = fig.subplots(1, 2)
    left, right = axes
    policies = list(dict.fromkeys(s["policy"] for s in rows))
    for policy in policies:
        color = POLICY_COLORS.get(policy, "black")
        mine = sorted((s for s in rows if s["policy"] == policy), key=lambda s: s["offered_requests_per_s"])
        rate = [s["offered_requests_per_s"] for s in mine]
        left.plot(rate, [s["output_tokens_per_s"] for s in mine], marker="o", color=color, label=policy)
        right.plot(rate, [s["ttft_s"]["p99"] for s in mine], marker="o", color=color, label=policy)
    left.set_ylabel("output tokens/s")
    left.set_title("throughput against offered load", fontsize=10)
    right.set_yscale("log")
    right.set_ylabel("p99 TTFT (s)")
    right.set_title("p99 time to first token", fontsize=10)
    if slo_s:
        right.axhline(slo_s, color="black", linestyle="--", linewidth=1, label=f"SLO {slo_s:g} s")
    for ax in axes:
        ax.set_xlabel("offered load (requests/s)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return axes


def utilisation_bars(summaries, ax=None, title="busy vs useful", figsize=(7, 3)):
    """Per policy: share of time the GPU is busy (nvidia-smi) beside the share of peak FLOP/s doing useful work."""
    from matplotlib.ticker import PercentFormatter

    ax = _new_ax(ax, figsize)
    _paired_bars(ax, summaries, "gpu_busy_fraction", "useful_flop_fraction", (PAD_COLOR, OKABE_ITO[5]),
                 ('busy ("GPU utilization")', "useful FLOPs / peak"), lambda b, u: f"{u:.0%}")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylim(0, 1.3)
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    ax.set_title(title, fontsize=10)
    return ax
