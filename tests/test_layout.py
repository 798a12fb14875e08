"""The layout's derived views, on hand-made rows and on random packings (hypothesis)."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from packviz.layout import (PAD, Layout, block_causal_mask, format_grid, format_mask, positions_from_lengths,
                            seq_idx_from_lengths)
from packviz.packing import pack

# A (3 tokens) and B (2) in one row of 5; C (4) in a second row with one pad.
ROWS = [[(0, 0, 3), (1, 3, 2)], [(2, 0, 4)]]


@pytest.fixture
def lay():
    return Layout.from_rows(ROWS, widths=[5, 5])


def test_views_of_a_hand_made_layout(lay):
    assert lay.slot_seq_grid().tolist() == [[0, 0, 0, 1, 1], [2, 2, 2, 2, PAD]]
    assert lay.position_ids(0).tolist() == [0, 1, 2, 0, 1]
    assert lay.seq_idx(0).tolist() == [0, 0, 0, 1, 1]
    assert lay.cu_seqlens(0).tolist() == [0, 3, 5]
    assert lay.cu_seqlens(0).dtype == np.int32
    assert lay.max_seqlen(0) == 3
    assert lay.position_grid().tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 3, -1]]
    assert lay.padding_attention_mask().tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    assert (lay.real_tokens, lay.slots, lay.pads) == (9, 10, 1)
    assert lay.utilization == pytest.approx(0.9)
    assert lay.row_utilization().tolist() == [1.0, 0.8]
    assert lay.rows() == [[[0, 0, 3], [1, 3, 2]], [[2, 0, 4]]]


def test_mask_is_the_drawn_block_diagonal(lay):
    expected = np.array([
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0],
        [0, 0, 0, 1, 0],
        [0, 0, 0, 1, 1],
    ], dtype=bool)
    assert (lay.block_causal_mask(0) == expected).all()
    with_pad = lay.block_causal_mask(1, include_pads=True)
    assert with_pad.shape == (5, 5)
    assert not with_pad[4].any() and not with_pad[:, 4].any()  # the pad sees and is seen by nothing
    assert with_pad[:4, :4].sum() == 4 * 5 // 2


def test_bad_rows_and_segments_are_rejected(lay):
    with pytest.raises(IndexError, match="row 7"):
        lay.cu_seqlens(7)
    with pytest.raises(ValueError, match="does not fit row 0"):
        Layout.from_rows([[(0, 3, 4)]], widths=[5])
    with pytest.raises(ValueError, match="2 rows but 1 widths"):
        Layout.from_rows(ROWS, widths=[5])
    with pytest.raises(ValueError, match="kind must be one of 'padded', 'packed'; got 'dense'"):
        Layout.from_rows(ROWS, widths=[5, 5], kind="dense")
    for bad in (True, 1.0, "0"):
        with pytest.raises(IndexError, match="out of range: the layout has 2 rows"):
            lay.check_row(bad)


def test_positions_from_lengths():
    assert positions_from_lengths([2, 1, 3]).tolist() == [0, 1, 0, 0, 1, 2]
    assert seq_idx_from_lengths([2, 1, 3]).tolist() == [0, 0, 1, 2, 2, 2]


def test_block_causal_mask_from_sequence_ids_pads_and_sampled_slots():
    m = block_causal_mask([7, 7, PAD, 3, 3])
    assert format_mask(m).splitlines() == ["x . . . .", "x x . . .", ". . . . .", ". . . x .", ". . . x x"]
    # a sample of slots 0, 2, 4 of the row A A A B B: the causal test uses the slots, not the sample's order
    sampled = block_causal_mask([0, 0, 1], slots=[0, 2, 4])
    assert sampled.tolist() == [[True, False, False], [True, True, False], [False, False, True]]
    with pytest.raises(ValueError, match="slots has 2 entries but seq_ids has 3"):
        block_causal_mask([0, 0, 1], slots=[0, 1])


def test_seq_idx_is_per_row_and_slot_seq_grid_is_global(lay):
    # row 1 holds only sequence 2: its per-row ordinal is 0, its global number 2
    assert lay.seq_idx(1).tolist() == [0, 0, 0, 0]
    assert lay.slot_seq_grid(rows=[1]).tolist() == [[2, 2, 2, 2, PAD]]
    assert lay.seg_seq.tolist() == [0, 1, 2]


def test_format_grid_draws_each_row_at_its_own_width():
    lay = Layout.from_rows([[(0, 0, 2)], [(1, 0, 3)]], widths=[3, 4], kind="padded")
    assert format_grid(lay) == "A A .\nB B B ."
    assert format_grid(lay, rows=[1]) == "B B B ."


lengths_st = st.lists(st.integers(1, 300), min_size=1, max_size=60)


@settings(max_examples=60, deadline=None)
@given(lengths=lengths_st, cap=st.integers(1, 300), strategy=st.sampled_from(["next-fit", "ffd", "bfd"]))
def test_views_are_consistent_on_random_packings(lengths, cap, strategy):
    lay = pack(lengths, cap, strategy, overlong="split")
    grid = lay.slot_seq_grid()
    pos = lay.position_grid()
    for r in range(lay.num_rows):
        segs = lay.row_segments(r)
        lens = segs[:, 2]
        # cu_seqlens: starts at 0, int32, differences are the segment lengths
        cu = lay.cu_seqlens(r)
        assert cu.dtype == np.int32 and cu[0] == 0 and np.diff(cu).tolist() == lens.tolist()
        assert lay.max_seqlen(r) == lens.max()
        # positions restart at every segment start and count up by one
        p = lay.position_ids(r)
        starts = cu[:-1]
        assert (p[starts] == 0).all()
        inside = np.setdiff1d(np.arange(len(p)), starts)
        assert (p[inside] == p[inside - 1] + 1).all()
        # segments sit back to back from slot 0 and the grid agrees
        assert segs[:, 1].tolist() == (cu[:-1]).tolist()
        stream = grid[r][grid[r] != PAD]
        assert stream.tolist() == np.repeat(segs[:, 0], lens).tolist()
        assert pos[r][pos[r] >= 0].tolist() == p.tolist()
        # the mask: symmetric blocks (same segment) intersected with causal
        m = lay.block_causal_mask(r)
        sid = lay.seq_idx(r)
        assert not np.triu(m, 1).any()  # causal: nothing above the diagonal
        assert m.diagonal().all()  # every token sees itself
        q, k = np.nonzero(m)
        assert (sid[q] == sid[k]).all()  # never across segments
        assert m.sum() == (lens * (lens + 1) // 2).sum()  # and every allowed pair present


@pytest.mark.parametrize("arrays, shown", [
    # (seg_row, seg_offset, seg_length, seg_seq), widths
    (([0, 0], [0, 2], [3, 2], [0, 1]), "overlaps the one before it"),
    (([1, 0], [0, 0], [2, 2], [0, 1]), "not sorted by"),
    (([0], [2], [4], [0]), "does not fit row 0 of width 5"),
    (([0], [0], [0], [0]), "does not fit row 0"),
    (([3], [0], [2], [0]), "in row 3, but the layout has 2 rows"),
])
def test_segments_that_break_the_layout_are_rejected(arrays, shown):
    with pytest.raises(ValueError, match=shown):
        Layout(*arrays, widths=[5, 5], num_sequences=2)


def test_overlapping_hand_made_segments_are_rejected():
    with pytest.raises(ValueError, match=r"segment \(seq 1, offset 2, length 2\) in row 0 overlaps"):
        Layout.from_rows([[(0, 0, 3), (1, 2, 2)]], widths=[5])
    with pytest.raises(ValueError, match=r"widths\[1\] is -3: widths must be integers >= 0"):
        Layout.from_rows([[(0, 0, 3)], []], widths=[5, -3])
    with pytest.raises(ValueError, match="row widths must be >= 0, got -3"):
        Layout([0], [0], [3], [0], widths=[5, -3], num_sequences=1)


def test_grids_of_chosen_rows_and_an_empty_hand_made_row():
    lay = Layout.from_rows([[], [(0, 0, 3)], [(1, 0, 1), (2, 1, 1)]], widths=[4, 4, 2], kind="packed")
    assert lay.slot_seq_grid().tolist() == [[PAD] * 4, [0, 0, 0, PAD], [1, 2, PAD, PAD]]
    assert lay.slot_seq_grid(rows=[2]).tolist() == [[1, 2]]  # as wide as the rows asked for
    assert lay.position_grid(rows=[2, 1]).tolist() == [[0, 0, -1, -1], [0, 1, 2, -1]]
    assert lay.cu_seqlens(0).tolist() == [0] and lay.max_seqlen(0) == 0
    assert lay.block_causal_mask(0).shape == (0, 0)
    assert not lay.block_causal_mask(0, include_pads=True).any()
    for bad in (-1, 3):
        with pytest.raises(IndexError, match=f"row {bad} out of range"):
            lay.slot_seq_grid(rows=[bad])
        with pytest.raises(IndexError, match=f"row {bad} out of range"):
            lay.block_causal_mask(bad, include_pads=True)
