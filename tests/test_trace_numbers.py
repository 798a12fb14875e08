"""The canonical trace numbers: one definition, consistent with the layouts they summarise."""

import numpy as np
import pytest

from packviz import trace_numbers as T
from packviz.packing import pack, pack_in_windows
from packviz.trace import Trace


def test_window_table_by_hand():
    t = Trace(np.arange(5.0), np.array([3, 5, 2, 4, 1]), np.ones(5, dtype=int))
    table = T.window_table(batch_size=2, pack_len=6, trace=t)  # windows [3, 5], [2, 4]; the 5th request left out
    assert table["longest"].tolist() == [5, 4] and table["padded_slots"].tolist() == [10, 8]
    assert table["packed_rows"].tolist() == [2, 1]  # 3 + 5 > 6: two rows; 2 + 4 = 6: one row
    assert table["packed_utilization"] == pytest.approx([8 / 12, 6 / 6])


def test_summary_agrees_with_the_layouts_it_summarises():
    s = T.summary()
    lengths = T.trace_prompts()[: s["windows"] * s["batch_size"]]
    assert s["requests"] == len(lengths) == 605 * 32 and s["real_tokens"] == int(lengths.sum())
    assert s["padded"]["utilization"] == pack(lengths, 8192, "pad", batch_size=32).utilization
    assert s["packed_online"]["rows"] == pack_in_windows(lengths, 8192, 32).num_rows
    sp = s["padded"]["spread"]
    assert sp["min"] <= sp["p10"] <= sp["p50"] <= sp["p90"] <= sp["max"]
    # online packing is the fair comparison: below the offline whole-trace packing, far above padding
    assert s["padded"]["utilization"] < s["packed_online"]["utilization"] < s["packed_offline"]["utilization"]
    w = s["flops"]["waste"]
    assert w["varlen"] == 0 and w["padded"] < w["padded-masked"] and w["dense"] < w["padded"]
    assert 0 < s["flops"]["attention_share_of_padded_waste"] < 0.5  # at these lengths the waste is mostly linear


def test_batches_of_one_waste_nothing():
    s = T.summary(batch_size=1)
    assert s["padded"]["utilization"] == 1.0 and s["flops"]["waste"]["padded"] == 0
    assert s["flops"]["attention_share_of_padded_waste"] == 0.0


# ---------------------------------------------------------------------- prefill speed-ups, window by window
def test_window_prefill_flops_by_hand():
    from packviz.shapes import get_shape

    s = get_shape("tiny")
    lin, head, pair = s.linear_flops_per_token, s.lm_head_flops_per_token, s.attention_flops_per_pair
    # windows [4, 2] and [3, 3]; the 5th prompt fills no window and is left out (it would not even fit C = 8)
    f = T.window_prefill_flops([4, 2, 3, 3, 9], batch_size=2, pack_len=8, model="tiny", tile=None,
                               methods=("dense", "varlen"))
    # padded: 2 rows of W slots, each its causal triangle W(W+1)/2; lm_head on each prompt's last token
    assert f["padded"].tolist() == [8 * lin + 2 * head + 2 * 10 * pair, 6 * lin + 2 * head + 2 * 6 * pair]
    # varlen: the real tokens, each prompt's own triangle
    assert f["varlen"].tolist() == [6 * lin + 2 * head + (10 + 3) * pair, 6 * lin + 2 * head + 2 * 6 * pair]
    # dense: one packed row of C = 8 slots, its whole 8 x 8 square
    assert f["dense"].tolist() == [8 * lin + 2 * head + 64 * pair] * 2
    assert (f["padded"] / f["varlen"])[1] == 1.0  # equal lengths: nothing to win


def test_window_prefill_flops_needs_one_whole_window():
    with pytest.raises(ValueError, match="3 prompts do not fill one window of batch_size 4"):
        T.window_prefill_flops([1, 2, 3], batch_size=4, pack_len=8, model="tiny")


def test_prefill_speedups_cover_exactly_the_trace_consecutive_windows():
    from packviz.flops import tiled_causal_pairs
    from packviz.shapes import get_shape

    s = T.prefill_speedups()
    lengths = T.trace_prompts()
    assert s["windows"] == len(lengths) // 32 == 605
    shape = get_shape("llama-3-8b")
    lin, head, pair = shape.linear_flops_per_token, shape.lm_head_flops_per_token, shape.attention_flops_per_pair
    for k in (0, 1, 302, 604):  # window k holds requests 32k .. 32k + 31, priced by hand in 128 x 128 tiles
        n = lengths[32 * k: 32 * k + 32]
        padded = 32 * n.max() * lin + 32 * head + 32 * tiled_causal_pairs([n.max()], (128, 128)) * pair
        varlen = n.sum() * lin + 32 * head + tiled_causal_pairs(n, (128, 128)) * pair
        assert s["speedup"]["varlen"][k] == pytest.approx(padded / varlen, rel=1e-12)
    for m in ("dense", "flex", "varlen"):
        v = s["speedup"][m]
        assert len(v) == 605 and (v > 1).all()  # every window of the trace has padding to remove
        assert s["spread"][m]["p50"] == pytest.approx(float(np.median(v)))
        assert v.min() < s["pooled"][m] < v.max()
    # the kernels that skip more win more, window by window
    assert (s["speedup"]["dense"] < s["speedup"]["flex"]).all() and (s["speedup"]["flex"] <= s["speedup"]["varlen"]).all()
