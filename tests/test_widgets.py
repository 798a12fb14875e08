"""Widgets driven in plain Python: set a control's .value, check the figure bytes and the numbers."""

import pytest

pytest.importorskip("ipywidgets")

from packviz import widgets as W  # noqa: E402
from packviz.flops import layout_flops  # noqa: E402
from packviz.lengths import SOURCES  # noqa: E402
import base64  # noqa: E402

import numpy as np  # noqa: E402

from packviz.packing import pack, pack_in_windows  # noqa: E402

SEED = "seed: 50 vs 4,000"
PNG = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------- pure layer
def test_explore_numbers_follow_the_layouts():
    r = W.explore(SEED, n=12, batch_size=4, pack_len=4096, strategy="ffd", model="llama-3.2-1b")
    n, padded, packed = r["numbers"], r["padded"], r["packed"]
    assert padded.batch_size == 4 and packed.capacity == 4096 and packed.name == "ffd per window of 4"
    assert n["sequences"] == 12 and n["real_tokens"] == padded.real_tokens == packed.real_tokens
    assert n["padded_rows"] == 12 and n["packed_rows"] == packed.num_rows
    assert n["packed_utilization"] == packed.utilization
    assert n["padded_tflops"] == layout_flops(padded, "llama-3.2-1b", "causal", lm_head="last").total / 1e12
    assert n["dense_speedup"] == r["flops"]["speedup"]["dense"]
    html = W.numbers_html(n, model="llama-3.2-1b")
    assert f"{n['padded_utilization']:.1%}" in html and f"{n['dense_speedup']:.2f}×" in html


def test_explore_packs_each_window_on_its_own_at_the_defaults():
    r = W.explore()  # defaults: 64 prompts, windows of B = 8, C = 4,096, bfd
    lengths = W.make_lengths(W.DEFAULT_SOURCE, 64, 0)
    online = pack_in_windows(lengths, 4096, 8, "bfd", overlong="truncate")
    offline = pack(lengths, 4096, "bfd", overlong="truncate")
    n = r["numbers"]
    assert n["packed_utilization"] == online.utilization and n["packed_rows"] == online.num_rows
    assert n["offline_utilization"] == offline.utilization and n["offline_rows"] == offline.num_rows
    assert offline.utilization > online.utilization  # what packing everything at once would flatter
    # like with like: every packed row holds requests of one window only, as each padded batch does
    window = r["packed"].seg_seq // 8
    for row in range(r["packed"].num_rows):
        assert len(set(window[r["packed"].seg_row == row].tolist())) == 1
    html = W.numbers_html(n)
    assert f"{online.utilization:.1%}" in html and "(online)" in html and "(training only)" in html
    assert r["flops"]["lm_head"] == "last"


def test_sorted_padding_is_labelled_offline():
    n = W.explore(SEED, n=16, batch_size=4, padding="sorted")["numbers"]
    assert "sorted over all 16" in W.numbers_html(n) and "(offline)" in W.batch_summary(n)


def test_explore_rejects_bad_choices():
    with pytest.raises(ValueError, match="strategy must be one of 'next-fit', 'ffd', 'bfd'; got 'pad'"):
        W.explore(SEED, strategy="pad")
    with pytest.raises(ValueError, match="length source must be one of 'seed: 50 vs 4,000'"):
        W.explore("no such source")
    with pytest.raises(ValueError, match="padding must be one of 'pad', 'sorted'; got 'bfd'"):
        W.explore(SEED, padding="bfd")
    with pytest.raises(ValueError, match="lm_head must be one of 'all', 'last'; got 'first'"):
        W.explore(SEED, lm_head="first")


def test_explore_truncates_both_sides_alike():
    r = W.explore("uniform 1..4,096", n=40, pack_len=512, batch_size=8)
    assert r["numbers"]["dropped_tokens"] > 0
    assert r["padded"].real_tokens == r["packed"].real_tokens
    assert "truncated" in W.numbers_html(r["numbers"])


def test_pack_stats_by_hand():
    lay = pack([3, 2], 8, "next-fit")
    s = W.pack_stats(lay, 0)
    assert s == {"row": 0, "sequences": 2, "tokens": 5, "slots": 8, "pads": 3,
                 "needed_pairs": 6 + 3, "dense_pairs": 64, "needed_fraction": 9 / 64}
    assert W.render_pack(lay, 0).startswith(PNG)


# ---------------------------------------------------------------------- widgets
@pytest.fixture(scope="module")
def batch():
    return W.batch_explorer(source=SEED, n=16, batch_size=4, pack_len=4096, max_rows=32, dpi=40)


def test_batch_explorer_starts_drawn(batch):
    assert bytes(batch.image.value).startswith(PNG)
    assert "utilisation" in batch.numbers.value
    assert batch.source.options == tuple(SOURCES)
    for name in ("source", "num-sequences", "batch-size", "pack-len", "padding", "strategy", "model",
                 "figure", "numbers"):
        assert any(f"packviz-{name}" in w._dom_classes for w in _all_children(batch)), name
    assert "packviz-batch-explorer" in batch._dom_classes


def _all_children(w):
    out = [w]
    for c in getattr(w, "children", ()):
        out += _all_children(c)
    return out


@pytest.mark.parametrize("control, value", [
    ("pack_len", 8192), ("batch_size", 2), ("num_sequences", 40),
    ("source", "Azure conversation trace"), ("padding", "sorted"),
])
def test_batch_explorer_control_changes_figure_and_numbers(batch, control, value):
    before_png, before_html, before = batch.image.value, batch.numbers.value, batch.result
    getattr(batch, control).value = value
    assert batch.error is None
    assert batch.result is not before
    assert batch.image.value != before_png
    assert batch.numbers.value != before_html
    n = batch.result["numbers"]
    assert f"{n['packed_utilization']:.1%}" in batch.numbers.value
    assert batch.result["packed"].capacity == batch.pack_len.value
    assert batch.result["padded"].batch_size == batch.batch_size.value
    assert n["sequences"] == batch.num_sequences.value


def test_batch_explorer_strategy_changes_the_packing(batch):
    png = batch.image.value
    batch.strategy.value = "next-fit" if batch.strategy.value != "next-fit" else "bfd"
    assert batch.result["packed"].name == f"{batch.strategy.value} per window of {batch.batch_size.value}"
    assert batch.image.value != png  # the packs hold other sequences (numbers may coincide)


def test_batch_explorer_model_changes_only_numbers(batch):
    png, html = batch.image.value, batch.numbers.value
    batch.model.value = "llama-3-70b"
    assert batch.numbers.value != html and "llama-3-70b" in batch.numbers.value
    assert batch.result["flops"]["model"] == "llama-3-70b"
    assert batch.image.value == png  # same layouts, same picture


def test_mask_explorer_row_and_layout():
    ex = W.mask_explorer(source=SEED, n=16, pack_len=4096, dpi=40)
    assert ex.row.max == ex.packed.num_rows - 1 >= 1
    png, html = ex.image.value, ex.numbers.value
    ex.row.value = 1
    assert ex.image.value != png and ex.numbers.value != html
    s = W.pack_stats(ex.packed, 1)
    assert f"{s['needed_pairs']:,}" in ex.numbers.value
    ex.pack_len.value = 8192
    assert ex.packed.capacity == 8192 and ex.row.max == ex.packed.num_rows - 1
    assert ex.row.value <= ex.row.max


def test_mask_explorer_on_a_given_layout():
    lay = pack([3, 2, 3, 4, 1], 8, "bfd")
    ex = W.mask_explorer(layout=lay, dpi=40)
    assert ex.packed is lay and ex.source.disabled and ex.row.max == lay.num_rows - 1
    ex.row.value = lay.num_rows - 1
    assert f"row {lay.num_rows - 1}:" in ex.numbers.value


# ---------------------------------------------------------------------- what a reader with no kernel sees
def _bundle(explorer):
    data, metadata = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data  # JupyterLab still shows the live widget
    return data, metadata


def test_batch_explorer_display_carries_its_figure_and_numbers():
    ex = W.batch_explorer(source=SEED, n=24, batch_size=8, pack_len=4096, dpi=40)
    ex.batch_size.value = 4  # the copy follows the controls
    data, metadata = _bundle(ex)
    png = base64.b64decode(data["image/png"])
    assert png.startswith(PNG) and png == bytes(ex.image.value)
    n = ex.result["numbers"]
    assert ex.numbers.value in data["text/html"]  # the numbers table, as the widget shows it
    assert f"<img src='data:image/png;base64,{data['image/png']}'" in data["text/html"]
    text = data["text/plain"]
    assert text == metadata["image/png"]["alt"] == ex.alt_text()
    assert "B = 4" in text and f"{n['packed_utilization']:.1%}" in text and f"{n['padded_waste']:.1%}" in text
    assert "BatchExplorer(children" not in text


def test_mask_explorer_display_carries_its_figure_and_numbers():
    lay = pack([3, 2, 3, 4, 1], 8, "bfd")
    ex = W.mask_explorer(layout=lay, dpi=40)
    ex.row.value = 1
    data, metadata = _bundle(ex)
    assert base64.b64decode(data["image/png"]) == bytes(ex.image.value)
    s = W.pack_stats(lay, 1)
    assert ex.numbers.value in data["text/html"]
    assert data["text/plain"] == metadata["image/png"]["alt"]
    assert data["text/plain"].startswith("Mask explorer, row 1:") and f"needs {s['needed_pairs']:,} of the {s['dense_pairs']:,}" in data["text/plain"]


def test_ipython_displays_the_static_copy_with_the_view():
    from IPython.core.formatters import DisplayFormatter

    ex = W.batch_explorer(source=SEED, n=8, batch_size=4, dpi=40)
    data, metadata = DisplayFormatter().format(ex)
    assert {"image/png", "text/html", "text/plain", "application/vnd.jupyter.widget-view+json"} <= set(data)
    assert np.frombuffer(base64.b64decode(data["image/png"]), np.uint8)[:8].tobytes() == PNG
    assert metadata["image/png"]["alt"] == data["text/plain"]


def test_window_lower_bound_by_hand():
    lay = pack_in_windows([3, 5, 2, 4, 1], pack_len=6, batch_size=2)  # windows hold 8, 6 and 1 tokens
    assert W.window_lower_bound(lay, 2) == 2 + 1 + 1 > lay.lower_bound_rows == 3
