"""Pictures of layouts, masks, positions and waste (matplotlib, no pyplot state).

Every function takes ``ax=None`` and returns the Axes it drew on. With ``ax=None`` it makes
its own :class:`Figure` of an explicit ``figsize`` *without* pyplot: no global current
figure, no figure manager, nothing for ``plt.show()`` to pick up, and nothing leaks
between calls or tests. To see one:

* in Jupyter, end the cell with ``ax.figure`` -- the figures made here render themselves as
  PNG (``_repr_png_``), whatever the backend; given your own ``ax`` from
  ``plt.subplots`` the usual inline display applies;
* in a script, :func:`to_png` / :func:`save` (Agg, no display needed).

What each picture shows::

    batch_grid          position_sawtooth        mask (one pack, q = row, k = column)
    row 0 AAAA....  50% pos │  /│ /│              ■ · · · ·
    row 1 BBCCCDD. 88%      │ / │/ │/            ■ ■ · · ·    ■ = may attend (sequence colour)
          (grey = pad)      └──────────── slot   · · ■ · ·    · = computed by a dense kernel,
                                                 · · ■ ■ ·        masked away
                                                 · · · · ■

Colours: one per sequence (its number mod 7, ``seg_seq``) from the Okabe-Ito colour-blind-safe
palette, the same sequence in the same colour in every picture; pads a neutral grey;
slots a row does not even have (a narrower padded batch) white.
"""

from __future__ import annotations

import io
import os

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .checks import positive_int
from .flops import causal_pairs
from .layout import PAD, block_causal_mask

OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")
"""Okabe & Ito (2008) colour-blind-safe palette, black left out (it is the boundary colour)."""
PAD_COLOR = "#B0B0B0"
MASKED_COLOR = "#EDEDED"
NONE_COLOR = "#FFFFFF"
LINEAR_COLOR = "#0072B2"
ATTENTION_COLOR = "#E69F00"

_PALETTE_RGB = np.array([to_rgb(c) for c in OKABE_ITO])


class PackvizFigure(Figure):
    """A :class:`~matplotlib.figure.Figure` that Jupyter displays as PNG with no pyplot involved."""

    def _repr_png_(self) -> bytes:
        return to_png(self)


def _new_ax(ax, figsize, fixed_margins: bool = False):
    """``ax`` itself, or the single Axes of a new pyplot-free figure of ``figsize``.

    ``fixed_margins``: margins in inches instead of constrained layout, which measures every
    tick label twice per render (half the render time of a 256-row grid).
    """
    if ax is not None:
        return ax
    if fixed_margins:
        fig = PackvizFigure(figsize=figsize)
        _margins(fig)
    else:
        fig = PackvizFigure(figsize=figsize, layout="constrained")
    return fig.add_subplot()


def _margins(fig, left=1.0, right=0.55, bottom=0.55, top=0.4, gap=1.15, ncols=1) -> None:
    """Subplot margins given in inches (room for row labels, axis labels and a title)."""
    w, h = fig.get_size_inches()
    axis_w = (w - left - right - gap * (ncols - 1)) / ncols
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h,
                        wspace=gap / max(axis_w, 0.1))


MAX_PIXELS = 2**27
"""The most pixels :func:`to_png` renders (134 million: 512 MiB of RGBA); Agg also stops at 2**16 a side."""
MIN_DPI = 10
"""The smallest dpi :func:`to_png` renders: below it the labels are under a pixel and FreeType refuses them."""


def to_png(fig_or_ax, dpi: int = 100) -> bytes:
    """PNG bytes of a figure (or an Axes' figure), rendered by Agg.

    A ``dpi`` below :data:`MIN_DPI`, or one that would need more than :data:`MAX_PIXELS` pixels
    (or 2**16 on a side), is refused with the range that fits, before anything is rendered.
    """
    if positive_int("dpi", dpi) < MIN_DPI:
        raise ValueError(f"dpi is {dpi}, below {MIN_DPI}: the labels would be under a pixel; use a dpi of at least {MIN_DPI}")
    fig = getattr(fig_or_ax, "figure", fig_or_ax)  # Axes -> its (sub)figure
    fig = getattr(fig, "figure", fig)  # SubFigure -> the root figure (a Figure is its own)
    w_in, h_in = (float(v) for v in fig.get_size_inches())
    if w_in * h_in * dpi * dpi > MAX_PIXELS or max(w_in, h_in) * dpi >= 2**16:
        best = int(min((MAX_PIXELS / (w_in * h_in)) ** 0.5, (2**16 - 1) / max(w_in, h_in)))
        raise ValueError(f"dpi is {dpi}: a {w_in:g} x {h_in:g}-inch figure would be {w_in * dpi:,.0f} x "
                         f"{h_in * dpi:,.0f} pixels, more than {MAX_PIXELS:,}; use a dpi of at most {best}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def save(fig_or_ax, path, dpi: int = 100) -> None:
    """Write a figure (or an Axes' figure) to ``path`` as PNG.

    Rendered first, then written to a temporary file beside ``path`` and renamed over it: a
    failed render never leaves an empty or half-written file where a good figure was.
    """
    data = to_png(fig_or_ax, dpi=dpi)
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:  # a full disk, a path that cannot be replaced: leave no .tmp behind
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def sequence_colors(seq_ids) -> np.ndarray:
    """RGB (..., 3) of sequence ids (...): the palette colour of each, :data:`PAD_COLOR` for ``PAD``."""
    ids = np.asarray(seq_ids)
    rgb = _PALETTE_RGB[np.where(ids >= 0, ids, 0) % len(_PALETTE_RGB)]
    rgb[ids == PAD] = to_rgb(PAD_COLOR)
    return rgb


# ---------------------------------------------------------------------- batch grid
def grid_image(layout, rows=None, max_cols: int | None = None) -> np.ndarray:
    """RGB uint8 image (R, W, 3) of a layout: sequence colours, grey pads, white beyond a row's width.

    One column per slot, or, above ``max_cols`` slots, ``max_cols`` columns sampled at evenly
    spaced slots (a screen shows ~1,000 pixels; 8,192 columns would only be resampled away).
    """
    rows = np.arange(layout.num_rows) if rows is None else layout.check_rows(rows)
    ids = layout.slot_seq_grid(rows=rows)
    cols = np.arange(ids.shape[1])
    if max_cols is not None and ids.shape[1] > positive_int("max_cols", max_cols):
        cols = np.linspace(0, ids.shape[1] - 1, max_cols).round().astype(np.int64)
        ids = ids[:, cols]
    lut = np.vstack([_PALETTE_RGB, [to_rgb(PAD_COLOR), to_rgb(NONE_COLOR)]])
    lut = (lut * 255).round().astype(np.uint8)
    code = np.where(ids >= 0, ids % len(_PALETTE_RGB), len(_PALETTE_RGB))
    code[cols[None, :] >= layout.widths[rows][:, None]] = len(_PALETTE_RGB) + 1
    return lut[code]


def batch_grid(layout, ax=None, title=None, max_rows: int = 256, max_labels: int = 32,
               width=None, height=None, max_cols: int = 2048, figsize=(8, 4)):
    """Rows × slots of a layout, one colour per sequence, pads grey, rows labelled with utilisation.

    ::

        r0  AAAAAAAA......  57%       colour = sequence, grey = pad
        r1  BBBBCCCCCCDD..  86%       x: token slot, y: row (a padded batch's rows
        ...                           are separated by a thin line per batch)

    Parameters
    ----------
    layout : Layout
    max_rows : show at most this many rows (the first ones); the title says so.
    max_labels : label every row with its utilisation up to this many rows; above, every k-th.
    width, height : x-extent in slots and y-extent in rows (default: this layout's) -- to
        draw two layouts on one scale.
    max_cols : wider rows are drawn from this many evenly sampled slots (see :func:`grid_image`).
    """
    ax = _new_ax(ax, figsize, fixed_margins=True)
    shown = min(layout.num_rows, positive_int("max_rows", max_rows))
    rows = np.arange(shown)
    img = grid_image(layout, rows, max_cols=max_cols)
    slots = int(layout.widths[rows].max(initial=0))
    width = int(width or slots)
    ax.imshow(img, aspect="auto", interpolation="nearest", extent=(0, slots, shown, 0))
    height = max(int(height or shown), shown, 1)
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    _row_labels(ax, layout.row_utilization()[:shown], height, positive_int("max_labels", max_labels))
    ax.set_xlabel("token slot")
    if shown * max(width, 1) <= 4096:  # small: draw segment boundaries so equal colours stay apart
        segs = [[(o, r), (o, r + 1)] for r, o in zip(layout.seg_row.tolist(), layout.seg_offset.tolist())
                if r < shown and o > 0]
        if segs:
            ax.add_collection(LineCollection(segs, colors="white", linewidths=1.5))
    if layout.kind == "padded" and layout.batch_size and shown > layout.batch_size:
        ys = np.arange(layout.batch_size, shown, layout.batch_size)
        ax.hlines(ys, 0, width, colors="black", linewidths=0.6)
    more = f" (first {shown} of {layout.num_rows} rows)" if shown < layout.num_rows else ""
    if title is None:
        title = f"{layout.name or layout.kind}: {layout.num_rows} rows, utilisation {layout.utilization:.1%}"
    ax.set_title(title + more, fontsize=10)
    ax.legend(handles=[Patch(color=PAD_COLOR, label="pad")], loc="lower right", fontsize=7, framealpha=0.8)
    return ax


def _row_labels(ax, util: np.ndarray, height: int, max_labels: int) -> None:
    """Label rows with their utilisation (``util`` (R,)): every row if they fit, else every k-th
    and a utilisation strip on the right, one step per row."""
    shown = len(util)
    # no more labels than fit the axes' height at ~11 pt per label
    fit = int(ax.get_position().height * ax.figure.get_figheight() * 72 / 11)
    max_labels = max(2, min(max_labels, fit))
    step = 1 if height <= max_labels else int(np.ceil(height / max_labels))
    ticks = np.arange(0, shown, step)
    ax.set_yticks(ticks + 0.5)
    ax.set_yticklabels([f"{r}: {util[r]:.0%}" for r in ticks], fontsize=8 if height > 16 else 9)
    ax.set_ylabel("row: utilisation" if step == 1 else f"row: utilisation (every {step} rows)")
    if step > 1:
        strip = ax.inset_axes((1.01, 0, 0.045, 1))
        strip.stairs(util, np.arange(shown + 1), orientation="horizontal", fill=True, color="0.35", baseline=0)
        strip.set_ylim(height, 0)
        strip.set_xlim(0, 1)
        strip.set_xticks([1], ["100%"], fontsize=7)
        strip.set_yticks([])
        strip.tick_params(length=2)
        strip.set_title("util.", fontsize=8)


def padded_vs_packed(padded, packed, axes=None, max_rows: int = 256, figsize=(12, 4.5)):
    """:func:`batch_grid` of a padded and a packed layout side by side, on one x and y scale.

    Same scale: the area each picture fills is the compute each layout pays for.
    Returns the two Axes ``(ax_padded, ax_packed)``.
    """
    if axes is None:
        fig = PackvizFigure(figsize=figsize)
        _margins(fig, ncols=2)
        axes = fig.subplots(1, 2)
    ax_pad, ax_pack = axes
    width = max(int(padded.widths.max(initial=1)), int(packed.widths.max(initial=1)))
    rows = max(min(padded.num_rows, max_rows), min(packed.num_rows, max_rows), 1)
    batch_grid(padded, ax=ax_pad, max_rows=max_rows, width=width, height=rows,
               title=f"{padded.kind} ({padded.name}): {padded.num_rows} rows, utilisation {padded.utilization:.1%}")
    batch_grid(packed, ax=ax_pack, max_rows=max_rows, width=width, height=rows,
               title=f"{packed.kind} ({packed.name}): {packed.num_rows} rows, utilisation {packed.utilization:.1%}")
    return ax_pad, ax_pack


# ---------------------------------------------------------------------- mask
def mask_image(layout, row: int, max_pixels: int = 1024) -> np.ndarray:
    """RGB image of one row's block-diagonal causal mask over all its slots (query = row, key = column).

    Allowed (q, k) in the sequence's colour, computed-but-masked pairs light grey, pairs that
    involve a pad slot mid grey. Above ``max_pixels`` slots the mask is *sampled* at
    ``max_pixels`` evenly spaced slots (never materialised at full size: 8192² would be 64 MB).
    """
    row = layout.check_row(row)
    ids = layout.slot_seq_grid(rows=[row])[0][: int(layout.widths[row])]
    w = len(ids)
    idx = np.arange(w) if w <= positive_int("max_pixels", max_pixels) else \
        np.linspace(0, w - 1, max_pixels).round().astype(np.int64)
    allowed = block_causal_mask(ids[idx], slots=idx)
    pad = (ids[idx][:, None] == PAD) | (ids[idx][None, :] == PAD)
    img = np.empty((len(idx), len(idx), 3))
    img[...] = to_rgb(MASKED_COLOR)
    img[pad] = to_rgb(PAD_COLOR)
    colors = sequence_colors(ids[idx])  # colour of each query's sequence
    img[allowed] = np.broadcast_to(colors[:, None, :], img.shape)[allowed]
    return img


def mask(layout, row: int = 0, ax=None, title=None, figsize=(5.5, 5.5)):
    """The block-diagonal causal mask of one pack, sequence boundaries drawn.

    Readable at 8 tokens (a grid line around every cell, each slot's position id on the
    axes) and at 8,192 (a sampled image with the boundaries as lines). Colour: the
    sequence's own colour where a query may attend; light grey for pairs a dense kernel
    still computes and then masks; mid grey for pairs involving a pad slot.
    """
    row = layout.check_row(row)
    ax = _new_ax(ax, figsize)
    w = int(layout.widths[row])
    img = mask_image(layout, row)
    ax.imshow(img, interpolation="nearest", extent=(0, w, w, 0))
    segs = layout.row_segments(row)
    # boundaries: a square around each sequence's block on the diagonal
    lines = []
    for _, o, n in segs.tolist():
        lines += [[(o, o), (o + n, o)], [(o + n, o), (o + n, o + n)], [(o + n, o + n), (o, o + n)], [(o, o + n), (o, o)]]
    if lines:
        ax.add_collection(LineCollection(lines, colors="black", linewidths=1.2 if w <= 64 else 0.8))
    if w <= 32:
        ticks = np.arange(w) + 0.5
        pos = layout.position_grid(rows=[row])[0][:w]
        labels = [str(p) if p >= 0 else "·" for p in pos]
        ax.set_xticks(ticks, labels, fontsize=8)
        ax.set_yticks(ticks, labels, fontsize=8)
        ax.set_xticks(np.arange(w + 1), minor=True)
        ax.set_yticks(np.arange(w + 1), minor=True)
        ax.grid(which="minor", color="white", linewidth=1)
        ax.tick_params(which="minor", length=0)
        ax.set_xlabel("key (position_id)")
        ax.set_ylabel("query (position_id)")
    else:
        ax.set_xlabel("key slot")
        ax.set_ylabel("query slot")
    lengths = segs[:, 2]
    needed = causal_pairs(lengths)
    if title is None:
        title = (f"row {row}: {len(lengths)} sequences in {w} slots\n"
                 f"needed {needed:,} of {w * w:,} pairs ({needed / max(w * w, 1):.1%})")
    ax.set_title(title, fontsize=10)
    return ax


# ---------------------------------------------------------------------- positions
def position_sawtooth(layout, row: int = 0, ax=None, show_continued: bool = True, title=None,
                      figsize=(8, 3)):
    """``position_ids`` of one pack against its slot: a sawtooth restarting at every sequence.

    With ``show_continued`` a dashed line shows ``0 .. W-1``: the positions RoPE would see if
    they were not reset (a known packing bug).
    """
    row = layout.check_row(row)
    ax = _new_ax(ax, figsize)
    segs = layout.row_segments(row)
    w = int(layout.widths[row])
    if show_continued and len(segs):
        end = int(segs[-1, 1] + segs[-1, 2])
        ax.plot(np.arange(end), np.arange(end), ls="--", color="0.5", lw=1, label="not reset (bug)")
    for s, o, n in segs.tolist():
        x = np.arange(o, o + n)
        ax.plot(x, x - o, color=OKABE_ITO[s % len(OKABE_ITO)], lw=1.8,
                marker="o" if w <= 64 else None, ms=3)
    used = int(segs[:, 2].sum()) if len(segs) else 0
    if used < w:
        ax.axvspan(used - 0.5, w - 0.5, color=PAD_COLOR, alpha=0.4, lw=0, label="pad")
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(bottom=-0.03 * max(ax.get_ylim()[1], 1))  # keep the markers at position 0 whole
    ax.set_xlabel("token slot in the pack")
    ax.set_ylabel("position_id")
    if title is None:
        title = f"position_ids of row {row}: restart at each of {len(segs)} sequences"
    ax.set_title(title, fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", fontsize=8)
    return ax


# ---------------------------------------------------------------------- waste
_UNITS = ((1e18, "EFLOP"), (1e15, "PFLOP"), (1e12, "TFLOP"), (1e9, "GFLOP"), (1e6, "MFLOP"), (1, "FLOP"))


def _unit(x: float):
    for scale, name in _UNITS:
        if x >= scale:
            return scale, name
    return 1, "FLOP"


def _as_pair(v):
    if isinstance(v, dict):
        return float(v["linear"]), float(v["attention"])
    return float(v.linear), float(v.attention)


def waste_bars(flops, ax=None, title=None, figsize=(7, 4)):
    """Stacked linear + attention FLOPs for useful, padded (causal and masked), dense, flex and varlen.

    ``flops``: :func:`packviz.flops.compare`'s result (or its JSON form), or any mapping of
    ``{label: Flops}``. Each bar is labelled with its total and, where a ``"useful"`` entry
    exists, the share of it that is waste; a dashed line marks the useful total.
    """
    ax = _new_ax(ax, figsize)
    order = [k for k in ("useful", "padded", "padded-masked", "dense", "flex", "varlen") if k in flops]
    if not order:
        order = list(flops)
    names = {"useful": "useful", "padded": "padded\n(causal)", "padded-masked": "padded\n(mask)",
             "dense": "packed\n(dense mask)", "flex": "packed\n(flex)", "varlen": "packed\n(varlen)"}
    pairs = np.array([_as_pair(flops[k]) for k in order])
    scale, unit = _unit(pairs.sum(axis=1).max(initial=0))
    lin, att = pairs[:, 0] / scale, pairs[:, 1] / scale
    x = np.arange(len(order))
    ax.bar(x, lin, color=LINEAR_COLOR, label="linear (projections, MLP, lm_head)")
    ax.bar(x, att, bottom=lin, color=ATTENTION_COLOR, hatch="//", edgecolor="white", label="attention (QKᵀ, AV)")
    useful = pairs[order.index("useful")].sum() / scale if "useful" in order else None
    for i, total in enumerate(lin + att):
        text = f"{total:,.3g}"
        if useful and order[i] != "useful" and total > 0:
            waste = 1 - useful / total
            waste = 0.0 if abs(waste) < 5e-4 else waste  # no "-0%" from rounding error
            text += f"\n{waste:.0%} waste"
        ax.annotate(text, (x[i], total), ha="center", va="bottom", fontsize=8,
                    xytext=(0, 2), textcoords="offset points")
    if useful:
        ax.axhline(useful, color="black", ls="--", lw=0.8)
    ax.set_xticks(x, [names.get(k, k) for k in order], fontsize=9)
    ax.set_ylabel(f"prefill {unit}s")
    ax.set_ylim(0, (lin + att).max(initial=1) * 1.22 or 1)
    ax.legend(fontsize=8, loc="upper right")
    if title is None:
        model = flops.get("model") if isinstance(flops, dict) else None
        title = "prefill FLOPs" + (f", {model}" if model else "")
    ax.set_title(title, fontsize=10)
    return ax


# ---------------------------------------------------------------------- curves
def lines(x, series: dict, ax=None, title=None, xlabel=None, ylabel=None, percent: bool = False,
          logx: bool = False, figsize=(7, 3.5)):
    """One line per ``{label: values}`` over ``x`` (e.g. waste against batch size), markers on the points.

    ``percent``: values are fractions, shown as percentages. ``logx``: a log2 x axis
    labelled with the values of ``x`` themselves.
    """
    from matplotlib.ticker import PercentFormatter

    ax = _new_ax(ax, figsize)
    for (label, ys), color in zip(series.items(), OKABE_ITO):
        ax.plot(x, ys, marker="o", color=color, label=label)
    if logx:
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(x), [str(v) for v in x])
    if percent:
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_xlabel(xlabel or "")
    ax.set_ylabel(ylabel or "")
    if title:
        ax.set_title(title, fontsize=10)
    if len(series) > 1:
        ax.legend(fontsize=8)
    return ax


# ---------------------------------------------------------------------- benchmark results
def method_color(method: str):
    """One colour per benchmark method, the same in every panel (its place in ``attention.METHODS``)."""
    from .attention import METHODS

    i = METHODS.index(method) if method in METHODS else len(METHODS)
    return OKABE_ITO[i % len(OKABE_ITO)]


def _timed_methods(scen: list, skip=("padded",)) -> list:
    """Methods timed in some scenario, in ``attention.METHODS`` order (the order of their colours)."""
    from .attention import METHODS

    timed = {m for s in scen for m, r in s["methods"].items() if r.get("median_s") and m not in skip}
    return sorted(timed, key=lambda m: METHODS.index(m) if m in METHODS else len(METHODS))


def _own(r: dict) -> bool:
    """A result measured in its own scenario (not timings shared from another one)."""
    return bool(r.get("median_s")) and not r.get("shared_from")


def bench_speedups(res: dict, ax=None, title=None, figsize=(10, 3.8)):
    """Measured speed-up over ``padded`` (bars) beside the FLOP model's ideal (black ticks), per scenario.

    ``res``: a results dict of :func:`packviz.bench.runner.run` (or
    :func:`packviz.bench.results.load_results`). Only methods timed in the scenario itself get a
    bar (timings a scenario shares with another are drawn once, where they were measured),
    labelled with measured / ideal; offline methods are hatched. The baseline, ``padded``
    (causal, no mask), is the grey line at 1×.
    """
    ax = _new_ax(ax, figsize)
    scen = [s for s in res.get("scenarios", []) if s.get("methods")]
    methods = _timed_methods(scen)
    x = np.arange(len(scen))
    width = 0.84 / max(len(methods), 1)
    top = 1.0
    for i, m in enumerate(methods):
        xs = x - 0.42 + width * (i + 0.5)
        rows = [s["methods"].get(m, {}) for s in scen]
        meas = np.array([r["measured_speedup"] if _own(r) and r.get("measured_speedup") else 0.0 for r in rows])
        ideal = np.array([(r.get("ideal_speedup_tiled") or r.get("ideal_speedup")) if _own(r) else np.nan
                          for r in rows], dtype=np.float64)
        bars = ax.bar(xs, meas, width * 0.9, color=method_color(m), label=m)
        for bar, r in zip(bars, rows):
            bar.set_hatch("//" if r.get("label") == "offline" else None)
        ax.scatter(xs, ideal, marker="_", s=500 * width, color="black", linewidths=2, zorder=3,
                   label="ideal (FLOP model)" if i == len(methods) - 1 else None)
        for xi, mv, iv in zip(xs, meas, ideal):
            if mv > 0 and np.isfinite(iv):
                ax.annotate(f"{mv / iv:.2f}", (xi, max(mv, iv)), ha="center", va="bottom",
                            fontsize=7, xytext=(0, 2), textcoords="offset points")
        top = max(top, np.nanmax(np.concatenate([meas, ideal, [1.0]])))
    ax.axhline(1, color="0.5", lw=0.8, label="padded (causal, no mask)")
    ax.set_xticks(x, [s["name"] for s in scen])
    ax.set_ylim(0, top * 1.45)
    ax.set_ylabel("speed-up over padded (×)")
    ax.legend(fontsize=7, loc="upper left", ncols=4)
    if title is None:
        dev = (res.get("device") or {}).get("name", "?")
        model = (res.get("model") or {}).get("name", "?")
        title = f"{model} on {dev}: measured speed-up (bars; label = measured / ideal), hatched = offline"
    ax.set_title(title, fontsize=9)
    return ax


def bench_ceiling_share(res: dict, ax=None, title=None, figsize=(10, 3.8)):
    """Useful TFLOP/s of every timed method (``padded`` included) as a share of the run's matmul ceiling."""
    ax = _new_ax(ax, figsize)
    scen = [s for s in res.get("scenarios", []) if s.get("methods")]
    methods = _timed_methods(scen, skip=())
    x = np.arange(len(scen))
    width = 0.84 / max(len(methods), 1)
    for i, m in enumerate(methods):
        xs = x - 0.42 + width * (i + 0.5)
        rows = [s["methods"].get(m, {}) for s in scen]
        frac = [100 * (r.get("useful_fraction_of_ceiling") or 0) if _own(r) else 0 for r in rows]
        ax.bar(xs, frac, width * 0.9, color=method_color(m), label=m)
    ax.set_xticks(x, [s["name"] for s in scen])
    ax.set_ylim(0, 100)
    ax.set_ylabel("useful TFLOP/s, % of the ceiling")
    ax.legend(fontsize=7, loc="upper left", ncols=6)
    ceil = res.get("ceiling_tflops")
    ax.set_title(title or (f"useful work against the {ceil:,.3g} TFLOP/s matmul ceiling (measured in the run)"
                           if ceil else "useful work against the matmul ceiling"), fontsize=9)
    return ax


def bench_figure(res: dict, figsize=(10, 7.2)):
    """The benchmark's figure: :func:`bench_speedups` above :func:`bench_ceiling_share`. Returns the two Axes."""
    fig = PackvizFigure(figsize=figsize, layout="constrained")
    top, bottom = fig.subplots(2, 1)
    return bench_speedups(res, ax=top), bench_ceiling_share(res, ax=bottom)


# ---------------------------------------------------------------------- training steps
def step_tokens(series: dict, ax=None, max_steps: int = 120, title=None, ylabel="real tokens per step",
                figsize=(9, 3.4)):
    """Tokens per optimizer step, one line per ``{label: (S,) array}``, over the first ``max_steps`` steps.

    A dashed line of the same colour marks each series' mean over all its steps
    (e.g. :func:`packviz.steps.step_tokens`'s ``"tokens"``).
    """
    ax = _new_ax(ax, figsize)
    for (label, ys), color in zip(series.items(), OKABE_ITO):
        ys = np.asarray(ys, dtype=np.float64)
        shown = ys[:positive_int("max_steps", max_steps)]
        ax.plot(np.arange(len(shown)), shown, color=color, lw=1.4, label=f"{label} (mean {ys.mean():,.0f})")
        ax.axhline(ys.mean(), color=color, lw=0.9, ls="--")
    ax.set_xlim(0, max_steps - 1)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"what one step holds (first {max_steps} steps; dashed: mean)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return ax


def loss_shares(lengths, shares: dict, ax=None, title=None, figsize=(8, 3.2)):
    """Each example's share of a step's loss under several reductions: grouped bars, one group per example.

    ``lengths`` (N,) label the groups; ``shares`` is ``{reduction label: (N,) shares}``
    (e.g. :func:`packviz.steps.example_weights`).
    """
    from matplotlib.ticker import PercentFormatter

    ax = _new_ax(ax, figsize)
    x = np.arange(len(lengths))
    width = 0.8 / max(len(shares), 1)
    for i, ((label, ys), color) in enumerate(zip(shares.items(), (LINEAR_COLOR, ATTENTION_COLOR) + OKABE_ITO)):
        ax.bar(x - 0.4 + width * (i + 0.5), ys, width * 0.92, color=color, label=label)
    ax.set_xticks(x, [f"{int(n):,}" for n in lengths])
    ax.set_xlabel("example length (tokens)")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_ylabel("share of the step's loss")
    ax.grid(alpha=0.3, axis="y")
    ax.set_title(title or "how much each example counts in one step", fontsize=10)
    ax.legend(fontsize=8)
    return ax


# ---------------------------------------------------------------------- the workshop set
def standard_figures() -> dict:
    """``{file name: () -> Axes}``: the figures ``python -m packviz figures`` writes for slides.

    The seed scenario (16 prompts, batches of 8, packs of 8,192) and 256 prompts of the Azure
    trace (batches of 16), as grids and waste bars; masks and position sawtooths of an
    8-token pack and of the busiest 8,192-token pack. Drawn lazily, one at a time.
    """
    from .flops import compare
    from .lengths import azure_conv, seed_scenario
    from .packing import pack, pad_and_pack

    seed_pad, seed_pack = pad_and_pack(seed_scenario(16, seed=0), 8192, batch_size=8)
    az_pad, az_pack = pad_and_pack(azure_conv(256, seed=0), 8192, batch_size=16, overlong="truncate")
    tiny = pack([3, 2, 3], 8, "next-fit")
    big_row = int(np.argmax([len(az_pack.row_lengths(r)) for r in range(az_pack.num_rows)]))
    return {
        "batch_grid_seed.png": lambda: padded_vs_packed(seed_pad, seed_pack)[0],
        "batch_grid_azure.png": lambda: padded_vs_packed(az_pad, az_pack)[0],
        "mask_8_tokens.png": lambda: mask(tiny, 0),
        "mask_8192_tokens.png": lambda: mask(az_pack, big_row),
        "position_ids_8_tokens.png": lambda: position_sawtooth(tiny, 0),
        "position_ids_8192_tokens.png": lambda: position_sawtooth(az_pack, big_row),
        "waste_seed_llama-3-8b.png": lambda: waste_bars(compare(seed_pad, seed_pack, "llama-3-8b")),
        "waste_azure_llama-3-8b.png": lambda: waste_bars(compare(az_pad, az_pack, "llama-3-8b")),
    }
