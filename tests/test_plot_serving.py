"""Serving pictures: what they draw, without pyplot."""

import numpy as np
import pytest

from packviz import plot_serving
from packviz.serving import POLICIES, load_sweep, simulate, summary
from packviz.trace import Trace, azure_conv


def test_slot_timeline_draws_prefill_decode_and_idle_bars():
    w = azure_conv().window(8, seed=0)
    r = simulate(w, "static", arrivals="offline", max_batch=4)
    ax = plot_serving.slot_timeline(r)
    idle = int((r.release_s > r.finish_s).sum())
    assert len(ax.patches) == 2 * len(w) + idle                 # prefill + decode per request, idle where held
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"slot {i}" for i in range(4)]
    assert ax.figure.get_size_inches().tolist() == [10, 2.8]
    cont = simulate(w, "continuous", arrivals="offline", max_batch=4)
    assert len(plot_serving.slot_timeline(cont).patches) == 2 * len(w)   # no idle slots


def test_bars_and_curves():
    w = azure_conv().window(60, seed=2)
    rows = [summary(simulate(w, p, arrivals="offline", max_batch=8)) for p in POLICIES]
    kv = plot_serving.kv_bars(rows)
    assert len(kv.patches) == 2 * len(POLICIES)
    heights = [p.get_height() for p in kv.patches]
    assert np.allclose(heights[:4], [s["kv_reserved_mean_tokens"] for s in rows])
    assert len(plot_serving.utilisation_bars(rows).patches) == 2 * len(POLICIES)
    sweep = load_sweep(w, policies=("static", "continuous"), rate_scales=(0.5, 1.0), max_batch=8)
    left, right = plot_serving.load_curves(sweep, slo_s=5)
    assert len(left.lines) == 2 and len(right.lines) == 3          # two policies, plus the SLO line
    assert right.get_yscale() == "log"


def test_requests_that_touch_on_the_timeline_never_share_a_colour():
    import numpy as np

    from packviz.plot_serving import slot_neighbours, slot_timeline
    from packviz.serving import simulate
    from packviz.trace import azure_conv

    r = simulate(azure_conv().window(12, seed=0), "continuous", arrivals="offline", max_batch=4)
    edges = slot_neighbours(r)
    assert len(edges) and (edges[:, 0] < edges[:, 1]).all()
    # every request but the last on its slot has a successor there
    assert sum(1 for s in set(r.slot.tolist()) for _ in range((r.slot == s).sum() - 1)) <= len(edges)
    ax = slot_timeline(r)
    decode = {}
    for bar in ax.patches:
        x0, y, w = bar.get_x(), round(bar.get_y() + bar.get_height() / 2), bar.get_width()
        for i in range(len(r.trace)):
            if int(r.slot[i]) == y and np.isclose(x0, r.first_token_s[i]) and np.isclose(w, r.finish_s[i] - r.first_token_s[i]):
                decode[i] = tuple(np.round(bar.get_facecolor()[:3], 6))
    for a, b in edges.tolist():
        if a in decode and b in decode:
            assert decode[a] != decode[b], (a, b)


# ---------------------------------------------------------------------- a run step by step
def small_window(n=6, seed=3, scale=16):
    """Real trace requests at 1/scale, all at t = 0 (the notebook 09 set-up)."""
    from packviz.trace import Trace

    w = azure_conv().window(n, seed=seed)
    return Trace(np.zeros(n), -(-w.prompt_tokens // scale), -(-w.generated_tokens // scale), name="small")


def stepped(policy, **kw):
    kw = {"max_batch": 3, "token_budget": 24, **kw}
    return simulate(small_window(), policy, model="tiny", fast_forward=False, **kw)


def rgb(patch):
    return tuple(np.round(patch.get_facecolor()[:3], 6))


def test_step_grid_draws_one_cell_per_request_and_step_it_is_in():
    from packviz.serving import timeline

    r = stepped("static")
    table = timeline.step_table(r.plans)
    ax = plot_serving.step_grid(r.plans)
    assert len(ax.patches) == int((table.state != timeline.NONE).sum())
    hatched = [p for p in ax.patches if p.get_hatch() == "///"]
    assert len(hatched) == r.ledger.decode_idle_slot_steps > 0                 # a finished request's slot, held
    texts = sorted(t.get_text() for t in ax.texts)
    pieces = sorted(f"{x.tokens}" + (f"\n+{x.pad}" if x.pad else "") for p in r.plans for x in p.prefills)
    assert texts == pieces and any("+" in t for t in texts)                    # token counts, pads after a +
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"r{i}" for i in range(len(r.trace))]
    assert ax.figure.get_size_inches().tolist() == [10, 2.6]


def test_step_grid_shows_a_preemption_and_neighbours_in_different_colours():
    from packviz.serving import timeline

    r = stepped("continuous", kv_budget_tokens=288)
    assert r.ledger.preemptions == 1
    ax = plot_serving.step_grid(r.plans)
    assert [t.get_text() for t in ax.texts].count("X") == 1
    by_cell = {(round(p.get_y() + 0.5), round(p.get_x() + 0.5)): rgb(p) for p in ax.patches}
    table = timeline.step_table(r.plans)
    pairs = 0
    for a, j in zip(*np.nonzero(table.state[:-1] == timeline.DECODE)):
        if table.state[a + 1, j] == timeline.DECODE:                           # two decodes one above the other
            assert by_cell[(a, j)] != by_cell[(a + 1, j)]
            pairs += 1
    assert pairs > 0


def test_pages_stack_to_what_the_scheduler_reserved():
    r = stepped("chunked", kv_budget_tokens=288)
    ax = plot_serving.kv_page_bars(r.plans, 16, budget_tokens=288)
    from packviz.serving import timeline

    pages = timeline.pages_held(r.plans, 16)
    assert len(ax.patches) == int((pages > 0).sum())
    tops = {}
    for bar in ax.patches:
        x = round(bar.get_x() + bar.get_width() / 2)
        tops[x] = max(tops.get(x, 0), bar.get_y() + bar.get_height())
    assert [tops.get(j, 0) * 16 for j in range(len(r.plans))] == [p.kv_reserved for p in r.plans]
    assert ax.lines[0].get_ydata()[0] == 288 // 16                            # the budget, in pages


def test_engine_pictures_share_one_colour_per_request(one_torch_thread):
    from matplotlib.colors import to_rgb

    from packviz.colors import palette
    from packviz.model import build_model
    from packviz.serving import run_engine, timeline
    from packviz.serving.engine.runner import step_arrays
    from packviz.serving.hf import disable_eos

    model = build_model("tiny", seed=0)
    disable_eos(model)
    r = run_engine(model, small_window(), "chunked", max_batch=3, token_budget=24)
    index = plot_serving.request_color_index(r)
    colors = [to_rgb(c) for c in palette(max(7, int(index.max()) + 1))]
    for a, b in plot_serving.request_neighbours(r.plans, r.kv_regions, r.kv_capacity_tokens).tolist():
        assert index[a] != index[b], (a, b)
    # the physical cache: every owned row in its request's colour, free rows white
    ax = plot_serving.kv_cache_map(r.kv_regions, r.kv_capacity_tokens, index=index)
    image, grid = ax.images[0].get_array(), timeline.kv_rows(r.kv_regions, r.kv_capacity_tokens)
    assert image.shape == (r.kv_capacity_tokens, len(r.plans), 3)
    for (row, j), owner in np.ndenumerate(grid[::7]):
        want = (1.0, 1.0, 1.0) if owner < 0 else colors[index[owner]]
        assert np.allclose(image[row * 7, j], want)
    tall = {f"r{q}" for regions in r.kv_regions for q, (_, n) in regions.items() if n >= 0.05 * r.kv_capacity_tokens}
    assert {t.get_text() for t in ax.texts} == tall and len(tall) >= 4          # each region tall enough, labelled
    # one mixed step's stream: a patch per token, in the same colours, ticks at cu_seqlens_q
    j = next(k for k, p in enumerate(r.plans) if p.decodes and len(p.prefills) == 2)
    starts = {q: s for q, (s, _) in r.kv_regions[j].items()}
    arrays = step_arrays(r.plans[j], [p + o for p, o in zip(r.prompts, r.outputs)], starts, r.kv_capacity_tokens)
    ax = plot_serving.ragged_stream(arrays, index=index)
    tokens = timeline.stream_table(arrays)["request"]
    assert len(ax.patches) == len(tokens) == r.plans[j].num_tokens
    assert [rgb(p) for p in ax.patches] == [tuple(np.round(colors[index[q]], 6)) for q in tokens]
    assert [int(t.get_text()) for t in ax.get_xticklabels()] == arrays["cu_seqlens_q"].tolist()
    shown = [t.get_text() for t in ax.texts]
    assert shown[1:3 * len(tokens):3] == [str(v) for v in arrays["positions"]]   # each token's ids, position, slot
    assert arrays["positions"].tolist().count(0) >= 1                          # a sequence starts in this step
    # the step grid: a decoding request's cells in its colour
    ax = plot_serving.step_grid(r.plans, index=index)
    table = timeline.step_table(r.plans)
    for p, (q, k) in zip(ax.patches, zip(*np.nonzero(table.state))):
        if table.state[q, k] == timeline.DECODE:
            assert rgb(p) == tuple(np.round(colors[index[q]], 6))


def test_step_time_scatter_puts_each_point_at_predicted_measured():
    import pytest

    points = [{"kind": "prefill", "seconds": 0.020}, {"kind": "decode", "seconds": 0.010},
              {"kind": "decode", "seconds": 0.012}]
    ax = plot_serving.step_time_scatter(points, [0.018, 0.009, 0.013])
    assert len(ax.collections) == 2                                            # one per kind
    assert np.allclose(ax.collections[1].get_offsets(), [[9, 10], [13, 12]])  # ms: (predicted, measured)
    assert ax.get_xscale() == ax.get_yscale() == "log"
    with pytest.raises(ValueError, match="2 predictions for 3 points"):
        plot_serving.step_time_scatter(points, [0.1, 0.2])


def test_time_split_bars_stack_to_the_makespan():
    from packviz.plot_serving import SPLIT_COLORS, time_split_bars

    tr = Trace(np.zeros(4), np.array([10, 300, 20, 40]), np.array([30, 2, 8, 5]))
    rows = [summary(simulate(tr, p, arrivals="offline", max_batch=2)) for p in ("static", "continuous")]
    ax = time_split_bars(rows)
    widths = {}
    for bar in ax.patches:
        y = round(bar.get_y() + bar.get_height() / 2)
        widths[y] = widths.get(y, 0.0) + bar.get_width()
    assert sorted(widths) == [0, 1] and all(w == pytest.approx(1.0) for w in widths.values())
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "prompt padding" in legend and "useful FLOPs at peak (MFU)" in legend
    from matplotlib.colors import to_rgba

    pad = [b.get_width() for b in ax.patches if b.get_facecolor() == pytest.approx(to_rgba(SPLIT_COLORS["padding"]))]
    assert pad[0] > 0 and pad[1] == 0                      # only static pads its prompts
    with pytest.raises(ValueError, match="no time split for static"):
        time_split_bars([{**rows[0], "time_split_s": None}])


def test_budget_tradeoff_labels_each_budget():
    from packviz.plot_serving import budget_tradeoff
    from packviz.serving import budget_sweep

    rows = budget_sweep(azure_conv().window(120, seed=2), rate_scale=2.0, budgets=(512, 4096), max_batch=16)
    ax = budget_tradeoff(rows)
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == pytest.approx([r["itl_s"]["p99"] * 1e3 for r in rows])
    assert [t.get_text() for t in ax.texts] == ["512", "4,096"]


# ---------------------------------------------------------------------- the step player's frames
def _three_runs():
    from packviz.exercises import serving_window

    w = serving_window()
    return {p: simulate(w, p, model="tiny", arrivals="offline", max_batch=3, token_budget=24,
                        fast_forward=False).plans for p in ("static", "continuous", "chunked")}


def _bars(ax):
    """{request: (state, width)} of the frame's request bars (their gid is 'label:rN:state')."""
    out = {}
    for p in ax.patches:
        if p.get_gid():
            _, r, state = p.get_gid().split(":")
            out[int(r[1:])] = (state, p.get_width())
    return out


def test_a_frame_shows_exactly_the_requests_each_plan_runs():
    from packviz.serving import timeline

    runs = _three_runs()
    longest = max(len(p) for p in runs.values())
    for step in range(0, longest + 1, 3):
        axes = plot_serving.step_frame(runs, step)
        assert len(axes) == 3
        for ax, (label, plans) in zip(axes, runs.items()):
            bars = _bars(ax)
            assert sorted(bars) == list(range(6))
            running = {r for r, (state, _) in bars.items() if state in ("decode", "prefill")}
            idle = {r for r, (state, _) in bars.items() if state == "idle"}
            if step < len(plans):
                plan = plans[step]
                assert running == (set(plan.decodes) - set(plan.idle)) | {x.request for x in plan.prefills}
                assert idle == set(plan.idle)
                pages = timeline.pages_held(plans, 16, 6)[:, step]
                assert [bars[r][1] for r in range(6)] == pages.tolist()
                assert ax.get_title(loc="left").startswith(f"{label}, step {step}: {len(running)} running")
            else:
                assert {s for s, _ in bars.values()} == {"done"} and "all done" in ax.get_title(loc="left")


def test_a_frame_counts_pages_and_draws_the_freed_ones():
    runs = _three_runs()
    # continuous: step 0 prefills r0's 83 prompt tokens: ceil(83 / 16) = 6 pages
    assert _bars(plot_serving.step_frame(runs, 0)[1])[0] == ("prefill", 6)
    # r2 (prompt 15, 5 tokens out) is released after its last decode: the next frame shows its pages freed
    plans = runs["continuous"]
    step = next(p.step for p in plans if 2 in p.released) + 1
    ax = plot_serving.step_frame(runs, step)[1]
    assert _bars(ax)[2] == ("done", 0)
    freed = [p for p in ax.patches if not p.get_gid() and p.get_y() == 2 - 0.38]
    assert len(freed) == 1 and freed[0].get_width() == -(-(15 + 5 - 1) // 16)      # 19 tokens written: 2 pages
    assert any(t.get_text() == "done, 2 freed" for t in ax.texts)
    prefill = [t.get_text() for t in plot_serving.step_frame(runs, 0)[0].texts]
    assert "prefill [0:65] +18 pad" in prefill                                    # static pads r1 to r0's 83


def test_the_strip_draws_one_frame_per_step_and_run_and_refuses_bad_input():
    runs = _three_runs()
    fig = plot_serving.step_strip(runs, [0, 9, 40])
    assert len(fig.axes) == 9
    titles = [ax.get_title(loc="left") for ax in fig.axes[:3]]                 # row 0: static at each step
    assert titles[0].startswith("static, step 0:") and titles[1].startswith("static, step 9:")
    assert titles[2] == f"static: all done after {len(runs['static'])} steps"
    with pytest.raises(ValueError, match="at least one plan per run"):
        plot_serving.step_frame({"static": []}, 0)
    with pytest.raises(ValueError, match="3 runs and got 1 axes"):
        plot_serving.step_frame(runs, 0, axes=[fig.axes[0]])
    with pytest.raises(ValueError, match="at least one step"):
        plot_serving.step_strip(runs, [])
