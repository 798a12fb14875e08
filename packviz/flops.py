"""Prefill FLOPs of a layout for Llama-3 shapes: useful, padded, dense-packed, varlen.

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

What each execution model computes, for one row holding sequences A (3 tokens) and B (2)
in a slot width of 6 (``x`` = needed, ``o`` = computed but masked away, ``.`` = skipped)::

     padded / dense (every pair of     varlen (each sequence's own      useful
     the W × W square is computed)     causal triangle, no pads)
        a a a b b _                       a a a b b                      same as varlen
     a  x o o o o o                    a  x . . . .                      (the sequences
     a  x x o o o o                    a  x x . . .                       alone, each its
     a  x x x o o o                    a  x x x . .                       triangle n(n+1)/2)
     b  o o o x o o                    b  . . . x .
     b  o o o x x o                    b  . . . x x
     _  o o o o o o
     pairs: W² = 36                    pairs: 3·4/2 + 2·3/2 = 9
     tokens: W = 6                     tokens: 5

* ``"padded"``: a padded batch (B rows, each of the batch's longest length L) runs as a
  B × L rectangle; every row computes all L² pairs (an eager/SDPA kernel with a padding
  mask still multiplies the masked entries) and the linear layers run over all B·L slots.
* ``"dense"``: a packed row of capacity C run with a dense block-diagonal mask (HF's SDPA
  or eager path with ``position_ids``): the full C × C square, and linear over all C slots
  (a partly filled pack is padded up to C). Same rule as ``"padded"``, applied to packs.
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
forwards: eager attention's QKᵀ and AV ``bmm`` s are counted over the whole square, so an
eager padded or dense-packed forward matches ``"padded"``/``"dense"`` here exactly.
CUDA SDPA/flash kernels are also counted as the full square (causality ignored); varlen
flash ops as each sequence's full *square* (not triangle); **CPU SDPA is counted as zero**.
So FlopCounterMode tells you what a dense kernel does, never what a causal one needs.

``lm_head="last"`` (a serving engine computes logits only at each prompt's last token):
one lm_head row per *sequence*, whatever the execution model. A sequence split into
chunks (``overlong="split"``) still gets one, charged to its last segment in layout order.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from .shapes import get_shape

EXECUTIONS = ("padded", "dense", "varlen")
LM_HEAD = ("all", "last")


# ---------------------------------------------------------------------- FLOP counts
@dataclass(frozen=True)
class Flops:
    """FLOPs of a forward, split into linear (matmul weights, lm_head included) and attention.

    Python ints (exact; no overflow at any size). ``a + b`` and ``k * a`` work.
    """

    linear: int
    attention: int

    @property
    def total(self) -> int:
        return self.linear + self.attention

    def __add__(self, other: "Flops") -> "Flops":
        return Flops(self.linear + other.linear, self.attention + other.attention)

    def __sub__(self, other: "Flops") -> "Flops":
        return Flops(self.linear - other.linear, self.attention - other.attention)

    def __mul__(self, k) -> "Flops":
        return Flops(self.linear * k, self.attention * k)

    __rmul__ = __mul__

    def as_dict(self) -> dict:
        return {"linear": self.linear, "attention": self.attention, "total": self.total}


def _check_lm_head(lm_head: str) -> None:
    if lm_head not in LM_HEAD:
        raise ValueError(f"lm_head must be one of {LM_HEAD}, got {lm_head!r}")


def _check_tile(tile):
    if tile is None:
        return None
    try:
        bq, bk = tile
    except (TypeError, ValueError):
        raise ValueError(f"tile must be a pair (block_q, block_k), got {tile!r}") from None
    for v in (bq, bk):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0:
            raise ValueError(f"tile sizes must be positive integers, got {tile!r}")
    return int(bq), int(bk)


def causal_pairs(lengths) -> int:
    """Σ n(n+1)/2: (query, key) pairs of each sequence's causal triangle."""
    n = np.asarray(lengths, dtype=np.int64)
    return int((n * (n + 1) // 2).sum())


def tiled_causal_pairs(lengths, tile) -> int:
    """Pairs a tiled causal kernel multiplies: whole ``bq × bk`` tiles touching each triangle.

    Query tile i (rows ``i·bq .. min((i+1)·bq, n) - 1``) needs key tiles ``0 .. ⌊last_row / bk⌋``.
    Partial edge tiles count in full (the kernel computes them, masking the rest).
    """
    bq, bk = _check_tile(tile)
    values, counts = np.unique(np.asarray(lengths, dtype=np.int64), return_counts=True)
    total = 0
    for n, c in zip(values.tolist(), counts.tolist()):
        q_tiles = -(-n // bq)
        last_row = np.minimum((np.arange(q_tiles, dtype=np.int64) + 1) * bq, n) - 1
        tiles = int((last_row // bk + 1).sum())
        total += c * tiles * bq * bk
    return total


def _lm_head_tokens(num_tokens: int, num_sequences: int, lm_head: str) -> int:
    return num_tokens if lm_head == "all" else num_sequences


def useful_flops(lengths, shape, lm_head: str = "all") -> Flops:
    """FLOPs the sequences alone need: their own tokens, each one's causal triangle.

    ``lengths`` are whole sequences (a split sequence counts as one: its triangle spans all
    of it). ``lm_head="last"``: one lm_head row per sequence.
    """
    _check_lm_head(lm_head)
    shape = get_shape(shape)
    n = np.asarray(lengths)
    if n.ndim != 1 or (n.size and n.dtype.kind not in "iu") or (n < 0).any():
        raise ValueError(f"lengths must be a 1-D array of non-negative integers, got {_preview(lengths)}")
    n = n.astype(np.int64)
    tokens = int(n.sum())
    head_rows = _lm_head_tokens(tokens, int((n > 0).sum()), lm_head)
    linear = tokens * shape.linear_flops_per_token + head_rows * shape.lm_head_flops_per_token
    return Flops(linear, causal_pairs(n) * shape.attention_flops_per_pair)


def _preview(values) -> str:
    text = repr(values.tolist() if isinstance(values, np.ndarray) else values)
    return text if len(text) <= 80 else text[:77] + "..."


def sequence_lengths(layout) -> np.ndarray:
    """Length of each sequence present in a layout (its chunks summed; dropped tokens excluded)."""
    ids, inverse = np.unique(layout.seg_index, return_inverse=True)
    return np.bincount(inverse, weights=layout.seg_length, minlength=len(ids)).astype(np.int64)


def _select_rows(layout, rows):
    """Segment mask and widths for a subset of rows (``None``: all)."""
    if rows is None:
        return np.ones(layout.num_segments, dtype=bool), layout.widths
    rows = np.unique(np.asarray(list(rows) if isinstance(rows, range) else rows, dtype=np.int64))
    if len(rows) and (rows.min() < 0 or rows.max() >= layout.num_rows):
        raise IndexError(f"rows out of range: layout has {layout.num_rows} rows")
    return np.isin(layout.seg_row, rows), layout.widths[rows]


def _last_segments(layout) -> np.ndarray:
    """Bool per segment: the last segment (in layout order) of its sequence."""
    rev = layout.seg_index[::-1]
    _, first_in_rev = np.unique(rev, return_index=True)
    last = np.zeros(layout.num_segments, dtype=bool)
    last[layout.num_segments - 1 - first_in_rev] = True
    return last


def layout_flops(layout, shape, execution: str, lm_head: str = "all", tile=None, rows=None) -> Flops:
    """Prefill FLOPs of running ``layout`` under ``execution`` (see the module docstring).

    Parameters
    ----------
    layout : :class:`~packviz.layout.Layout`
    shape : :class:`~packviz.shapes.ModelShape`, a name (:func:`packviz.shapes.get_shape`), or a LlamaConfig
    execution : ``"padded"`` | ``"dense"`` | ``"varlen"``
        ``"padded"`` and ``"dense"`` apply the same rule (every row: width² pairs, width
        slots through the linear layers) -- to a padded batch and to packs respectively.
    lm_head : ``"all"`` (every computed slot) | ``"last"`` (one per sequence)
    tile : ``(block_q, block_k)`` or None; varlen only: count whole kernel tiles.
    rows : iterable of row indices or None (all): FLOPs of just these rows (one batch).
    """
    if execution not in EXECUTIONS:
        raise ValueError(f"execution must be one of {EXECUTIONS}, got {execution!r}")
    _check_lm_head(lm_head)
    tile = _check_tile(tile)
    if tile is not None and execution != "varlen":
        raise ValueError("tile applies to the varlen execution only")
    shape = get_shape(shape)
    seg, widths = _select_rows(layout, rows)
    lengths = layout.seg_length[seg]
    if execution == "varlen":
        tokens = int(lengths.sum())
        pairs = tiled_causal_pairs(lengths, tile) if tile else causal_pairs(lengths)
    else:
        tokens = int(widths.sum())
        pairs = int((widths * widths).sum())
    if lm_head == "all":
        head_rows = tokens
    else:
        head_rows = int((_last_segments(layout) & seg).sum())
    linear = tokens * shape.linear_flops_per_token + head_rows * shape.lm_head_flops_per_token
    return Flops(linear, pairs * shape.attention_flops_per_pair)


def ideal_speedup(baseline: Flops, other: Flops) -> float:
    """``baseline.total / other.total``: the speed-up if time were proportional to FLOPs."""
    return baseline.total / other.total if other.total else float("inf")


def waste_fraction(spent: Flops, useful: Flops) -> float:
    """Share of ``spent`` that the sequences did not need: ``1 - useful/spent``."""
    return 1 - useful.total / spent.total if spent.total else 0.0


def compare(layout_padded, layout_packed, shape, lm_head: str = "all", tile=None) -> dict:
    """Useful vs padded vs dense-packed vs varlen FLOPs of the same sequences.

    Returns a dict::

        {"model": name,
         "useful" | "padded" | "dense" | "varlen": Flops,
         "wasted": {"padded" | "dense" | "varlen": Flops},       # spent - useful
         "waste_fraction": {"padded" | "dense" | "varlen": float},
         "speedup": {"dense": float, "varlen": float, "useful": float}}   # over padded

    ``varlen`` runs the packed layout's segments (same FLOPs as varlen on the padded one
    unless sequences were split: then chunks lose cross-chunk attention and ``varlen`` can
    come out *below* useful). Use :func:`compare_as_dict` for a JSON-ready version.
    """
    shape = get_shape(shape)
    if layout_padded.real_tokens != layout_packed.real_tokens:
        raise ValueError(f"the layouts hold different tokens ({layout_padded.real_tokens} padded vs "
                         f"{layout_packed.real_tokens} packed): build both from the same lengths and overlong policy")
    useful = useful_flops(sequence_lengths(layout_packed), shape, lm_head)
    spent = {
        "padded": layout_flops(layout_padded, shape, "padded", lm_head),
        "dense": layout_flops(layout_packed, shape, "dense", lm_head),
        "varlen": layout_flops(layout_packed, shape, "varlen", lm_head, tile=tile),
    }
    return {
        "model": shape.name,
        "lm_head": lm_head,
        "useful": useful,
        **spent,
        "wasted": {k: v - useful for k, v in spent.items()},
        "waste_fraction": {k: waste_fraction(v, useful) for k, v in spent.items()},
        "speedup": {
            "dense": ideal_speedup(spent["padded"], spent["dense"]),
            "varlen": ideal_speedup(spent["padded"], spent["varlen"]),
            "useful": ideal_speedup(spent["padded"], useful),
        },
    }


def compare_as_dict(result: dict) -> dict:
    """:func:`compare`'s result with every :class:`Flops` as ``{linear, attention, total}`` (JSON-ready)."""
    def conv(v):
        if isinstance(v, Flops):
            return v.as_dict()
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v
    return conv(result)
