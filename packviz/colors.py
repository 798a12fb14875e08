"""Colours for pictures of sequences: neighbours never share one. matplotlib's colour helpers and numpy only.

A picture of a layout draws sequences side by side in a row and one above the other in
adjacent rows. Colouring sequence ``i`` by ``i mod 7`` puts two neighbours in one colour as
soon as their numbers differ by a multiple of 7 (best-fit decreasing reorders them, so it
happens all the time). Here the neighbours of a picture are found first
(:func:`sequence_neighbours`, :func:`grid_neighbours`), then coloured like a map
(:func:`color_index`: greedy in smallest-last order, seven colours suffice for any planar
picture) and numbered in display order, so the first sequence drawn is always orange::

    >>> from packviz.packing import pack
    >>> lay = pack([4, 1, 2, 3], 5, "next-fit")          # rows: 0 1 | 2 3
    >>> sequence_neighbours(lay).tolist()
    [[0, 1], [0, 2], [0, 3], [1, 3], [2, 3]]
    >>> sequence_color_index(lay).tolist()
    [0, 1, 2, 3]
"""

from __future__ import annotations

import numpy as np
from matplotlib.colors import to_hex, to_rgb

from .checks import positive_int
from .layout import PAD

OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")
"""Okabe & Ito (2008) colour-blind-safe palette, black left out (it is the boundary colour)."""
PAD_COLOR = "#B0B0B0"
"""Pads: a neutral grey."""


def palette(k: int) -> list:
    """``k`` distinct colours as hex strings: the Okabe-Ito seven, then lighter tints of them.

    Tints are needed only when a picture's neighbour graph cannot be coloured with seven
    (see :func:`color_index`); every layout of sequences that sit in one segment each never needs them.
    """
    k = positive_int("k", k)
    out = list(OKABE_ITO[:k])
    for j in range(len(OKABE_ITO), k):
        level = j // len(OKABE_ITO)
        white = 1 - 0.55 ** level
        out.append(to_hex(white + (1 - white) * np.asarray(to_rgb(OKABE_ITO[j % len(OKABE_ITO)]))))
    return out


def sequence_neighbours(layout) -> np.ndarray:
    """Pairs of sequences that touch in a picture of ``layout``, shape (E, 2), each pair once (a < b).

    Neighbours: consecutive segments of one row (with or without pads between them), and
    segments of adjacent rows whose slots overlap (one drawn above the other). A sequence
    split into chunks is one node.

    >>> from packviz.packing import pack
    >>> sequence_neighbours(pack([4, 1, 2, 3], 5, "next-fit")).tolist()   # rows: 0 1 | 2 3
    [[0, 1], [0, 2], [0, 3], [1, 3], [2, 3]]
    """
    seq, row = layout.seg_seq, layout.seg_row
    start, end = layout.seg_offset, layout.seg_offset + layout.seg_length
    same_row = row[1:] == row[:-1]
    pairs = [np.stack([seq[:-1][same_row], seq[1:][same_row]], axis=1)]
    K = int(layout.widths.max(initial=0)) + 1
    start_key, end_key = row * K + start, row * K + end          # sorted: segments are in (row, offset) order
    lo = np.searchsorted(end_key, (row + 1) * K + start, side="right")   # first segment below ending after my start
    hi = np.searchsorted(start_key, (row + 1) * K + end, side="left")    # first one below starting at my end
    count = np.maximum(hi - lo, 0)
    below = np.repeat(lo - np.cumsum(count) + count, count) + np.arange(int(count.sum()))
    pairs.append(np.stack([np.repeat(seq, count), seq[below]], axis=1))
    return _unique_pairs(np.concatenate(pairs))


def grid_neighbours(seq_ids) -> np.ndarray:
    """Pairs of sequence ids (E, 2) side by side or one above the other in an id grid (R, W) or (W,); pads ignored."""
    ids = np.atleast_2d(np.asarray(seq_ids))
    pairs = np.concatenate([np.stack([ids[:, :-1].ravel(), ids[:, 1:].ravel()], axis=1),
                            np.stack([ids[:-1].ravel(), ids[1:].ravel()], axis=1)])
    return _unique_pairs(pairs[(pairs >= 0).all(axis=1)])


def _unique_pairs(pairs: np.ndarray) -> np.ndarray:
    pairs = np.sort(pairs.reshape(-1, 2).astype(np.int64), axis=1)
    return np.unique(pairs[pairs[:, 0] != pairs[:, 1]], axis=0)


def color_index(order, edges, size: int, groups=None) -> np.ndarray:
    """A palette index per node (size,) such that the two ends of every edge (E, 2) differ; -1 off ``order``.

    Greedy colouring in smallest-last order (repeatedly set aside a node of least remaining
    degree, colour in reverse): each node meets at most 5 coloured neighbours in any planar
    picture, so seven colours always do. ``groups`` (size,), e.g. each sequence's row: among
    the free colours a node takes the one its group uses least (then the one the whole picture
    uses least), so a row of up to seven sequences shows seven colours. Last, colours are
    renumbered in ``order`` (display order): the first sequence drawn is orange, the next new
    colour sky blue, and so on. A graph that seven colours cannot do (never a planar one) gets
    as many tints as its densest node needs.
    """
    order = [int(v) for v in order]
    adj = [[] for _ in range(size)]
    for a, b in np.asarray(edges, dtype=np.int64).reshape(-1, 2).tolist():
        adj[a].append(b)
        adj[b].append(a)
    group = [None] * size if groups is None else np.asarray(groups).tolist()
    colors = (_greedy(_smallest_last(order, adj), adj, group, len(OKABE_ITO))
              or _greedy(order, adj, group, 1 + max((len(adj[v]) for v in order), default=0)))
    renumber = {}
    for v in order:
        renumber.setdefault(colors[v], len(renumber))
    return np.asarray([renumber.get(c, -1) for c in colors], dtype=np.int64)


def _greedy(order, adj, group, k):
    """Colour ``order`` with ``k`` colours: each node the free colour its group, then the picture, uses least.

    None if a node finds no colour free.
    """
    color, counts, overall = [-1] * len(adj), {}, [0] * k
    for v in order:
        used = {color[u] for u in adj[v]}
        count = counts.setdefault(group[v], [0] * k) if group[v] is not None else [0] * k
        free = [c for c in range(k) if c not in used]
        if not free:
            return None
        color[v] = min(free, key=lambda c: (count[c], overall[c], c))  # rare in its row, then overall
        count[color[v]] += 1
        overall[color[v]] += 1
    return color


def _smallest_last(order, adj):
    """Nodes in smallest-last order: repeatedly remove a node of least remaining degree, then reverse."""
    import heapq

    deg = {v: len(adj[v]) for v in order}
    heap = [(d, i, v) for i, (v, d) in enumerate(deg.items())]
    heapq.heapify(heap)
    removed, out = set(), []
    while heap:
        d, i, v = heapq.heappop(heap)
        if v in removed or d != deg[v]:
            continue
        removed.add(v)
        out.append(v)
        for u in adj[v]:
            if u not in removed:
                deg[u] -= 1
                heapq.heappush(heap, (deg[u], i, u))
    return out[::-1]


def sequence_color_index(*layouts) -> np.ndarray:
    """Palette index of every sequence id (S,) for pictures of these layouts (-1: in none of them).

    Neighbours (:func:`sequence_neighbours`) in *any* of the layouts get different colours, so
    one index serves a padded and a packed picture of the same sequences side by side: the
    same sequence, the same colour, and no two touching sequences alike in either.
    """
    if not layouts:
        raise ValueError("sequence_color_index needs at least one layout")
    size = max(int(lay.seg_seq.max(initial=-1)) + 1 for lay in layouts)
    seq = np.concatenate([lay.seg_seq for lay in layouts])
    row = np.concatenate([lay.seg_row + i * (1 << 40) for i, lay in enumerate(layouts)])
    _, first = np.unique(seq, return_index=True)
    first = np.sort(first)  # display order: first appearance, first layout first
    groups = np.full(size, -1, dtype=np.int64)
    groups[seq[first]] = row[first]  # a sequence's row: where it first appears
    edges = np.concatenate([sequence_neighbours(lay) for lay in layouts])
    return color_index(seq[first], edges, size, groups)


def sequence_colors(seq_ids, index=None) -> np.ndarray:
    """RGB (..., 3) of sequence ids (...): a palette colour each, :data:`PAD_COLOR` for ``PAD``.

    ``index``: a palette index per sequence id (:func:`sequence_color_index` of the layout
    drawn). Without it, the ids themselves are taken as the picture (a row (W,) or a grid
    (R, W)) and coloured so that ids side by side or one above the other differ.
    """
    ids = np.asarray(seq_ids)
    if index is None:
        flat = ids[ids >= 0]
        _, first = np.unique(flat, return_index=True)
        index = color_index(flat[np.sort(first)], grid_neighbours(ids), int(ids.max(initial=-1)) + 1)
    index = np.asarray(index)
    lut = np.array([to_rgb(c) for c in palette(max(len(OKABE_ITO), int(index.max(initial=0)) + 1))])
    rgb = lut[index[np.where(ids >= 0, ids, 0)]] if index.size else np.zeros(ids.shape + (3,))
    rgb[ids == PAD] = to_rgb(PAD_COLOR)
    return rgb
