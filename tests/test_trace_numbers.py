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
