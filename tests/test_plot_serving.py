"""Serving pictures: what they draw, without pyplot."""

import numpy as np

from packviz import plot_serving
from packviz.serving import POLICIES, load_sweep, simulate, summary
from packviz.trace import azure_conv


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
