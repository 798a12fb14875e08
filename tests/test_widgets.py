"""Widgets driven in plain Python: set a control's .value, check the figure bytes and the numbers."""

import pytest

pytest.importorskip("ipywidgets")

from packviz import widgets as W  # noqa: E402
from packviz.flops import layout_flops  # noqa: E402
from packviz.lengths import SOURCES  # noqa: E402
from packviz.packing import pack  # noqa: E402

SEED = "seed: 50 vs 4,000"
PNG = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------- pure layer
def test_explore_numbers_follow_the_layouts():
    r = W.explore(SEED, n=12, batch_size=4, pack_len=4096, strategy="ffd", model="llama-3.2-1b")
    n, padded, packed = r["numbers"], r["padded"], r["packed"]
    assert padded.batch_size == 4 and packed.capacity == 4096 and packed.name == "ffd"
    assert n["sequences"] == 12 and n["real_tokens"] == padded.real_tokens == packed.real_tokens
    assert n["padded_rows"] == 12 and n["packed_rows"] == packed.num_rows
    assert n["packed_utilization"] == packed.utilization
    assert n["padded_tflops"] == layout_flops(padded, "llama-3.2-1b", "causal").total / 1e12
    assert n["dense_speedup"] == r["flops"]["speedup"]["dense"]
    html = W.numbers_html(n, model="llama-3.2-1b")
    assert f"{n['padded_utilization']:.1%}" in html and f"{n['dense_speedup']:.2f}×" in html


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
    assert batch.result["packed"].name == batch.strategy.value
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
