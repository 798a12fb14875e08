"""ipywidgets explorers: move a control, see the grids and the waste numbers change.

Two layers:

* pure functions -- :func:`explore` (lengths → padded + packed layouts → counts and FLOPs),
  :func:`numbers_html`, :func:`render_batch`, :func:`pack_stats`, :func:`render_pack`.
  No widgets; testable and reusable in a script.
* thin widget classes -- :class:`BatchExplorer`, :class:`MaskExplorer` (``VBox`` subclasses)
  whose controls are attributes: set ``ex.pack_len.value = 8192`` in plain Python and
  ``ex.image.value`` (PNG bytes) and ``ex.numbers.value`` (HTML) follow, exactly as when a
  slider moves in JupyterLab. ``ex.result`` keeps the last pure result.

::

    ┌ BatchExplorer ───────────────────────────────────────────────────────┐
    │ [lengths ▾] [sequences ──●──] [batch size ─●─] [pack length ─●─]     │  .packviz-controls
    │ [padding ▾] [strategy ▾] [model ▾]                                   │
    │ ┌ padded grid ─────────┐ ┌ packed grid ─────────┐                    │  .packviz-figure (Image)
    │ └──────────────────────┘ └──────────────────────┘                    │
    │ utilisation, rows, wasted FLOPs, ideal speed-ups                     │  .packviz-numbers (HTML)
    └──────────────────────────────────────────────────────────────────────┘

Figures are rendered to PNG bytes in an ``Image`` widget (no pyplot, no ``Output`` capture):
it displays the same in JupyterLab, in a browser test and in a test that reads ``.value``.
Every control carries a CSS class ``packviz-<name>`` and a fixed description.
"""

from __future__ import annotations

import base64
import html

import numpy as np
from matplotlib.gridspec import GridSpec

from .model_extra import LAB_EXTRA, require_extra

require_extra("packviz.widgets", LAB_EXTRA, "lab")  # before ipywidgets: without it, one line naming packviz[lab]
import ipywidgets as widgets

from . import plot
from .checks import int_in_range, nonnegative_int, one_of
from .flops import causal_pairs, compare
from .shapes import MODELS
from .lengths import SOURCES
from .packing import PACKED, PADDED, pack, pack_in_windows, pad_and_pack

PACKING = PACKED
"""The strategy dropdown's choices (:data:`packviz.packing.PACKED`)."""
PADDING = PADDED
"""The padding dropdown's choices (:data:`packviz.packing.PADDED`)."""
PACK_LENS = (512, 1024, 2048, 4096, 8192, 16384)
MAX_SEQUENCES = 512
"""The sequences slider's largest value."""
MAX_BATCH = 64
"""The batch-size slider's largest value."""
DEFAULT_SOURCE = next(iter(SOURCES))


# ---------------------------------------------------------------------- pure layer
def make_lengths(source: str, n: int, seed: int = 0):
    """``n`` lengths (n,) from the named entry of :data:`packviz.lengths.SOURCES`."""
    return SOURCES[one_of("length source", source, SOURCES)](n, seed)


def explore(source: str = DEFAULT_SOURCE, n: int = 64, batch_size: int = 8, pack_len: int = 4096,
            strategy: str = "bfd", seed: int = 0, padding: str = "pad", overlong: str = "truncate",
            model: str = "llama-3-8b", lm_head: str = "last") -> dict:
    """Lay ``n`` lengths out padded and packed in the same windows of B = ``batch_size`` (like with like).

    *Padded*: batches of B (``padding``), each row as wide as its batch's longest. *Packed*: each
    window of the same B consecutive lengths packed on its own into rows of C = ``pack_len``
    (``strategy``; :func:`packviz.packing.pack_in_windows`): what a server holding B requests can
    do. *Offline*: all ``n`` packed at once (what a training pipeline can do), reported beside
    the online numbers, never instead of them. ``pack_len`` is also the padded side's context:
    all three apply ``overlong`` alike, so they hold the same tokens. FLOPs: ``model``'s prefill,
    logits at each prompt's last token by default (``lm_head="last"``, what a server computes).

    Returns ``{"lengths" (n,), "padded", "packed", "offline", "flops", "numbers"}``; ``numbers``
    is a flat dict of plain floats/ints (rounded nowhere).
    """
    lengths = make_lengths(source, n, seed)
    padded, offline = pad_and_pack(lengths, pack_len, batch_size, strategy, padding, overlong)
    packed = pack_in_windows(lengths, pack_len, batch_size, strategy, overlong=overlong)
    fl = compare(padded, packed, model, lm_head=lm_head)
    numbers = {
        "sequences": int(len(lengths)),
        "batch_size": int(batch_size),
        "pack_len": int(pack_len),
        "padding": padding,
        "strategy": strategy,
        "lm_head": lm_head,
        "real_tokens": packed.real_tokens,
        "dropped_tokens": packed.dropped_tokens,
        "padded_rows": padded.num_rows,
        "padded_slots": padded.slots,
        "padded_utilization": padded.utilization,
        "packed_rows": packed.num_rows,
        "packed_slots": packed.slots,
        "lower_bound_rows": window_lower_bound(packed, batch_size),
        "packed_utilization": packed.utilization,
        "offline_rows": offline.num_rows,
        "offline_utilization": offline.utilization,
        "useful_tflops": fl["useful"].total / 1e12,
        "padded_tflops": fl["padded"].total / 1e12,
        "dense_tflops": fl["dense"].total / 1e12,
        "varlen_tflops": fl["varlen"].total / 1e12,
        "padded_waste": fl["waste_fraction"]["padded"],
        "dense_waste": fl["waste_fraction"]["dense"],
        "varlen_waste": fl["waste_fraction"]["varlen"],
        "dense_speedup": fl["speedup"]["dense"],
        "varlen_speedup": fl["speedup"]["varlen"],
    }
    return {"lengths": lengths, "padded": padded, "packed": packed, "offline": offline, "flops": fl,
            "numbers": numbers}


def window_lower_bound(layout, batch_size: int) -> int:
    """The fewest rows of C that a layout packed per window of B can have: the sum over windows of
    ``ceil(window's tokens / C)`` (:attr:`Layout.lower_bound_rows` is the bound of packing all at once).

    >>> window_lower_bound(pack_in_windows([3, 5, 2, 4, 1], pack_len=6, batch_size=2), 2)   # 8, 6, 1 tokens
    4
    """
    window = layout.seg_seq // batch_size
    tokens = np.bincount(window, weights=layout.seg_length, minlength=int(window.max(initial=-1)) + 1)
    return int(np.ceil(tokens / layout.capacity).sum())


def _padding_label(n: dict) -> str:
    if n["padding"] == "sorted":  # sorting needs all n in hand: say so
        return f"padded, sorted over all {n['sequences']:,} then in batches of {n['batch_size']} (offline)"
    return f"padded, batches of {n['batch_size']} in arrival order (online)"


def numbers_html(numbers: dict, model: str = "") -> str:
    """An HTML table of :func:`explore`'s numbers (what the explorer shows under the grids)."""
    n = numbers
    logits = "each prompt's last token" if n.get("lm_head", "last") == "last" else "every token"
    rows = [
        ("sequences / real tokens", f"{n['sequences']:,} / {n['real_tokens']:,}"
         + (f" ({n['dropped_tokens']:,} truncated)" if n.get("dropped_tokens") else "")),
        (f"{_padding_label(n)}: rows, utilisation", f"{n['padded_rows']:,} rows, {n['padded_utilization']:.1%}"),
        (f"packed, each window of {n['batch_size']} on its own (online): rows (lower bound), utilisation",
         f"{n['packed_rows']:,} ({n['lower_bound_rows']:,}), {n['packed_utilization']:.1%}"),
        (f"offline, all {n['sequences']:,} packed at once (training only): rows, utilisation",
         f"{n['offline_rows']:,} rows, {n['offline_utilization']:.1%}"),
        (f"prefill TFLOPs {html.escape(model)} (logits at {logits}): useful / padded / dense / varlen",
         f"{n['useful_tflops']:,.1f} / {n['padded_tflops']:,.1f} / {n['dense_tflops']:,.1f} / {n['varlen_tflops']:,.1f}"),
        ("wasted: padded / dense / varlen",
         f"{n['padded_waste']:.1%} / {n['dense_waste']:.1%} / {n['varlen_waste']:.1%}"),
        ("ideal speed-up over padded: dense / varlen",
         f"{n['dense_speedup']:.2f}× / {n['varlen_speedup']:.2f}×"),
    ]
    body = "".join(f"<tr><td style='text-align:left;padding-right:1em'>{k}</td>"
                   f"<td style='text-align:right;font-variant-numeric:tabular-nums;min-width:22em' "
                   f"class='packviz-value'>{v}</td></tr>" for k, v in rows)
    return f"<table class='packviz-table'>{body}</table>"


def batch_summary(numbers: dict, source: str = "", model: str = "") -> str:
    """One paragraph of :func:`explore`'s numbers: the explorer's text for readers without images."""
    n = numbers
    return (f"Batch explorer ({source}, {n['sequences']:,} prompts, B = {n['batch_size']}, C = {n['pack_len']:,}, "
            f"{n['strategy']}): {_padding_label(n)} fill {n['padded_utilization']:.1%} of "
            f"{n['padded_rows']:,} rows; packed per window of {n['batch_size']} (online) {n['packed_utilization']:.1%} "
            f"of {n['packed_rows']:,} rows; all packed at once (offline) {n['offline_utilization']:.1%} of "
            f"{n['offline_rows']:,} rows. Prefill FLOPs wasted ({model}): padded {n['padded_waste']:.1%}, "
            f"dense mask {n['dense_waste']:.1%}, varlen {n['varlen_waste']:.1%}.")


def static_bundle(png: bytes, table_html: str, text: str) -> tuple[dict, dict]:
    """``(data, metadata)`` of a display: an explorer as last drawn, for readers with no kernel.

    ``image/png`` (PDF export, image viewers; ``text`` as its alt), ``text/html`` (the PNG
    inline with ``text`` as alt, then the numbers table: GitHub, nbviewer, offline HTML) and
    ``text/plain`` (``text``: screen readers, text exports). A live JupyterLab shows the
    widget view instead, which it prefers over all three.
    """
    b64 = base64.b64encode(bytes(png)).decode("ascii")
    alt = html.escape(text, quote=True)
    page = (f"<div class='packviz-static'><img src='data:image/png;base64,{b64}' alt='{alt}' "
            f"style='max-width:100%'>{table_html}<p style='font-size:smaller'>A static copy of the explorer "
            "as last drawn: run the notebook to move its controls.</p></div>")
    return {"image/png": b64, "text/html": page, "text/plain": text}, {"image/png": {"alt": text}}


def render_batch(result: dict, max_rows: int = 256, dpi: int = 80, figsize=(12, 4.5)) -> bytes:
    """PNG of the padded and packed grids of an :func:`explore` result, side by side."""
    ax_pad, _ = plot.padded_vs_packed(result["padded"], result["packed"], max_rows=max_rows, figsize=figsize)
    return plot.to_png(ax_pad.figure, dpi=dpi)


def pack_stats(layout, row: int) -> dict:
    """Counts of one row: sequences, tokens, pads, and attention pairs needed vs computed densely."""
    row = layout.check_row(row)
    lengths = layout.row_lengths(row)
    w = int(layout.widths[row])
    needed = causal_pairs(lengths)
    return {"row": int(row), "sequences": int(len(lengths)), "tokens": int(lengths.sum()), "slots": w,
            "pads": w - int(lengths.sum()), "needed_pairs": needed, "dense_pairs": w * w,
            "needed_fraction": needed / (w * w) if w else 0.0}


def pack_html(stats: dict) -> str:
    s = stats
    return (f"<div class='packviz-table'>row {s['row']}: {s['sequences']} sequences, {s['tokens']:,} tokens "
            f"+ {s['pads']:,} pad slots; attention pairs needed <b>{s['needed_pairs']:,}</b> of "
            f"{s['dense_pairs']:,} a dense mask computes (<b>{s['needed_fraction']:.1%}</b>)</div>")


def pack_summary(stats: dict) -> str:
    """One sentence of :func:`pack_stats`: the mask explorer's text for readers without images."""
    s = stats
    return (f"Mask explorer, row {s['row']}: {s['sequences']} sequences, {s['tokens']:,} tokens and {s['pads']:,} "
            f"pad slots; its block-diagonal causal mask needs {s['needed_pairs']:,} of the {s['dense_pairs']:,} "
            f"(query, key) pairs a dense kernel computes ({s['needed_fraction']:.1%}).")


def render_pack(layout, row: int, dpi: int = 80, figsize=(12, 4.5)) -> bytes:
    """PNG of one pack: its mask (left) and its position_ids sawtooth (right)."""
    fig = plot.PackvizFigure(figsize=figsize, layout="constrained")
    gs = GridSpec(1, 2, figure=fig, width_ratios=(1, 1.7))
    plot.mask(layout, row, ax=fig.add_subplot(gs[0]))
    plot.position_sawtooth(layout, row, ax=fig.add_subplot(gs[1]))
    return plot.to_png(fig, dpi=dpi)


# ---------------------------------------------------------------------- widget layer
_WIDTHS = {widgets.IntSlider: "340px", widgets.SelectionSlider: "340px", widgets.Dropdown: "260px"}


def _tag(w, name: str):
    """Give a widget its CSS class ``packviz-<name>`` and, for a control, a fixed width
    (so sliders stay long enough to drag and the layout does not jump)."""
    w.add_class(f"packviz-{name}")
    if type(w) in _WIDTHS:
        w.layout.width = _WIDTHS[type(w)]
    return w


def _row(children):
    """A row of controls that wraps instead of squeezing them."""
    return widgets.HBox(children, layout=widgets.Layout(flex_flow="row wrap"))


def check_controls(source: str, n: int, pack_len: int, strategy: str, batch_size: int = 1, padding: str = "pad",
                   model: str = "llama-3-8b") -> None:
    """``ValueError`` naming the first initial value a control cannot show, and the values it can
    (a slider would clamp it silently, a selection slider raise a bare ``TraitError``)."""
    one_of("source", source, SOURCES)
    int_in_range("n (the sequences slider)", n, 1, MAX_SEQUENCES)
    int_in_range("batch_size (the batch-size slider)", batch_size, 1, MAX_BATCH)
    one_of("pack_len (the pack-length slider)", pack_len, PACK_LENS)
    one_of("strategy", strategy, PACKING)
    one_of("padding", padding, PADDING)
    one_of("model", model, MODELS)


def _error_html(e: Exception) -> str:
    return f"<div class='packviz-error' style='color:#D55E00'>{html.escape(str(e))}</div>"


class _StaticCopy:
    """Mixed into an explorer (a ``VBox`` with ``.image`` and ``.numbers``): its display carries the
    widget view *and* a static copy of what it last drew (:func:`static_bundle`), so a notebook
    read without a kernel (GitHub, offline HTML, PDF) shows the figure and the numbers."""

    def alt_text(self) -> str:
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs):
        view = super()._repr_mimebundle_(**kwargs) or {}
        data, metadata = static_bundle(self.image.value, self.numbers.value, self.alt_text())
        return {**data, **{k: v for k, v in view.items() if k != "text/plain"}}, metadata


class BatchExplorer(_StaticCopy, widgets.VBox):
    """Controls → :func:`explore` → padded-vs-packed grids (``.image``) and numbers (``.numbers``).

    Displayed, it also carries a static copy (PNG, HTML table, text) for readers with no kernel.
    """

    def __init__(self, source: str = DEFAULT_SOURCE, n: int = 64, batch_size: int = 8, pack_len: int = 4096,
                 strategy: str = "bfd", padding: str = "pad", model: str = "llama-3-8b", seed: int = 0,
                 max_rows: int = 256, dpi: int = 80):
        check_controls(source, n, pack_len, strategy, batch_size, padding, model)
        style = {"description_width": "initial"}
        self.source = _tag(widgets.Dropdown(options=list(SOURCES), value=source, description="lengths", style=style), "source")
        self.num_sequences = _tag(widgets.IntSlider(value=n, min=1, max=MAX_SEQUENCES, description="sequences",
                                                    continuous_update=False, style=style), "num-sequences")
        self.batch_size = _tag(widgets.IntSlider(value=batch_size, min=1, max=MAX_BATCH, description="batch size",
                                                 continuous_update=False, style=style), "batch-size")
        self.pack_len = _tag(widgets.SelectionSlider(options=PACK_LENS, value=pack_len, description="pack length",
                                                     continuous_update=False, style=style), "pack-len")
        self.padding = _tag(widgets.Dropdown(options=PADDING, value=padding, description="padding", style=style), "padding")
        self.strategy = _tag(widgets.Dropdown(options=PACKING, value=strategy, description="strategy", style=style), "strategy")
        self.model = _tag(widgets.Dropdown(options=list(MODELS), value=model, description="model", style=style), "model")
        self.seed, self.max_rows, self.dpi = seed, max_rows, dpi
        self.image = _tag(widgets.Image(format="png", layout=widgets.Layout(max_width="100%")), "figure")
        self.numbers = _tag(widgets.HTML(), "numbers")
        self.result: dict | None = None
        self.error: str | None = None
        controls = [self.source, self.num_sequences, self.batch_size, self.pack_len, self.padding,
                    self.strategy, self.model]
        box = _tag(widgets.VBox([_row(controls[:4]), _row(controls[4:])]), "controls")
        super().__init__([box, self.image, self.numbers])
        self.add_class("packviz-batch-explorer")
        for c in controls:
            c.observe(self._on_change, names="value")
        self.update()

    def params(self) -> dict:
        return dict(source=self.source.value, n=self.num_sequences.value, batch_size=self.batch_size.value,
                    pack_len=self.pack_len.value, strategy=self.strategy.value, padding=self.padding.value,
                    model=self.model.value, seed=self.seed)

    def _on_change(self, change) -> None:
        self.update()

    def alt_text(self) -> str:
        """What the explorer shows now, in words (its static copy's text and alt)."""
        if self.result is None:
            return f"Batch explorer: {self.error}"
        return batch_summary(self.result["numbers"], self.source.value, self.model.value)

    def update(self) -> None:
        """Recompute and redraw (called on every control change)."""
        try:
            result = explore(**self.params())
        except ValueError as e:  # bad combination: say so in place, keep the last picture
            self.error = str(e)
            self.numbers.value = _error_html(e)
            return
        self.error = None
        self.result = result
        self.image.value = render_batch(result, max_rows=self.max_rows, dpi=self.dpi)
        self.numbers.value = numbers_html(result["numbers"], model=self.model.value)


class MaskExplorer(_StaticCopy, widgets.VBox):
    """One pack at a time: its block-diagonal causal mask and its position_ids.

    Displayed, it also carries a static copy (PNG, HTML table, text) for readers with no kernel.
    """

    def __init__(self, source: str = DEFAULT_SOURCE, n: int = 16, pack_len: int = 4096, strategy: str = "bfd",
                 row: int = 0, seed: int = 0, dpi: int = 80, layout=None):
        check_controls(source, n, pack_len, strategy)
        nonnegative_int("row", row)
        style = {"description_width": "initial"}
        self.source = _tag(widgets.Dropdown(options=list(SOURCES), value=source, description="lengths", style=style), "source")
        self.num_sequences = _tag(widgets.IntSlider(value=n, min=1, max=MAX_SEQUENCES, description="sequences",
                                                    continuous_update=False, style=style), "num-sequences")
        self.pack_len = _tag(widgets.SelectionSlider(options=PACK_LENS, value=pack_len, description="pack length",
                                                     continuous_update=False, style=style), "pack-len")
        self.strategy = _tag(widgets.Dropdown(options=PACKING, value=strategy, description="strategy", style=style), "strategy")
        self.row = _tag(widgets.IntSlider(value=0, min=0, max=0, description="pack (row)",
                                          continuous_update=False, style=style), "row")
        self.seed, self.dpi = seed, dpi
        self.image = _tag(widgets.Image(format="png", layout=widgets.Layout(max_width="100%")), "figure")
        self.numbers = _tag(widgets.HTML(), "numbers")
        self.packed = layout
        self.error: str | None = None
        self._relayouting = False
        layout_controls = [self.source, self.num_sequences, self.pack_len, self.strategy]
        box = _tag(widgets.VBox([_row(layout_controls), _row([self.row])]), "controls")
        super().__init__([box, self.image, self.numbers])
        self.add_class("packviz-mask-explorer")
        if layout is not None:  # a given layout: only the row slider matters
            for c in layout_controls:
                c.disabled = True
        for c in layout_controls:
            c.observe(self._on_layout_change, names="value")
        self.row.observe(self._on_row_change, names="value")
        self._relayout(keep_layout=layout is not None, row=row)

    def _on_layout_change(self, change) -> None:
        self._relayout()

    def _on_row_change(self, change) -> None:
        if not self._relayouting:
            self.update()

    def alt_text(self) -> str:
        """What the explorer shows now, in words (its static copy's text and alt)."""
        if self.packed is None:
            return f"Mask explorer: {self.error}"
        return pack_summary(pack_stats(self.packed, int(self.row.value)))

    def _relayout(self, keep_layout: bool = False, row: int = 0) -> None:
        if not keep_layout:
            try:
                lengths = make_lengths(self.source.value, self.num_sequences.value, self.seed)
                self.packed = pack(lengths, self.pack_len.value, self.strategy.value, overlong="truncate")
            except ValueError as e:
                self.error = str(e)
                self.numbers.value = _error_html(e)
                return
        if row >= self.packed.num_rows:  # only a constructor's row can be out of range
            raise ValueError(f"row must be an integer from 0 to {self.packed.num_rows - 1} "
                             f"(the layout has {self.packed.num_rows} rows), got {row}")
        self._relayouting = True
        try:
            self.row.max = self.packed.num_rows - 1
            self.row.value = row
        finally:
            self._relayouting = False
        self.update()

    def update(self) -> None:
        """Redraw the current row."""
        self.error = None
        row = int(self.row.value)
        self.image.value = render_pack(self.packed, row, dpi=self.dpi)
        self.numbers.value = pack_html(pack_stats(self.packed, row))


def batch_explorer(**kwargs) -> BatchExplorer:
    """A :class:`BatchExplorer` (keyword arguments: its initial control values)."""
    return BatchExplorer(**kwargs)


def mask_explorer(**kwargs) -> MaskExplorer:
    """A :class:`MaskExplorer` (pass ``layout=`` to explore the rows of your own layout)."""
    return MaskExplorer(**kwargs)
