"""The serving simulator: hand-computed timelines for every policy, closed forms, properties."""

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from packviz.serving import calibration, costs, metrics, scheduler, simulator, sweep
from packviz.serving import POLICIES, simulate, summary
from packviz.serving.costs import CostModel, Line, span_sums, steps_to_reach
from packviz.trace import Trace, azure_conv

# Every step takes exactly 1 s (no FLOP or byte limit, 1 s overhead): timelines count steps.
UNIT = CostModel("unit", 1e30, 1e30, 1.0, 1.0, 1e12)


def three(arrivals=(0.0, 0.0, 0.0)):
    """r0: P 2, G 3;  r1: P 3, G 1;  r2: P 1, G 2."""
    return Trace(np.array(arrivals), np.array([2, 3, 1]), np.array([3, 1, 2]))


def run(trace, policy, **kw):
    kw = {"model": "tiny", "gpu": UNIT, "max_batch": 2, "kv_budget_tokens": 1024, **kw}
    return simulate(trace, policy, **kw)


def timeline(r):
    return {k: getattr(r, k).tolist() for k in ("start_s", "first_token_s", "finish_s", "release_s")}


@pytest.mark.parametrize("module", [costs, scheduler, simulator, metrics, sweep, calibration])
def test_doctests(module):
    assert doctest.testmod(module).failed == 0


# ---------------------------------------------------------------------- hand-made timelines
def test_static_by_hand():
    # batch {r0, r1}: prefill step 1 (W = 3: one pad), decode steps 2-3 (r1 finished: its slot idles);
    # then r2 alone: prefill step 4, decode step 5.
    r = run(three(), "static")
    assert timeline(r) == {"start_s": [0, 0, 3], "first_token_s": [1, 1, 4], "finish_s": [3, 1, 5],
                           "release_s": [3, 3, 5]}
    led = r.ledger
    assert (led.prefill_pad_tokens, led.prefill_tokens) == (1, 6 + 1)
    assert (led.decode_slot_steps, led.decode_idle_slot_steps) == (2 * 2 + 1, 2)
    # KV reserved per slot W + max G: 2 × (3 + 3) for 3 s, then 1 × (1 + 2) for 2 s
    assert led.kv_reserved_token_s == 12 * 3 + 3 * 2
    # KV of unfinished requests after each step: 5, 3, 4 | 1, 2
    assert led.kv_used_token_s == 5 + 3 + 4 + 1 + 2
    assert r.slot.tolist() == [0, 1, 0]


def test_static_packed_by_hand():
    r = run(three(), "static-packed")
    assert timeline(r) == timeline(run(three(), "static"))          # same steps, the unit cost ignores pads
    assert r.ledger.prefill_pad_tokens == 0 and r.ledger.prefill_tokens == 6
    assert r.ledger.kv_reserved_token_s == (2 + 3 + 2 * 3) * 3 + (1 + 2) * 2   # Σ (P + max G) per batch


def test_continuous_by_hand():
    # step 1: r0, r1 prefill (r1 done: G = 1); step 2: r0 decodes, r2 joins; step 3: both decode, both done
    r = run(three(), "continuous")
    assert timeline(r) == {"start_s": [0, 0, 1], "first_token_s": [1, 1, 2], "finish_s": [3, 1, 3],
                           "release_s": [3, 1, 3]}
    led = r.ledger
    assert (led.steps, led.decode_slot_steps, led.decode_idle_slot_steps) == (3, 3, 0)
    assert led.kv_used_token_s == 5 + 4 + 6
    assert led.kv_reserved_token_s == 3 * 32            # two pages of 16 in every step
    assert r.slot.tolist() == [0, 1, 1]                 # r2 takes the slot r1 left


def test_chunked_by_hand():
    # budget 3 tokens per step. step 1: r0 (2) + 1 token of r1; step 2: r0 decodes + r1's last 2 (done);
    # step 3: r0's last decode + r2's prefill (r1's slot); step 4: r2 decodes.
    r = run(three(), "chunked", token_budget=3)
    assert timeline(r) == {"start_s": [0, 0, 2], "first_token_s": [1, 2, 3], "finish_s": [3, 2, 4],
                           "release_s": [3, 2, 4]}
    assert r.ledger.steps == 4 and r.ledger.decode_idle_slot_steps == 0
    assert r.ledger.kv_used_token_s == 3 + 6 + 5 + 2


def test_static_does_not_wait_to_fill_a_batch():
    # r0 alone at t = 0 runs as a batch of one; r1 and r2 (arrived meanwhile) form the next batch.
    r = run(three((0.0, 0.5, 1.0)), "static")
    assert r.start_s.tolist() == [0, 3, 3]
    assert r.finish_s.tolist() == [3, 4, 5]


def test_continuous_joins_at_the_next_step_boundary():
    # r2 arrives at 1.5, during step 2: it joins at step 3 (t = 2)
    r = run(three((0.0, 0.0, 1.5)), "continuous")
    assert r.start_s.tolist() == [0, 0, 2] and r.finish_s.tolist() == [3, 1, 4]


def test_idle_server_waits_for_the_next_arrival():
    r = run(three((0.0, 10.0, 20.0)), "continuous")
    assert r.start_s.tolist() == [0, 10, 20]
    assert r.finish_s.tolist() == [3, 11, 22]
    # the unit cost model's steps are all overhead: host time between kernels, not busy time
    assert (r.ledger.busy_s, r.ledger.host_s) == (0.0, 3 + 1 + 2)


def test_preemption_by_hand():
    # pages of 1 token, 8 in all. r0: P 3, G 4; r1: P 3, G 3.
    # step 1: both prefill (3 + 3 pages); step 2: both decode (4 + 4 = 8);
    # step 3: growth to 10 > 8 -> preempt r1 (admitted last; KV 4 discarded), r0 decodes alone;
    # step 4: r0's last decode (r1 needs 3 + 2 = 5 pages, 2 free: waits);
    # step 5: r1 recomputed: prefill of P + 2 emitted = 5 tokens, which emits its 3rd and last token.
    tr = Trace(np.zeros(2), np.array([3, 3]), np.array([4, 3]))
    r = run(tr, "continuous", kv_budget_tokens=8, page_size=1)
    assert r.start_s.tolist() == [0, 0]
    assert r.first_token_s.tolist() == [1, 1]
    assert r.finish_s.tolist() == [4, 5]
    led = r.ledger
    assert (led.preemptions, led.recomputed_tokens) == (1, 4)
    assert led.prefill_tokens == 3 + 3 + 5
    assert led.decode_slot_steps == 2 + 1 + 1
    assert led.prefill_emissions == 3
    assert led.kv_reserved_peak <= 8


def test_offline_static_batches_are_consecutive_groups():
    tr = azure_conv().window(70, seed=1)
    r = simulate(tr, "static", arrivals="offline", max_batch=32)
    assert np.all(r.trace.arrival_s == 0)
    starts = np.unique(r.start_s)
    assert len(starts) == 3
    assert [int((r.start_s == s).sum()) for s in starts] == [32, 32, 6]


def test_kv_budget_caps_a_static_batch():
    tr = Trace(np.zeros(4), np.array([10, 10, 10, 10]), np.array([5, 5, 5, 5]))
    r = run(tr, "static", max_batch=4, kv_budget_tokens=32)          # 15 tokens per slot: 2 fit
    assert r.start_s.tolist() == [0, 0, r.release_s[0], r.release_s[0]]
    assert r.ledger.kv_reserved_peak == 30


# ---------------------------------------------------------------------- costs
def test_padded_prefill_pricing_masked_vs_causal():
    assert costs.padded_prefill_work([3, 5]).pairs == 2 * 25
    assert costs.padded_prefill_work([3, 5], "causal").pairs == 2 * 15
    assert costs.varlen_prefill_work([3, 5]).pairs == 6 + 15
    with pytest.raises(ValueError, match="padded_attention must be one of"):
        costs.padded_prefill_work([3], "square")


def test_masked_pricing_makes_static_slower_than_causal():
    tr = azure_conv().window(64, seed=0)
    masked = summary(simulate(tr, "static", padded_attention="masked"))
    causal = summary(simulate(tr, "static", padded_attention="causal"))
    assert masked["flops_spent"] > causal["flops_spent"]
    assert masked["makespan_s"] >= causal["makespan_s"]


def test_roofline_step_on_an_h100():
    # One decode step of one request with 1,000 tokens of context on Llama-3-8B: memory-bound,
    # the weights a step reads (16.06 GB less the 1.05 GB embedding table, of which it gathers a row) + KV
    # (1,000 read and 1 written × 128 KiB) at 0.8 × 3.35 TB/s (the datasheet: no copy rate recorded), plus 2 ms.
    p = costs.Pricer("llama-3-8b", costs.preset_cost_model("h100"))
    w = costs.Work(1, 1, 1001, 1000, 1)
    expect = (16_060_522_496 - 128256 * 4096 * 2 + 1001 * 131072) / 2.68e12 + 0.002
    assert p.seconds(w) == pytest.approx(expect, rel=1e-9)
    assert p.flops(w) / p.cost.flop_rate < p.bytes(w) / p.cost.byte_rate


@settings(max_examples=200, deadline=None)
@given(u0=st.floats(0, 5), u1=st.floats(-0.5, 1), v0=st.floats(0, 5), v1=st.floats(-0.5, 1),
       o=st.floats(0, 1), k=st.integers(0, 60))
def test_span_sums_match_a_loop(u0, u1, v0, v1, o, k):
    line = Line(u0, u1, v0, v1, o)
    steps = [max(u0 + u1 * j, v0 + v1 * j) + o for j in range(1, k + 1)]
    total, ktotal = span_sums(line, k)
    assert total == pytest.approx(sum(steps), rel=1e-9, abs=1e-9)
    assert ktotal == pytest.approx(sum(j * t for j, t in enumerate(steps, 1)), rel=1e-9, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(u0=st.floats(0, 5), u1=st.floats(0, 1), v0=st.floats(0.01, 5), v1=st.floats(0, 1),
       o=st.floats(0, 1), k=st.integers(1, 60), x=st.floats(0, 400))
def test_steps_to_reach_is_the_first_step_past_a_time(u0, u1, v0, v1, o, k, x):
    line = Line(u0, u1, v0, v1, o)
    cum = np.cumsum([max(u0 + u1 * j, v0 + v1 * j) + o for j in range(1, k + 1)])
    got = steps_to_reach(line, x, k)
    if x <= 0:
        assert got == 0
    elif cum[-1] < x * (1 - 1e-12):
        assert got is None
    else:
        want = int(np.argmax(cum >= x * (1 - 1e-12))) + 1
        assert got in (want, want + 1) and cum[got - 1] >= x * (1 - 1e-9)


# ---------------------------------------------------------------------- properties
@st.composite
def small_runs(draw):
    n = draw(st.integers(1, 10))
    p = draw(st.lists(st.integers(1, 40), min_size=n, max_size=n))
    g = draw(st.lists(st.integers(1, 20), min_size=n, max_size=n))
    gaps = draw(st.lists(st.floats(0, 3), min_size=n, max_size=n))
    policy = draw(st.sampled_from(POLICIES))
    max_batch = draw(st.integers(1, 4))
    page = draw(st.sampled_from([1, 4, 16]))
    need = max(-(-(a + b) // page) * page for a, b in zip(p, g))
    kw = dict(max_batch=max_batch, page_size=page, token_budget=draw(st.integers(max_batch, 48)),
              kv_budget_tokens=draw(st.integers(need, 3 * need)))
    arrivals = np.cumsum(gaps) - gaps[0]
    cost = draw(st.sampled_from([UNIT, CostModel("tiny-gpu", 2e8, 5e8, 0.01, 1e9, 1e12)]))
    return Trace(arrivals, np.array(p), np.array(g)), policy, cost, kw


@settings(max_examples=150, deadline=None)
@given(small_runs())
def test_every_request_completes_and_tokens_are_conserved(case):
    tr, policy, cost, kw = case
    r = simulate(tr, policy, model="tiny", gpu=cost, **kw)
    led = r.ledger
    assert np.isfinite(r.finish_s).all()
    assert (r.start_s >= tr.arrival_s - 1e-12).all()
    assert (r.first_token_s > r.start_s).all() and (r.finish_s >= r.first_token_s).all()
    assert (r.release_s >= r.finish_s).all()
    # every generated token comes from a prefill or a decode slot that had work
    useful_decodes = led.decode_slot_steps - led.decode_idle_slot_steps
    assert useful_decodes + led.prefill_emissions == tr.generated_tokens.sum()
    # no KV over budget
    assert led.kv_reserved_peak <= r.kv_budget_tokens
    assert led.kv_used_peak <= led.kv_reserved_peak
    # prompt tokens: every prompt prefilled once, plus pads and recomputation
    assert led.prefill_tokens >= tr.prompt_tokens.sum() + led.prefill_pad_tokens
    assert r.slot.max() < kw["max_batch"]


@settings(max_examples=150, deadline=None)
@given(small_runs())
def test_continuous_never_wastes_a_decode_slot(case):
    tr, policy, cost, kw = case
    if policy.startswith("static"):
        policy = "continuous"
    led = simulate(tr, policy, model="tiny", gpu=cost, **kw).ledger
    assert led.decode_idle_slot_steps == 0
    assert led.prefill_tokens == tr.prompt_tokens.sum() + led.recomputed_tokens + \
        (led.prefill_emissions - len(tr))        # a recomputation re-feeds the tokens emitted so far
    if led.preemptions == 0:
        assert led.decode_slot_steps == (tr.generated_tokens - 1).sum()


@settings(max_examples=150, deadline=None)
@given(small_runs())
def test_closed_form_spans_give_the_step_by_step_timeline(case):
    tr, policy, cost, kw = case
    fast = simulate(tr, policy, model="tiny", gpu=cost, **kw)
    slow = simulate(tr, policy, model="tiny", gpu=cost, fast_forward=False, **kw)
    assert len(slow.plans) == slow.ledger.steps and not fast.plans
    for key in ("start_s", "first_token_s", "finish_s", "release_s"):
        np.testing.assert_allclose(getattr(fast, key), getattr(slow, key), rtol=1e-9, atol=1e-9)
    a, b = fast.ledger, slow.ledger
    assert (a.steps, a.decode_slot_steps, a.preemptions, a.prefill_tokens) == \
        (b.steps, b.decode_slot_steps, b.preemptions, b.prefill_tokens)
    assert a.busy_s == pytest.approx(b.busy_s, rel=1e-9)
    assert a.flops == pytest.approx(b.flops, rel=1e-9)
    assert a.kv_used_token_s == pytest.approx(b.kv_used_token_s, rel=1e-9)
    assert (a.kv_used_peak, a.decode_idle_slot_steps, a.prefill_pad_tokens) == \
        (b.kv_used_peak, b.decode_idle_slot_steps, b.prefill_pad_tokens)


@settings(max_examples=60, deadline=None)
@given(small_runs())
def test_a_recorded_clock_replays_the_same_schedule(case):
    """Given one run's step times, the simulator makes the same plans at the same times (what an
    engine run is checked against); other step times move arrivals, and with them the schedule."""
    tr, policy, cost, kw = case
    first = simulate(tr, policy, model="tiny", gpu=cost, fast_forward=False, **kw)
    again = simulate(tr, policy, model="tiny", gpu=cost, clock=first.step_seconds, **kw)
    assert [p.key() for p in again.plans] == [p.key() for p in first.plans]
    np.testing.assert_array_equal(again.finish_s, first.finish_s)
    assert again.clock == "recorded" and first.clock == "priced"
    too_short = first.step_seconds[:-1]
    with pytest.raises(ValueError, match="the recorded clock has"):
        simulate(tr, policy, model="tiny", gpu=cost, clock=too_short, **kw)


def test_static_stepwise_plans_by_hand():
    r = run(three(), "static", fast_forward=False)
    assert [p.describe() for p in r.plans] == ["prefill r0[0:2]+1 pad r1[0:3]", "decode r0 r1(idle)",
                                               "decode r0 r1(idle)", "prefill r2[0:1]", "decode r2"]
    assert [p.finishing for p in r.plans] == [(1,), (), (0,), (), (2,)]
    assert [p.kv_pad for p in r.plans] == [0, 1, 1, 0, 0]        # r0's one pad, read by every padded decode


def test_static_wastes_decode_slots_on_a_real_window():
    tr = azure_conv().window(200, seed=3)
    s = {p: summary(simulate(tr, p, max_batch=16)) for p in POLICIES}
    assert s["static"]["decode_wasted_slot_steps"] > 0 and s["static"]["prefill_pad_tokens"] > 0
    assert s["static-packed"]["prefill_pad_tokens"] == 0
    for p in ("continuous", "chunked"):
        assert s[p]["decode_wasted_slot_steps"] == 0
        assert s[p]["decode_slot_steps"] == s[p]["decode_useful_steps"]
        assert s[p]["kv_used_over_reserved"] > s["static"]["kv_used_over_reserved"]


# ---------------------------------------------------------------------- metrics, sweeps
CONTRACT = ("policy", "num_requests", "completed", "prompt_tokens", "generated_tokens", "prefill_pad_tokens",
            "decode_slot_steps", "decode_useful_steps", "output_tokens_per_s", "makespan_s", "ttft_s", "tpot_s",
            "e2e_s", "gpu_busy_fraction", "useful_flop_fraction", "seconds")


def test_summary_has_the_cli_contract_and_consistent_numbers():
    tr = three()
    s = summary(run(tr, "static"))
    assert set(CONTRACT) <= set(s)
    assert (s["num_requests"], s["completed"], s["prompt_tokens"], s["generated_tokens"]) == (3, 3, 6, 6)
    assert (s["decode_slot_steps"], s["decode_useful_steps"]) == (5, 3)
    assert s["makespan_s"] == 5 and s["output_tokens_per_s"] == 6 / 5
    assert s["ttft_s"] == metrics.percentiles([1, 1, 4])
    assert s["tpot_s"]["p50"] == pytest.approx(1.0)           # r0: 2 s for 2 tokens, r2: 1 s for 1
    assert s["itl_s"] == {"p50": 1.0, "p90": 1.0, "p99": 1.0}  # every gap is one 1-s step
    assert (s["gpu_busy_fraction"], s["host_fraction"]) == (0.0, 1.0)   # unit steps: all overhead, no kernel


def test_busy_high_useful_low_under_static():
    """Saturated (offline), same requests: both policies keep the GPU busy; MFU and MBU tell them apart."""
    tr = azure_conv().window(300, seed=2)
    st, co = (summary(simulate(tr, p, arrivals="offline")) for p in ("static", "continuous"))
    assert st["gpu_busy_fraction"] > 0.8 and co["gpu_busy_fraction"] > 0.8
    assert st["mfu"] < 0.1 and co["mfu"] > 3 * st["mfu"] and co["mbu"] > 1.5 * st["mbu"]
    assert st["time_split_s"]["padding"] > 0 and co["time_split_s"]["padding"] == 0


def test_format_table_one_row_per_summary():
    rows = [summary(run(three(), p)) for p in POLICIES]
    text = metrics.format_table(rows)
    assert len(text.splitlines()) == 5 and text.splitlines()[1].startswith("static ")
    text = metrics.format_summary(rows[0])
    assert "completed:  3 of 3 in 5.0 s" in text and "1 prompt pad tokens" in text


def test_saturation_and_capacity_order_the_policies():
    tr = azure_conv().window(400, seed=5)
    sat_static = sweep.saturation_rate_scale(tr, "static")
    sat_cont = sweep.saturation_rate_scale(tr, "continuous")
    assert 0 < sat_static < sat_cont
    cap = {p: sweep.capacity(tr, p, slo_ttft_p99_s=5.0, hi=8.0, rel_tol=0.1) for p in ("static", "continuous")}
    assert cap["continuous"]["rate_scale"] > cap["static"]["rate_scale"]
    assert cap["continuous"]["ttft_p99_s"] <= 5.0


def test_capacity_reports_an_unreachable_slo():
    c = sweep.capacity(three(), "static", slo_ttft_p99_s=0.1, lo=0.5, hi=2, model="tiny", gpu=UNIT,
                       max_batch=2, kv_budget_tokens=1024)
    assert c["rate_scale"] == 0.0 and "misses the SLO" in c["note"]


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize("kw, message", [
    (dict(policy="fifo"), "policy must be one of"),
    (dict(rate_scale=0), "rate_scale must be a finite number > 0, got 0"),
    (dict(rate_scale=-2.0), "got -2.0"),
    (dict(max_batch=0), "max_batch must be a positive integer, got 0"),
    (dict(kv_budget_tokens=4), "kv_budget_tokens 4 is too small for request 0"),
    (dict(policy="chunked", token_budget=1), "token_budget 1 is below max_batch 2"),
    (dict(arrivals="later"), "arrivals must be one of"),
    (dict(gpu="b200"), "unknown GPU 'b200'"),
    (dict(padded_attention="square"), "padded_attention must be one of"),
    (dict(model="llama-4"), "unknown model 'llama-4'"),
])
def test_bad_input_is_named(kw, message):
    kw = {"policy": "static", **kw}
    policy = kw.pop("policy")
    with pytest.raises(ValueError, match=message):
        run(three(), policy, **kw)


def test_model_too_large_for_the_gpu():
    with pytest.raises(ValueError, match="leaves no room for a KV cache"):
        simulate(three(), "static", model="llama-3-70b", gpu="h100")


def test_a_device_fit_uses_the_kernels_own_time(tmp_path):
    """Wall time = kernels + host overhead: fitted on kernel time, the same points give faster rates."""
    from packviz.serving import calibration as C

    points = []
    for n in (1024, 2048, 4096, 8192):
        points.append({"kind": "prefill", "batch": 1, "tokens": n, "context": 0})
    for b in (1, 8, 32, 64):
        points.append({"kind": "decode", "batch": b, "tokens": 1, "context": 2048})
    model = C.preset_cost_model("h100")
    pricer = C.Pricer(C.get_shape("llama-3-8b"), model)
    for p in points:
        w = C.point_work(p)
        gpu = max(pricer.flops(w) / model.flop_rate, pricer.bytes(w) / model.byte_rate)
        p.update(gpu_seconds=gpu, seconds=gpu + 0.04)  # a 40 ms host floor on every step
    cal = {"model": "llama-3-8b", "device": {"name": "NVIDIA H100 80GB HBM3"}, "points": points}
    wall, device = C.fit_calibration(cal), C.device_fit(cal)
    assert device["byte_rate"] == pytest.approx(model.byte_rate, rel=1e-3)
    assert device["overhead_s"] == pytest.approx(0, abs=1e-6)
    assert wall["overhead_s"] == pytest.approx(0.04, rel=0.05)
    assert C.device_fit({"points": points[:2]}) is None
    # the split cost model: the kernels' roofline plus the host's measured time per step
    f = tmp_path / "calibration.json"
    f.write_text(__import__("json").dumps({**cal, "schema": C.CALIBRATION_SCHEMA}))
    assert C.host_gap(cal) == pytest.approx(0.04)
    split, wall_cm, dev_cm = (C.calibrated_cost_model(f, c) for c in ("split", "wall", "device"))
    assert split.overhead_s == pytest.approx(0.04) and split.byte_rate == pytest.approx(device["byte_rate"])
    assert dev_cm.overhead_s == pytest.approx(0, abs=1e-6) and dev_cm.name == "calibrated-device"
    assert C.calibrated_cost_model(f).overhead_s == split.overhead_s  # auto: split when kernel times exist
    with pytest.raises(ValueError, match="costs must be one of"):
        C.calibrated_cost_model(f, "median")


# ---------------------------------------------------------------------- issue 20: latency SLOs, busy vs useful
def test_tpot_and_itl_by_hand():
    """Mixed steps take 1 s, decode-only steps 0.5 s. r0 (P 2, G 4) at t = 0; r1 (P 3, G 2) at 0.6 s.
    step 0 prefill r0 (1 s) | 1 decode r0 + prefill r1 (1 s) | 2 decode r0 r1 (0.5 s) | 3 decode r0 (0.5 s)."""
    cost = CostModel("halves", 1e30, 1e30, 1.0, 1.0, 1e12, decode_overhead_s=0.5)
    tr = Trace(np.array([0.0, 0.6]), np.array([2, 3]), np.array([4, 2]))
    r = simulate(tr, "continuous", model="tiny", gpu=cost, max_batch=2, kv_budget_tokens=64, fast_forward=False)
    assert [p.describe() for p in r.plans] == ["prefill r0[0:2]", "decode r0 | prefill r1[0:3]", "decode r0 r1",
                                               "decode r0"]
    s = summary(r)
    # gaps between tokens: r0 1 s, 0.5 s, 0.5 s; r1 0.5 s -> 0.5 s three times, 1 s once
    assert s["itl_s"] == {"p50": 0.5, "p90": 1.0, "p99": 1.0}
    assert metrics.latencies(r)["tpot_s"].tolist() == [(3.0 - 1.0) / 3, (2.5 - 2.0) / 1]
    fast = summary(simulate(tr, "continuous", model="tiny", gpu=cost, max_batch=2, kv_budget_tokens=64))
    assert fast["itl_s"] == s["itl_s"]                      # the closed-form spans give the same samples


def test_busy_mfu_mbu_and_the_time_split_by_hand():
    """Static, B = 2, offline: r0 (P 2, G 3), r1 (P 3, G 1). Compute at exactly peak FLOP/s, memory free,
    0.25 s of host time per step. Counted on paper (module docstring of costs: linear per token L,
    lm_head per row H, attention per pair A):
      step 0  prefill padded to W = 3, masked: 6 token slots, 2 rows, 2 × 9 pairs
      step 1  decode r0 (context 2) and idle r1 (context 3), 1 pad KV: 2 tokens, 2 rows, 2 + 3 + 1 + 2 pairs
      step 2  the same one token later: 3 + 4 + 1 + 2 pairs
    useful: 7 tokens, 4 rows, 16 pairs; padding: 1 token, 9 + 1 + 1 pairs; idle slots: 2 tokens and
    rows, 4 + 5 pairs."""
    peak, bandwidth = 1e9, 2e9
    cost = CostModel("at-peak", peak, 1e30, 0.25, peak, 1e12, peak_bytes_per_s=bandwidth)
    r = simulate(Trace(np.zeros(2), np.array([2, 3]), np.array([3, 1])), "static",
                 model="tiny", gpu=cost, arrivals="offline", max_batch=2, kv_budget_tokens=64)
    p = costs.Pricer("tiny", cost)
    L, H, A = p.linear, p.lm_head, p.attn
    useful, pad, idle = 7 * L + 4 * H + 16 * A, 1 * L + 11 * A, 2 * (L + H) + 9 * A
    assert r.useful_flops == pytest.approx(useful)
    assert r.ledger.flops == pytest.approx(useful + pad + idle)
    s = summary(r)
    busy, host = (useful + pad + idle) / peak, 3 * 0.25
    assert s["makespan_s"] == pytest.approx(busy + host)
    assert s["time_split_s"] == pytest.approx({"useful": useful / peak, "padding": pad / peak,
                                               "idle_slots": idle / peak, "recompute": 0.0, "dense_attention": 0.0,
                                               "below_peak": 0.0, "host": host, "waiting": 0.0}, abs=1e-12)
    assert s["gpu_busy_fraction"] == pytest.approx(busy / (busy + host))
    assert s["mfu"] == pytest.approx(useful / (peak * (busy + host)))
    # bytes that had to move: the weights in each of 3 steps, and live KV: 5 written, then r0's 2 + 1, 3 + 1
    live = 3 * p.weight_bytes + (5 + 3 + 4) * p.kv_bytes
    assert s["mbu"] == pytest.approx(live / (bandwidth * (busy + host)))


def test_recomputation_and_dense_attention_are_their_own_slices():
    tr = Trace(np.zeros(2), np.array([3, 3]), np.array([4, 3]))           # the preemption example above
    r = run(tr, "continuous", kv_budget_tokens=8, page_size=1, fast_forward=False)
    assert r.ledger.recomputed_tokens == 4
    assert sum(x.recomputed for plan in r.plans for x in plan.prefills) == r.ledger.recomputed_tokens == 4
    p = costs.Pricer("tiny", UNIT)
    assert r.ledger.waste_flops["recompute"] == pytest.approx(4 * p.linear + (4 * 5 // 2) * p.attn)
    assert r.ledger.flops == pytest.approx(r.useful_flops + sum(r.ledger.waste_flops.values()))
    dense = run(azure_conv().window(6, seed=1), "continuous", ragged_attention="dense", kv_budget_tokens=10**6)
    assert dense.ledger.waste_flops["dense_attention"] > 0
    assert dense.ledger.flops == pytest.approx(dense.useful_flops + sum(dense.ledger.waste_flops.values()), rel=1e-12)


@settings(max_examples=100, deadline=None)
@given(small_runs())
def test_spent_flops_are_useful_plus_every_waste(case):
    tr, policy, cost, kw = case
    for ff in (True, False):
        r = simulate(tr, policy, model="tiny", gpu=cost, fast_forward=ff, **kw)
        assert r.ledger.flops == pytest.approx(r.useful_flops + sum(r.ledger.waste_flops.values()), rel=1e-9)
    # stepwise: every step's seconds are kernel time plus host time; every discarded KV token is recomputed once
    assert r.ledger.busy_s + r.ledger.host_s == pytest.approx(sum(r.step_seconds), rel=1e-9)
    assert sum(x.recomputed for plan in r.plans for x in plan.prefills) == r.ledger.recomputed_tokens


def test_capacity_under_an_itl_slo():
    """An inter-token SLO binds a policy whose long prefills stall the decodes; chunking relieves it."""
    tr = azure_conv().window(400, seed=5)
    kw = dict(hi=8.0, rel_tol=0.05, max_batch=32)
    ttft = sweep.capacity(tr, "continuous", **kw)
    both = sweep.capacity(tr, "continuous", slo_itl_p99_s=0.05, **kw)
    assert both["rate_scale"] <= ttft["rate_scale"] and both["itl_p99_s"] <= 0.05
    assert both["slo"] == {"ttft_p99_s": 5.0, "itl_p99_s": 0.05}
    chunk = sweep.capacity(tr, "chunked", slo_itl_p99_s=0.05, token_budget=512, **kw)
    assert chunk["rate_scale"] > both["rate_scale"]
    none = sweep.capacity(tr, "continuous", slo_itl_p99_s=1e-6, **kw)
    assert none["rate_scale"] == 0.0 and "misses the SLO" in none["note"]
    with pytest.raises(ValueError, match="no SLO given"):
        sweep.capacity(tr, "continuous", slo_ttft_p99_s=None)


def test_a_smaller_token_budget_shortens_the_inter_token_gaps():
    rows = sweep.budget_sweep(azure_conv().window(400, seed=5), rate_scale=2.0, budgets=(512, 2048, 16384),
                              max_batch=32)
    assert [r["token_budget"] for r in rows] == [512, 2048, 16384]
    itl = [r["itl_s"]["p99"] for r in rows]
    assert itl == sorted(itl) and itl[0] < itl[-1] / 3          # a long prompt no longer stalls every decode


def test_engine_configs_are_serve_configs():
    from packviz.serving import ENGINE_CONFIGS, ServeConfig

    assert ENGINE_CONFIGS["vllm-v1-like"] == {"policy": "chunked", "max_batch": 1024, "token_budget": 8192}
    for kw in ENGINE_CONFIGS.values():
        ServeConfig(**kw)


def test_capacity_table_is_capacity_under_each_slo_set():
    """One definition of the table notebooks 06 and 07 print: each config's capacity under TTFT, and TTFT + ITL."""
    tr = azure_conv().window(200, seed=5)
    configs = {"static": {"policy": "static", "max_batch": 8}, "chunked": {"policy": "chunked", "token_budget": 512}}
    table = sweep.capacity_table(tr, configs, slo_itl_p99_s=0.05, hi=8.0, rel_tol=0.1)
    assert list(table) == ["static", "chunked"] and configs["static"] == {"policy": "static", "max_batch": 8}
    assert table["static"]["ttft"] == sweep.capacity(tr, "static", hi=8.0, rel_tol=0.1, max_batch=8)
    assert table["chunked"]["ttft+itl"] == sweep.capacity(tr, "chunked", slo_itl_p99_s=0.05, hi=8.0, rel_tol=0.1,
                                                           token_budget=512)
    with pytest.raises(ValueError, match=r"configs\['x'\] has no 'policy'"):
        sweep.capacity_table(tr, {"x": {"max_batch": 8}})
    with pytest.raises(TypeError, match="configs must be a dict of named configurations"):
        sweep.capacity_table(tr, [("static", {})])
