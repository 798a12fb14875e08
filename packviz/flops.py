"""Prefill FLOPs of a layout for Llama-3 shapes, priced as each attention kernel runs it.

numpy only (no torch, transformers, matplotlib): usable in a data pipeline.

Convention: **2 FLOPs per multiply-add** (the convention of ``FlopCounterMode``, MFU
papers and vendor peak numbers). Only matmuls are counted; norms, RoPE, softmax, SiLU
and residual adds are a rounding error at these sizes (and ``FlopCounterMode`` skips them too).

Two costs per forward::

    linear     = tokens_computed × 2·P          P = matmul weights a token passes through
    attention  = pairs_computed  × 4·H·d·layers (QKᵀ: 2·d per head per pair, AV: 2·d again)

where, per layer, ``P_layer = hidden·(H·d)       q_proj
                           + 2·hidden·(H_kv·d)   k_proj, v_proj  (GQA: H_kv < H)
                           + (H·d)·hidden        o_proj
                           + 3·hidden·inter      gate, up, down``
and ``P = layers·P_layer + hidden·vocab`` (lm_head; counted for every token with
``lm_head="all"``, for one token per sequence with ``lm_head="last"``). A (query, key)
pair costs the full ``H`` query heads even with GQA: K/V are shared, the products are not.

What each execution model computes -- the kernel decides, so every number names its kernel.
One row holding sequences A (3 tokens) and B (2) in a slot width of 6 (``x`` = needed,
``o`` = computed but thrown away, ``.`` = skipped)::

     "masked": every pair of     "causal": the W × W          "varlen": each sequence's
     the W × W square            triangle, no mask            own triangle, no pads
        a a a b b _                 a a a b b _                  a a a b b
     a  x o o o o o              a  x . . . . .               a  x . . . .
     a  x x o o o o              a  x x . . . .               a  x x . . .
     a  x x x o o o              a  x x x . . .               a  x x x . .
     b  o o o x o o              b  o o o x . .               b  . . . x .
     b  o o o x x o              b  o o o x x .               b  . . . x x
     _  o o o o o o              _  o o o o o o
     pairs: W² = 36              pairs: W(W+1)/2 = 21         pairs: 3·4/2 + 2·3/2 = 9
     tokens: W = 6               tokens: W = 6                tokens: 5

* ``"causal"``: rows of width W run by a causal kernel with **no mask** (SDPA ``is_causal``,
  flash): W(W+1)/2 pairs per row, linear over all W slots. The padded baseline at its best:
  with right padding every real token sees only itself and what came before it, never a pad.
* ``"masked"``: rows run with a dense mask (SDPA / eager given a (B, 1, L, L) padding or
  block-diagonal mask): all W² pairs of every row, linear over all slots. A padded batch with
  its padding mask (what ``generate()`` runs) and a packed row with HF's dense block-diagonal
  mask (the ``dense`` method) both cost this.
* ``"block-sparse"``: FlexAttention with a ``BlockMask`` (block size ``block``, 128 by
  default): every block of the row's block grid that holds at least one allowed pair is
  computed in full, empty blocks are skipped. Slots not covered by a segment (a packed row
  filled up to C) count as a sequence of their own, as a filler segment runs.
* ``"varlen"``: a variable-length kernel (``flash_attn_varlen_func``, ``varlen_attn``) given
  ``cu_seqlens``: only the real tokens, and for each segment of n tokens only its causal
  triangle ``n(n+1)/2``. With ``tile=(bq, bk)`` it counts whole ``bq × bk`` tiles that touch
  the triangle (what a tiled kernel really multiplies: diagonal tiles are full work)::

        n = 5, tile (2, 2)           tiles touched: 1 + 2 + 3 = 6  -> 6·4 = 24 pairs
        k: 01 23 4_                  (triangle alone: 15 pairs)
        q01 [x.][  ][  ]
        q23 [xx][x.][  ]
        q4_ [xx][xx][x ]

* useful: what the sequences alone need, whatever the layout: each sequence's triangle
  and its own tokens (:func:`useful_flops`).

What ``torch.utils.flop_counter.FlopCounterMode`` reports (torch 2.13) for the same
forwards: it applies a formula to each op's tensor shapes, not to the work the kernel does.
Eager attention's QKᵀ and AV ``bmm`` s are counted over the whole square, so an eager padded
or dense-packed forward matches ``"masked"`` here exactly.
CUDA SDPA/flash kernels are also counted as the full square (causality ignored); varlen
flash ops as each sequence's full *square* (not triangle); **CPU SDPA is counted as zero**.
So FlopCounterMode tells you what a dense kernel does, never what a causal one needs.

``lm_head="last"`` (a serving engine computes logits only at each prompt's last token):
one lm_head row per *sequence*, whatever the execution model. A sequence split into
chunks (``overlong="split"``) still gets one, charged to its last segment in layout order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .checks import exact_sum, instance_of, int_array, int_pair, is_integer, items, one_of, positive_int, show
from .layout import as_layout
from .shapes import get_shape

EXECUTIONS = ("causal", "masked", "block-sparse", "varlen")
FLEX_BLOCK = 128
"""FlexAttention's default ``BlockMask`` block size (``torch.nn.attention.flex_attention``)."""
LM_HEAD = ("all", "last")


# ---------------------------------------------------------------------- FLOP counts
@dataclass(frozen=True)
class Flops:
    """FLOPs of a forward, split into linear (matmul weights, lm_head included) and attention.

    Python ints (exact; no overflow at any size). ``a + b``, ``a - b`` and ``k * a`` (k an integer) work.

    >>> Flops(3, 1) * 2 + Flops(1, 0)
    Flops(linear=7, attention=2)
    """

    linear: int
    attention: int

    def __post_init__(self) -> None:
        for attr in ("linear", "attention"):
            if not is_integer(getattr(self, attr)):
                raise ValueError(f"Flops.{attr} must be an integer (FLOPs are exact counts), "
                                 f"got {show(getattr(self, attr))}")
            object.__setattr__(self, attr, int(getattr(self, attr)))

    @property
    def total(self) -> int:
        return self.linear + self.attention

    def __add__(self, other: "Flops") -> "Flops":
        other = as_flops("the other term of Flops + ...", other)
        return Flops(self.linear + other.linear, self.attention + other.attention)

    def __sub__(self, other: "Flops") -> "Flops":
        other = as_flops("the other term of Flops - ...", other)
        return Flops(self.linear - other.linear, self.attention - other.attention)

    def __mul__(self, k) -> "Flops":
        if not is_integer(k):
            raise TypeError(f"Flops * k needs an integer k (FLOPs are exact counts), got {show(k)}; "
                            "scale .total for a fraction")
        return Flops(self.linear * k, self.attention * k)

    __rmul__ = __mul__

    def as_dict(self) -> dict:
        return {"linear": self.linear, "attention": self.attention, "total": self.total}


def as_flops(name: str, value) -> Flops:
    """``value`` if it is a :class:`Flops`, else ``TypeError`` naming ``name``."""
    return instance_of(name, value, Flops, "a Flops (useful_flops or layout_flops gives one)")


def causal_pairs(lengths) -> int:
    """Σ n(n+1)/2 over lengths (N,): (query, key) pairs of each sequence's causal triangle. Exact (Python ints).

    >>> causal_pairs([3, 2])
    9
    """
    n = int_array("lengths", lengths, minimum=0, allow_empty=True)
    return _exact_sum(n, lambda x: x * (x + 1) // 2)


def square_pairs(widths) -> int:
    """Σ W² over widths (R,): (query, key) pairs of every row's full square (a dense mask). Exact.

    >>> square_pairs([6])
    36
    """
    return _exact_sum(int_array("widths", widths, minimum=0, allow_empty=True), lambda x: x * x)


def _exact_sum(n: np.ndarray, f) -> int:
    """``Σ f(n)`` as a Python int: in int64 while it cannot overflow, in Python integers beyond."""
    if not n.size:
        return 0
    if int(n.max()) < 2**31:  # f(n) < 2**62: an int64 sum of up to 2 entries per... stays exact
        vals = f(n.astype(np.int64))
        if int(vals.max()) < 2**62 // max(len(vals), 1):
            return int(vals.sum())
    return sum(f(int(x)) for x in n.tolist())


def block_sparse_pairs(layout, block: int = FLEX_BLOCK, rows=None) -> int:
    """Pairs a block-sparse kernel (FlexAttention) computes: whole ``block × block`` tiles of each
    row's grid that hold an allowed (same sequence, causal) pair, ``block²`` each.

    For query block i, the allowed keys start at the first token of the sequence that holds
    block i's first slot, so the non-empty key blocks are ``m_i .. i`` with m_i that
    sequence's first block. Slots no segment covers count as one sequence per gap (a filler).

    >>> from packviz.layout import Layout
    >>> row = Layout.from_rows([[(0, 0, 3), (1, 3, 2)]], widths=[6])   # A A A B B _
    >>> block_sparse_pairs(row, block=2)   # q-blocks 0,1,2 start in A, A, B: 1 + 2 + 2 tiles
    20
    """
    layout = as_layout("layout", layout)
    block = positive_int("block", block)
    row_ids = np.arange(layout.num_rows) if rows is None else np.unique(layout.check_rows(rows))
    return _block_sparse_rows(layout, row_ids, block) * block * block


def _block_sparse_rows(layout, row_ids: np.ndarray, block: int) -> int:
    """Σ over ``row_ids`` of the non-empty tiles (see :func:`block_sparse_pairs`).

    Per piece of a row -- a segment, or a gap a filler would take -- spanning slots [s, e):
    the query blocks whose first slot lies in it, i = ⌈s/block⌉ .. ⌈e/block⌉ - 1, each need
    key blocks ⌊s/block⌋ .. i. An arithmetic series per piece: memory and time grow with the
    segments, not with the row width.
    """
    widths = layout.widths
    keep = np.isin(layout.seg_row, row_ids)
    r, off = layout.seg_row[keep], layout.seg_offset[keep]
    ends = off + layout.seg_length[keep]  # <= the row's width: no overflow
    next_start = np.where(np.append(r[1:] == r[:-1], False), np.append(off[1:], 0), widths[r])
    gap = ends < next_start
    slot0 = row_ids[widths[row_ids] > 0]  # every row's slot 0 starts a sequence or a gap
    rows = np.concatenate([r, r[gap], slot0])
    starts = np.concatenate([off, ends[gap], np.zeros(len(slot0), dtype=np.int64)])
    if not len(rows):  # no row with a slot
        return 0
    order = np.lexsort((starts, rows))
    rows, starts = rows[order], starts[order]
    first = np.append(True, (rows[1:] != rows[:-1]) | (starts[1:] != starts[:-1]))  # drop repeats
    rows, starts = rows[first], starts[first]
    stops = np.where(np.append(rows[1:] != rows[:-1], True), widths[rows], np.append(starts[1:], 0))
    if max(int(widths.max(initial=0)), block) >= 2**30:  # the products below could pass 2**63: Python ints
        starts, stops = starts.astype(object), stops.astype(object)
    lo, hi = -(-starts // block), -(-stops // block) - 1
    k = np.maximum(hi - lo + 1, 0)
    return exact_sum(k * (1 - starts // block) + (lo + hi) * k // 2)


def tiled_causal_pairs(lengths, tile) -> int:
    """Pairs a tiled causal kernel multiplies: whole ``bq × bk`` tiles touching each triangle.

    Query tile i (rows ``i·bq .. min((i+1)·bq, n) - 1``) needs key tiles ``0 .. ⌊last_row / bk⌋``.
    Partial edge tiles count in full (the kernel computes them, masking the rest).

    >>> tiled_causal_pairs([5], (2, 2))      # tiles touched: 1 + 2 + 3 = 6, 4 pairs each
    24
    """
    bq, bk = int_pair("tile", tile)
    values, counts = np.unique(int_array("lengths", lengths, minimum=0, allow_empty=True), return_counts=True)
    total = 0
    for n, c in zip(values.tolist(), counts.tolist()):
        if n == 0:
            continue
        q_tiles = -(-n // bq)
        # full query tiles i < q - 1 end on row (i + 1)·bq - 1; the last one on row n - 1
        tiles = _floor_sum(q_tiles - 1, bk, bq, bq - 1) + (q_tiles - 1) + (n - 1) // bk + 1
        total += c * tiles * bq * bk
    return total


def _floor_sum(n: int, m: int, a: int, b: int) -> int:
    """Σ_{i=0}^{n-1} ⌊(a·i + b) / m⌋ for integers n, a, b >= 0, m >= 1, exactly, in O(log) steps
    (the Euclid-like reduction of the AtCoder Library's ``floor_sum``).

    >>> _floor_sum(4, 3, 2, 1) == sum((2 * i + 1) // 3 for i in range(4))
    True
    """
    total = 0
    while n > 0:
        if a >= m:
            total += n * (n - 1) // 2 * (a // m)
            a %= m
        if b >= m:
            total += n * (b // m)
            b %= m
        y_max = a * n + b
        if y_max < m:
            break
        n, b, m, a = y_max // m, y_max % m, a, m
    return total


def _lm_head_tokens(num_tokens: int, num_sequences: int, lm_head: str) -> int:
    return num_tokens if lm_head == "all" else num_sequences


def useful_flops(lengths, shape, lm_head: str = "all") -> Flops:
    """FLOPs the sequences alone need: their own tokens, each one's causal triangle.

    ``lengths`` are whole sequences (a split sequence counts as one: its triangle spans all
    of it). ``lm_head="last"``: one lm_head row per sequence.
    """
    one_of("lm_head", lm_head, LM_HEAD)
    shape = get_shape(shape)
    n = int_array("lengths", lengths, minimum=0, allow_empty=True)
    tokens = exact_sum(n)
    head_rows = _lm_head_tokens(tokens, int((n > 0).sum()), lm_head)
    linear = tokens * shape.linear_flops_per_token + head_rows * shape.lm_head_flops_per_token
    return Flops(linear, causal_pairs(n) * shape.attention_flops_per_pair)


def attention_share(lengths, shape, lm_head: str = "last") -> np.ndarray:
    """Share of a prefill's FLOPs that is attention, one sequence alone at each length, shape (K,).

    A sequence of n tokens needs ``n·2P`` linear FLOPs (plus the lm_head: one row with
    ``lm_head="last"``, n rows with ``"all"``) and ``n(n+1)/2 · 4·H·d·layers`` attention FLOPs:
    the share grows with n, slowly while the linear term dominates.

    >>> [round(float(s), 3) for s in attention_share([1024, 8192, 131072], "llama-3-8b")]
    [0.019, 0.133, 0.711]
    """
    n = int_array("lengths", lengths, minimum=1)
    shape = get_shape(shape)
    out = np.empty(len(n))
    for i, length in enumerate(n.tolist()):
        f = useful_flops([length], shape, lm_head)
        out[i] = f.attention / f.total
    return out


def attention_crossover(shape, lm_head: str = "last") -> int:
    """The shortest sequence whose causal attention costs at least its linear layers (a prefill alone).

    Solves ``A·n(n+1)/2 = n·L + lm_head`` (A: FLOPs per pair, L: linear FLOPs per token),
    then steps to the exact integer.

    >>> attention_crossover("llama-3-8b")
    53248
    """
    one_of("lm_head", lm_head, LM_HEAD)
    shape = get_shape(shape)
    a = shape.attention_flops_per_pair
    per_token = shape.linear_flops_per_token + (shape.lm_head_flops_per_token if lm_head == "all" else 0)
    once = shape.lm_head_flops_per_token if lm_head == "last" else 0
    b = a / 2 - per_token
    n = max(1, int((-b + math.sqrt(b * b + 2 * a * once)) / a))

    def attention_wins(k: int) -> bool:
        f = useful_flops([k], shape, lm_head)
        return f.attention >= f.linear

    while not attention_wins(n):
        n += 1
    while n > 1 and attention_wins(n - 1):
        n -= 1
    return n


def sequence_lengths(layout) -> np.ndarray:
    """Length of each sequence present in a layout (its chunks summed; dropped tokens excluded), shape (N,)."""
    layout = as_layout("layout", layout)
    ids, inverse = np.unique(layout.seg_seq, return_inverse=True)
    out = np.zeros(len(ids), dtype=np.int64)
    np.add.at(out, inverse, layout.seg_length)  # int64: bincount's float weights would round past 2**53
    return out


def _select_rows(layout, rows):
    """Segment mask and widths for a subset of rows (``None``: all)."""
    if rows is None:
        return np.ones(layout.num_segments, dtype=bool), layout.widths
    rows = np.unique(layout.check_rows(rows))
    return np.isin(layout.seg_row, rows), layout.widths[rows]


def _last_segments(layout) -> np.ndarray:
    """Bool per segment: the last segment (in layout order) of its sequence."""
    rev = layout.seg_seq[::-1]
    _, first_in_rev = np.unique(rev, return_index=True)
    last = np.zeros(layout.num_segments, dtype=bool)
    last[layout.num_segments - 1 - first_in_rev] = True
    return last


def layout_flops(layout, shape, execution: str, lm_head: str = "all", tile=None, rows=None,
                 block: int = FLEX_BLOCK) -> Flops:
    """Prefill FLOPs of running ``layout`` under ``execution`` (see the module docstring).

    Parameters
    ----------
    layout : :class:`~packviz.layout.Layout`
    shape : :class:`~packviz.shapes.ModelShape`, a name (:func:`packviz.shapes.get_shape`), or a LlamaConfig
    execution : one of :data:`EXECUTIONS`
        ``"causal"`` (no mask, triangle per row), ``"masked"`` (dense mask, square per row),
        ``"block-sparse"`` (FlexAttention tiles), ``"varlen"`` (real tokens, triangle per segment).
    lm_head : ``"all"`` (every computed slot) | ``"last"`` (one per sequence)
    tile : ``(block_q, block_k)`` or None; the causal kernels (``"varlen"``, ``"causal"``) only:
        count whole kernel tiles, as a tiled flash kernel computes them.
    rows : iterable of row indices or None (all): FLOPs of just these rows (one batch).
    block : the BlockMask block size of ``"block-sparse"``.

    >>> from packviz.layout import Layout
    >>> row = Layout.from_rows([[(0, 0, 3), (1, 3, 2)]], widths=[6])   # A A A B B _
    >>> [layout_flops(row, "tiny", e).attention // get_shape("tiny").attention_flops_per_pair
    ...  for e in ("masked", "causal", "varlen")]
    [36, 21, 9]
    """
    layout = as_layout("layout", layout)
    one_of("execution", execution, EXECUTIONS)
    one_of("lm_head", lm_head, LM_HEAD)
    tile = None if tile is None else int_pair("tile", tile)
    if tile is not None and execution not in ("varlen", "causal"):
        raise ValueError(f"tile applies to the causal kernels only (varlen, causal), not {execution!r}; "
                         "pass tile=None")
    shape = get_shape(shape)
    seg, widths = _select_rows(layout, rows)
    lengths = layout.seg_length[seg]
    if execution == "varlen":
        tokens = exact_sum(lengths)
        pairs = tiled_causal_pairs(lengths, tile) if tile else causal_pairs(lengths)
    else:
        tokens = exact_sum(widths)
        if execution == "masked":
            pairs = square_pairs(widths)
        elif execution == "causal":
            pairs = tiled_causal_pairs(widths, tile) if tile else causal_pairs(widths)
        else:
            pairs = block_sparse_pairs(layout, block, rows)
    if lm_head == "all":
        head_rows = tokens
    else:
        head_rows = int((_last_segments(layout) & seg).sum())
    linear = tokens * shape.linear_flops_per_token + head_rows * shape.lm_head_flops_per_token
    return Flops(linear, pairs * shape.attention_flops_per_pair)


def ideal_speedup(baseline: Flops, other: Flops) -> float:
    """``baseline.total / other.total``: the speed-up if time were proportional to FLOPs."""
    baseline, other = as_flops("baseline", baseline), as_flops("other", other)
    return baseline.total / other.total if other.total else float("inf")


def waste_fraction(spent: Flops, useful: Flops) -> float:
    """Share of ``spent`` that the sequences did not need: ``1 - useful/spent``."""
    spent, useful = as_flops("spent", spent), as_flops("useful", useful)
    return 1 - useful.total / spent.total if spent.total else 0.0


PRICING = {
    "padded": ("padded", "causal"),
    "padded-masked": ("padded", "masked"),
    "dense": ("packed", "masked"),
    "flex": ("packed", "block-sparse"),
    "varlen": ("packed", "varlen"),
}
"""How each way of running the same sequences is priced: ``{name: (layout, execution)}``.

``padded`` is the padded batch at its best (causal kernel, no mask) -- the baseline every
speed-up is measured against; ``padded-masked`` is the same batch with its padding mask (what
``generate()`` runs), reported beside it, never instead of it."""


def same_sequences(layout_a, layout_b, names=("padded", "packed")) -> None:
    """``ValueError`` unless both layouts hold the same sequences with the same tokens each.

    Equal token totals are not enough: ``[3, 5]`` and ``[5, 3]`` hold 8 tokens each, but not
    the same sequences.

    >>> from packviz.packing import pack
    >>> same_sequences(pack([3, 5], 8, "pad", batch_size=2), pack([5, 3], 8, "bfd"))
    Traceback (most recent call last):
    ...
    ValueError: the layouts hold different tokens: sequence 0 has 3 in the padded layout, 5 in the packed one; build both from the same lengths and overlong policy (packviz.packing.pad_and_pack)
    """
    if isinstance(names, str) or len(items("names", names, "a pair of names")) != 2:
        raise ValueError(f"names must be a pair of names, e.g. ('padded', 'packed'); got {show(names)}")
    layout_a, layout_b = as_layout(f"layout_{names[0]}", layout_a), as_layout(f"layout_{names[1]}", layout_b)
    ids_a, ids_b = np.unique(layout_a.seg_seq), np.unique(layout_b.seg_seq)
    len_a, len_b = sequence_lengths(layout_a), sequence_lengths(layout_b)
    if np.array_equal(ids_a, ids_b) and np.array_equal(len_a, len_b):
        return
    ids = np.union1d(ids_a, ids_b)
    tokens = np.zeros((2, len(ids)), dtype=np.int64)
    tokens[0, np.searchsorted(ids, ids_a)], tokens[1, np.searchsorted(ids, ids_b)] = len_a, len_b
    i = int(np.flatnonzero(tokens[0] != tokens[1])[0])
    raise ValueError(f"the layouts hold different tokens: sequence {ids[i]} has {tokens[0, i]} in the {names[0]} "
                     f"layout, {tokens[1, i]} in the {names[1]} one; build both from the same lengths and overlong "
                     "policy (packviz.packing.pad_and_pack)")


def compare(layout_padded, layout_packed, shape, lm_head: str = "all", tile=None) -> dict:
    """FLOPs of the same sequences run every way of :data:`PRICING`, against what they need.

    Returns a dict::

        {"model": name, "lm_head": lm_head,
         "useful": Flops,                                   # the sequences alone
         "padded" | "padded-masked" | "dense" | "flex" | "varlen": Flops,
         "wasted": {way: Flops},                            # spent - useful
         "waste_fraction": {way: float},
         "speedup": {way: float, "useful": float}}          # ideal, over "padded"

    ``varlen`` runs the packed layout's segments (same FLOPs as varlen on the padded one
    unless sequences were split: then chunks lose cross-chunk attention and ``varlen`` can
    come out *below* useful). Use :func:`compare_as_dict` for a JSON-ready version.
    """
    shape = get_shape(shape)
    same_sequences(layout_padded, layout_packed)
    if not layout_packed.num_segments:
        raise ValueError("the layouts hold no tokens: compare needs at least one sequence (pad_and_pack of its lengths)")
    layouts = {"padded": layout_padded, "packed": layout_packed}
    useful = useful_flops(sequence_lengths(layout_packed), shape, lm_head)
    spent = {way: layout_flops(layouts[lay], shape, execution, lm_head,
                               tile=tile if execution in ("varlen", "causal") else None)
             for way, (lay, execution) in PRICING.items()}
    base = spent["padded"]
    return {
        "model": shape.name,
        "lm_head": lm_head,
        "useful": useful,
        **spent,
        "wasted": {k: v - useful for k, v in spent.items()},
        "waste_fraction": {k: waste_fraction(v, useful) for k, v in spent.items()},
        "speedup": {**{k: ideal_speedup(base, v) for k, v in spent.items()}, "useful": ideal_speedup(base, useful)},
    }


def compare_as_dict(result: dict) -> dict:
    """:func:`compare`'s result with every :class:`Flops` as ``{linear, attention, total}`` (JSON-ready)."""
    if not (isinstance(result, dict) and "useful" in result):
        raise TypeError(f"result must be the dict compare() returns, got {type(result).__name__} {show(result)}")
    def conv(v):
        if isinstance(v, Flops):
            return v.as_dict()
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v
    return conv(result)


def varlen_grid(lengths, max_seqlen: int | None = None, block_m: int = FLEX_BLOCK) -> dict:
    """The query blocks a flash-attention varlen forward launches for one packed stream, per head.

    A varlen kernel gets the stream and ``cu_seqlens``, but its launch grid is fixed before any
    thread reads ``cu_seqlens``: ``(⌈max_seqlen / block_m⌉, N, H)`` thread blocks (flash-attn 2,
    ``flash_fwd_launch_template.h``: ``grid(num_m_block, b, h)`` with ``seqlen_q = max_seqlen_q``;
    ``block_m`` = 128 for head_dim 128 on A100 / H100). A block past its sequence's end returns
    at once (``flash_fwd_kernel.h``). ``max_seqlen`` also sizes the split-KV scratch
    (``[splits, N, H, max_seqlen_q]``). It is never checked against ``cu_seqlens`` (that would
    cost a GPU-to-CPU sync).

    ``lengths``: (N,) sequence lengths of the stream; ``max_seqlen``: what the caller passes
    (default: the true longest). Returns ints: ``m_blocks`` (grid x), ``launched`` (m_blocks · N),
    ``working`` (blocks that hold a query), ``uncovered_tokens`` (queries no block computes: > 0
    only when ``max_seqlen`` is below the longest length -- their output is never written).

    Pitfalls
    --------
    * A ``max_seqlen`` below the longest sequence raises no error: the tail of every longer
      sequence is left uncomputed. Derive it from the same lengths as ``cu_seqlens``.

    >>> varlen_grid([300, 100, 20])            # 3 blocks each launched, 3 + 1 + 1 work
    {'m_blocks': 3, 'launched': 9, 'working': 5, 'uncovered_tokens': 0}
    >>> varlen_grid([300, 100, 20], max_seqlen=128)["uncovered_tokens"]   # 300 - 128
    172
    """
    n = int_array("lengths", lengths, minimum=1)
    block_m = positive_int("block_m", block_m)
    longest = int(n.max())
    max_seqlen = longest if max_seqlen is None else positive_int("max_seqlen", max_seqlen)
    m_blocks = -(-max_seqlen // block_m)
    covered = m_blocks * block_m
    # past the longest length a larger block or bound changes nothing: clamp so numpy stays in int64
    per_seq = -(-n // min(block_m, longest))
    return {
        "m_blocks": int(m_blocks),
        "launched": int(m_blocks * n.size),
        "working": exact_sum(np.minimum(per_seq, min(m_blocks, longest))),
        "uncovered_tokens": exact_sum(np.maximum(n - min(covered, longest), 0)),
    }
