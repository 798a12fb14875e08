"""A batch as rows of segments, and everything a kernel needs derived from it. numpy only.

**Shapes.** Every array and tensor in packviz carries its shape in one notation: dimension
letters in parentheses, ``(N,)``, ``(B, L)``, ``(N + 1,)``. The letters, defined here once:

    B   rows of a padded batch (the batch size)
    L   width of a padded batch: its longest sequence
    T   tokens of a packed 1-D stream (a packed row's real tokens, no pads)
    N   sequences (of a row, a batch or a sample)
    C   pack length: the slots of a packed row (its capacity)
    W   width of a row in slots (L for a padded batch, C for a packed one)
    H   attention (query) heads
    D   head dimension

and, where they occur: R rows of a layout, V vocabulary size, S optimizer steps, K micro-batches.

**A layout** is a list of rows. Each row has a width (its token slots) and holds segments:
``(seq, offset, length)`` = "tokens of sequence ``seq`` occupy slots ``offset .. offset+length-1``
of this row". Slots not covered are pads. Three sequences, A (3 tokens), B (2) and C (4),
padded one per row and packed into rows of C = 5 (:func:`format_grid`: a letter per
sequence, ``.`` a pad):

>>> padded = Layout.from_rows([[(0, 0, 3)], [(1, 0, 2)], [(2, 0, 4)]], widths=[4, 4, 4], kind="padded")
>>> print(format_grid(padded))
A A A .
B B . .
C C C C
>>> packed = Layout.from_rows([[(0, 0, 3), (1, 3, 2)], [(2, 0, 4)]], widths=[5, 5])
>>> print(format_grid(packed))
A A A B B
C C C C .

The first packed row's tokens, then its block-diagonal causal mask (row = query, column =
key, ``x`` = may attend), then what the kernels take instead of the mask:

>>> print(format_mask(packed.block_causal_mask(0)))
x . . . .
x x . . .
x x x . .
. . . x .
. . . x x
>>> packed.position_ids(0)        # restart at every sequence start (RoPE)
array([0, 1, 2, 0, 1])
>>> packed.seq_idx(0)             # which of the row's sequences each token belongs to
array([0, 0, 0, 1, 1])
>>> packed.cu_seqlens(0)          # int32, N + 1 boundaries from 0 (flash-attn)
array([0, 3, 5], dtype=int32)
>>> packed.max_seqlen(0)
3

The layout is stored as flat arrays (one entry per segment) so that a million
sequences cost a few arrays, not a million Python objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .checks import exact_sum, instance_of, int_array, is_integer, items, nonnegative_int, one_of, positive_int, show

PAD = -1
"""Sequence id of a pad slot in :meth:`Layout.slot_seq_grid` (and in :func:`block_causal_mask`'s input)."""
KINDS = ("padded", "packed")


@dataclass(frozen=True)
class Layout:
    """Rows of segments with a width per row.

    Attributes
    ----------
    seg_row, seg_offset, seg_length, seg_seq : int64 arrays, shape (num_segments,)
        Segment ``i`` puts ``seg_length[i]`` tokens of sequence ``seg_seq[i]`` into
        row ``seg_row[i]`` from slot ``seg_offset[i]`` on. Segments are sorted by
        (row, offset). A sequence split into chunks has one segment per chunk, each
        carrying the original sequence index.
    widths : int64 array, shape (R,)
        Token slots of each row (the pack length C, or a padded batch's longest).
    num_sequences : int
        Sequences in the input (after the overlong policy, before any split).
    kind : {"padded", "packed"}
        Padded rows hold one sequence each; packed rows hold a stream of them.
    capacity : int or None
        The pack length C the layout was built for (``None``: unbounded padding).
    batch_size : int or None
        Rows per forward pass for padded layouts (rows ``[k*B, (k+1)*B)`` are batch k).
    name : str
        The strategy that made it.
    dropped_tokens : int
        Tokens removed by the ``truncate`` overlong policy (0 otherwise).
    """

    seg_row: np.ndarray
    seg_offset: np.ndarray
    seg_length: np.ndarray
    seg_seq: np.ndarray
    widths: np.ndarray
    num_sequences: int
    kind: str = "packed"
    capacity: int | None = None
    batch_size: int | None = None
    name: str = ""
    dropped_tokens: int = 0
    _row_start: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for attr in ("seg_row", "seg_offset", "seg_length", "seg_seq", "widths"):
            object.__setattr__(self, attr, _int64(attr, getattr(self, attr)))
        n = len(self.seg_row)
        if not (len(self.seg_offset) == len(self.seg_length) == len(self.seg_seq) == n):
            raise ValueError(f"segment arrays must all have the same length, got seg_row {n}, "
                             f"seg_offset {len(self.seg_offset)}, seg_length {len(self.seg_length)}, "
                             f"seg_seq {len(self.seg_seq)}")
        one_of("kind", self.kind, KINDS)
        object.__setattr__(self, "num_sequences", nonnegative_int("num_sequences", self.num_sequences))
        object.__setattr__(self, "dropped_tokens", nonnegative_int("dropped_tokens", self.dropped_tokens))
        for attr in ("capacity", "batch_size"):
            if getattr(self, attr) is not None:
                object.__setattr__(self, attr, positive_int(attr, getattr(self, attr)))
        if (self.widths < 0).any():
            raise ValueError(f"row widths must be >= 0, got {int(self.widths.min())}")
        if self.capacity is not None and (self.widths > self.capacity).any():
            r = int(np.flatnonzero(self.widths > self.capacity)[0])
            raise ValueError(f"row {r} is {int(self.widths[r])} slots wide, more than the layout's capacity "
                             f"{self.capacity}; give capacity >= every row's width (or capacity=None)")
        self._check_segments()
        if self.kind == "padded" and self.num_segments and (self.seg_row[1:] == self.seg_row[:-1]).any():
            r = int(self.seg_row[1:][self.seg_row[1:] == self.seg_row[:-1]][0])
            raise ValueError(f"row {r} of a padded layout holds {int((self.seg_row == r).sum())} segments; a padded "
                             "row holds one sequence: give kind='packed'")
        # first segment of every row (rows may be empty only in hand-built layouts)
        start = np.searchsorted(self.seg_row, np.arange(self.num_rows + 1))
        object.__setattr__(self, "_row_start", start)

    def _check_segments(self) -> None:
        """Every segment inside its row, none overlapping, sorted by (row, offset); else ``ValueError``."""
        row, off, n = self.seg_row, self.seg_offset, self.seg_length

        def fail_at(hit, shift, why):
            if hit.any():
                i = int(np.flatnonzero(hit)[0]) + shift
                raise ValueError(f"segment (seq {self.seg_seq[i]}, offset {off[i]}, length {n[i]}) {why(i)}")

        seq = self.seg_seq
        known = f"0 .. {self.num_sequences - 1}" if self.num_sequences else "none"
        fail_at((seq < 0) | (seq >= self.num_sequences), 0,
                lambda i: f"names sequence {seq[i]}, but the layout's sequences are {known} "
                          f"(num_sequences={self.num_sequences})" + ("; -1 is PAD, the pad marker" if seq[i] == PAD else ""))
        fail_at((row < 0) | (row >= self.num_rows), 0,
                lambda i: f"is in row {row[i]}, but the layout has {self.num_rows} rows")
        # written without off + n, which could pass 2**63 - 1 and wrap
        fail_at((off < 0) | (n <= 0) | (n > self.widths[row] - off), 0,
                lambda i: f"does not fit row {row[i]} of width {self.widths[row[i]]}")
        same_row = row[1:] == row[:-1]
        fail_at((row[1:] < row[:-1]) | (same_row & (off[1:] < off[:-1])), 1,
                lambda i: f"in row {row[i]} is not sorted by (row, offset)")
        fail_at(same_row & (off[1:] - off[:-1] < n[:-1]), 1,
                lambda i: f"in row {row[i]} overlaps the one before it")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_rows(cls, rows, widths, num_sequences=None, **kw) -> "Layout":
        """Build from ``rows = [[(seq, offset, length), ...], ...]`` (for hand-made examples).

        >>> print(format_grid(Layout.from_rows([[(0, 0, 2), (1, 3, 1)]], widths=[5])))
        A A . B .
        """
        widths = int_array("widths", widths, minimum=0, allow_empty=True).tolist()
        rows = [list(_segment_triples(r, row)) for r, row in enumerate(rows)]
        if len(widths) != len(rows):
            raise ValueError(f"{len(rows)} rows but {len(widths)} widths")
        flat = [(r, int(o), int(n), int(s)) for r, row in enumerate(rows) for (s, o, n) in sorted(row, key=lambda t: t[1])]
        arr = np.array(flat, dtype=np.int64).reshape(-1, 4)
        if num_sequences is None:  # sequences 0 .. the largest number named
            num_sequences = max((s for *_, s in flat), default=-1) + 1
        return cls(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], np.array(widths), num_sequences, **kw)

    # ------------------------------------------------------------------ counts
    @property
    def num_rows(self) -> int:
        return int(len(self.widths))

    @property
    def num_segments(self) -> int:
        return int(len(self.seg_row))

    @property
    def real_tokens(self) -> int:
        """Tokens that belong to a sequence (exact: a Python ``int``, whatever the size)."""
        return exact_sum(self.seg_length)

    @property
    def slots(self) -> int:
        """Token slots allocated (real + pad; exact)."""
        return exact_sum(self.widths)

    @property
    def pads(self) -> int:
        return self.slots - self.real_tokens

    @property
    def utilization(self) -> float:
        """real_tokens / slots (1.0 = no pad)."""
        return self.real_tokens / self.slots if self.slots else 0.0

    @property
    def lower_bound_rows(self) -> int:
        """``ceil(real_tokens / capacity)``: no packing of these tokens into rows of C uses fewer rows."""
        if not self.capacity:
            raise ValueError("lower_bound_rows needs a layout built with a capacity (pack_len)")
        return -(-self.real_tokens // self.capacity)

    def row_real_tokens(self) -> np.ndarray:
        """Real tokens per row, shape (R,)."""
        # int64 sums per row (a row's tokens fit its int64 width); bincount's float weights would round
        out = np.zeros(self.num_rows, dtype=np.int64)
        np.add.at(out, self.seg_row, self.seg_length)
        return out

    def row_utilization(self) -> np.ndarray:
        """Fraction of each row's slots holding real tokens, shape (R,)."""
        return self.row_real_tokens() / np.maximum(self.widths, 1)

    def batches(self) -> list[range]:
        """Row ranges that run as one forward pass: a padded batch, or (packed) one row each."""
        step = self.batch_size if self.kind == "padded" and self.batch_size else 1
        return [range(r, min(r + step, self.num_rows)) for r in range(0, self.num_rows, step)]

    def summary(self) -> dict:
        """The counts as a plain dict (JSON-ready)."""
        return {
            "strategy": self.name,
            "kind": self.kind,
            "num_sequences": self.num_sequences,
            "num_segments": self.num_segments,
            "num_rows": self.num_rows,
            "real_tokens": self.real_tokens,
            "slots": self.slots,
            "pads": self.pads,
            "lower_bound_rows": self.lower_bound_rows if self.capacity else None,
            "utilization": self.utilization,
            "dropped_tokens": self.dropped_tokens,
        }

    # ------------------------------------------------------------------ rows
    def row_segments(self, row: int) -> np.ndarray:
        """Segments of one row as an (N, 3) array of ``[seq, offset, length]``, in slot order."""
        r = self.check_row(row)
        a, b = self._row_start[r], self._row_start[r + 1]
        return np.stack([self.seg_seq[a:b], self.seg_offset[a:b], self.seg_length[a:b]], axis=1)

    def rows(self) -> list[list[list[int]]]:
        """Every row as a list of ``[seq, offset, length]`` (the CLI's ``--rows``)."""
        segs = np.stack([self.seg_seq, self.seg_offset, self.seg_length], axis=1).tolist()
        return [segs[self._row_start[r]: self._row_start[r + 1]] for r in range(self.num_rows)]

    def row_lengths(self, row: int) -> np.ndarray:
        """Lengths of the segments in one row, in slot order, shape (N,)."""
        r = self.check_row(row)
        return self.seg_length[self._row_start[r]: self._row_start[r + 1]].copy()

    def check_rows(self, rows) -> np.ndarray:
        """``rows`` (a row number, or a list, range or array of them) as an int64 array (K,), each a row of
        this layout; else ``IndexError`` naming the first that is not (a float, a bool, out of range).

        >>> Layout.from_rows([[(0, 0, 1)], [(1, 0, 1)]], widths=[1, 1]).check_rows([1, 2.0])
        Traceback (most recent call last):
        ...
        IndexError: row 2.0 out of range: the layout has 2 rows (0 .. 1)
        """
        if isinstance(rows, np.ndarray) and rows.dtype.kind in "iu":
            arr = rows.reshape(-1)
            bad = (arr < 0) | (arr >= self.num_rows)
            if bad.any():
                self.check_row(arr[bad][0])
            return arr.astype(np.int64, copy=False)
        values = [rows] if np.ndim(rows) == 0 else list(np.ravel(rows) if isinstance(rows, np.ndarray) else rows)
        return np.array([self.check_row(v) for v in values], dtype=np.int64)

    def check_row(self, row) -> int:
        """``row`` as an ``int`` if it indexes a row of this layout, else ``IndexError`` naming it."""
        if not is_integer(row) or not 0 <= row < self.num_rows:
            raise IndexError(f"row {show(row)} out of range: the layout has {self.num_rows} rows (0 .. {self.num_rows - 1})")
        return int(row)

    # ------------------------------------------------------------------ per-row kernel inputs
    def cu_seqlens(self, row: int) -> np.ndarray:
        """Cumulative sequence boundaries of one row's token stream: int32, shape (N + 1,), starts at 0.

        ``cu_seqlens[i]:cu_seqlens[i+1]`` are the tokens of the row's i-th segment in the
        packed 1-D stream (pads removed), as ``flash_attn_varlen_func`` expects.
        """
        return np.concatenate([[0], np.cumsum(self.row_lengths(row))]).astype(np.int32)

    def max_seqlen(self, row: int) -> int:
        """Longest segment of the row (flash-attn's ``max_seqlen``)."""
        lengths = self.row_lengths(row)
        return int(lengths.max()) if len(lengths) else 0

    def position_ids(self, row: int) -> np.ndarray:
        """Position of each real token of a row inside its own sequence, shape (T,): ``[0..n0-1, 0..n1-1, ...]``.

        Pitfalls
        --------
        * Positions that run on across the row (``0 .. T-1``, what ``arange`` gives) are the
          classic packing bug. RoPE alone would not mind (it sees position differences), but
          transformers finds the sequence boundaries *in* ``position_ids``: with none it builds
          a plain causal mask and every sequence attends to the ones before it
          (``"no_position_reset"`` in :data:`packviz.model.TRAPS`).
        """
        return positions_from_lengths(self.row_lengths(row))

    def seq_idx(self, row: int) -> np.ndarray:
        """For each real token of a row, the number (0..N-1) of its segment in the row, shape (T,).

        What mamba's ``seq_idx`` and transformers' ``return_seq_idx`` mean: a per-row ordinal,
        not the global sequence number (that is :meth:`slot_seq_grid`).
        """
        return seq_idx_from_lengths(self.row_lengths(row))

    def block_causal_mask(self, row: int, include_pads: bool = False) -> np.ndarray:
        """Dense bool mask of one row, shape (T, T): :func:`block_causal_mask` of its tokens.

        With ``include_pads=True`` the mask covers all W slots of the row, (W, W), and pad rows
        and columns are all False. Dense: for teaching sizes and small models; a real kernel
        takes ``cu_seqlens`` instead.
        """
        if include_pads:
            return block_causal_mask(self.slot_seq_grid(rows=[self.check_row(row)])[0])
        return block_causal_mask(self.seq_idx(row))

    # ------------------------------------------------------------------ grids (whole layout)
    def slot_seq_grid(self, rows=None) -> np.ndarray:
        """The (global) sequence number held by every slot, shape (R, W) with W the widest row; ``PAD`` (-1) for pads.

        Slots beyond a row's own width (a narrower padded batch) are ``PAD`` as well.
        ``rows``: only these rows, in this order (shape (len(rows), their widest)).

        >>> Layout.from_rows([[(0, 0, 3), (1, 3, 2)], [(2, 0, 4)]], widths=[5, 5]).slot_seq_grid()
        array([[ 0,  0,  0,  1,  1],
               [ 2,  2,  2,  2, -1]])
        """
        rows, grid = self._empty_grid(rows)
        for i, r in enumerate(rows.tolist()):
            a, b = self._row_start[r], self._row_start[r + 1]
            for s, o, n in zip(self.seg_seq[a:b], self.seg_offset[a:b], self.seg_length[a:b]):
                grid[i, o: o + n] = s
        return grid

    def position_grid(self, rows=None) -> np.ndarray:
        """``position_ids`` of every slot, shape (R, W); -1 for pads (``rows`` as in :meth:`slot_seq_grid`)."""
        rows, grid = self._empty_grid(rows)
        for i, r in enumerate(rows.tolist()):
            a, b = self._row_start[r], self._row_start[r + 1]
            for o, n in zip(self.seg_offset[a:b], self.seg_length[a:b]):
                grid[i, o: o + n] = np.arange(n)
        return grid

    def _empty_grid(self, rows):
        """``rows`` (all: ``None``) checked, as an int64 array, and a grid of -1 as wide as the widest of them."""
        rows = np.arange(self.num_rows) if rows is None else self.check_rows(rows)
        width = int(self.widths[rows].max(initial=0))
        return rows, np.full((len(rows), width), PAD, dtype=np.int64)

    def padding_attention_mask(self) -> np.ndarray:
        """HF-style ``attention_mask`` of the slots: 1 for a real token, 0 for a pad, shape (R, W)."""
        return (self.slot_seq_grid() != PAD).astype(np.int64)


def _segment_triples(r: int, row):
    """The ``(seq, offset, length)`` triples of row ``r`` of :meth:`Layout.from_rows`, checked: three int64 integers each."""
    try:
        segments = list(row)
    except TypeError:
        raise ValueError(f"rows[{r}] must be a list of (seq, offset, length), got {show(row)}") from None
    for seg in segments:
        ok = isinstance(seg, (tuple, list)) and len(seg) == 3
        if not (ok and all(is_integer(v) and -2**63 <= v < 2**63 for v in seg)):
            raise ValueError(f"rows[{r}] holds {show(seg)}; a segment is (seq, offset, length), three integers")
        yield seg


def _int64(name: str, values) -> np.ndarray:
    """A Layout field as an int64 array, shape (N,): floats, bools, NaN and values beyond int64 refused by name."""
    arr = np.asarray(values)
    return arr if arr.dtype == np.int64 and arr.ndim == 1 else int_array(name, values, -2**63, allow_empty=True)


def as_layout(name: str, value) -> Layout:
    """``value`` if it is a :class:`Layout`, else ``TypeError`` naming ``name`` and where a layout comes from."""
    return instance_of(name, value, Layout, "a packviz Layout (packviz.packing.pack or Layout.from_rows builds one)")


def stack_layouts(parts, seq_offsets, **kw) -> Layout:
    """One layout of several: rows stacked in order, each part's sequence numbers shifted by its offset.

    ``kw`` are the result's :class:`Layout` fields (``num_sequences``, ``kind``, ``capacity``, ``name``).

    >>> a = Layout.from_rows([[(0, 0, 2), (1, 2, 1)]], widths=[4])
    >>> b = Layout.from_rows([[(0, 0, 3)]], widths=[4])
    >>> print(format_grid(stack_layouts([a, b], [0, 2], num_sequences=3)))
    A A B .
    C C C .
    """
    parts = [as_layout(f"parts[{i}]", p) for i, p in enumerate(items("parts", parts, "a list of Layouts"))]
    seq_offsets = int_array("seq_offsets", seq_offsets, minimum=0, allow_empty=True)
    if not parts or len(seq_offsets) != len(parts):
        raise ValueError(f"stack_layouts needs one or more layouts and a seq_offset for each, got {len(parts)} "
                         f"layouts and {len(seq_offsets)} seq_offsets")
    row0 = np.cumsum([0] + [p.num_rows for p in parts])[:-1]
    cat = np.concatenate
    return Layout(cat([p.seg_row + r for p, r in zip(parts, row0)]), cat([p.seg_offset for p in parts]),
                  cat([p.seg_length for p in parts]), cat([p.seg_seq + int(s) for p, s in zip(parts, seq_offsets)]),
                  cat([p.widths for p in parts]), **kw)


def positions_from_lengths(lengths) -> np.ndarray:
    """``[0..n0-1, 0..n1-1, ...]`` for segment lengths ``[n0, n1, ...]`` (N,), vectorised, shape (T,).

    >>> positions_from_lengths([3, 2])
    array([0, 1, 2, 0, 1])
    """
    lengths = int_array("lengths", lengths, minimum=0, allow_empty=True)
    total = int(lengths.sum())
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.arange(total, dtype=np.int64) - starts


def seq_idx_from_lengths(lengths) -> np.ndarray:
    """``[0]*n0 + [1]*n1 + ...`` for segment lengths ``[n0, n1, ...]`` (N,): each token's segment, shape (T,).

    >>> seq_idx_from_lengths([3, 2])
    array([0, 0, 0, 1, 1])
    """
    lengths = int_array("lengths", lengths, minimum=0, allow_empty=True)
    return np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)


def block_causal_mask(seq_ids, slots=None) -> np.ndarray:
    """The block-diagonal causal mask of a token stream, bool (T, T): ``mask[q, k]`` = q may attend k.

    ``seq_ids`` (T,): the sequence of each token (:meth:`Layout.seq_idx` of a row, or a row of
    :meth:`Layout.slot_seq_grid`); ``PAD`` (-1) marks a pad, which attends to nothing and is
    attended by nothing. q may attend k when both belong to one sequence and k is not after q.
    ``slots`` (T,): the slot of each entry (default ``0 .. T-1``): pass it to mask a sample of
    a long row's slots (what a picture of an 8,192-slot row draws).

    The one mask of packviz: :meth:`Layout.block_causal_mask`, the pictures of :mod:`packviz.plot`
    and the explicit mask of :func:`packviz.model.rope_offset_forward` are all this function.

    >>> print(format_mask(block_causal_mask([0, 0, 1, PAD])))
    x . . .
    x x . .
    . . x .
    . . . .
    """
    ids = int_array("seq_ids", seq_ids, minimum=PAD, allow_empty=True)
    pos = np.arange(len(ids)) if slots is None else int_array("slots", slots, minimum=0, allow_empty=True)
    if len(pos) != len(ids):
        raise ValueError(f"slots has {len(pos)} entries but seq_ids has {len(ids)}; give one slot per token")
    same = (ids[:, None] == ids[None, :]) & (ids[:, None] != PAD)
    return same & (pos[None, :] <= pos[:, None])


def format_mask(mask) -> str:
    """A bool (T, T) mask as text: ``x`` where query (row) may attend key (column), ``.`` elsewhere."""
    arr = np.asarray(mask)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.dtype.kind not in "biu":
        raise ValueError(f"mask must be a square (T, T) array of bools, got {show(mask)}")
    mask = arr.astype(bool)
    return "\n".join(" ".join("x" if v else "." for v in row) for row in mask)


def format_grid(layout: Layout, rows=None) -> str:
    """A layout as text, one line per row: a letter per sequence (A, B, ..., Z, A, ...), ``.`` a pad.

    Each line is as long as its own row (a narrower padded batch gives shorter lines).
    ``rows``: only these rows (default: all).

    >>> print(format_grid(Layout.from_rows([[(0, 0, 3), (1, 3, 2)], [(27, 0, 1)]], widths=[6, 2])))
    A A A B B .
    B .
    """
    layout = as_layout("layout", layout)
    rows = np.arange(layout.num_rows) if rows is None else layout.check_rows(rows)
    grid = layout.slot_seq_grid(rows=rows)
    lines = []
    for i, r in enumerate(rows.tolist()):
        ids = grid[i, : int(layout.widths[r])].tolist()
        lines.append(" ".join("." if s == PAD else chr(ord("A") + s % 26) for s in ids))
    return "\n".join(lines)
