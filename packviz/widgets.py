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

import html

import ipywidgets as widgets
from matplotlib.gridspec import GridSpec

from . import plot
from .checks import int_in_range, nonnegative_int, one_of
from .flops import causal_pairs, compare
from .shapes import MODELS
from .lengths import SOURCES
from .packing import PACKED, PADDED, pack, pad_and_pack

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
            model: str = "llama-3-8b", lm_head: str = "all") -> dict:
    """Lay ``n`` lengths out padded (``padding`` in batches of ``batch_size``) and packed (``strategy``, C = ``pack_len``).

    ``pack_len`` is also the padded side's context: both sides apply ``overlong`` the same way,
    so they hold the same tokens. Returns ``{"lengths", "padded", "packed", "flops", "numbers"}``;
    ``numbers`` is a flat dict of plain floats/ints (rounded nowhere).
    """
    lengths = make_lengths(source, n, seed)
    padded, packed = pad_and_pack(lengths, pack_len, batch_size, strategy, padding, overlong)
    fl = compare(padded, packed, model, lm_head=lm_head)
    numbers = {
        "sequences": int(len(lengths)),
        "real_tokens": packed.real_tokens,
        "dropped_tokens": packed.dropped_tokens,
        "padded_rows": padded.num_rows,
        "padded_slots": padded.slots,
        "padded_utilization": padded.utilization,
        "packed_rows": packed.num_rows,
        "packed_slots": packed.slots,
        "lower_bound_rows": packed.lower_bound_rows,
        "packed_utilization": packed.utilization,
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
    return {"lengths": lengths, "padded": padded, "packed": packed, "flops": fl, "numbers": numbers}


def numbers_html(numbers: dict, model: str = "") -> str:
    """An HTML table of :func:`explore`'s numbers (what the explorer shows under the grids)."""
    n = numbers
    rows = [
        ("sequences / real tokens", f"{n['sequences']:,} / {n['real_tokens']:,}"
         + (f" ({n['dropped_tokens']:,} truncated)" if n.get("dropped_tokens") else "")),
        ("padded: rows, utilisation", f"{n['padded_rows']:,} rows, {n['padded_utilization']:.1%}"),
        ("packed: rows (lower bound), utilisation",
         f"{n['packed_rows']:,} ({n['lower_bound_rows']:,}), {n['packed_utilization']:.1%}"),
        (f"prefill TFLOPs {html.escape(model)}: useful / padded / dense / varlen",
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


class BatchExplorer(widgets.VBox):
    """Controls → :func:`explore` → padded-vs-packed grids (``.image``) and numbers (``.numbers``)."""

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


class MaskExplorer(widgets.VBox):
    """One pack at a time: its block-diagonal causal mask and its position_ids."""

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
