"""Plots: every function on tiny and large inputs, on its own figure and on a given ax; no pyplot state."""

import subprocess
import sys

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from packviz import colors, plot
from packviz.flops import Flops, compare, compare_as_dict
from packviz.layout import Layout
from packviz.packing import pack, pack_in_windows

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny():
    """One pack of 8 slots: A (3 tokens) B (2) C (2) and one pad."""
    return Layout.from_rows([[(0, 0, 3), (1, 3, 2), (2, 5, 2)]], widths=[8], kind="packed", capacity=8)


@pytest.fixture(scope="module")
def big_padded():
    lengths = np.random.default_rng(0).integers(1, 8193, 256)
    return pack(lengths, 8192, "pad", batch_size=256)


@pytest.fixture(scope="module")
def big_packed():
    lengths = np.random.default_rng(1).integers(1, 8193, 64)
    return pack(lengths, 8192, "bfd")


def _own_figure(ax, figsize):
    assert isinstance(ax.figure, plot.PackvizFigure)
    assert tuple(ax.figure.get_size_inches()) == pytest.approx(figsize)
    assert plot.to_png(ax).startswith(PNG)


def _given_ax():
    fig = Figure(figsize=(4, 3))
    return fig.add_subplot()


def _rgb(img, r, c):
    return tuple(np.asarray(img)[r, c, :3] / (255 if np.asarray(img).dtype == np.uint8 else 1))


# ---------------------------------------------------------------------- batch grid
def test_grid_image_colours(tiny):
    # padded batch of width 4 next to rows of width 2: slots beyond a row's width are white
    lay = Layout.from_rows([[(0, 0, 4)], [(1, 0, 1)], [(2, 0, 2)]], widths=[4, 4, 2], kind="padded")
    img = plot.grid_image(lay)
    assert img.shape == (3, 4, 3)
    pal = [to_rgb(c) for c in colors.OKABE_ITO]
    assert _rgb(img, 0, 3) == pytest.approx(pal[0], abs=1 / 255)
    assert _rgb(img, 1, 0) == pytest.approx(pal[1], abs=1 / 255)
    assert _rgb(img, 1, 1) == pytest.approx(to_rgb(colors.PAD_COLOR), abs=1 / 255)  # pad in a width-4 row
    assert _rgb(img, 2, 3) == pytest.approx(to_rgb(plot.NONE_COLOR), abs=1 / 255)  # beyond width 2
    # colouring both layouts at once: the same sequence has the same colour in both pictures
    packed = pack([4, 1, 2], 8, "next-fit")
    both = colors.sequence_color_index(lay, packed)
    pimg, img = plot.grid_image(packed, index=both), plot.grid_image(lay, index=both)
    assert _rgb(pimg, 0, 4) == _rgb(img, 1, 0)  # sequence 1 sits at slot 4 of the pack


def _touching_cells(img, ids):
    """(colour a, colour b) of every two cells side by side or one above the other holding different sequences."""
    out = []
    for a, b, ca, cb in ((ids[:, :-1], ids[:, 1:], img[:, :-1], img[:, 1:]), (ids[:-1], ids[1:], img[:-1], img[1:])):
        touch = (a != b) & (a >= 0) & (b >= 0)
        out.append((ca[touch], cb[touch]))
    return out


NEIGHBOUR_LAYOUTS = {
    "padded": lambda n: pack(n, 8192, "pad", batch_size=16),
    "sorted": lambda n: pack(n, 8192, "sorted", batch_size=16),
    "next-fit": lambda n: pack(n, 2048, "next-fit", overlong="split"),
    "bfd": lambda n: pack(n, 2048, "bfd", overlong="split"),
    "windows": lambda n: pack_in_windows(n, 4096, 32, overlong="split"),
}


@pytest.mark.parametrize("name", list(NEIGHBOUR_LAYOUTS))
def test_neighbours_never_share_a_colour(name):
    """Before: colour = sequence number mod 7, so sequences 0 and 7 side by side looked alike."""
    lengths = np.random.default_rng(3).integers(1, 3000, 400)
    lay = NEIGHBOUR_LAYOUTS[name](lengths)
    img, ids = plot.grid_image(lay), lay.slot_seq_grid()
    pairs = _touching_cells(img, ids)
    assert sum(len(a) for a, _ in pairs) > 100  # the check has something to check
    for a, b in pairs:
        assert (a != b).any(axis=-1).all()
    index = colors.sequence_color_index(lay)
    edges = colors.sequence_neighbours(lay)
    assert (index[edges[:, 0]] != index[edges[:, 1]]).all()


def test_neighbours_across_a_pad_gap_and_in_both_pictures():
    gap = Layout.from_rows([[(0, 0, 2), (1, 4, 2)]], widths=[6])  # A A . . B B: still neighbours
    assert colors.sequence_neighbours(gap).tolist() == [[0, 1]]
    lengths = [5, 3, 9, 2, 2, 7, 1, 4, 6, 3, 8, 2]
    padded, packed = pack(lengths, 12, "pad", batch_size=4), pack(lengths, 12, "bfd")
    ax_pad, ax_pack = plot.padded_vs_packed(padded, packed)
    colour = {}
    for ax, lay in ((ax_pad, padded), (ax_pack, packed)):
        img, ids = np.asarray(ax.images[0].get_array()), lay.slot_seq_grid()
        for a, b in _touching_cells(img, ids):
            assert (a != b).any(axis=-1).all()
        for s in range(len(lengths)):
            colour.setdefault(s, set()).update(map(tuple, img[ids == s]))
    assert all(len(c) == 1 for c in colour.values())  # one colour per sequence across both pictures


def test_colouring_falls_back_to_tints_only_when_seven_cannot_do():
    complete = np.array([(a, b) for a in range(9) for b in range(a + 1, 9)])  # 9 nodes all touching
    index = colors.color_index(range(9), complete, 9)
    assert sorted(index.tolist()) == list(range(9))
    assert len(set(colors.palette(9))) == 9 and colors.palette(7) == list(colors.OKABE_ITO)
    # no index given: the ids themselves are the picture; 0, 7 and 14 side by side differ
    rgb = colors.sequence_colors(np.array([0, 7, 14, plot.PAD]))
    assert tuple(rgb[0]) != tuple(rgb[1]) != tuple(rgb[2]) and tuple(rgb[3]) == to_rgb(colors.PAD_COLOR)


def test_batch_grid_tiny_labels_every_row_with_utilisation(tiny):
    ax = plot.batch_grid(tiny)
    _own_figure(ax, (8, 4))
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0: 88%"]  # 7 of 8 slots
    assert "utilisation 87.5%" in ax.get_title()
    assert np.array_equal(ax.images[0].get_array(), plot.grid_image(tiny))


def test_batch_grid_on_given_ax(tiny):
    ax = _given_ax()
    assert plot.batch_grid(tiny, ax=ax) is ax
    assert len(ax.images) == 1


def test_batch_grid_large_labels_a_subset_and_says_rows_hidden(big_packed):
    ax = plot.batch_grid(big_packed, max_rows=10, max_labels=4)
    assert f"first 10 of {big_packed.num_rows} rows" in ax.get_title()
    assert len(ax.get_yticklabels()) == 4  # every 3rd of 10
    assert ax.images[0].get_array().shape[0] == 10


def test_batch_grid_256_by_8192_renders_every_row(big_padded):
    """How fast: scripts/bench_plots.py (a benchmark, not a timed test)."""
    assert big_padded.num_rows == 256 and big_padded.widths.max() > 8000
    ax = plot.batch_grid(big_padded)
    assert plot.to_png(ax).startswith(PNG)
    assert ax.get_ylim() == (256, 0) and ax.get_xlim() == (0, int(big_padded.widths.max()))


def test_batch_grid_height_never_hides_rows():
    lay = pack([3, 2, 4], 4, "pad", batch_size=1)
    ax = plot.batch_grid(lay, height=1)  # asked for less than the 3 rows shown: all 3 stay in view
    assert ax.get_ylim() == (3, 0)
    assert plot.batch_grid(lay, height=5).get_ylim() == (5, 0)


def test_padded_vs_packed_share_scale(tiny, big_padded, big_packed):
    lengths = [3, 2, 2]
    padded = pack(lengths, 8, "pad", batch_size=2)
    a, b = plot.padded_vs_packed(padded, tiny)
    assert a.figure is b.figure and isinstance(a.figure, plot.PackvizFigure)
    assert a.get_xlim() == (0, 3) and b.get_xlim() == (0, tiny.widths.max())  # each panel its own slots
    assert a.get_ylim() == b.get_ylim() and a.get_ylim()[0] == 3  # padded has 3 rows, packed 1: same row scale
    # one slot scale: each panel as wide as its slots, so the area is the slots paid for (no empty half)
    wa, wb = a.get_position().width, b.get_position().width
    assert wa / wb == pytest.approx(3 / tiny.widths.max())
    assert a.get_position().height == b.get_position().height
    assert "padded" in a.get_title() and "packed" in b.get_title()
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    assert plot.padded_vs_packed(big_padded, big_packed, axes=axes) == tuple(axes)
    assert plot.to_png(fig).startswith(PNG)


# ---------------------------------------------------------------------- mask
def test_mask_image_matches_block_causal_mask(tiny):
    img = plot.mask_image(tiny, 0)
    expected = tiny.block_causal_mask(0, include_pads=True)
    masked = np.all(np.isclose(img, to_rgb(plot.MASKED_COLOR)), axis=-1)
    pad = np.all(np.isclose(img, to_rgb(colors.PAD_COLOR)), axis=-1)
    allowed = ~masked & ~pad
    assert np.array_equal(allowed, expected)
    assert pad[7].all() and pad[:, 7].all() and not pad[:7, :7].any()
    assert tuple(img[1, 0]) == pytest.approx(to_rgb(colors.OKABE_ITO[0]))
    assert tuple(img[4, 3]) == pytest.approx(to_rgb(colors.OKABE_ITO[1]))


def test_mask_tiny_is_readable(tiny):
    ax = plot.mask(tiny, 0)
    _own_figure(ax, (5.5, 5.5))
    # one label per slot: position ids restart per sequence, the pad is a dot
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2", "0", "1", "0", "1", "·"]
    assert len(ax.collections[0].get_segments()) == 4 * 3  # a square around each sequence
    assert "needed 12 of 64 pairs" in ax.get_title()  # 3*4/2 + 2*3/2 + 2*3/2 of 8*8


def test_mask_large_is_sampled_and_keeps_boundaries(big_packed):
    row = int(np.argmax([len(big_packed.row_lengths(r)) for r in range(big_packed.num_rows)]))
    n_seq = len(big_packed.row_lengths(row))
    img = plot.mask_image(big_packed, row, max_pixels=512)
    assert img.shape == (512, 512, 3)  # never 8192 x 8192
    ax = plot.mask(big_packed, row)
    _own_figure(ax, (5.5, 5.5))
    assert ax.images[0].get_extent() == [0, 8192, 8192, 0]
    assert len(ax.collections[0].get_segments()) == 4 * n_seq
    ax2 = _given_ax()
    assert plot.mask(big_packed, row, ax=ax2) is ax2
    with pytest.raises(IndexError):
        plot.mask(big_packed, big_packed.num_rows)


# ---------------------------------------------------------------------- positions
def test_sawtooth_tiny_plots_position_ids(tiny):
    ax = plot.position_sawtooth(tiny, 0)
    _own_figure(ax, (8, 3))
    lines = ax.get_lines()
    continued, seqs = lines[0], lines[1:]
    assert list(continued.get_ydata()) == list(range(7))  # the not-reset positions, for contrast
    assert "no boundary" in continued.get_label()  # the harm is the lost boundary (RoPE alone would not mind)
    ys = np.concatenate([ln.get_ydata() for ln in seqs])
    assert ys.tolist() == tiny.position_ids(0).tolist() == [0, 1, 2, 0, 1, 0, 1]
    assert [ln.get_color() for ln in seqs] == list(colors.OKABE_ITO[:3])


def test_sawtooth_large_and_given_ax(big_packed):
    ax = _given_ax()
    assert plot.position_sawtooth(big_packed, 0, ax=ax, show_continued=False) is ax
    ys = np.concatenate([ln.get_ydata() for ln in ax.get_lines()])
    assert np.array_equal(ys, big_packed.position_ids(0))


# ---------------------------------------------------------------------- waste
def test_waste_bars_from_compare():
    lengths = [50, 4000]
    r = compare(pack(lengths, 4096, "pad", batch_size=2), pack(lengths, 4096, "bfd"), "llama-3-8b")
    ax = plot.waste_bars(r)
    _own_figure(ax, (7, 4))
    assert "TFLOP" in ax.get_ylabel()
    bars = ax.patches
    order = ["useful", "padded", "padded-masked", "dense", "flex", "varlen"]
    assert len(bars) == 2 * len(order)  # (linear, attention) per bar
    lin = [p.get_height() for p in bars[:len(order)]]
    att = [p.get_height() for p in bars[len(order):]]
    for i, k in enumerate(order):
        assert lin[i] == pytest.approx(r[k].linear / 1e12)
        assert att[i] == pytest.approx(r[k].attention / 1e12)
        assert bars[len(order) + i].get_y() == pytest.approx(lin[i])  # stacked
    texts = [t.get_text() for t in ax.texts]
    assert any(f"{r['waste_fraction']['padded']:.0%} waste" in t for t in texts)
    # the JSON form draws the same bars
    ax2 = plot.waste_bars(compare_as_dict(r), ax=_given_ax())
    assert [p.get_height() for p in ax2.patches] == pytest.approx(lin + att)


def test_waste_bars_tiny_mapping():
    ax = plot.waste_bars({"useful": Flops(3, 1), "padded": Flops(6, 2)})
    assert [p.get_height() for p in ax.patches] == [3, 6, 1, 2]
    assert ax.get_ylabel() == "prefill FLOPs"
    assert any("50% waste" in t.get_text() for t in ax.texts)


# ---------------------------------------------------------------------- global state
def test_no_pyplot_state():
    """Every plot function in a fresh interpreter: pyplot never imported, no figure registered."""
    code = """
import sys
from packviz import plot
from packviz.flops import compare
from packviz.packing import pack
pd, pk = pack([5, 3, 9], 16, "pad", batch_size=2), pack([5, 3, 9], 16, "bfd")
plot.to_png(plot.batch_grid(pk)); plot.to_png(plot.padded_vs_packed(pd, pk)[0])
plot.to_png(plot.mask(pk, 0)); plot.to_png(plot.position_sawtooth(pk, 0))
plot.to_png(plot.waste_bars(compare(pd, pk, "llama-3.2-1b")))
assert "matplotlib.pyplot" not in sys.modules, "pyplot imported"
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def test_figure_displays_itself_in_jupyter(tiny):
    fig = plot.batch_grid(tiny).figure
    assert fig._repr_png_().startswith(PNG)


def test_lines_draws_one_line_per_series_on_a_given_ax():
    from matplotlib.figure import Figure

    from packviz import plot

    ax = Figure(figsize=(4, 3)).add_subplot()
    out = plot.lines([1, 2, 4, 8], {"a": [0.1, 0.2, 0.3, 0.4], "b": [0.5, 0.4, 0.3, 0.2]}, ax=ax,
                     percent=True, logx=True, xlabel="batch size")
    assert out is ax and len(ax.lines) == 2
    assert ax.get_xscale() == "log" and [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "4", "8"]
    assert ax.get_ylim() == (0, 1) and ax.get_legend() is not None


# ---------------------------------------------------------------------- one window, row by row
def test_window_rows_colour_neighbours_apart_and_a_request_alike_in_both_panels():
    lengths = [5, 1, 1, 1, 1, 1, 1, 1, 1, 2, 3]
    padded, packed = pack(lengths, 8, "pad", batch_size=11), pack(lengths, 8, "bfd")
    a, b = plot.window_rows(padded, packed)
    colour = {}
    for ax, lay in ((a, padded), (b, packed)):
        bars = ax.patches[lay.num_rows:]  # after the grey band of every row: one bar per segment
        for seg, bar in zip(range(lay.num_segments), bars):
            c = tuple(round(v, 6) for v in bar.get_facecolor()[:3])
            assert colour.setdefault(int(lay.seg_seq[seg]), c) == c  # one colour per request in both panels
    for lay in (padded, packed):
        for x, y in colors.sequence_neighbours(lay).tolist():
            assert colour[x] != colour[y]


def test_window_rows_bars_are_row_utilisation_on_one_scale():
    lengths = [3, 2, 6, 1]
    padded, packed = pack(lengths, 8, "pad", batch_size=4), pack(lengths, 8, "bfd")
    a, b = plot.window_rows(padded, packed, figsize=(8, 4))
    fig = a.figure
    assert isinstance(fig, plot.PackvizFigure) and b.figure is fig and len(fig.axes) == 4
    assert a.get_xlim() == (0, 6) and b.get_xlim() == (0, 8)  # each panel as wide as its rows: W = 6, C = 8
    assert a.get_ylim() == (3.5, -0.5) and b.get_ylim() == (packed.num_rows - 0.5, -0.5)
    # one scale: a slot as wide and a row as tall in both panels (area = token slots)
    pa, pb = a.get_position(), b.get_position()
    assert pa.width / 6 == pytest.approx(pb.width / 8) and pa.height / 4 == pytest.approx(pb.height / packed.num_rows)
    assert list(a.get_xticks()) == [t for t in b.get_xticks() if t <= 6]
    bars_pad, bars_pack = fig.axes[2], fig.axes[3]
    assert [p.get_width() for p in bars_pad.patches] == pytest.approx(padded.row_utilization())
    assert [p.get_width() for p in bars_pack.patches] == pytest.approx(packed.row_utilization())
    assert [t.get_text() for t in bars_pad.texts] == [f"{u:.0%}" for u in padded.row_utilization()]
    # a grey band per row (its width) under one coloured bar per segment
    assert len(a.patches) == padded.num_rows + padded.num_segments
    assert "W = 6" in a.get_title(loc="left") and "C = 8" in b.get_title(loc="left")
    assert plot.to_png(fig).startswith(PNG)
    given = Figure(figsize=(6, 4)).subplots(2, 2).T.ravel()
    assert plot.window_rows(padded, packed, axes=given) == (given[0], given[1])


def test_window_spread_legend_gives_medians_and_offline():
    padded_util, packed_util = np.array([0.2, 0.3, 0.4]), np.array([0.8, 0.9, 1.0])
    ax = plot.window_spread(padded_util, packed_util, offline=0.995, totals=(0.25, 0.875))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("padded: median window 30.0%") and "median window 90.0%" in labels[1]
    assert "all windows' slots together 25.0%" in labels[0] and "together 87.5%" in labels[1]  # both statistics named
    assert "99.5%" in labels[2]
    assert sum(p.get_height() for p in ax.patches) == 6       # every window counted once
    assert [round(line.get_xdata()[0], 3) for line in ax.lines] == [0.3, 0.9, 0.995]
    _own_figure(ax, (10, 3.4))
    given = _given_ax()
    assert plot.window_spread(padded_util, packed_util, ax=given) is given


# ---------------------------------------------------------------------- attention share, roofline, batches
def test_attention_share_curve_draws_the_shares_and_the_crossover():
    from packviz.flops import attention_crossover, attention_share

    ax = plot.attention_share_curve("llama-3-8b", marks={"median": 1020})
    _own_figure(ax, (7.5, 3.6))
    x = 2 ** np.arange(9, 18)
    line = ax.get_lines()[0]
    assert list(line.get_xdata()) == list(x)
    assert np.allclose(line.get_ydata(), attention_share(x, "llama-3-8b"))
    verticals = [ln.get_xdata()[0] for ln in ax.get_lines()[1:]]
    assert verticals == [attention_crossover("llama-3-8b"), 1020]
    assert [t.get_text() for t in ax.get_xticklabels()][-1] == "128k"


def test_roofline_puts_points_on_the_roof():
    ax = plot.roofline({"a": ([1.0, 1000.0], ["lo", "hi"])}, flop_rate=100e12, byte_rate=1e12, ax=_given_ax())
    pts = ax.collections[0].get_offsets()
    assert np.allclose(pts, [[1.0, 1.0], [1000.0, 100.0]])  # min(R, I·BW) in TFLOP/s: 1 (memory), 100 (compute)
    assert ax.get_lines()[0].get_ydata().max() == pytest.approx(100)
    assert [t.get_text() for t in ax.texts][-2:] == ["lo", "hi"]


def test_batch_membership_one_line_per_forward_with_waits():
    lay = pack([3, 5, 2, 4, 1, 6], 8, "sorted", batch_size=2)     # batches {4, 2}, {0, 3}, {1, 5}
    ax = plot.batch_membership(lay, arrival_s=np.arange(6.0))
    _own_figure(ax, (6, 3.2))
    from matplotlib.collections import PathCollection

    members = [sorted(c.get_offsets()[:, 0].tolist()) for c in ax.collections if isinstance(c, PathCollection)]
    assert members == [[2, 4], [0, 3], [1, 5]]
    assert [t.get_text() for t in ax.texts] == ["waits 2.0 s", "waits 3.0 s", "waits 4.0 s"]


def test_colors_docstring_examples_run():
    import doctest

    assert doctest.testmod(colors).failed == 0


def test_prefill_speedup_spread_counts_every_window_and_marks_the_recorded_ones():
    speedups = {"varlen": np.array([2.0, 3.0, 3.0, 4.0, 5.0]), "dense": np.array([1.5, 2.0, 2.5, 2.5, 3.0])}
    ax = plot.prefill_speedup_spread(speedups, {"varlen": [2.37, 4.03]})
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "varlen: median 3.00×, p10–p90 2.40×–4.60×" and labels[1].startswith("dense: median 2.50×")
    assert labels[2] == "varlen, the recorded run's windows: 2.37×, 4.03×"
    assert len(ax.patches) == 2  # one step outline per method, no band when several are drawn
    xs = sorted(round(float(line.get_xdata()[0]), 2) for line in ax.lines if len(line.get_xdata()))
    assert {2.37, 4.03, 3.0, 2.5, 1.0} <= set(xs)  # the recorded windows, the medians, the 1x line
    assert [t.get_text() for t in ax.texts] == ["w1", "w2"]
    _own_figure(ax, (10, 3.8))
    given = _given_ax()
    assert plot.prefill_speedup_spread({"varlen": speedups["varlen"]}, ax=given) is given
    assert len(given.patches) == 2  # one outline and its shaded p10-p90 band


def test_standard_figures_pack_per_window_and_name_their_sample():
    from packviz.packing import pack_in_windows
    from packviz import trace_numbers

    figs = plot.standard_figures()
    ax = figs["waste_azure_llama-3-8b.png"]()
    waste = trace_numbers.summary()["flops"]["waste"]["dense"]  # what notebook 01 prints
    labels = [t.get_text() for t in ax.texts]
    assert any(f"{waste:.0%} waste" in t for t in labels), labels
    assert "whole trace" in ax.get_title() and "windows of 32" in ax.get_title()
    seed_ax = figs["batch_grid_seed.png"]()
    assert "seed scenario" in seed_ax.figure.get_suptitle()
    packed_title = seed_ax.figure.axes[1].get_title(loc="left")
    from packviz.lengths import seed_scenario
    online = pack_in_windows(seed_scenario(16, seed=0), 8192, 8)
    assert "per window of 8" in packed_title and f"{online.utilization:.1%}" in packed_title
    assert figs["mask_8192_tokens.png"]().get_title().startswith("trace window ")


def test_the_readme_figure_is_what_packviz_figures_draws_now():
    """The README's first picture is ``batch_grid_seed.png`` of ``python -m packviz figures``: drawn again
    here and compared pixel for pixel, so a change to the slide set cannot leave a stale figure on the
    project's front page (regenerate: ``python -m packviz figures --out DIR`` and copy it over)."""
    import io
    import pathlib

    from matplotlib.image import imread

    readme_png = pathlib.Path(__file__).resolve().parents[1] / "docs" / "padded_vs_packed.png"
    assert "docs/padded_vs_packed.png" in (readme_png.parents[1] / "README.md").read_text()
    drawn = imread(io.BytesIO(plot.to_png(plot.standard_figures()["batch_grid_seed.png"](), dpi=150)))  # figures --dpi default
    stored = imread(readme_png)
    assert drawn.shape == stored.shape and np.array_equal(drawn, stored), "docs/padded_vs_packed.png is stale"
