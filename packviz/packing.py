"""Strategies that turn a list of sequence lengths into a :class:`~packviz.layout.Layout`. numpy only.

=========  ==========================================================  ============
strategy   what it does                                                row width
=========  ==========================================================  ============
pad        arrival-order batches of B, each padded to its longest      batch max
sorted     length-sorted buckets of B, each padded to its longest      bucket max
next-fit   stream in arrival order; open a new pack when the next       C
           sequence does not fit the current one
ffd        first-fit decreasing: longest first, into the first pack     C
           with room
bfd        best-fit decreasing: longest first, into the pack whose      C
           room left is smallest but enough
=========  ==========================================================  ============

Five sequences, A (3 tokens), B (5), C (2), D (4) and E (1), in batches of B = 2 or packs of
C = 6 (:func:`~packviz.layout.format_grid`: a letter per sequence, ``.`` a pad):

>>> from packviz.layout import format_grid
>>> lengths = [3, 5, 2, 4, 1]
>>> print(format_grid(pack(lengths, 6, "pad", batch_size=2)))
A A A . .
B B B B B
C C . .
D D D D
E
>>> print(format_grid(pack(lengths, 6, "sorted", batch_size=2)))
E .
C C
A A A .
D D D D
B B B B B
>>> print(format_grid(pack(lengths, 6, "next-fit")))
A A A . . .
B B B B B .
C C D D D D
E . . . . .
>>> print(format_grid(pack(lengths, 6, "bfd")))
B B B B B E
D D D D C C
A A A . . .

Sequences longer than the pack length C follow ``overlong`` (:func:`apply_overlong`):
``"error"`` (default), ``"truncate"`` or ``"split"``.

Bin packing is NP-hard; ``ceil(total / C)`` (:func:`lower_bound`) is the number of rows no
strategy can beat. FFD and BFD stay within 11/9 OPT + 6/9 rows in the worst case and far
closer on real length distributions.
"""

from __future__ import annotations

import bisect

import numpy as np

from .checks import exact_sum, finite_floats, flag, int_array, items, mapping, one_of, positive_int, show
from .layout import Layout, as_layout, stack_layouts

STRATEGIES = ("pad", "sorted", "next-fit", "ffd", "bfd")
PADDED = ("pad", "sorted")
"""The padded strategies: one sequence per row, batches of B."""
PACKED = ("next-fit", "ffd", "bfd")
"""The packing strategies: rows of C slots, several sequences each."""
OVERLONG = ("error", "truncate", "split")
MAX_PACK_LEN = 2**31 - 1
"""The largest pack length C accepted: a row's ``cu_seqlens`` are int32 (flash-attn, torch's
varlen attention), and with C below 2**31 every token count of a layout stays exact in int64."""
MAX_SPLIT_CHUNKS = 10**8
"""The most chunks ``overlong="split"`` may cut a sample into (each is a segment: ~40 bytes)."""


# ---------------------------------------------------------------------- validation
def validate_lengths(lengths) -> np.ndarray:
    """``lengths`` as an int64 array, shape (N,), or ``ValueError`` naming the first bad value.

    Accepted: a non-empty 1-D sequence of positive integers (Python or numpy ints).
    Rejected, with the index and the value in the message: empty input, 0, negatives,
    floats (also 3.0: a length is a count), NaN, booleans, strings
    (:func:`packviz.checks.int_array`).

    >>> validate_lengths([3, 2.5])
    Traceback (most recent call last):
    ...
    ValueError: lengths[1] is 2.5: lengths must be integers >= 1
    """
    return int_array("lengths", lengths, minimum=1)


def lower_bound(lengths, pack_len: int) -> int:
    """``ceil(sum(lengths) / pack_len)``: no packing of these tokens uses fewer rows.

    >>> lower_bound([3, 5, 2, 4, 1], 6)
    3
    """
    pack_len = check_pack_len(pack_len)
    return -(-exact_sum(validate_lengths(lengths)) // pack_len)


def check_pack_len(pack_len) -> int:
    """``pack_len`` as an ``int`` in ``1 .. MAX_PACK_LEN``, else ``ValueError`` naming it.

    >>> check_pack_len(2**40)
    Traceback (most recent call last):
    ...
    ValueError: pack_len is 1099511627776, above the largest pack length 2,147,483,647 (2**31 - 1: cu_seqlens are int32); choose a smaller pack_len
    """
    pack_len = positive_int("pack_len", pack_len)
    if pack_len > MAX_PACK_LEN:
        raise ValueError(f"pack_len is {pack_len}, above the largest pack length {MAX_PACK_LEN:,} "
                         "(2**31 - 1: cu_seqlens are int32); choose a smaller pack_len")
    return pack_len


# ---------------------------------------------------------------------- overlong policy
def apply_overlong(lengths: np.ndarray, pack_len: int, overlong: str = "error"):
    """Apply the overlong policy to lengths (N,) longer than ``pack_len``.

    Returns ``(item_lengths, item_seq, dropped)``: the lengths to place and the original
    sequence of each, both (M,) (M = N unless split), and the tokens dropped by truncation.

    * ``"error"``: ``ValueError`` naming the index and the length.
    * ``"truncate"``: keep the first C tokens; ``dropped`` counts the rest.
    * ``"split"``: cut into chunks of at most C, each placed as its own segment carrying the
      original sequence (``seg_seq``).

    >>> apply_overlong(np.array([9, 2]), 4, "split")
    (array([4, 4, 1, 2]), array([0, 0, 0, 1]), 0)

    Pitfalls
    --------
    * A chunk of a split sequence is attended to *as a sequence of its own*: its
      ``position_ids`` restart at 0 and it cannot see the chunks before it. That changes
      what the model computes for every token after the first chunk. Use ``"split"`` for
      training data where that is acceptable, never for serving a prompt.
    * ``"truncate"`` silently drops tokens: check ``Layout.dropped_tokens``.
    """
    one_of("overlong", overlong, OVERLONG)
    pack_len = check_pack_len(pack_len)
    lengths = validate_lengths(lengths)
    idx = np.arange(len(lengths), dtype=np.int64)
    over = lengths > pack_len
    if not over.any():
        return lengths, idx, 0
    if overlong == "error":
        i = int(np.flatnonzero(over)[0])
        raise ValueError(
            f"sequence {i} has length {int(lengths[i])}, longer than the pack length {pack_len} "
            f"({int(over.sum())} such sequences); choose overlong='truncate' or 'split', or a larger pack length"
        )
    if overlong == "truncate":
        dropped = exact_sum(lengths[over] - pack_len)
        return np.minimum(lengths, pack_len), idx, dropped
    # split: chunks of pack_len, the last one the remainder; chunks stay in order. Only the
    # overlong sequences are cut: their chunks after the first are inserted behind them.
    cut = np.flatnonzero(over)
    extra = -(-lengths[cut] // pack_len) - 1  # chunks after the first
    total = len(lengths) + exact_sum(extra)
    if total > MAX_SPLIT_CHUNKS:
        raise ValueError(f"overlong='split' would cut these {len(lengths):,} sequences into {total:,} "
                         f"chunks of at most {pack_len} tokens, more than {MAX_SPLIT_CHUNKS:,}; "
                         "choose a larger pack_len (or overlong='truncate')")
    at = np.repeat(cut + 1, extra)
    k = np.arange(len(at)) - np.repeat(np.cumsum(extra) - extra, extra) + 1  # chunk number, 1 ..
    rest = np.minimum(pack_len, np.repeat(lengths[cut], extra) - k * pack_len)
    return np.insert(np.minimum(lengths, pack_len), at, rest), np.insert(idx, at, np.repeat(cut, extra)), 0


# ---------------------------------------------------------------------- strategies
def pack(lengths, pack_len: int, strategy: str = "bfd", batch_size: int | None = None,
         overlong: str = "error") -> Layout:
    """Lay ``lengths`` out by ``strategy``.

    Parameters
    ----------
    lengths : sequence of positive ints, (N,)
    pack_len : int
        C: the pack capacity (packed strategies) or the longest allowed sequence
        (padded strategies: the model's context).
    strategy : one of :data:`STRATEGIES`
    batch_size : int
        B, rows per padded batch (``pad`` and ``sorted`` only; required there).
    overlong : one of :data:`OVERLONG` (see :func:`apply_overlong`)

    >>> lay = pack([9, 2], 4, "bfd", overlong="split")
    >>> lay.rows()                   # [seq, offset, length] per segment, per row
    [[[0, 0, 4]], [[0, 0, 4]], [[1, 0, 2], [0, 2, 1]]]

    Pitfalls
    --------
    * ``overlong="split"`` makes every chunk of a long sequence a sequence of its own (its
      positions restart, it sees no earlier chunk): fine for training data, wrong for a
      prompt (:func:`apply_overlong`).
    * A padded strategy pads each batch to *its* longest sequence: the rows of a layout
      have different widths; ``pack_len`` only bounds them.
    """
    one_of("strategy", strategy, STRATEGIES)
    lengths = validate_lengths(lengths)
    pack_len = check_pack_len(pack_len)
    items, item_seq, dropped = apply_overlong(lengths, pack_len, overlong)
    common = dict(num_sequences=len(lengths), capacity=pack_len, name=strategy, dropped_tokens=dropped)
    if strategy in PADDED:
        if batch_size is None:
            raise ValueError(f"strategy {strategy!r} needs a batch_size (rows per padded batch), e.g. batch_size=32")
        batch_size = positive_int("batch_size", batch_size)
        order = _stable_argsort(items) if strategy == "sorted" else np.arange(len(items))
        return _padded(items[order], item_seq[order], batch_size, **common)
    if batch_size is not None:
        positive_int("batch_size", batch_size)
    if strategy == "next-fit":
        bins = _next_fit(items, pack_len)
    else:
        order = _stable_argsort(pack_len - items)  # decreasing length, ties in arrival order
        items, item_seq = items[order], item_seq[order]
        del order
        bins = (_first_fit_sorted if strategy == "ffd" else _best_fit_sorted)(items, pack_len)
    placed = [items, item_seq, bins]  # handed over whole, so that _packed frees each once it is used
    del items, item_seq, bins
    return _packed(placed, pack_len, **common)


def _stable_argsort(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` for keys >= 0, (N,), at radix-sort speed.

    numpy radix-sorts (stably, in linear time) keys of 16 bits or fewer; wider ones go through
    16-bit digits, least significant first (an LSD radix sort), up to 32 bits.
    """
    if not len(keys) or int(keys.min()) < 0 or int(keys.max()) >= 2**32:
        return np.argsort(keys, kind="stable")
    order = np.argsort(keys.astype(np.uint16), kind="stable")  # the low 16 bits (all of them if narrow)
    if int(keys.max()) >= 2**16:
        high = (keys[order] >> 16).astype(np.uint16)
        order = order[np.argsort(high, kind="stable")]
    return order


def pad_and_pack(lengths, pack_len: int, batch_size: int, strategy: str = "bfd", padding: str = "pad",
                 overlong: str = "error") -> tuple[Layout, Layout]:
    """The same sequences laid out twice: padded in batches of B, and packed into rows of C.

    ``(padded, packed)``: ``pack(lengths, pack_len, padding, batch_size)`` and
    ``pack(lengths, pack_len, strategy)``, both under one ``overlong`` policy, so that they hold
    the same tokens (what :func:`packviz.flops.compare` needs). ``pack_len`` is the packed
    rows' C and the padded side's context (the longest sequence it takes).

    >>> from packviz.layout import format_grid
    >>> padded, packed = pad_and_pack([3, 5, 2, 4, 1], pack_len=6, batch_size=5)
    >>> print(format_grid(padded))
    A A A . .
    B B B B B
    C C . . .
    D D D D .
    E . . . .
    >>> print(format_grid(packed))
    B B B B B E
    D D D D C C
    A A A . . .
    >>> padded.utilization, packed.utilization
    (0.6, 0.8333333333333334)
    """
    one_of("strategy", strategy, PACKED)
    one_of("padding", padding, PADDED)
    padded = pack(lengths, pack_len, padding, batch_size=batch_size, overlong=overlong)
    packed = pack(lengths, pack_len, strategy, overlong=overlong)
    return padded, packed


def windows(n: int, batch_size: int) -> list[range]:
    """Consecutive windows of ``batch_size`` of ``n`` sequences in arrival order (the last may be shorter).

    >>> windows(5, 2)
    [range(0, 2), range(2, 4), range(4, 5)]
    """
    n, batch_size = positive_int("n", n), positive_int("batch_size", batch_size)
    if -(-n // batch_size) > MAX_SPLIT_CHUNKS:
        raise ValueError(f"{n:,} sequences in windows of {batch_size:,} make more than {MAX_SPLIT_CHUNKS:,} windows; "
                         "choose a larger batch_size")
    return [range(a, min(a + batch_size, n)) for a in range(0, n, batch_size)]


def pack_in_windows(lengths, pack_len: int, batch_size: int, strategy: str = "bfd",
                    overlong: str = "error") -> Layout:
    """Each window of ``batch_size`` consecutive sequences packed on its own into rows of C: online packing.

    A server meets requests a few at a time; it can pack the B requests of one batch, not the
    whole day's. Rows of window k hold only requests kB .. kB + B - 1 (compare
    ``pack(lengths, C, strategy)``, which packs the whole sample at once: an offline,
    training-style layout). Rows are stacked window after window.

    >>> from packviz.layout import format_grid
    >>> print(format_grid(pack_in_windows([3, 5, 2, 4, 1], pack_len=6, batch_size=2)))
    B B B B B .
    A A A . . .
    D D D D C C
    E . . . . .
    """
    lengths = int_array("lengths", lengths)
    one_of("strategy", strategy, PACKED)
    parts = [pack(lengths[w.start:w.stop], pack_len, strategy, overlong=overlong)
             for w in windows(len(lengths), batch_size)]
    return stack_layouts(parts, [w.start for w in windows(len(lengths), batch_size)], num_sequences=len(lengths),
                         kind="packed", capacity=positive_int("pack_len", pack_len),
                         name=f"{strategy} per window of {batch_size}",
                         dropped_tokens=sum(p.dropped_tokens for p in parts))


def forwards(layout) -> np.ndarray:
    """The forward each segment runs in, shape (S,): a padded layout's batch (row // B), a packed layout's row.

    >>> forwards(pack([3, 5, 2, 4, 1], 6, "pad", batch_size=2)).tolist()
    [0, 0, 1, 1, 2]
    """
    layout = as_layout("layout", layout)
    if layout.kind == "padded" and layout.batch_size:
        return layout.seg_row // layout.batch_size
    return layout.seg_row.copy()


def fill_waits(layout, arrival_s) -> np.ndarray:
    """Seconds each sequence waits for the last arrival of its forward, shape (N,).

    A forward cannot start before all its requests have arrived, so a request that shares a
    forward with later arrivals waits for them (a sequence split over several forwards: the
    longest wait). ``arrival_s`` (N,): each sequence's arrival, in seconds.

    >>> lay = pack([3, 5, 2, 4], 6, "sorted", batch_size=2)   # batches {2, 0} and {3, 1}
    >>> fill_waits(lay, [0.0, 1.0, 2.0, 3.0]).tolist()
    [2.0, 2.0, 0.0, 0.0]
    """
    layout = as_layout("layout", layout)
    arrival = finite_floats("arrival_s", arrival_s)
    if arrival.shape != (layout.num_sequences,):
        raise ValueError(f"arrival_s has shape {arrival.shape}; expected one arrival per sequence, "
                         f"({layout.num_sequences},)")
    fwd = forwards(layout)
    last = np.full(int(fwd.max(initial=-1)) + 1, -np.inf)
    np.maximum.at(last, fwd, arrival[layout.seg_seq])
    waits = np.zeros(layout.num_sequences)
    np.maximum.at(waits, layout.seg_seq, last[fwd] - arrival[layout.seg_seq])
    return waits


def _padded(items, item_seq, batch_size, **common) -> Layout:
    n = len(items)
    step = min(batch_size, n)  # a batch_size beyond int64 (one batch of everything) stays out of numpy
    batch = np.arange(n) // step
    width_of_batch = np.maximum.reduceat(items, np.arange(0, n, step))
    return Layout(seg_row=np.arange(n), seg_offset=np.zeros(n, dtype=np.int64), seg_length=items,
                  seg_seq=item_seq, widths=width_of_batch[batch], kind="padded",
                  batch_size=batch_size, **common)


def _packed(placed: list, pack_len, **common) -> Layout:
    """Segments from ``placed = [items, item_seq, bins]`` (items in placement order, a bin per item).

    The list is emptied: each input array is freed as soon as its row-ordered copy exists (ten
    million items are 80 MB an array).
    """
    items, item_seq, bins = placed
    placed.clear()
    order = _stable_argsort(bins)  # within a bin, placement order = slot order
    rows = bins[order]
    del bins
    lens = items[order]
    del items
    seqs = item_seq[order]
    del item_seq, order
    num_rows = int(rows[-1]) + 1
    counts = np.bincount(rows, minlength=num_rows)
    offsets = np.cumsum(lens)
    offsets -= lens  # tokens before each segment, in the whole stream ...
    offsets -= np.repeat(offsets[np.cumsum(counts) - counts], counts)  # ... minus those before its row
    return Layout(seg_row=rows, seg_offset=offsets, seg_length=lens, seg_seq=seqs,
                  widths=np.full(num_rows, pack_len, dtype=np.int64), kind="packed", **common)


def _next_fit(items: np.ndarray, cap: int) -> np.ndarray:
    bins = np.empty(len(items), dtype=np.int64)
    b, room = 0, cap
    for i, n in enumerate(items.tolist()):
        if n > room:
            b, room = b + 1, cap
        bins[i] = b
        room -= n
    return bins


def _groups_of_equal(items: np.ndarray):
    """(size, start, stop) runs of equal values in a sorted-decreasing array."""
    edges = np.flatnonzero(np.diff(items)) + 1
    starts = np.concatenate([[0], edges])
    stops = np.concatenate([edges, [len(items)]])
    return zip(items[starts].tolist(), starts.tolist(), stops.tolist())


def _best_fit_sorted(items: np.ndarray, cap: int) -> np.ndarray:
    """Best-fit decreasing for items already sorted longest first.

    Equal items are placed together: best fit sends the next item of size s to the
    open pack with the least room >= s; after it lands that pack has even less room,
    so it stays the best fit while its room is >= s. Hence each pack, visited in
    order of increasing room, takes ``room // s`` items, and new packs take ``cap // s``.
    Packs with equal room are alike, so they are filled in one step.
    This is item-by-item BFD at numpy speed. (Between packs with equal room the choice
    is arbitrary; it changes which pack, never the rooms left, so never the row count.)

    Memory does not depend on C: the rooms that exist are kept as a sorted list of their
    distinct values (:class:`_Rooms`), not as an array over every possible room.
    """
    bins = np.empty(len(items), dtype=np.int64)
    rooms = _Rooms()
    num_bins = 0
    for s, a, b in _groups_of_equal(items):
        pos = a
        while pos < b:
            r = rooms.least_at_least(s)
            if r is None:
                break
            per = r // s  # items each pack with room r takes
            pids = rooms.take(r, -(-(b - pos) // per))
            take = min(len(pids) * per, b - pos)
            full = len(pids) - 1  # packs that take ``per`` items; the last takes the rest
            bins[pos: pos + full * per] = np.repeat(pids[:-1], per)
            bins[pos + full * per: pos + take] = pids[-1]
            rooms.add(r - per * s, pids[:-1])
            rooms.add(r - (take - full * per) * s, pids[-1:])
            pos += take
        if pos < b:  # open new packs, each holding cap // s items
            per = cap // s
            k = b - pos
            n_new = -(-k // per)
            bins[pos:b] = num_bins + np.arange(k) // per
            rooms.add(cap - per * s, range(num_bins, num_bins + n_new - 1))
            rooms.add(cap - (k - (n_new - 1) * per) * s, [num_bins + n_new - 1])
            num_bins += n_new
    return bins


class _Rooms:
    """Open packs by room left: the distinct rooms as a sorted list, the ids of the packs of each."""

    def __init__(self):
        self.values: list[int] = []  # sorted distinct rooms, all > 0
        self.packs: dict[int, list[int]] = {}  # room -> ids of the packs with exactly that room

    def least_at_least(self, s: int):
        """The smallest room >= s, or None."""
        i = bisect.bisect_left(self.values, s)
        return self.values[i] if i < len(self.values) else None

    def take(self, room: int, k: int) -> list[int]:
        """Remove up to ``k`` packs with ``room`` left (the latest added first); their ids."""
        stack = self.packs[room]
        pids = stack[-k:][::-1]
        del stack[-k:]
        if not stack:
            del self.packs[room]
            del self.values[bisect.bisect_left(self.values, room)]
        return pids

    def add(self, room: int, pids) -> None:
        """Record packs ``pids`` as having ``room`` left (a full pack, room 0, is closed)."""
        if room <= 0 or not len(pids):
            return
        if room not in self.packs:
            self.packs[room] = []
            bisect.insort(self.values, room)
        self.packs[room].extend(pids)


def _first_fit_sorted(items: np.ndarray, cap: int) -> np.ndarray:
    """First-fit decreasing for items sorted longest first.

    As in best fit, equal items are placed together: the first pack with room >= s
    keeps being the first while its room stays >= s, so each eligible pack (by id)
    takes ``room // s`` items in turn.
    """
    bins = np.empty(len(items), dtype=np.int64)
    room = np.empty(0, dtype=np.int64)
    for s, a, b in _groups_of_equal(items):
        pos = a
        for pid in np.flatnonzero(room >= s).tolist():
            take = min(int(room[pid]) // s, b - pos)
            bins[pos: pos + take] = pid
            room[pid] -= take * s
            pos += take
            if pos == b:
                break
        if pos < b:
            per = cap // s
            k = b - pos
            n_new = -(-k // per)
            bins[pos:b] = len(room) + np.arange(k) // per
            new_room = np.full(n_new, cap - per * s, dtype=np.int64)
            new_room[-1] = cap - (k - (n_new - 1) * per) * s
            room = np.concatenate([room, new_room])
    return bins


# ---------------------------------------------------------------------- comparison
def strategy_table(lengths, pack_len: int, batch_size: int = 32, overlong: str = "split",
                   strategies=STRATEGIES) -> list[dict]:
    """Every strategy on the same lengths: one dict per strategy, JSON-ready.

    ``c_rows`` = slots / C puts padded strategies (narrower rows, one sequence each) and
    packed ones on one footing; ``over_bound`` = c_rows / lower bound - 1.
    """
    import time

    lengths = validate_lengths(lengths)
    batch_size = positive_int("batch_size", batch_size)
    strategies = [one_of("strategy", s, STRATEGIES) for s in items("strategies", strategies, "a list of strategy names")]
    out = []
    for s in strategies:
        t0 = time.perf_counter()
        lay = pack(lengths, pack_len, s, batch_size=batch_size if s in PADDED else None, overlong=overlong)
        seconds = time.perf_counter() - t0
        c_rows = lay.slots / pack_len
        out.append({"strategy": s, "rows": lay.num_rows, "c_rows": c_rows, "lower_bound_rows": lay.lower_bound_rows,
                    "over_bound": c_rows / lay.lower_bound_rows - 1, "utilization": lay.utilization,
                    "seconds": seconds})
    return out


def format_strategy_table(rows: list[dict], seconds: bool = False) -> str:
    """:func:`strategy_table` as aligned text (``seconds=False`` keeps it deterministic)."""
    rows = [mapping(f"rows[{i}]", r, ("strategy", "rows", "c_rows", "lower_bound_rows", "over_bound", "utilization"),
                    "a row of strategy_table()") for i, r in enumerate(items("rows", rows, "strategy_table()'s list"))]
    seconds = flag("seconds", seconds)
    head = f"{'strategy':<9}{'rows':>9}{'slots / C':>11}{'lower bound':>13}{'over bound':>12}{'utilisation':>13}"
    lines = [head + (f"{'seconds':>9}" if seconds else "")]
    for r in rows:
        line = (f"{r['strategy']:<9}{r['rows']:>9,}{r['c_rows']:>11,.0f}{r['lower_bound_rows']:>13,}"
                f"{r['over_bound']:>12.2%}{r['utilization']:>13.2%}")
        lines.append(line + (f"{r['seconds']:>9.3f}" if seconds else ""))
    return "\n".join(lines)
