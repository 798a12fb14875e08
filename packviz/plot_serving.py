"""Pictures of serving replays and engine runs: slots over time, step plans, the KV cache over steps,
one step's ragged stream, KV reserved vs used, load curves (matplotlib, no pyplot).

Every function takes ``ax=None`` (or ``axes=None``) and returns what it drew on; with
``None`` it makes its own pyplot-free :class:`~packviz.plot.PackvizFigure` of an explicit
``figsize`` (Jupyter shows it as PNG). What :func:`slot_timeline` draws, one row per slot::

    slot 0 ▓▓████████████████
    slot 1 ▓▓██████░░░░░░░░░░   ▓ prefill   █ decoding (one colour per request)
    slot 2 ▓▓███░░░░░░░░░░░░░   ░ slot held by a finished request, decoding nothing (static)

The step-by-step pictures of a run (:func:`step_grid`, :func:`kv_cache_map`, :func:`kv_page_bars`,
:func:`ragged_stream`) read the tables of :mod:`packviz.serving.timeline` and share one colour per
request (:func:`request_color_index`): the same request has the same colour in every picture, and
requests that touch in any of them never share one.
"""

from __future__ import annotations

import numpy as np
from matplotlib.patches import Patch

from .colors import OKABE_ITO, PAD_COLOR, color_index, grid_neighbours, palette
from .checks import instance_of
from .plot import PackvizFigure, new_axes
from .serving import timeline
from .serving.metrics import summary_list
from .serving.simulator import SimResult


POLICY_COLORS = {"static": OKABE_ITO[5], "static-packed": OKABE_ITO[0], "continuous": OKABE_ITO[2],
                 "chunked": OKABE_ITO[4]}
"""One colour per policy in every picture (Okabe-Ito: vermillion, orange, green, blue)."""



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
    r = instance_of("result", result, SimResult, "a SimResult (simulate(...) or run_engine(...) returns one)")
    ax = new_axes(ax, figsize)
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
    from matplotlib.legend_handler import HandlerTuple

    # outside the slots (it hid idle bars), and one swatch per colour in use: each request has its own
    shown = tuple(Patch(color=colors[k]) for k in sorted(set(index.tolist()))[:6])
    ax.legend(handles=[Patch(color="#333333"), shown, Patch(facecolor=PAD_COLOR, hatch="///", edgecolor="white")],
              labels=["prefill", "decoding (a colour per request, rN)", "slot idle, held"],
              handler_map={tuple: HandlerTuple(ndivide=None, pad=0)}, fontsize=7, loc="upper left",
              bbox_to_anchor=(1.005, 1.0), framealpha=0.9)
    return ax


NOT_MEASURED = "not\nmeasured"
"""Where a bar's value is ``None`` (a replay against a real server has no GPU counters: busy, MFU, MBU)."""


def _paired_bars(ax, summaries, left, right, colors, labels, share):
    """Two bars per policy (``left`` grey, ``right`` coloured), the right one labelled with ``share(l, r)``;
    a value that is ``None`` draws no bar, only :data:`NOT_MEASURED` where it would stand."""
    names = [s["policy"] for s in summaries]
    x = np.arange(len(names))
    lv, rv = [s[left] for s in summaries], [s[right] for s in summaries]
    for dx, values, color, label in ((-0.2, lv, colors[0], labels[0]), (0.2, rv, colors[1], labels[1])):
        ax.bar(x + dx, [0.0 if v is None else v for v in values], width=0.4, color=color, label=label)
        for xi, v in zip(x, values):
            if v is None:
                ax.text(xi + dx, 0, NOT_MEASURED, ha="center", va="bottom", fontsize=7, color="#555555")
    for xi, lo, ri in zip(x, lv, rv):
        if lo is not None and ri is not None:
            ax.text(xi + 0.2, ri, share(lo, ri), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, names, fontsize=9)


def kv_bars(summaries, ax=None, title="KV cache: reserved vs used (mean over time)", figsize=(7, 3)):
    """Mean KV tokens reserved and used per policy (``summaries`` from :func:`~packviz.serving.metrics.summary`)."""
    from matplotlib.ticker import StrMethodFormatter

    summaries = summary_list(summaries, ("policy", "kv_reserved_mean_tokens", "kv_used_mean_tokens"))
    ax = new_axes(ax, figsize)
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
    """Per policy: share of time the GPU is busy (nvidia-smi) beside the share of peak FLOP/s doing useful work
    (MFU). :func:`time_split_bars` shows where the rest went. A value that is ``None`` (a replay against a
    real server measures neither) is labelled "not measured" instead of a bar."""
    from matplotlib.ticker import PercentFormatter

    summaries = summary_list(summaries, ("policy", "gpu_busy_fraction", "useful_flop_fraction"))
    ax = new_axes(ax, figsize)
    _paired_bars(ax, summaries, "gpu_busy_fraction", "useful_flop_fraction", (PAD_COLOR, OKABE_ITO[5]),
                 ('busy ("GPU utilization")', "useful FLOPs / peak"), lambda b, u: f"{u:.0%}")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylim(0, 1.3)
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    ax.set_title(title, fontsize=10)
    return ax


SPLIT_SLICES = ("useful", "padding", "idle_slots", "recompute", "dense_attention", "below_peak", "host", "waiting")
"""The slices of :func:`~packviz.serving.metrics.time_split`, in the order :func:`time_split_bars` stacks them."""
SPLIT_COLORS = {"useful": OKABE_ITO[2], "padding": PAD_COLOR, "idle_slots": OKABE_ITO[5], "recompute": OKABE_ITO[6],
                "dense_attention": OKABE_ITO[3], "below_peak": OKABE_ITO[4], "host": "#555555",
                "waiting": "#E8E8E8"}
SPLIT_LABELS = {"useful": "useful FLOPs at peak (MFU)", "padding": "prompt padding", "idle_slots": "idle decode slots",
                "recompute": "recomputation after preemption", "dense_attention": "dense attention (masked pairs)",
                "below_peak": "busy below peak (memory-bound, kernels)", "host": "host gaps between steps",
                "waiting": "waiting for arrivals"}


def time_split_bars(summaries, ax=None, title="where the time went", labels=None, figsize=(9, 3)):
    """One horizontal bar per summary: its makespan cut into the slices of ``time_split_s``, as shares.

    Busy time (what ``nvidia-smi`` reports) is every slice but the last two; MFU is the first.
    ``labels``: one name per bar (default: the policies). Summaries without a split (a CPU engine
    run, a recorded clock) are refused by name.
    """
    from matplotlib.ticker import PercentFormatter

    summaries = summary_list(summaries, ("policy", "time_split_s", "makespan_s"))
    missing = [s["policy"] for s in summaries if not s.get("time_split_s")]
    if missing:
        raise ValueError(f"no time split for {', '.join(missing)}: a run whose busy time or peak is unknown")
    ax = new_axes(ax, figsize)
    names = labels or [s["policy"] for s in summaries]
    y = np.arange(len(summaries))[::-1]
    left = np.zeros(len(summaries))
    for key in SPLIT_SLICES:
        share = np.array([s["time_split_s"][key] / s["makespan_s"] for s in summaries])
        if not np.any(share > 1e-4):
            continue
        ax.barh(y, share, left=left, color=SPLIT_COLORS[key], label=SPLIT_LABELS[key], height=0.6,
                edgecolor="white", linewidth=0.5)
        for yi, li, si in zip(y, left, share):
            if si >= 0.06:
                ax.text(li + si / 2, yi, f"{si:.0%}", ha="center", va="center", fontsize=8,
                        color="white" if key in ("host", "padding", "useful", "below_peak") else "black")
        left += share
    ax.set_yticks(y, names, fontsize=9)
    ax.set_ylabel("policy", fontsize=9)
    ax.set_xlabel("share of the run's time", fontsize=8)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlim(0, 1)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=4, frameon=False)
    ax.set_title(title, fontsize=10)
    return ax


def budget_tradeoff(rows, ax=None, title=None, figsize=(5.5, 3.8)):
    """``chunked`` under several token budgets at one rate (:func:`~packviz.serving.sweep.budget_sweep`):
    p99 inter-token latency (x) against p99 TTFT (y), each point labelled with its budget."""
    ax = new_axes(ax, figsize)
    itl = np.array([r["itl_s"]["p99"] for r in rows]) * 1e3
    ttft = np.array([r["ttft_s"]["p99"] for r in rows])
    ax.plot(itl, ttft, "-o", color=POLICY_COLORS["chunked"], markersize=5)
    ax.margins(x=0.12, y=0.1)                                          # room for the labels of the end points
    for x, yv, r in zip(itl, ttft, rows):
        ax.annotate(f"{r['token_budget']:,}", (x, yv), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel("ITL p99 (ms): the longest gaps in a stream")
    ax.set_ylabel("TTFT p99 (s)")
    ax.set_title(title or f"token budget per step, at rate x{rows[0]['rate_scale']:g}", fontsize=10)
    return ax


# ---------------------------------------------------------------------- a run step by step
PREFILL_COLOR = "#333333"
"""Prefill cells and bars, as in :func:`slot_timeline`."""
WAITING_COLOR = "#EEEEEE"
PREEMPT_COLOR = OKABE_ITO[5]


def _column_pairs(columns) -> list:
    """Pairs of requests drawn next to each other: consecutive entries of each column (a list of request lists)."""
    return [(a, b) for col in columns for a, b in zip(col[:-1], col[1:])]


def request_neighbours(plans, kv_regions=None, capacity: int = 0, n: int | None = None) -> np.ndarray:
    """Pairs of requests (E, 2) that touch in any step-by-step picture of a run, each pair once (a < b).

    Touching: adjacent rows of :func:`step_grid` both decoding in one step; adjacent sequences of one
    step's stream (:func:`ragged_stream`); adjacent stacks of one step's :func:`kv_page_bars`; and,
    given ``kv_regions``, regions adjacent in the cache or following each other on its rows (:func:`kv_cache_map`).
    """
    n = timeline.num_requests(plans) if n is None else int(n)
    table = timeline.step_table(plans, n)
    decoding = np.where(table.state == timeline.DECODE, np.arange(n)[:, None], -1)
    pages = timeline.pages_held(plans, 1, n)
    pairs = [grid_neighbours(decoding)]
    streams = [[*p.decodes, *(x.request for x in p.prefills)] for p in plans]
    stacks = [np.flatnonzero(pages[:, j]).tolist() for j in range(pages.shape[1])]
    pairs.append(np.asarray(_column_pairs(streams) + _column_pairs(stacks), dtype=np.int64).reshape(-1, 2))
    if kv_regions is not None:
        pairs.append(grid_neighbours(timeline.kv_rows(kv_regions, capacity)))
    pairs = np.sort(np.concatenate(pairs).astype(np.int64), axis=1)
    return np.unique(pairs[pairs[:, 0] != pairs[:, 1]].reshape(-1, 2), axis=0)


def request_color_index(result=None, *, plans=None, kv_regions=None, capacity: int = 0,
                        n: int | None = None) -> np.ndarray:
    """A palette index per request (N,) for every step-by-step picture of one run.

    ``result``: a run with ``plans`` (a :class:`~packviz.serving.simulator.SimResult` stepped one
    plan at a time, or an :class:`~packviz.serving.simulator.EngineResult`, whose ``kv_regions``
    are used too); or give ``plans`` (and ``kv_regions``, ``capacity``) directly. Requests that
    touch in any picture (:func:`request_neighbours`) differ; colours are numbered in the order
    requests first run, so the first is orange.
    """
    if result is not None:
        plans = result.plans
        kv_regions = getattr(result, "kv_regions", None) or None
        capacity = getattr(result, "kv_capacity_tokens", 0)
        n = len(result.trace)
    if not plans:
        raise ValueError("request_color_index needs a run's plans: simulate(..., fast_forward=False) keeps them, "
                         "and every engine run does")
    n = timeline.num_requests(plans) if n is None else int(n)
    first = {}
    for p in plans:
        for r in (*p.decodes, *(x.request for x in p.prefills)):
            first.setdefault(r, len(first))
    order = sorted(first, key=first.get) + [r for r in range(n) if r not in first]
    return color_index(order, request_neighbours(plans, kv_regions, capacity, n), n)


def _request_palette(index) -> list:
    return palette(max(len(OKABE_ITO), int(np.max(index, initial=0)) + 1))


def _cell_text(ax, x, y, text, color, size):
    ax.text(x, y, text, ha="center", va="center", fontsize=size, color=color)


def step_grid(plans, ax=None, n: int | None = None, arrival_steps=None, index=None, title=None,
              figsize=(10, 2.6)):
    """Requests (rows) × steps (columns): what each request did in each step of ``plans``.

    A prefill piece is dark with its token count (pads after a ``+``), a decode is the request's
    colour, an idle decode (a finished request's static slot) hatched grey, a preemption a
    vermillion cross, waiting light grey; a request not yet arrived or already gone is blank.
    ``index``: palette index per request (:func:`request_color_index`); ``n``, ``arrival_steps``:
    as :func:`packviz.serving.timeline.step_table`. One patch per drawn cell.
    """
    from matplotlib.patches import Rectangle

    ax = new_axes(ax, figsize)
    table = timeline.step_table(plans, n, arrival_steps)
    rows, steps = table.shape
    index = request_color_index(plans=plans, n=rows) if index is None else np.asarray(index)
    colors = _request_palette(index)
    size = 7 if steps <= 30 else 6 if steps <= 45 else 5
    for r, j in zip(*np.nonzero(table.state)):
        code = int(table.state[r, j])
        face, hatch, edge = {timeline.WAITING: (WAITING_COLOR, None, "white"),
                             timeline.PREFILL: (PREFILL_COLOR, None, "white"),
                             timeline.DECODE: (colors[index[r]], None, "white"),
                             timeline.IDLE: (PAD_COLOR, "///", "white"),
                             timeline.PREEMPTED: ("white", None, PREEMPT_COLOR)}[code]
        ax.add_patch(Rectangle((j - 0.5, r - 0.5), 1, 1, facecolor=face, hatch=hatch, edgecolor=edge,
                               linewidth=1.2 if code == timeline.PREEMPTED else 0.8))
        if code == timeline.PREFILL:
            pad = f"\n+{table.pad[r, j]}" if table.pad[r, j] else ""
            _cell_text(ax, j, r, f"{table.tokens[r, j]}{pad}", "white", size - (1 if pad else 0))
        elif code == timeline.PREEMPTED:
            _cell_text(ax, j, r, "X", PREEMPT_COLOR, size + 1)
    ax.set_xlim(-0.5, steps - 0.5)
    ax.set_ylim(rows - 0.5, -0.5)
    ax.set_yticks(range(rows), [f"r{r}" for r in range(rows)], fontsize=8)
    every = max(1, -(-steps // 25))
    ax.set_xticks(range(0, steps, every))
    ax.tick_params(axis="x", labelsize=8)
    ax.set_xlabel("step")
    ax.set_title(title or "the scheduler's plan, step by step", fontsize=10)
    from matplotlib.legend_handler import HandlerTuple

    decode = tuple(Patch(color=colors[k]) for k in sorted(set(index.tolist()))[:6])   # a colour per request
    ax.legend(handles=[Patch(color=PREFILL_COLOR), decode, Patch(facecolor=PAD_COLOR, hatch="///", edgecolor="white"),
                       Patch(facecolor="white", edgecolor=PREEMPT_COLOR), Patch(color=WAITING_COLOR)],
              labels=["prefill (tokens)", "decode (its request's colour)", "idle decode (slot held)", "preempted",
                      "waiting"], handler_map={tuple: HandlerTuple(ndivide=None, pad=0)},
              fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0), framealpha=0.9)
    return ax


def _region_labels(ax, grid):
    """``rN`` once in the middle of each run of steps over which a region keeps its rows."""
    rows, steps = grid.shape
    for r in np.unique(grid[grid >= 0]).tolist():
        mine = grid == r
        spans = [tuple(np.flatnonzero(mine[:, j])[[0, -1]]) if mine[:, j].any() else None for j in range(steps)]
        j = 0
        while j < steps:
            if spans[j] is None:
                j += 1
                continue
            k = j
            while k + 1 < steps and spans[k + 1] == spans[j]:
                k += 1
            lo, hi = spans[j]
            if hi - lo + 1 >= 0.05 * rows:
                _cell_text(ax, (j + k) / 2, (lo + hi) / 2, f"r{r}", "black", 7)
            j = k + 1


def kv_cache_map(kv_regions, capacity: int, ax=None, index=None, title=None, figsize=(6, 3.2)):
    """The engine's physical KV cache over steps: cache rows (y) × steps (x), each request's region in its colour.

    ``kv_regions``: ``EngineResult.kv_regions`` (per step ``{request: (start, length)}``, the regions
    in use during that step); ``capacity``: ``EngineResult.kv_capacity_tokens`` (free rows white;
    the spare row of CUDA-graph padding is not drawn). One image; ``rN`` labels each region.
    """
    from matplotlib.colors import to_rgb

    ax = new_axes(ax, figsize)
    grid = timeline.kv_rows(kv_regions, capacity)                      # (C, S)
    if index is None:
        ids = grid[grid >= 0]
        _, first = np.unique(ids, return_index=True)
        index = color_index(ids[np.sort(first)], grid_neighbours(grid), int(grid.max(initial=-1)) + 1)
    index = np.asarray(index)
    lut = np.array([to_rgb(c) for c in _request_palette(index)] + [(1.0, 1.0, 1.0)])
    rgb = lut[np.where(grid >= 0, index[np.maximum(grid, 0)] if index.size else -1, -1)]
    steps = grid.shape[1]
    ax.imshow(rgb, aspect="auto", interpolation="nearest", extent=(-0.5, steps - 0.5, capacity, 0))
    _region_labels(ax, grid)
    ax.set_xlabel("step")
    ax.set_ylabel("cache row (token slot)")
    ax.set_title(title or f"physical KV cache: {capacity:,} rows, one region per request", fontsize=10)
    return ax


def kv_page_bars(plans, page_size: int, ax=None, budget_tokens: int | None = None, index=None,
                 n: int | None = None, title=None, figsize=(6, 3.2)):
    """The KV pages the scheduler counts after each step, stacked by request (request 0 at the bottom).

    Pages: ceil(tokens written / ``page_size``) (:func:`packviz.serving.timeline.pages_held`).
    ``budget_tokens``: a dashed line at the budget in pages. One bar per (request, step) holding pages.
    """
    ax = new_axes(ax, figsize)
    pages = timeline.pages_held(plans, page_size, n)                   # (N, S)
    index = request_color_index(plans=plans, n=pages.shape[0]) if index is None else np.asarray(index)
    colors = _request_palette(index)
    bottom = np.zeros(pages.shape[1], dtype=np.int64)
    for r in range(pages.shape[0]):
        steps = np.flatnonzero(pages[r])
        if steps.size:
            ax.bar(steps, pages[r, steps], bottom=bottom[steps], width=0.9, color=colors[index[r]],
                   edgecolor="white", linewidth=0.5)
        bottom += pages[r]
    if budget_tokens:
        ax.axhline(budget_tokens // page_size, color="black", linestyle="--", linewidth=1,
                   label=f"budget: {budget_tokens // page_size} pages")
        ax.legend(fontsize=7, loc="upper right")
    ax.set_xlim(-0.5, pages.shape[1] - 0.5)
    ax.set_xlabel("step")
    ax.set_ylabel(f"pages of {page_size} tokens")
    ax.set_title(title or "KV pages the scheduler counts", fontsize=10)
    return ax


def ragged_stream(arrays, ax=None, index=None, title=None, figsize=(10, 2.4)):
    """One step's input as the engine runs it: one row of T tokens, coloured by request.

    ``arrays``: :func:`packviz.serving.engine.runner.step_arrays` of a plan. Each token's column
    shows its ``input_ids``, ``position_ids`` (restarting per sequence) and ``slot_mapping`` (the
    cache row its K/V is written to); each sequence is labelled with its request, its query length
    and ``seqused_k`` (the keys it reads); the x ticks are ``cu_seqlens_q``. One patch per token.
    """
    from matplotlib.patches import Rectangle

    ax = new_axes(ax, figsize)
    t = timeline.stream_table(arrays)
    cu = np.asarray(arrays["cu_seqlens_q"]).tolist()
    seq_req = list(arrays["host"].requests)
    used = np.asarray(arrays["seqused_k"]).tolist()
    if index is None:
        order = list(dict.fromkeys(seq_req))
        edges = np.asarray(list(zip(seq_req[:-1], seq_req[1:])), dtype=np.int64).reshape(-1, 2)
        index = color_index(order, edges[edges[:, 0] != edges[:, 1]], max(seq_req) + 1)
    index = np.asarray(index)
    colors = _request_palette(index)
    rows = (("input_ids", t["input_ids"]), ("position_ids", t["positions"]), ("slot_mapping", t["slot_mapping"]))
    size = 8 if len(t["request"]) <= 24 else 6 if len(t["request"]) <= 40 else 0
    for x, r in enumerate(t["request"].tolist()):
        ax.add_patch(Rectangle((x, 0), 1, len(rows), facecolor=colors[index[r]], edgecolor="white", linewidth=0.8))
        for y, (_, values) in enumerate(rows):
            if size:
                _cell_text(ax, x + 0.5, y + 0.5, str(values[x]), "black", size)
    for y in range(1, len(rows)):
        ax.axhline(y, color="white", linewidth=0.8)
    for b, (lo, hi) in enumerate(zip(cu[:-1], cu[1:])):
        ax.text((lo + hi) / 2, -0.12, f"r{seq_req[b]}\nq {hi - lo}\nk {used[b]}", ha="center", va="bottom",
                fontsize=7, linespacing=1.1)
    ax.vlines(cu, 0, len(rows), color="black", linewidth=1.5)
    ax.set_xlim(-0.05, cu[-1] + 0.05)
    ax.set_ylim(len(rows), -1.5)
    ax.set_yticks([y + 0.5 for y in range(len(rows))], [name for name, _ in rows], fontsize=8)
    ax.set_xticks(cu, [str(c) for c in cu], fontsize=8)
    ax.set_xlabel("cu_seqlens_q (q: query tokens, k: seqused_k, the keys each sequence reads)", fontsize=8)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(title or f"one step as one ragged stream: {cu[-1]} tokens, {len(cu) - 1} sequences",
                 fontsize=10)
    return ax


def step_time_scatter(points, predicted_s, ax=None, title=None, figsize=(5, 4)):
    """Measured against predicted seconds of single steps (calibration points), one marker per point.

    ``points``: dicts with ``kind`` and ``seconds`` (a calibration's ``points``); ``predicted_s``:
    the model's seconds for each, in order. Log-log, in ms, with the line measured = predicted;
    one collection per kind.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax = new_axes(ax, figsize)
    kinds = list(dict.fromkeys(p["kind"] for p in points))
    measured = np.array([p["seconds"] for p in points]) * 1e3
    predicted = np.asarray(predicted_s, dtype=np.float64) * 1e3
    if len(predicted) != len(measured):
        raise ValueError(f"{len(predicted)} predictions for {len(measured)} points: give one per point, in order")
    for k, kind in enumerate(kinds):
        mine = [i for i, p in enumerate(points) if p["kind"] == kind]
        ax.scatter(predicted[mine], measured[mine], color=OKABE_ITO[k % len(OKABE_ITO)], label=kind, s=18)
    lo, hi = min(measured.min(), predicted.min()) / 1.5, max(measured.max(), predicted.max()) * 1.5
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=1, linestyle="--", label="measured = predicted")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    for axis in (ax.xaxis, ax.yaxis):                # 1, 2, 5, 10 ... ms, written plainly
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("predicted step time (ms)")
    ax.set_ylabel("measured step time (ms)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title or "single steps: measured vs predicted", fontsize=10)
    return ax


# ---------------------------------------------------------------------- one step of several runs (the player)
def _frame_state(plans, step: int, r: int, table, done: set) -> tuple[str, str]:
    """(state, label) of request ``r`` in step ``step`` of a run: what the frame writes beside its bar."""
    if step >= len(plans):
        return "done", "done"
    plan, code = plans[step], int(table.state[r, step])
    state = timeline.STATES[code]
    if code == timeline.PREFILL:
        pieces = [x for x in plan.prefills if x.request == r]
        pad = sum(x.pad for x in pieces)
        span = ", ".join(f"[{x.done}:{x.done + x.tokens}]" for x in pieces)
        return state, f"prefill {span}" + (f" +{pad} pad" if pad else "")
    if code == timeline.DECODE:
        return state, "decode, last token" if r in plan.finishing else "decode"
    if code == timeline.IDLE:
        return state, "idle decode (slot held)"
    if code == timeline.NONE:
        return ("done", "done") if r in done else ("none", "")
    return state, {"waiting": "waiting", "preempted": "preempted: pages freed"}[state]


def _frame_ax(plans, step: int, ax, n: int, page_size: int, colors, index, max_pages: int, label: str):
    """One run's requests (rows) in one step: a bar of the KV pages each holds after it, coloured by what it does."""
    from matplotlib.patches import Rectangle

    table = timeline.step_table(plans, n)
    pages = timeline.pages_held(plans, page_size, n)                    # (N, S)
    none = np.zeros(n, dtype=np.int64)
    now = pages[:, step] if step < len(plans) else none
    before = pages[:, step - 1] if 0 < step <= len(plans) else none       # freed: only in the step after
    done = {r for p in plans[:step] for r in p.released}
    faces = {"prefill": (PREFILL_COLOR, None), "idle": (PAD_COLOR, "///"), "waiting": (WAITING_COLOR, None),
             "preempted": ("white", None), "done": ("white", None), "none": ("white", None)}
    for r in range(n):
        state, text = _frame_state(plans, step, r, table, done)
        face, hatch = (colors[index[r]], None) if state == "decode" else faces[state]
        bar = Rectangle((0, r - 0.38), now[r], 0.76, facecolor=face, hatch=hatch,
                        edgecolor=colors[index[r]] if state == "waiting" else "white", linewidth=1.2)
        bar.set_gid(f"{label}:r{r}:{state}")
        ax.add_patch(bar)
        if before[r] > now[r]:                                         # pages freed by this step's start
            ax.add_patch(Rectangle((now[r], r - 0.38), before[r] - now[r], 0.76, fill=False, linestyle="--",
                                   edgecolor=PREEMPT_COLOR if state == "preempted" else "#777777", linewidth=1))
            text = f"{text}, {before[r] - now[r]} freed".lstrip(", ")
        _frame_label(ax, max(now[r], before[r]) + 0.15 * max_pages / 10, r, text, state)
    running = sum(int(table.state[r, step]) in (timeline.PREFILL, timeline.DECODE) for r in range(n)) \
        if step < len(plans) else 0
    head = (f"{label}, step {step}: {running} running, {int(now.sum())} pages held"
            if step < len(plans) else f"{label}: all done after {len(plans)} steps")
    ax.set_title(head, fontsize=9, loc="left")
    ax.set_xlim(0, max_pages * 1.9)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_yticks(range(n), [f"r{r}" for r in range(n)], fontsize=8)
    ax.tick_params(axis="x", labelsize=7)


def _frame_label(ax, x, y, text, state):
    ax.text(x, y, text, va="center", ha="left", fontsize=7,
            color=PREEMPT_COLOR if state == "preempted" else "#999999" if state == "done" else "black")


def step_frame(runs, step: int, axes=None, page_size: int = 16, n: int | None = None, index=None,
               max_pages: int | None = None, figsize=(7, 6.4)):
    """One step of several runs of the same requests, one Axes per run: which requests run, their prefill
    pieces and decodes, and the KV pages each holds after the step (pages freed since the step before: dashed).

    ``runs``: ``{label: plans}`` (each a run's ``plans``: ``simulate(..., fast_forward=False).plans`` or an
    engine run's); ``step``: the step shown in every run (a run already finished shows "all done").
    ``axes``: one Axes per run (default: a new figure, runs stacked); ``index``: a palette index per
    request (N,), the same in every run; ``max_pages``: the x axis' scale, shared by the frames of a
    player. Each request's bar carries the gid ``"label:rN:state"`` (state one of
    :data:`packviz.serving.timeline.STATES`, or ``done``). Returns the list of Axes.
    """
    if not runs or not all(runs.values()):
        raise ValueError("step_frame needs {label: plans} with at least one plan per run: "
                         "simulate(..., fast_forward=False).plans keeps them")
    n = max(timeline.num_requests(p) for p in runs.values()) if n is None else int(n)
    if axes is None:                    # fixed margins: half the render time of a constrained layout (a player redraws)
        fig = PackvizFigure(figsize=figsize)
        axes = fig.subplots(len(runs), 1, sharex=True)
        fig.subplots_adjust(left=0.07, right=0.98, top=0.95, bottom=0.5 / figsize[1] + 0.02, hspace=0.4)
    axes = list(np.atleast_1d(axes))
    if len(axes) != len(runs):
        raise ValueError(f"step_frame draws {len(runs)} runs and got {len(axes)} axes: give one Axes per run")
    index = np.arange(n) if index is None else np.asarray(index)
    colors = _request_palette(index)
    if max_pages is None:
        max_pages = max(int(timeline.pages_held(p, page_size, n).max(initial=1)) for p in runs.values())
    for ax, (label, plans) in zip(axes, runs.items()):
        _frame_ax(plans, int(step), ax, n, page_size, colors, index, max(1, max_pages), label)
    axes[-1].set_xlabel(f"KV pages held after the step (pages of {page_size} tokens)", fontsize=8)
    return axes


def step_strip(runs, steps, page_size: int = 16, n: int | None = None, index=None, figsize=None):
    """Frames of :func:`step_frame` side by side, one column per step in ``steps`` and one row per run:
    the static picture of a step player (what a reader without widgets sees). Returns the figure."""
    steps = [int(s) for s in steps]
    if not steps:
        raise ValueError("step_strip needs at least one step to draw, e.g. steps=[0, 5, 10]")
    n = max(timeline.num_requests(p) for p in runs.values()) if n is None else int(n)
    max_pages = max(int(timeline.pages_held(p, page_size, n).max(initial=1)) for p in runs.values())
    fig = PackvizFigure(figsize=figsize or (3.6 * len(steps), 1.2 + 0.32 * n * len(runs)), layout="constrained")
    grid = np.atleast_2d(fig.subplots(len(runs), len(steps), sharex=True, squeeze=False))
    for col, step in enumerate(steps):
        step_frame(runs, step, axes=grid[:, col], page_size=page_size, n=n, index=index, max_pages=max_pages)
    return fig
