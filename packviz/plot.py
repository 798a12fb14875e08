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

Colours: one per sequence from the Okabe-Ito colour-blind-safe palette, assigned per picture
so that **neighbours never share a colour** -- sequences side by side in a row, or one above
the other where their slots overlap (:func:`sequence_color_index`: a greedy colouring of
that neighbour graph, renumbered in display order).
Every picture of one layout uses the same colours; :func:`padded_vs_packed` colours both
layouts at once, so a sequence keeps its colour across the two. Pads are a neutral grey;
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
from .colors import OKABE_ITO, PAD_COLOR, palette, sequence_color_index, sequence_colors
from .flops import causal_pairs
from .layout import PAD, block_causal_mask

MASKED_COLOR = "#EDEDED"
NONE_COLOR = "#FFFFFF"
LINEAR_COLOR = "#0072B2"
ATTENTION_COLOR = "#E69F00"



class PackvizFigure(Figure):
    """A :class:`~matplotlib.figure.Figure` that Jupyter displays as PNG with no pyplot involved.

    Given alt text (:func:`with_alt`), its display carries it twice: as the ``text/plain`` a
    reader without images sees (a screen reader, a text export, nbval's comparison) and as the
    PNG's ``alt`` metadata (the cheat sheet's HTML template writes it into ``<img alt=...>``).
    """

    alt_text: str | None = None

    def _repr_png_(self) -> bytes:
        return to_png(self)

    def _repr_mimebundle_(self, include=None, exclude=None):
        if not self.alt_text:
            return {"image/png": to_png(self)}
        return ({"image/png": to_png(self), "text/plain": f"[figure] {self.alt_text}"},
                {"image/png": {"alt": self.alt_text}})


def with_alt(fig_or_ax, alt: str) -> PackvizFigure:
    """The figure of ``fig_or_ax`` (a :class:`PackvizFigure` or one of its Axes), given alt text.

    End a notebook cell with it: ``plot.with_alt(ax, "Bars: padded wastes 45% ...")``.
    """
    fig = getattr(fig_or_ax, "figure", fig_or_ax)
    fig = getattr(fig, "figure", fig)  # SubFigure -> root
    if not isinstance(fig, PackvizFigure):
        raise TypeError(f"with_alt needs a figure made by packviz (or one of its Axes), got {type(fig_or_ax).__name__}; "
                        "draw with packviz.plot / plot_serving and ax=None")
    if not isinstance(alt, str) or not alt.strip():
        raise ValueError(f"alt text must be a non-empty string describing what the figure shows, got {alt!r}")
    fig.alt_text = " ".join(alt.split())
    return fig


def new_axes(ax, figsize, fixed_margins: bool = False):
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


def _key_handles(what: str = "request") -> tuple[list, list, dict]:
    """Legend handles, labels and handler map of a picture of sequences: pad grey, and a strip of the
    seven colours a sequence may get (reused; neighbours never share one)."""
    from matplotlib.legend_handler import HandlerTuple

    strip = tuple(Patch(color=c) for c in OKABE_ITO)
    return ([Patch(color=PAD_COLOR), strip], ["pad", f"a {what} (7 colours, reused: neighbours never share one)"],
            {tuple: HandlerTuple(ndivide=None, pad=0)})


def _key(ax, what: str = "request", **kw) -> None:
    """The legend of a picture of sequences (:func:`_key_handles`) on ``ax``."""
    handles, labels, handler_map = _key_handles(what)
    ax.legend(handles, labels, handler_map=handler_map, handlelength=4, **{"fontsize": 7, "framealpha": 0.9, **kw})


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


# ---------------------------------------------------------------------- batch grid
def grid_image(layout, rows=None, max_cols: int | None = None, index=None) -> np.ndarray:
    """RGB uint8 image (R, W, 3) of a layout: sequence colours, grey pads, white beyond a row's width.

    One column per slot, or, above ``max_cols`` slots, ``max_cols`` columns sampled at evenly
    spaced slots (a screen shows ~1,000 pixels; 8,192 columns would only be resampled away).
    ``index``: palette index per sequence (default: :func:`sequence_color_index` of the layout,
    so that touching sequences differ).
    """
    rows = np.arange(layout.num_rows) if rows is None else layout.check_rows(rows)
    ids = layout.slot_seq_grid(rows=rows)
    cols = np.arange(ids.shape[1])
    if max_cols is not None and ids.shape[1] > positive_int("max_cols", max_cols):
        cols = np.linspace(0, ids.shape[1] - 1, max_cols).round().astype(np.int64)
        ids = ids[:, cols]
    index = sequence_color_index(layout) if index is None else np.asarray(index)
    k = max(len(OKABE_ITO), int(index.max(initial=0)) + 1)
    lut = np.vstack([[to_rgb(c) for c in palette(k)], [to_rgb(PAD_COLOR), to_rgb(NONE_COLOR)]])
    lut = (lut * 255).round().astype(np.uint8)
    code = np.where(ids >= 0, index[np.maximum(ids, 0)] if index.size else 0, k)
    code[cols[None, :] >= layout.widths[rows][:, None]] = k + 1
    return lut[code]


def batch_grid(layout, ax=None, title=None, max_rows: int = 256, max_labels: int = 32,
               width=None, height=None, max_cols: int = 2048, figsize=(8, 4), index=None):
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
    index : palette index per sequence (default: :func:`sequence_color_index` of this layout).
    """
    ax = new_axes(ax, figsize, fixed_margins=True)
    shown = min(layout.num_rows, positive_int("max_rows", max_rows))
    rows = np.arange(shown)
    img = grid_image(layout, rows, max_cols=max_cols, index=index)
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
    _key(ax, "sequence", loc="lower right")
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
    """:func:`batch_grid` of a padded and a packed layout side by side, on one slot and row scale.

    One scale: a slot is as wide and a row as tall in both pictures, each panel as wide as its
    own widest row (a padded batch of short prompts is a narrow panel, not a wide empty one),
    so the area each picture fills is the token slots each layout pays for. Same colours: a
    sequence has one colour in both pictures, and touching sequences differ in each.
    ``axes``: two Axes to draw on (their sizes are kept), or ``None`` for a new figure.
    Returns the two Axes ``(ax_padded, ax_packed)``.
    """
    widths = [max(int(lay.widths.max(initial=1)), 1) for lay in (padded, packed)]
    if axes is None:
        fig = PackvizFigure(figsize=figsize)
        w, h = fig.get_size_inches()
        left, gap, right, bottom, top = 1.0, 1.15, 0.55, 0.55, 0.4
        per_slot = (w - left - gap - right) / sum(widths)
        x0 = [left, left + widths[0] * per_slot + gap]
        axes = [fig.add_axes((x / w, bottom / h, ws * per_slot / w, 1 - (bottom + top) / h))
                for x, ws in zip(x0, widths)]
    ax_pad, ax_pack = axes
    rows = max(min(padded.num_rows, max_rows), min(packed.num_rows, max_rows), 1)
    index = sequence_color_index(padded, packed)
    batch_grid(padded, ax=ax_pad, max_rows=max_rows, width=widths[0], height=rows, index=index,
               title=f"{padded.kind} ({padded.name}): {padded.num_rows} rows, utilisation {padded.utilization:.1%}")
    batch_grid(packed, ax=ax_pack, max_rows=max_rows, width=widths[1], height=rows, index=index,
               title=f"{packed.kind} ({packed.name}): {packed.num_rows} rows, utilisation {packed.utilization:.1%}")
    ax_pad.get_legend().remove()  # one key, on the packed side
    return ax_pad, ax_pack


def _rows_with_bars(layout, ax, ax_util, width: int, ylabel: str, index) -> None:
    """Each row of ``layout`` as a band of segments over a grey pad band, and its utilisation as a bar.

    ``index``: the palette index of every sequence (:func:`sequence_color_index`)."""
    rows = np.arange(layout.num_rows)
    ax.barh(rows, layout.widths, height=0.8, color=PAD_COLOR, linewidth=0)
    ax.barh(layout.seg_row, layout.seg_length, left=layout.seg_offset, height=0.8,
            color=sequence_colors(layout.seg_seq, index), edgecolor="white", linewidth=0.6)
    ax.set_xlim(0, width)
    ax.set_ylim(layout.num_rows - 0.5, -0.5)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.yaxis.get_major_locator().set_params(integer=True)
    util = layout.row_utilization()
    ax_util.barh(rows, util, height=0.8, color="0.35")
    for r, u in zip(rows.tolist(), util.tolist()):
        ax_util.text(u + 0.03, r, f"{u:.0%}", va="center", fontsize=7 if layout.num_rows > 12 else 8)
    ax_util.set_ylim(layout.num_rows - 0.5, -0.5)
    ax_util.set_xlim(0, 1.45)
    ax_util.set_xticks([0, 0.5, 1], ["0", "50%", "100%"], fontsize=8)
    ax_util.tick_params(axis="y", labelleft=False)


def _window_axes(fig, rows: tuple, widths: tuple, title: bool) -> list:
    """Four Axes (padded, packed, padded bars, packed bars) placed in inches: every row equally
    tall, every slot equally wide, each panel as wide as its own widest row."""
    w, h = fig.get_size_inches()
    left, right, bars, gap = 0.75, 0.15, 1.25, 0.3
    top, panel_title, between, bottom = 0.32, 0.3, 0.32, 0.5
    row_h = (h - top - 2 * panel_title - between - bottom) / max(sum(rows), 1)
    per_slot = (w - left - right - bars - gap) / max(widths)
    y_pack = bottom
    y_pad = bottom + rows[1] * row_h + between + panel_title
    boxes = [(left, y_pad, widths[0] * per_slot, rows[0] * row_h), (left, y_pack, widths[1] * per_slot, rows[1] * row_h),
             (w - right - bars, y_pad, bars, rows[0] * row_h), (w - right - bars, y_pack, bars, rows[1] * row_h)]
    return [fig.add_axes((x / w, y / h, bw / w, bh / h)) for x, y, bw, bh in boxes]


def window_rows(padded, packed, axes=None, title=None, figsize=(12, 6.5)):
    """One window of requests twice, on one token scale, a utilisation bar beside every row.

    Top: ``padded`` (one row per request, all as wide as the longest, W). Bottom: ``packed``,
    the same requests in rows of C. Every row is equally tall and every slot equally wide in
    both panels, each panel as wide as its own rows: the area each panel fills is the token
    slots it pays for. The bar on the right is the share of the row's slots that hold real tokens::

        padded  AAA.......  |▇▇ 30%          colour: a request (7 colours, reused; neighbours differ)
                BBBBBBBBBB  |▇▇▇▇▇▇ 100%     grey: pad; x: token slot (one scale)
                CC........  |▇ 20%
        packed  BBBBBBBBBBAAACC...  |▇▇▇▇▇ 80%

    ``axes``: four Axes ``(padded, packed, padded bars, packed bars)`` (their sizes are kept), or
    ``None`` for a new figure of ``figsize`` laid out as above. Returns ``(ax_padded, ax_packed)``.
    """
    widths = (int(padded.widths.max(initial=1)), int(packed.widths.max(initial=1)))
    if axes is None:
        fig = PackvizFigure(figsize=figsize)
        axes = _window_axes(fig, (max(padded.num_rows, 1), max(packed.num_rows, 1)), widths, bool(title))
    ax_pad, ax_pack, bars_pad, bars_pack = axes
    index = sequence_color_index(padded, packed)  # one colour per request in both panels; neighbours differ
    _rows_with_bars(padded, ax_pad, bars_pad, widths[0], "request", index)
    _rows_with_bars(packed, ax_pack, bars_pack, widths[1], "row", index)
    ax_pad.set_title(f"padded: {padded.num_rows} rows, each as wide as its batch's longest (W = "
                     f"{widths[0]:,}): {padded.slots:,} slots, {padded.utilization:.1%} real",
                     fontsize=10, loc="left")
    ax_pack.set_title(f"packed ({packed.name or packed.kind}): {packed.num_rows} rows of C = "
                      f"{widths[1]:,}: {packed.slots:,} slots, {packed.utilization:.1%} real",
                      fontsize=10, loc="left")
    bars_pad.set_title("real / slots", fontsize=9)
    ax_pack.set_xlabel("token slot (one scale in both panels)")
    ax_pad.set_xticks([t for t in ax_pack.get_xticks() if 0 <= t <= widths[0]])  # the same ticks on both
    handles, labels, handler_map = _key_handles()
    fig = ax_pad.figure
    fig.legend(handles, labels, handler_map=handler_map, handlelength=4, loc="upper right", ncols=2,
               fontsize=8, frameon=False, bbox_to_anchor=(1, 1 - 0.04 / fig.get_figheight()))
    if title:
        fig.suptitle(title, fontsize=11, x=0.75 / fig.get_figwidth(), ha="left",
                     y=1 - 0.06 / fig.get_figheight(), va="top")
    return ax_pad, ax_pack


def window_spread(padded_util, packed_util, offline=None, ax=None, title=None, figsize=(10, 3.4), totals=None):
    """How the share of real token slots varies over windows: a histogram for padded and for packed.

    ``padded_util``, ``packed_util``: (K,) per window of B consecutive requests (e.g. from
    :func:`packviz.trace_numbers.window_table`). ``offline``: the whole sample packed at once,
    drawn as a line (what no server can do). ``totals``: ``(padded, packed)`` utilisation of
    all windows' slots together (real tokens ÷ slots, summed over windows), which is not the
    median window. The legend names each statistic: the median window (dashed), p10-p90 over
    windows, and the total where given.
    """
    ax = new_axes(ax, figsize)
    bins = np.linspace(0, 1, 41)
    totals = (None, None) if totals is None else totals
    for util, name, color, total in ((padded_util, "padded", "0.4", totals[0]),
                                     (packed_util, "packed in the same window", OKABE_ITO[4], totals[1])):
        p10, p50, p90 = np.percentile(np.asarray(util, dtype=np.float64), [10, 50, 90])
        whole = "" if total is None else f"; all windows' slots together {total:.1%}"
        ax.hist(util, bins=bins, color=color, alpha=0.85,
                label=f"{name}: median window {p50:.1%} (dashed), p10–p90 {p10:.1%}–{p90:.1%}{whole}")
        ax.axvline(p50, color=color, linewidth=1.5, linestyle="--")
    if offline is not None:
        ax.axvline(offline, color="black", linewidth=1.2, linestyle=":",
                   label=f"whole sample packed at once (offline): {offline:.1%}")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.45 * ax.get_ylim()[1])  # headroom: the legend sits above the bars
    ax.xaxis.set_major_formatter(lambda x, _: f"{x:.0%}")
    ax.set_xlabel("share of token slots holding real tokens, per window")
    ax.set_ylabel("windows")
    ax.legend(fontsize=8, loc="upper left")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


# ---------------------------------------------------------------------- mask
def mask_image(layout, row: int, max_pixels: int = 1024, index=None) -> np.ndarray:
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
    index = sequence_color_index(layout) if index is None else index  # the layout's colours
    colors = sequence_colors(ids[idx], index)  # colour of each query's sequence
    img[allowed] = np.broadcast_to(colors[:, None, :], img.shape)[allowed]
    return img


def mask(layout, row: int = 0, ax=None, title=None, figsize=(5.5, 5.5)):
    """The block-diagonal causal mask of one pack, sequence boundaries drawn.

    Readable at 8 tokens (a grid line around every cell, each slot's position id on the
    axes) and at 8,192 (a sampled image with the boundaries as lines). Colour: the
    sequence's own colour where a query may attend; light grey for pairs a dense kernel
    still computes and then masks; mid grey for pairs involving a pad slot. Above 64 slots a
    short sequence's triangle is smaller than a pixel: every sequence also gets a dot on the
    diagonal and a line in the legend (its length, in slot order).
    """
    row = layout.check_row(row)
    ax = new_axes(ax, figsize)
    w = int(layout.widths[row])
    index = sequence_color_index(layout)
    img = mask_image(layout, row, index=index)
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
        if len(segs) and w > 64:
            _mark_sequences(ax, segs, index)
    lengths = segs[:, 2]
    needed = causal_pairs(lengths)
    if title is None:
        title = (f"row {row}: {len(lengths)} sequences in {w} slots\n"
                 f"needed {needed:,} of {w * w:,} pairs ({needed / max(w * w, 1):.1%})")
    ax.set_title(title, fontsize=10)
    return ax


def _mark_sequences(ax, segs: np.ndarray, index: np.ndarray, max_listed: int = 10) -> None:
    """A numbered dot on the diagonal at each sequence's block (segments (N, 3)) and a legend of their
    lengths by number (colours repeat: seven for any number of sequences, neighbours apart)."""
    from matplotlib.lines import Line2D

    colors = palette(max(len(OKABE_ITO), int(index.max(initial=0)) + 1))
    seg_colors = [colors[index[s]] for s in segs[:, 0].tolist()]
    centre = segs[:, 1] + segs[:, 2] / 2
    ax.scatter(centre, centre, s=30, c=seg_colors, edgecolors="black", linewidths=0.7, zorder=3)
    for i, x in enumerate(centre.tolist()[:max_listed]):
        ax.annotate(str(i + 1), (x, x), xytext=(-5, 3), textcoords="offset points", ha="right", fontsize=7)
    handles = [Line2D([], [], marker="o", ls="", color=c, markeredgecolor="black", label=f"{i + 1}: {n:,} tokens")
               for i, (c, n) in enumerate(zip(seg_colors, segs[:, 2].tolist()))]
    if len(handles) > max_listed:
        handles = handles[:max_listed] + [Patch(color="none", label=f"... {len(handles) - max_listed} more")]
    ax.legend(handles=handles, title="sequences, in slot order", loc="upper right", fontsize=7,
              title_fontsize=7, framealpha=0.9)


# ---------------------------------------------------------------------- positions
def position_sawtooth(layout, row: int = 0, ax=None, show_continued: bool = True, title=None,
                      figsize=(8, 3)):
    """``position_ids`` of one pack against its slot: a sawtooth restarting at every sequence.

    With ``show_continued`` a dashed line shows ``0 .. W-1``: the positions the pack gets if
    they are not reset. transformers then finds no boundary and builds no block mask (the
    known packing bug); RoPE itself only sees position differences and would not mind.
    """
    row = layout.check_row(row)
    ax = new_axes(ax, figsize)
    segs = layout.row_segments(row)
    w = int(layout.widths[row])
    if show_continued and len(segs):
        end = int(segs[-1, 1] + segs[-1, 2])
        ax.plot(np.arange(end), np.arange(end), ls="--", color="0.5", lw=1, label="not reset: no boundary for transformers")
    index = sequence_color_index(layout)
    colors = palette(max(len(OKABE_ITO), int(index.max(initial=0)) + 1))
    for s, o, n in segs.tolist():
        x = np.arange(o, o + n)
        ax.plot(x, x - o, color=colors[index[s]], lw=1.8,
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
    ax = new_axes(ax, figsize)
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
          logx: bool = False, figsize=(7, 3.5), colors=None):
    """One line per ``{label: values}`` over ``x`` (e.g. waste against batch size), markers on the points.

    ``percent``: values are fractions, shown as percentages. ``logx``: a log2 x axis
    labelled with the values of ``x`` themselves. ``colors``: one per series (default: the palette in order).
    """
    from matplotlib.ticker import PercentFormatter

    ax = new_axes(ax, figsize)
    for (label, ys), color in zip(series.items(), colors or OKABE_ITO):
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
    ax = new_axes(ax, figsize)
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
    _note_not_timed(ax, res, [s["name"] for s in scen])
    ax.set_ylim(0, top * 1.45)
    ax.set_ylabel("speed-up over padded (×)")
    ax.legend(fontsize=7, loc="upper left", ncols=4)
    if title is None:
        dev = (res.get("device") or {}).get("name", "?")
        model = (res.get("model") or {}).get("name", "?")
        title = f"{model} on {dev}: measured speed-up (bars; label = measured / ideal), hatched = offline"
    ax.set_title(title, fontsize=9)
    return ax


def _note_not_timed(ax, res: dict, names: list, width: int = 150) -> None:
    """Under the x axis: which methods have no bar, where, and why (``bench.results.not_timed``)."""
    import textwrap

    from .bench.results import not_timed

    parts = [f"{m} in {'every scenario' if set(where) >= set(names) else ', '.join(where)} ({why})"
             for (m, why), where in not_timed(res).items()]
    if parts:
        note = textwrap.fill("not timed: " + "; ".join(parts), width)
        ax.annotate(note, (0, 0), xycoords="axes fraction", xytext=(0, -22), textcoords="offset points",
                    ha="left", va="top", fontsize=7, color="0.25", annotation_clip=False)


def bench_ceiling_share(res: dict, ax=None, title=None, figsize=(10, 3.8)):
    """Useful TFLOP/s of every timed method (``padded`` included) as a share of the run's matmul ceiling."""
    ax = new_axes(ax, figsize)
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


def prefill_speedup_spread(speedups: dict, recorded: dict | None = None, ax=None, title=None, bins: int = 40,
                           figsize=(10, 3.8)):
    """The FLOP model's ideal prefill speed-up over ``padded``, one value per window: a histogram per method.

    ``speedups``: ``{method: (K,) per-window ideal speed-ups}`` (e.g.
    :func:`packviz.trace_numbers.prefill_speedups`'s ``"speedup"``), drawn as outlines in the
    method's colour with a dashed line at the median; the legend gives median and p10–p90.
    ``recorded``: ``{method: [ideal of each window a run timed]}`` (e.g.
    :func:`packviz.bench.scenarios.recorded_windows`'s ``"ideal"``), each window a solid line
    marked ``w1``, ``w2``, … at the top: where the measured windows sit in the trace's spread.
    With a single method its p10–p90 band is shaded.
    """
    ax = new_axes(ax, figsize)
    values = np.concatenate([np.asarray(v, dtype=np.float64) for v in speedups.values()])
    edges = np.linspace(min(1.0, values.min()), values.max(), bins + 1)
    for m, v in speedups.items():
        p10, p50, p90 = np.percentile(np.asarray(v, dtype=np.float64), [10, 50, 90])
        ax.hist(v, bins=edges, histtype="step", linewidth=1.8, color=method_color(m),
                label=f"{m}: median {p50:.2f}×, p10–p90 {p10:.2f}×–{p90:.2f}×")
        ax.axvline(p50, color=method_color(m), linewidth=1.0, linestyle="--")
        if len(speedups) == 1:  # one method: its p10-p90 band shaded (several would hide each other)
            ax.axvspan(p10, p90, color=method_color(m), alpha=0.08, linewidth=0)
    top = ax.get_ylim()[1] * 1.5  # headroom: the legend and the window labels sit above the bars
    for m, ideals in (recorded or {}).items():
        for i, x in enumerate(ideals):
            ax.axvline(x, color=method_color(m), linewidth=2.2, alpha=0.9)
            ax.annotate(f"w{i + 1}", (x, top), xytext=(2, -2), textcoords="offset points", ha="left", va="top",
                        fontsize=8, color=method_color(m))
        ax.plot([], [], color=method_color(m), linewidth=2.2,
                label=f"{m}, the recorded run's windows: " + ", ".join(f"{x:.2f}×" for x in ideals))
    ax.axvline(1, color="0.5", lw=0.8)
    ax.set_ylim(0, top)
    ax.set_xlabel("ideal prefill speed-up over padded (×), one window of consecutive requests")
    ax.set_ylabel("windows")
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(title or f"the FLOP model's ideal speed-up over {len(values) // max(len(speedups), 1):,} windows",
                 fontsize=10)
    return ax


# ---------------------------------------------------------------------- training steps
def step_tokens(series: dict, ax=None, max_steps: int = 120, title=None, ylabel="real tokens per step",
                figsize=(9, 3.4)):
    """Tokens per optimizer step, one line per ``{label: (S,) array}``, over the first ``max_steps`` steps.

    A dashed line of the same colour marks each series' mean over all its steps
    (e.g. :func:`packviz.steps.step_tokens`'s ``"tokens"``).
    """
    ax = new_axes(ax, figsize)
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

    ax = new_axes(ax, figsize)
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


# ---------------------------------------------------------------------- attention share, roofline
def _tokens_label(n: int) -> str:
    return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else f"{n:,}"


def attention_share_curve(shape, lengths=None, ax=None, marks=None, lm_head: str = "last", title=None,
                          figsize=(7.5, 3.6)):
    """Linear and attention shares of one sequence's prefill FLOPs against its length, stacked to 100%.

    ``lengths`` (K,): default 512 .. 131,072 in powers of two (log2 x axis). The length where
    attention costs as much as the linear layers is marked (:func:`packviz.flops.attention_crossover`);
    ``marks`` ``{label: length}`` adds dotted lines (a trace's median prompt, a context length).
    """
    from matplotlib.ticker import PercentFormatter

    from .flops import attention_crossover, attention_share
    from .shapes import get_shape

    ax = new_axes(ax, figsize)
    x = 2 ** np.arange(9, 18) if lengths is None else np.asarray(lengths, dtype=np.int64)
    share = attention_share(x, shape, lm_head)
    ax.stackplot(x, 1 - share, share, colors=[LINEAR_COLOR, ATTENTION_COLOR], alpha=0.85,
                 labels=["linear (projections, MLP, lm_head)", "attention (QKᵀ, AV)"])
    ax.plot(x, share, color="black", lw=1, marker="o", ms=3)
    for xi, si in zip(x.tolist(), share.tolist()):
        ax.annotate(f"{si:.0%}", (xi, si), ha="center", va="bottom", fontsize=7, xytext=(0, 3),
                    textcoords="offset points")
    cross = attention_crossover(shape, lm_head)
    ax.axvline(cross, color="black", ls="--", lw=1)
    ax.annotate(f"attention = linear\nat {cross:,} tokens", (cross, 0.9), xytext=(-6, 0), textcoords="offset points",
                ha="right", va="top", fontsize=8, color="white")
    for label, n in (marks or {}).items():
        ax.axvline(n, color="0.15", ls=":", lw=1.2)
        ax.annotate(label, (n, 0.55), xytext=(4, 0), textcoords="offset points", rotation=90, ha="left",
                    va="center", fontsize=7, color="white")
    ax.set_xscale("log", base=2)
    ax.set_xticks(x.tolist(), [_tokens_label(int(n)) for n in x])
    ax.set_xlim(x.min() / 1.2, x.max() * 1.2)
    ax.set_ylim(0, 1)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("sequence length (tokens, one prompt alone)")
    ax.set_ylabel("share of prefill FLOPs")
    ax.legend(fontsize=7, loc="upper left", framealpha=0.9)
    ax.set_title(title or f"{get_shape(shape).name} prefill: where the FLOPs go", fontsize=10)
    return ax


def roofline(points: dict, flop_rate: float, byte_rate: float, ax=None, title=None, figsize=(7.5, 4)):
    """Attainable FLOP/s against arithmetic intensity (log-log): ``min(flop_rate, I · byte_rate)``.

    ``points``: ``{series label: (intensities (K,), point labels (K,))}``, each point drawn on
    the roof at its intensity and labelled. The ridge ``flop_rate / byte_rate`` separates the
    memory-bound slope (left) from the compute-bound flat (right).
    """
    ax = new_axes(ax, figsize)
    ridge = flop_rate / byte_rate
    every = np.concatenate([np.asarray(v[0], dtype=np.float64) for v in points.values()] + [[ridge]])
    x = np.geomspace(every.min() / 2, every.max() * 2, 200)
    ax.plot(x, np.minimum(flop_rate, x * byte_rate) / 1e12, color="black", lw=1.5)
    ax.axvline(ridge, color="0.4", ls="--", lw=1)
    ax.annotate(f"ridge {ridge:,.0f} FLOPs/byte", (ridge, flop_rate / 1e12 * 0.04), xytext=(4, 0),
                textcoords="offset points", fontsize=8, color="0.3")
    colors = (ATTENTION_COLOR, LINEAR_COLOR) + OKABE_ITO
    for i, ((label, (ints, names)), color) in enumerate(zip(points.items(), colors)):
        ints = np.asarray(ints, dtype=np.float64)
        y = np.minimum(flop_rate, ints * byte_rate) / 1e12
        ax.scatter(ints, y, color=color, edgecolors="black", linewidths=0.6, zorder=3, label=label)
        for xi, yi, name in zip(ints, y, names):  # on the slope: even series right-below, odd left-above
            flat = yi >= flop_rate / 1e12
            offset, ha = ((0, -11), "center") if flat else (((6, -9), "left") if i % 2 == 0 else ((-6, 3), "right"))
            ax.annotate(name, (xi, yi), xytext=offset, textcoords="offset points", ha=ha, fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOPs per byte moved)")
    ax.set_ylabel("attainable TFLOP/s")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or "roofline", fontsize=10)
    return ax


# ---------------------------------------------------------------------- who shares a batch
def batch_membership(layout, ax=None, arrival_s=None, title=None, figsize=(6, 3.2)):
    """Which requests share a forward: x = arrival position (sequence number), y = forward.

    A padded layout's forward is a batch of ``batch_size`` rows, a packed layout's a row.
    Each forward is a line from its first to its last arrival, a dot per member. With
    ``arrival_s`` (N,) seconds, each forward is labelled with how long its first request waits
    for its last one to arrive (:func:`packviz.packing.fill_waits`).
    """
    from .packing import fill_waits, forwards

    ax = new_axes(ax, figsize)
    group = forwards(layout)
    waits = None if arrival_s is None else fill_waits(layout, arrival_s)
    colors = palette(len(OKABE_ITO))
    for g in np.unique(group).tolist():
        members = np.unique(layout.seg_seq[group == g])
        color = colors[g % len(colors)]
        ax.hlines(g, members.min(), members.max(), color=color, lw=1.2)
        ax.scatter(members, np.full(len(members), g), s=14, color=color, zorder=3)
        if waits is not None:
            ax.annotate(f"waits {waits[members].max():.1f} s", (members.max(), g), xytext=(5, 0),
                        textcoords="offset points", va="center", fontsize=7)
    ax.set_ylim(group.max() + 0.6, -0.6)
    ax.set_yticks(np.unique(group))
    ax.set_xlim(-1, layout.num_sequences * (1.25 if arrival_s is not None else 1.02))
    ax.set_xlabel("arrival position (request number)")
    ax.set_ylabel("forward")
    ax.grid(alpha=0.3, axis="x")
    ax.set_title(title or f"{layout.name}: who shares a forward", fontsize=10)
    return ax


# ---------------------------------------------------------------------- the workshop set
def _titled(ax, prefix: str):
    """``ax`` with ``prefix`` before its title (a slide says which sample it shows)."""
    ax.set_title(f"{prefix}{ax.get_title()}", fontsize=10)
    return ax


def standard_figures() -> dict:
    """``{file name: () -> Axes}``: the figures ``python -m packviz figures`` writes for slides.

    Like with like, as in the notebooks: padded batches of B against each window of the same B
    requests packed on its own (online; never the whole sample at once). The seed scenario (16
    prompts, B = 8, C = 8,192) and the trace as :mod:`packviz.trace_numbers` defines it (arrival
    order, windows of 32, C = 8,192): its median window as rows, the whole trace's prefill FLOPs
    (logits at each prompt's last token: the 28% a dense mask wastes in notebook 01); masks and
    position_ids of an 8-token pack and of that window's fullest row. Every title names its
    sample. Drawn lazily, one at a time.
    """
    from . import trace_numbers
    from .flops import compare
    from .lengths import seed_scenario
    from .packing import pack, pack_in_windows

    c, b = trace_numbers.PACK_LEN, trace_numbers.BATCH
    seed = seed_scenario(16, seed=0)
    seed_pad, seed_pack = pack(seed, 8192, "pad", batch_size=8), pack_in_windows(seed, 8192, 8)
    table = trace_numbers.window_table()
    k = int(np.argmin(np.abs(table["padded_utilization"] - np.median(table["padded_utilization"]))))
    prompts = trace_numbers.trace_prompts()
    window = prompts[k * b:(k + 1) * b]
    w_pad, w_pack = pack(window, c, "pad", batch_size=b), pack_in_windows(window, c, b)
    whole = prompts[: len(table["real_tokens"]) * b]
    tiny = pack([3, 2, 3], 8, "next-fit")
    big_row = int(np.argmax([len(w_pack.row_lengths(r)) for r in range(w_pack.num_rows)]))
    where = f"trace window {k} ({b} consecutive requests, the median padded utilisation)"
    logits = "logits at each prompt's last token"
    return {
        "batch_grid_seed.png": lambda: window_rows(seed_pad, seed_pack, figsize=(12, 5),
                                                   title="seed scenario: 16 prompts, batches of 8 (padded, or each batch packed)")[0],
        "batch_grid_azure.png": lambda: window_rows(w_pad, w_pack, title=where)[0],
        "mask_8_tokens.png": lambda: mask(tiny, 0),
        "mask_8192_tokens.png": lambda: _titled(mask(w_pack, big_row), f"trace window {k}, "),
        "position_ids_8_tokens.png": lambda: position_sawtooth(tiny, 0),
        "position_ids_8192_tokens.png": lambda: _titled(position_sawtooth(w_pack, big_row), f"trace window {k}: "),
        "waste_seed_llama-3-8b.png": lambda: waste_bars(
            compare(seed_pad, seed_pack, "llama-3-8b", lm_head="last"),
            title=f"Llama-3-8B prefill, seed scenario: 16 prompts, batches of 8\n(padded, or each batch packed; {logits})"),
        "waste_azure_llama-3-8b.png": lambda: waste_bars(
            compare(pack(whole, c, "pad", batch_size=b), pack_in_windows(whole, c, b), "llama-3-8b", lm_head="last"),
            title=f"Llama-3-8B prefill, the whole trace: {len(whole):,} requests in windows of {b}\n"
                  f"(padded, or each window packed; {logits})"),
    }
