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
