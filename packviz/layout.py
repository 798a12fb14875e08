"""A batch as rows of segments, and everything a kernel needs derived from it.

A *layout* is a list of rows. Each row has a width (its token slots) and holds
segments: ``(seq_index, offset, length)`` = "tokens of sequence ``seq_index`` occupy
slots ``offset .. offset+length-1`` of this row". Slots not covered are pads.

Three sequences (A: 3 tokens, B: 2, C: 4) in two rows of width 5::

    padded (one sequence per row)         packed (capacity C = 5)
    row 0:  A A A . .                     row 0:  A A A B B
    row 1:  B B . . .                     row 1:  C C C C .
    row 2:  C C C C .

From one packed row (``A A A B B``) the kernels want::

    input_ids     [a0 a1 a2 b0 b1]        one 1-D token stream, no pads
    position_ids  [ 0  1  2  0  1]        restart at every sequence start (RoPE)
    seq_idx       [ 0  0  0  1  1]        which sequence each token belongs to
    cu_seqlens    [0, 3, 5]               int32, N+1 boundaries (flash-attn convention)
    max_seqlen    3

and the block-diagonal causal mask (``x`` = may attend; row = query, column = key)::

           a0 a1 a2 b0 b1
       a0   x  .  .  .  .
       a1   x  x  .  .  .
       a2   x  x  x  .  .
       b0   .  .  .  x  .
       b1   .  .  .  x  x

The layout is stored as flat arrays (one entry per segment) so that a million
sequences cost a few arrays, not a million Python objects. numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PAD = -1
"""Sequence id of a pad slot in :meth:`Layout.seq_id_grid`."""


@dataclass(frozen=True)
class Layout:
    """Rows of segments with a width per row.

    Attributes
    ----------
    seg_row, seg_offset, seg_length, seg_index : int64 arrays, shape (num_segments,)
        Segment ``i`` puts ``seg_length[i]`` tokens of sequence ``seg_index[i]`` into
        row ``seg_row[i]`` from slot ``seg_offset[i]`` on. Segments are sorted by
        (row, offset). A sequence split into chunks has one segment per chunk, each
        carrying the original sequence index.
    widths : int64 array, shape (num_rows,)
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
    seg_index: np.ndarray
    widths: np.ndarray
    num_sequences: int
    kind: str = "packed"
    capacity: int | None = None
    batch_size: int | None = None
    name: str = ""
    dropped_tokens: int = 0
    _row_start: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for attr in ("seg_row", "seg_offset", "seg_length", "seg_index", "widths"):
            object.__setattr__(self, attr, np.asarray(getattr(self, attr), dtype=np.int64))
        n = len(self.seg_row)
        if not (len(self.seg_offset) == len(self.seg_length) == len(self.seg_index) == n):
            raise ValueError("segment arrays must all have the same length")
        if self.kind not in ("padded", "packed"):
            raise ValueError(f"kind must be 'padded' or 'packed', got {self.kind!r}")
        if (self.widths < 0).any():
            raise ValueError(f"row widths must be >= 0, got {int(self.widths.min())}")
        self._check_segments()
        # first segment of every row (rows may be empty only in hand-built layouts)
        start = np.searchsorted(self.seg_row, np.arange(self.num_rows + 1))
        object.__setattr__(self, "_row_start", start)

    def _check_segments(self) -> None:
        """Every segment inside its row, none overlapping, sorted by (row, offset); else ``ValueError``."""
        row, off, n = self.seg_row, self.seg_offset, self.seg_length

        def fail_at(hit, shift, why):
            if hit.any():
                i = int(np.flatnonzero(hit)[0]) + shift
                raise ValueError(f"segment (seq {self.seg_index[i]}, offset {off[i]}, length {n[i]}) {why(i)}")

        fail_at((row < 0) | (row >= self.num_rows), 0,
                lambda i: f"is in row {row[i]}, but the layout has {self.num_rows} rows")
        fail_at((off < 0) | (n <= 0) | (off + n > self.widths[row]), 0,
                lambda i: f"does not fit row {row[i]} of width {self.widths[row[i]]}")
        same_row = row[1:] == row[:-1]
        fail_at((row[1:] < row[:-1]) | (same_row & (off[1:] < off[:-1])), 1,
                lambda i: f"in row {row[i]} is not sorted by (row, offset)")
        fail_at(same_row & (off[1:] < off[:-1] + n[:-1]), 1,
                lambda i: f"in row {row[i]} overlaps the one before it")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_rows(cls, rows, widths, num_sequences=None, **kw) -> "Layout":
        """Build from ``rows = [[(seq_index, offset, length), ...], ...]`` (for hand-made examples)."""
        widths = [int(w) for w in widths]
        if len(widths) != len(rows):
            raise ValueError(f"{len(rows)} rows but {len(widths)} widths")
        flat = [(r, int(o), int(n), int(s)) for r, row in enumerate(rows) for (s, o, n) in sorted(row, key=lambda t: t[1])]
        arr = np.array(flat, dtype=np.int64).reshape(-1, 4)
        if num_sequences is None:
            num_sequences = len({s for *_, s in flat})
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
        """Tokens that belong to a sequence."""
        return int(self.seg_length.sum())

    @property
    def slots(self) -> int:
        """Token slots allocated (real + pad)."""
        return int(self.widths.sum())

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
        """Real tokens per row, shape (num_rows,)."""
        return np.bincount(self.seg_row, weights=self.seg_length, minlength=self.num_rows).astype(np.int64)

    def row_utilization(self) -> np.ndarray:
        """Fraction of each row's slots holding real tokens, shape (num_rows,)."""
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
        """Segments of one row as an (n, 3) array of ``[seq_index, offset, length]``."""
        r = self._check_row(row)
        a, b = self._row_start[r], self._row_start[r + 1]
        return np.stack([self.seg_index[a:b], self.seg_offset[a:b], self.seg_length[a:b]], axis=1)

    def rows(self) -> list[list[list[int]]]:
        """Every row as a list of ``[seq_index, offset, length]`` (the CLI's ``--rows``)."""
        segs = np.stack([self.seg_index, self.seg_offset, self.seg_length], axis=1).tolist()
        return [segs[self._row_start[r]: self._row_start[r + 1]] for r in range(self.num_rows)]

    def row_lengths(self, row: int) -> np.ndarray:
        """Lengths of the segments in one row, in slot order."""
        r = self._check_row(row)
        return self.seg_length[self._row_start[r]: self._row_start[r + 1]].copy()

    def _check_row(self, row) -> int:
        if not isinstance(row, (int, np.integer)) or not 0 <= row < self.num_rows:
            raise IndexError(f"row {row!r} out of range: layout has {self.num_rows} rows")
        return int(row)

    # ------------------------------------------------------------------ per-row kernel inputs
    def cu_seqlens(self, row: int) -> np.ndarray:
        """Cumulative sequence boundaries of one row's token stream: int32, shape (N+1,), starts at 0.

        ``cu_seqlens[i]:cu_seqlens[i+1]`` are the tokens of the row's i-th segment in the
        packed 1-D stream (pads removed), as ``flash_attn_varlen_func`` expects.
        """
        return np.concatenate([[0], np.cumsum(self.row_lengths(row))]).astype(np.int32)

    def max_seqlen(self, row: int) -> int:
        """Longest segment of the row (flash-attn's ``max_seqlen``)."""
        lengths = self.row_lengths(row)
        return int(lengths.max()) if len(lengths) else 0

    def position_ids(self, row: int) -> np.ndarray:
        """Position of each real token of a row inside its own sequence: ``[0..n0-1, 0..n1-1, ...]``."""
        return positions_from_lengths(self.row_lengths(row))

    def seq_idx(self, row: int) -> np.ndarray:
        """For each real token of a row, the number (0..N-1) of its segment in the row."""
        lengths = self.row_lengths(row)
        return np.repeat(np.arange(len(lengths)), lengths)

    def block_causal_mask(self, row: int, include_pads: bool = False) -> np.ndarray:
        """Dense bool mask of one row: ``mask[q, k]`` is True where query q may attend key k.

        Shape (T, T) with T = the row's real tokens, or (W, W) over all slots with
        ``include_pads=True`` (pad rows and columns are all False). Dense: for teaching
        sizes and small models; a real kernel takes ``cu_seqlens`` instead.
        """
        if include_pads:
            ids = self.seq_id_grid(rows=[self._check_row(row)])[0]
            pos = np.arange(len(ids))
        else:
            ids = self.seq_idx(row)
            pos = np.arange(len(ids))
        same = (ids[:, None] == ids[None, :]) & (ids[:, None] != PAD)
        return same & (pos[None, :] <= pos[:, None])

    # ------------------------------------------------------------------ grids (whole layout)
    def seq_id_grid(self, rows=None) -> np.ndarray:
        """Sequence index of every slot, shape (num_rows, max width); ``PAD`` (-1) for pads.

        Slots beyond a row's own width (a narrower padded batch) are ``PAD`` as well.
        ``rows``: only these rows, in this order (shape (len(rows), their max width)).
        """
        rows, grid = self._empty_grid(rows)
        for i, r in enumerate(rows.tolist()):
            a, b = self._row_start[r], self._row_start[r + 1]
            for s, o, n in zip(self.seg_index[a:b], self.seg_offset[a:b], self.seg_length[a:b]):
                grid[i, o: o + n] = s
        return grid

    def position_grid(self, rows=None) -> np.ndarray:
        """``position_ids`` of every slot, shape (num_rows, max width); -1 for pads (``rows`` as in :meth:`seq_id_grid`)."""
        rows, grid = self._empty_grid(rows)
        for i, r in enumerate(rows.tolist()):
            a, b = self._row_start[r], self._row_start[r + 1]
            for o, n in zip(self.seg_offset[a:b], self.seg_length[a:b]):
                grid[i, o: o + n] = np.arange(n)
        return grid

    def _empty_grid(self, rows):
        """``rows`` (all: ``None``) checked, as an int64 array, and a grid of -1 as wide as the widest of them."""
        if rows is None:
            rows = np.arange(self.num_rows)
        else:
            rows = np.asarray(rows, dtype=np.int64).reshape(-1)
            bad = (rows < 0) | (rows >= self.num_rows)
            if bad.any():
                raise IndexError(f"row {int(rows[bad][0])} out of range: layout has {self.num_rows} rows")
        width = int(self.widths[rows].max(initial=0))
        return rows, np.full((len(rows), width), PAD, dtype=np.int64)

    def padding_attention_mask(self) -> np.ndarray:
        """HF-style ``attention_mask`` of the slots: 1 for a real token, 0 for a pad. Shape (num_rows, max width)."""
        return (self.seq_id_grid() != PAD).astype(np.int64)


def positions_from_lengths(lengths) -> np.ndarray:
    """``[0..n0-1, 0..n1-1, ...]`` for segment lengths ``[n0, n1, ...]``, vectorised."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.arange(total, dtype=np.int64) - starts
