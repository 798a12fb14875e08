"""Packing strategies: placement, capacity, policies, bad input, and exactness against slow reference algorithms."""

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from packviz.packing import (PACKED, PADDED, STRATEGIES, apply_overlong, lower_bound, pack, pad_and_pack,
                             validate_lengths)


def _placed(lay):
    """Tokens placed per original sequence."""
    return np.bincount(lay.seg_seq, weights=lay.seg_length, minlength=lay.num_sequences).astype(int)


@settings(max_examples=80, deadline=None)
@given(lengths=st.lists(st.integers(1, 500), min_size=1, max_size=80), cap=st.integers(1, 500),
       strategy=st.sampled_from(STRATEGIES), batch=st.integers(1, 9))
def test_every_sequence_placed_once_and_no_row_over_capacity(lengths, cap, strategy, batch):
    lay = pack(lengths, cap, strategy, batch_size=batch if strategy in ("pad", "sorted") else None,
               overlong="split")
    # split chunks sum to the sequence; nothing lost, nothing duplicated
    assert _placed(lay).tolist() == lengths
    assert (lay.row_real_tokens() <= lay.widths).all()
    assert (lay.widths <= cap).all()
    assert (lay.seg_length <= cap).all()
    assert lay.real_tokens == sum(lengths)
    # segments of a row never overlap
    for r in range(lay.num_rows):
        segs = lay.row_segments(r)
        ends = segs[:, 1] + segs[:, 2]
        assert (segs[1:, 1] >= ends[:-1]).all()
    if strategy in ("pad", "sorted"):
        assert lay.num_rows == lay.num_segments  # one segment per padded row
        for rows in lay.batches():
            assert len(set(lay.widths[list(rows)].tolist())) == 1
            assert lay.widths[rows.start] == lay.seg_length[list(rows)].max()
    else:
        assert lay.num_rows >= math.ceil(sum(lengths) / cap) == lay.lower_bound_rows


def _reference_fit(items, cap, best):
    """Item-by-item first/best fit decreasing, written the slow obvious way."""
    rooms = []
    for n in sorted(items, reverse=True):
        fits = [b for b, r in enumerate(rooms) if r >= n]
        if not fits:
            rooms.append(cap - n)
            continue
        b = min(fits, key=lambda b: rooms[b]) if best else fits[0]
        rooms[b] -= n
    return sorted(rooms)


@settings(max_examples=150, deadline=None)
@given(items=st.lists(st.integers(1, 40), min_size=1, max_size=70), cap=st.integers(40, 80))
def test_ffd_and_bfd_match_the_item_by_item_algorithms(items, cap):
    for name, best in (("ffd", False), ("bfd", True)):
        lay = pack(items, cap, name)
        rooms = sorted((lay.widths - lay.row_real_tokens()).tolist())
        assert rooms == _reference_fit(items, cap, best), name


@settings(max_examples=150, deadline=None)
@given(data=st.data(), cap=st.one_of(st.integers(1, 2**31 - 1), st.integers(1, 1000)))
def test_bfd_and_ffd_match_the_item_by_item_algorithms_at_any_capacity(data, cap):
    """Capacities up to 2**31 - 1: best fit keeps the rooms that exist, never an array over all of them."""
    low = st.integers(1, cap)
    items = data.draw(st.lists(st.one_of(low, st.integers(max(1, cap // 3), cap), st.integers(1, max(1, cap // 7))),
                               min_size=1, max_size=60))
    for name, best in (("ffd", False), ("bfd", True)):
        lay = pack(items, cap, name)
        assert sorted((lay.widths - lay.row_real_tokens()).tolist()) == _reference_fit(items, cap, best), name


@settings(max_examples=150, deadline=None)
@given(lengths=st.lists(st.integers(1, 10**6), min_size=1, max_size=30), cap=st.integers(1, 3000))
def test_split_chunks_are_cap_cap_then_the_rest_in_order(lengths, cap):
    assume(sum(-(-n // cap) for n in lengths) <= 20_000)
    items, seq, dropped = apply_overlong(np.array(lengths), cap, "split")
    expected = [(i, min(cap, n - k)) for i, n in enumerate(lengths) for k in range(0, n, cap)]
    assert list(zip(seq.tolist(), items.tolist())) == expected and dropped == 0


def test_next_fit_keeps_arrival_order():
    lay = pack([3, 3, 3, 1, 5], 6, "next-fit")
    assert lay.rows() == [[[0, 0, 3], [1, 3, 3]], [[2, 0, 3], [3, 3, 1]], [[4, 0, 5]]]


def test_sorted_buckets_group_similar_lengths():
    lay = pack([1, 100, 2, 99], 128, "sorted", batch_size=2)
    assert lay.widths.tolist() == [2, 2, 100, 100]
    assert sorted(lay.seg_seq[:2].tolist()) == [0, 2]


def test_padded_batches_pad_to_their_longest():
    lay = pack([5, 1, 2, 7, 3], 10, "pad", batch_size=2)
    assert lay.widths.tolist() == [5, 5, 7, 7, 3]
    assert lay.slots == 27 and lay.real_tokens == 18


def test_overlong_policies():
    lengths = [5, 25, 3]
    with pytest.raises(ValueError, match=r"sequence 1 has length 25, longer than the pack length 8"):
        pack(lengths, 8, "bfd")
    t = pack(lengths, 8, "bfd", overlong="truncate")
    assert _placed(t).tolist() == [5, 8, 3] and t.dropped_tokens == 17
    s = pack(lengths, 8, "bfd", overlong="split")
    assert _placed(s).tolist() == lengths
    assert sorted(s.seg_length[s.seg_seq == 1].tolist()) == [1, 8, 8, 8]
    assert s.dropped_tokens == 0


@pytest.mark.parametrize("bad, shown", [
    ([5, 0, 3], r"lengths\[1\] is 0: lengths must be integers >= 1"),
    ([5, -2], r"lengths\[1\] is -2"),
    ([5, 2.5], r"lengths\[1\] is 2.5"),
    ([float("nan")], r"lengths\[0\] is nan"),
    ([], "lengths is empty"),
    ([3, True], r"lengths\[1\] is True"),
    (["12", 3], r"lengths\[0\] is '12'"),
    ([5, 2 ** 64], r"lengths\[1\] is 18446744073709551616: too large"),
    ([5, -2 ** 70], r"lengths\[1\] is -1180591620717411303424: lengths must be integers >= 1"),
    (np.array([7, 2 ** 63], dtype=np.uint64), r"lengths\[1\] is 9223372036854775808: too large"),
    ("123", "lengths must be a sequence of integers, got the string '123'"),
    ([[1, 2]], r"lengths must be one-dimensional, got shape \(1, 2\)"),
])
def test_bad_lengths_name_the_value(bad, shown):
    with pytest.raises(ValueError, match=shown):
        validate_lengths(bad)
    with pytest.raises(ValueError, match=shown):
        pack(bad, 8, "bfd")


@pytest.mark.parametrize("kw, shown", [
    (dict(pack_len=0), "pack_len must be a positive integer, got 0"),
    (dict(pack_len=8.5), "got 8.5"),
    (dict(pack_len=8, strategy="best"), "strategy must be one of"),
    (dict(pack_len=8, strategy="pad"), "needs a batch_size"),
    (dict(pack_len=8, strategy="pad", batch_size=0), "batch_size must be a positive integer, got 0"),
    (dict(pack_len=8, overlong="drop"), "overlong must be one of"),
])
def test_bad_parameters_name_the_value(kw, shown):
    with pytest.raises(ValueError, match=shown):
        pack([1, 2, 3], **kw)


def test_numpy_ints_are_accepted_and_floats_are_not():
    assert validate_lengths(np.array([3, 4], dtype=np.int16)).dtype == np.int64
    assert validate_lengths((np.int32(2), 5)).tolist() == [2, 5]
    with pytest.raises(ValueError, match=r"lengths\[0\] is 3.0"):
        validate_lengths(np.array([3.0, 4.0]))


def test_lower_bound():
    assert lower_bound([4, 4, 1], 4) == 3
    assert lower_bound([8192] * 3, 8192) == 3


def test_strategy_table_agrees_with_pack():
    from packviz.packing import format_strategy_table, strategy_table

    lengths = [5, 9, 3, 12, 7, 1, 4]
    rows = strategy_table(lengths, 12, batch_size=3)
    assert [r["strategy"] for r in rows] == list(STRATEGIES)
    for r in rows:
        lay = pack(lengths, 12, r["strategy"], batch_size=3 if r["strategy"] in ("pad", "sorted") else None)
        assert r["rows"] == lay.num_rows and r["c_rows"] == lay.slots / 12
        assert r["over_bound"] == pytest.approx(r["c_rows"] / math.ceil(sum(lengths) / 12) - 1)
    text = format_strategy_table(rows)
    assert len(text.splitlines()) == 1 + len(STRATEGIES) and "seconds" not in text


@settings(max_examples=40, deadline=None)
@given(lengths=st.lists(st.integers(1, 300), min_size=1, max_size=40), cap=st.integers(1, 300),
       batch=st.integers(1, 9), strategy=st.sampled_from(PACKED), padding=st.sampled_from(PADDED),
       overlong=st.sampled_from(["truncate", "split"]))
def test_pad_and_pack_lays_the_same_tokens_out_both_ways(lengths, cap, batch, strategy, padding, overlong):
    padded, packed = pad_and_pack(lengths, cap, batch, strategy, padding, overlong)
    assert (padded.kind, padded.name, padded.batch_size) == ("padded", padding, batch)
    assert (packed.kind, packed.name, packed.capacity) == ("packed", strategy, cap)
    assert padded.real_tokens == packed.real_tokens and padded.dropped_tokens == packed.dropped_tokens
    assert _placed(padded).tolist() == _placed(packed).tolist()
    assert packed.num_rows == pack(lengths, cap, strategy, overlong=overlong).num_rows


def test_pad_and_pack_refuses_a_swapped_strategy_and_keeps_overlong_errors():
    with pytest.raises(ValueError, match="strategy must be one of 'next-fit', 'ffd', 'bfd'; got 'pad'"):
        pad_and_pack([3, 4], 8, 2, strategy="pad")
    with pytest.raises(ValueError, match="padding must be one of 'pad', 'sorted'; got 'bfd'"):
        pad_and_pack([3, 4], 8, 2, padding="bfd")
    with pytest.raises(ValueError, match="sequence 1 has length 9, longer than the pack length 8"):
        pad_and_pack([3, 9], 8, 2)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        pad_and_pack([3, 4], 8, 0)


# ---------------------------------------------------------------------- who shares a forward, and waits
def test_forwards_and_fill_waits_by_hand():
    from packviz.packing import fill_waits, forwards

    arrival = [0.0, 1.0, 2.0, 3.0, 10.0]
    padded = pack([3, 5, 2, 4, 1], 6, "pad", batch_size=2)         # batches {0, 1}, {2, 3}, {4}
    assert forwards(padded).tolist() == [0, 0, 1, 1, 2]
    assert fill_waits(padded, arrival).tolist() == [1.0, 0.0, 1.0, 0.0, 0.0]
    packed = pack([3, 5, 2, 4, 1], 6, "bfd")                       # rows B+E, D+C, A: one forward each
    assert forwards(packed).tolist() == packed.seg_row.tolist()
    assert fill_waits(packed, arrival).tolist() == [0.0, 9.0, 1.0, 0.0, 0.0]
    # a split sequence waits for the latest of its forwards
    split = pack([9, 2], 4, "bfd", overlong="split")               # rows [0], [0], [1, 0]
    assert fill_waits(split, [0.0, 5.0]).tolist() == [5.0, 0.0]
    with pytest.raises(ValueError, match=r"expected one arrival per sequence, \(2,\)"):
        fill_waits(split, [0.0])
