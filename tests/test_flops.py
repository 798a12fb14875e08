"""FLOP accounting: hand-computed cases, Llama-3 shapes, FlopCounterMode agreement."""

import types

import numpy as np

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from packviz.flops import (
    varlen_grid,
    Flops, block_sparse_pairs, causal_pairs, compare, compare_as_dict, ideal_speedup, layout_flops,
    sequence_lengths, square_pairs, tiled_causal_pairs, useful_flops,
)
from packviz.shapes import MODELS, ModelShape, get_shape, shape_from_config
from packviz.layout import Layout
from packviz.packing import pack

# A toy shape small enough to count by hand:
#   q_proj 2x2, k_proj 2x2, v_proj 2x2, o_proj 2x2  -> 16 weights
#   gate 2x3, up 2x3, down 3x2                      -> 18 weights
#   lm_head 2x5                                     -> 10 weights
# per token: 2 * (16 + 18) = 68 linear FLOPs + 2 * 10 = 20 lm_head FLOPs
# per (query, key) pair: QK^T 2*2 + AV 2*2 = 8 FLOPs (1 head of dim 2, 1 layer)
TOY = ModelShape("toy", hidden=2, intermediate=3, layers=1, heads=1, kv_heads=1, head_dim=2, vocab=5)
BODY, HEAD, PAIR = 68, 20, 8


def test_toy_unit_costs():
    assert TOY.linear_flops_per_token == BODY
    assert TOY.lm_head_flops_per_token == HEAD
    assert TOY.attention_flops_per_pair == PAIR
    assert TOY.params() == 16 + 18 + 10
    assert TOY.params(lm_head=False) == 34


def test_one_sequence_by_hand():
    # 4 tokens: causal pairs 1 + 2 + 3 + 4 = 10
    f = useful_flops([4], TOY)
    assert f == Flops(4 * (BODY + HEAD), 10 * PAIR)
    assert f.total == 4 * 88 + 80
    assert useful_flops([4], TOY, lm_head="last") == Flops(4 * BODY + 1 * HEAD, 10 * PAIR)
    lay = pack([4], 4, "bfd")
    # one full pack of 4: a masked kernel computes all 16 pairs, causal and varlen only the 10
    assert layout_flops(lay, TOY, "masked") == Flops(4 * (BODY + HEAD), 16 * PAIR)
    assert layout_flops(lay, TOY, "causal") == f
    assert layout_flops(lay, TOY, "varlen") == f


def test_two_equal_sequences_by_hand():
    lengths = [3, 3]
    padded = pack(lengths, 6, "pad", batch_size=2)  # 2 rows x 3 slots, no pad
    packed = pack(lengths, 6, "bfd")                # 1 row of 6 slots
    # padded with a mask: each row its 3x3 square = 9 pairs, 18 in all; 6 slots
    assert layout_flops(padded, TOY, "masked") == Flops(6 * (BODY + HEAD), 18 * PAIR)
    # padded, causal and unmasked: each row its triangle of 6 pairs -- no pads, so exactly the need
    assert layout_flops(padded, TOY, "causal") == Flops(6 * (BODY + HEAD), 12 * PAIR)
    # dense pack: one 6x6 square = 36 pairs (the 18 cross-sequence pairs are masked but computed)
    assert layout_flops(packed, TOY, "masked") == Flops(6 * (BODY + HEAD), 36 * PAIR)
    # varlen and useful: two triangles of 6 pairs
    assert layout_flops(packed, TOY, "varlen") == Flops(6 * (BODY + HEAD), 12 * PAIR)
    assert useful_flops(lengths, TOY) == Flops(6 * (BODY + HEAD), 12 * PAIR)
    r = compare(padded, packed, TOY)
    # equal lengths: the causal padded baseline wastes nothing, so packing can only lose
    assert r["speedup"]["varlen"] == 1.0 and r["wasted"]["padded"] == Flops(0, 0)
    assert r["speedup"]["dense"] == pytest.approx((6 * 88 + 12 * 8) / (6 * 88 + 36 * 8))
    # the masked padded batch computes the upper triangles too
    assert r["speedup"]["padded-masked"] == pytest.approx((6 * 88 + 12 * 8) / (6 * 88 + 18 * 8))
    assert r["wasted"]["varlen"] == Flops(0, 0)


def _llama3_8b_by_hand():
    h, inter, layers, heads, kv, d, vocab = 4096, 14336, 32, 32, 8, 128, 128256
    per_layer = h * heads * d + 2 * h * kv * d + heads * d * h + 3 * h * inter
    return 2 * layers * per_layer, 2 * h * vocab, 4 * heads * d * layers


def test_seed_case_50_and_4000_llama3_8b():
    body, head, pair = _llama3_8b_by_hand()
    lengths = [50, 4000]
    padded = pack(lengths, 4096, "pad", batch_size=2)  # 2 rows of 4000 slots
    packed = pack(lengths, 4096, "bfd")                # 1 row of 4096 slots
    shape = MODELS["llama-3-8b"]
    useful = Flops(4050 * (body + head), (50 * 51 // 2 + 4000 * 4001 // 2) * pair)
    pad = Flops(8000 * (body + head), 2 * (4000 * 4001 // 2) * pair)  # two causal triangles of 4000
    masked = Flops(8000 * (body + head), 2 * 4000 ** 2 * pair)
    dense = Flops(4096 * (body + head), 4096 ** 2 * pair)
    r = compare(padded, packed, shape)
    assert r["useful"] == useful
    assert r["padded"] == pad and r["padded-masked"] == masked
    assert r["dense"] == dense
    assert r["varlen"] == useful
    assert r["wasted"]["padded"] == pad - useful
    assert r["speedup"]["dense"] == pytest.approx(pad.total / dense.total)
    assert r["speedup"]["varlen"] == pytest.approx(pad.total / useful.total)
    # padding 50 up to 4000 roughly doubles the work: 8,000 slots for 4,050 tokens, and two
    # 4,000-token triangles where one and a tiny one are needed -- the ideal is just under 2x
    assert 8000 / 4050 < r["speedup"]["varlen"] < 2.0
    assert 2.0 < r["speedup"]["varlen"] * r["padded-masked"].total / r["padded"].total < 2.2
    # last-token lm_head: one row of the 128256-wide head per sequence
    r_last = compare(padded, packed, shape, lm_head="last")
    assert r_last["useful"].linear == 4050 * body + 2 * head
    assert r_last["padded"].linear == 8000 * body + 2 * head
    assert r_last["dense"].linear == 4096 * body + 2 * head


def test_tiles_by_hand():
    # n = 5, tiles 2x2: query tiles {0,1}, {2,3}, {4} touch 1, 2, 3 key tiles -> 6 tiles of 4 pairs
    assert tiled_causal_pairs([5], (2, 2)) == 24
    assert tiled_causal_pairs([4], (4, 4)) == 16  # one diagonal tile, computed whole
    assert tiled_causal_pairs([7, 7, 3], (1, 1)) == causal_pairs([7, 7, 3]) == 28 + 28 + 6
    # query tile 4, key tile 2, n = 8: query tiles end at rows 3 and 7 -> 2 and 4 key tiles
    assert tiled_causal_pairs([8], (4, 2)) == (2 + 4) * 8
    lay = pack([5], 5, "bfd")
    assert layout_flops(lay, TOY, "varlen", tile=(2, 2)).attention == 24 * PAIR
    with pytest.raises(ValueError, match="varlen"):
        layout_flops(lay, TOY, "masked", tile=(2, 2))
    with pytest.raises(ValueError, match=r"tile must be a pair of positive integers, e.g. \(128, 128\); got \(0, 2\)"):
        tiled_causal_pairs([5], (0, 2))
    with pytest.raises(ValueError, match="tile must be a pair"):
        layout_flops(lay, TOY, "varlen", tile=128)


def test_padded_batches_have_their_own_widths():
    # batches of 2: [1, 5] -> width 5, [2, 2] -> width 2
    lay = pack([1, 5, 2, 2], 8, "pad", batch_size=2)
    f = layout_flops(lay, TOY, "masked")
    assert f == Flops((5 + 5 + 2 + 2) * (BODY + HEAD), (25 + 25 + 4 + 4) * PAIR)
    assert layout_flops(lay, TOY, "causal").attention == (15 + 15 + 3 + 3) * PAIR
    per_batch = [layout_flops(lay, TOY, "masked", rows=b) for b in lay.batches()]
    assert per_batch[0] + per_batch[1] == f
    assert per_batch[1] == Flops(4 * (BODY + HEAD), 8 * PAIR)


def test_partly_filled_pack_pays_for_its_pads_when_dense():
    lay = Layout.from_rows([[(0, 0, 3)]], widths=[8])
    assert layout_flops(lay, TOY, "masked") == Flops(8 * (BODY + HEAD), 64 * PAIR)
    assert layout_flops(lay, TOY, "varlen") == Flops(3 * (BODY + HEAD), 6 * PAIR)
    assert layout_flops(lay, TOY, "masked", lm_head="last") == Flops(8 * BODY + HEAD, 64 * PAIR)
    # block-sparse, blocks of 4: slots 3..7 are a filler sequence; q-block 0 starts in the
    # sequence (1 tile), q-block 1 starts in the filler, which began in block 0 (2 tiles)
    assert layout_flops(lay, TOY, "block-sparse", block=4).attention == 3 * 16 * PAIR


def test_split_sequence_one_lm_head_and_varlen_below_useful():
    lay = pack([10], 4, "bfd", overlong="split")  # chunks 4, 4, 2
    assert sequence_lengths(lay).tolist() == [10]
    assert layout_flops(lay, TOY, "varlen", lm_head="last").linear == 10 * BODY + 1 * HEAD
    # chunks attend only within themselves: 10 + 10 + 3 pairs, not the 55 of the whole sequence
    assert layout_flops(lay, TOY, "varlen").attention == 23 * PAIR
    padded = pack([10], 4, "pad", batch_size=3, overlong="split")
    r = compare(padded, lay, TOY)
    assert r["useful"].attention == 55 * PAIR
    assert r["wasted"]["varlen"].attention < 0


@pytest.mark.parametrize("bad, shown", [([2.5], r"lengths\[0\] is 2.5: lengths must be integers >= 0"),
                                        ([3, -1], r"lengths\[1\] is -1"),
                                        ([[3]], "lengths must be one-dimensional"),
                                        (["3"], r"lengths\[0\] is '3'")])
def test_useful_flops_rejects_lengths_that_are_not_counts(bad, shown):
    with pytest.raises(ValueError, match=shown):
        useful_flops(bad, TOY)
    with pytest.raises(ValueError, match=shown):
        causal_pairs(bad)


def test_compare_rejects_different_tokens():
    with pytest.raises(ValueError, match="different tokens"):
        compare(pack([3, 4], 8, "pad", batch_size=2), pack([3, 5], 8, "bfd"), TOY)


def test_bad_arguments():
    lay = pack([3], 4, "bfd")
    with pytest.raises(ValueError, match="execution"):
        layout_flops(lay, TOY, "sparse")
    with pytest.raises(ValueError, match="lm_head"):
        layout_flops(lay, TOY, "masked", lm_head="first")
    with pytest.raises(ValueError, match="unknown model"):
        get_shape("llama-2-7b")
    with pytest.raises(ValueError):
        ModelShape("bad", 8, 8, 1, heads=3, kv_heads=2, head_dim=4)
    with pytest.raises(ValueError):
        ModelShape("bad", 0, 8, 1, 1, 1, 4)
    with pytest.raises(IndexError):
        layout_flops(lay, TOY, "masked", rows=[1])


def test_ideal_speedup_and_flops_arithmetic():
    a, b = Flops(6, 2), Flops(3, 1)
    assert ideal_speedup(a, b) == 2.0
    assert a - b == b and 2 * b == a and b * 2 == a
    assert a.as_dict() == {"linear": 6, "attention": 2, "total": 8}


# ---------------------------------------------------------------------- shapes
# bf16 weight sizes in GiB from the reference table (published checkpoints)
PUBLISHED_GIB = {"llama-3-8b": 14.96, "llama-3.1-8b": 14.96, "llama-3.2-1b": 2.30,
                 "llama-3.2-3b": 5.98, "llama-3-70b": 131}


@pytest.mark.parametrize("name", sorted(PUBLISHED_GIB))
def test_shapes_match_published_weight_sizes(name):
    gib = MODELS[name].weight_bytes() / 2 ** 30
    assert gib == pytest.approx(PUBLISHED_GIB[name], abs=0.006 if name != "llama-3-70b" else 0.5)


def test_llama3_8b_parameter_count():
    body, head, _ = _llama3_8b_by_hand()
    s = MODELS["llama-3-8b"]
    assert 2 * s.params(lm_head=False) == body and 2 * s.lm_head_params == head
    assert s.total_params() == 8_030_261_248  # the published 8.03B
    assert MODELS["llama-3.2-1b"].tied_embeddings and not MODELS["llama-3-70b"].tied_embeddings
    assert get_shape("Llama-3-8B") is s


def test_shape_from_transformers_config_roundtrip():
    transformers = pytest.importorskip("transformers")
    for name, shape in MODELS.items():
        cfg = transformers.LlamaConfig(**shape.config_kwargs())
        back = shape_from_config(cfg, name=name)
        assert back == shape, name
        assert back.rope_parameters["rope_theta"] == 500000
    assert get_shape(transformers.LlamaConfig(**MODELS["llama-3.2-1b"].config_kwargs())).head_dim == 64


def test_shape_from_duck_typed_config_defaults_head_dim_and_kv():
    cfg = types.SimpleNamespace(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                num_attention_heads=4, vocab_size=100)
    s = shape_from_config(cfg)
    assert (s.head_dim, s.kv_heads, s.tied_embeddings) == (16, 4, False)


# ---------------------------------------------------------------------- properties
lengths_st = st.lists(st.integers(1, 300), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(lengths_st, st.sampled_from(["next-fit", "ffd", "bfd"]), st.integers(1, 8), st.sampled_from(["all", "last"]))
def test_orderings_hold(lengths, strategy, batch, lm_head):
    padded = pack(lengths, 300, "pad", batch_size=batch)
    packed = pack(lengths, 300, strategy)
    r = compare(padded, packed, TOY, lm_head=lm_head)
    assert r["varlen"] == r["useful"]  # nothing split: varlen does exactly the needed work
    assert r["padded"].total >= r["useful"].total and r["dense"].total >= r["useful"].total
    assert r["padded-masked"].total >= r["padded"].total
    assert r["speedup"]["varlen"] >= r["speedup"]["flex"] and r["speedup"]["varlen"] >= r["speedup"]["dense"]
    # varlen on the padded layout (no pads computed) also equals useful
    assert layout_flops(padded, TOY, "varlen", lm_head=lm_head) == r["useful"]
    tiled = layout_flops(packed, TOY, "varlen", lm_head=lm_head, tile=(16, 16))
    full_tiles = int(((-(-packed.seg_length // 16) * 16) ** 2).sum())  # every tile of each n x n square
    assert r["varlen"].attention <= tiled.attention <= full_tiles * PAIR
    assert tiled.linear == r["varlen"].linear
    js = compare_as_dict(r)
    assert js["dense"]["total"] == r["dense"].total




def _block_sparse_by_brute_force(layout, block):
    """Tiles holding an allowed pair, found by drawing each row's mask (gaps as their own sequence)."""
    grid = layout.slot_seq_grid()
    total = 0
    for r in range(layout.num_rows):
        w = int(layout.widths[r])
        ids = grid[r, :w].copy()
        gap = ids == -1
        # each maximal run of uncovered slots is one sequence of its own
        run_id = np.cumsum(np.diff(np.concatenate([[0], gap.astype(int)])) == 1)
        ids[gap] = -1 - run_id[gap]
        q = np.arange(w)
        allowed = (ids[:, None] == ids[None, :]) & (q[None, :] <= q[:, None])
        nb = -(-w // block)
        for i in range(nb):
            for j in range(nb):
                total += bool(allowed[i * block:(i + 1) * block, j * block:(j + 1) * block].any())
    return total * block * block


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=12), st.sampled_from([1, 3, 4, 8, 16]),
       st.sampled_from(["next-fit", "bfd", "pad"]))
def test_block_sparse_matches_the_drawn_mask(lengths, block, strategy):
    lay = pack(lengths, 48, strategy, batch_size=3 if strategy == "pad" else None)
    assert block_sparse_pairs(lay, block) == _block_sparse_by_brute_force(lay, block)
    # between the varlen triangles and the full squares
    assert causal_pairs(lay.seg_length) <= block_sparse_pairs(lay, block)
    if block == 1:
        assert block_sparse_pairs(lay, 1) == causal_pairs(lay.seg_length) + causal_pairs(
            lay.widths - lay.row_real_tokens())


def test_exact_sums_do_not_overflow():
    n = 3_000_000_000
    assert causal_pairs([n, n]) == n * (n + 1)
    assert square_pairs([n]) == n * n


def test_varlen_grid_launches_for_the_longest_sequence_and_leaves_a_short_max_seqlen_uncovered():
    g = varlen_grid([256, 128, 1])  # 2 query blocks per sequence: 6 launched, 2 + 1 + 1 work
    assert g == {"m_blocks": 2, "launched": 6, "working": 4, "uncovered_tokens": 0}
    assert varlen_grid([256, 128, 1], max_seqlen=1000)["working"] == 4  # a generous bound only adds idle blocks
    assert varlen_grid([256, 128, 1], max_seqlen=1000)["launched"] == 8 * 3
    short = varlen_grid([256, 128, 1], max_seqlen=100)  # one block: rows 128.. of the first two never run
    assert short == {"m_blocks": 1, "launched": 3, "working": 3, "uncovered_tokens": 128}
    assert varlen_grid([5], block_m=2)["m_blocks"] == 3
    with pytest.raises(ValueError, match="max_seqlen"):
        varlen_grid([5], max_seqlen=0)
    with pytest.raises(ValueError, match="lengths"):
        varlen_grid([5, 0])


# ---------------------------------------------------------------------- attention share of a forward
def test_attention_share_by_hand():
    from packviz.flops import attention_share

    # 4 tokens: 10 pairs × 8 = 80 attention; linear 4 × 68 + one lm_head row 20 = 292 (last) or 4 × 88 (all)
    assert attention_share([4], TOY).tolist() == [80 / (80 + 292)]
    assert attention_share([4], TOY, lm_head="all").tolist() == [80 / (80 + 352)]
    shares = attention_share(2 ** np.arange(9, 18), "llama-3-8b")
    assert (np.diff(shares) > 0).all()  # grows with the length


@pytest.mark.parametrize("shape", [TOY, "tiny", "llama-3-8b", "llama-3.2-1b"])
@pytest.mark.parametrize("lm_head", ["last", "all"])
def test_attention_crossover_is_the_first_length_where_attention_wins(shape, lm_head):
    from packviz.flops import attention_crossover

    s = get_shape(shape)
    n = np.arange(1, 200_000, dtype=np.int64)
    attention = s.attention_flops_per_pair * n * (n + 1) // 2
    linear = n * s.linear_flops_per_token + (n if lm_head == "all" else 1) * s.lm_head_flops_per_token
    assert attention_crossover(shape, lm_head) == int(n[np.argmax(attention >= linear)])


def test_attention_share_refuses_bad_input():
    from packviz.flops import attention_share

    with pytest.raises(ValueError, match="lengths"):
        attention_share([0, 5], "tiny")
    with pytest.raises(ValueError, match="lm_head"):
        attention_share([5], "tiny", lm_head="first")
