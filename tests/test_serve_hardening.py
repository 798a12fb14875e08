"""``serve`` and the serving library under the inputs of issue 22 (hardening round 2): every case ends in
one line naming the value and the fix (exit 2 / ``ValueError`` / ``TypeError``) or in a correct result --
strict JSON, memory that does not grow with a request's length, timestamps read as written.

The tables run in-process (``packviz.cli.main``); the memory rows run a real process and read its peak RSS.
"""

import json
import os
import resource
import subprocess
import sys

import numpy as np
import pytest

from packviz.cli import json_ready, main
from packviz.serving import ServeConfig, make_scheduler, metrics, simulate, summary
from packviz.serving import sweep
from packviz.serving.calibration import check_fit, check_point, fit_calibration, fit_roofline, load_calibration
from packviz.serving.costs import preset_cost_model
from packviz.serving.scheduler import MAX_BATCH
from packviz.serving.simulator import MAX_STEPS_ONE_BY_ONE, RATE_SCALES
from packviz.trace import Trace, azure_conv, parse_trace

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[1] / "scripts"))
from probe_serve_inputs import CALIBRATION, classify  # noqa: E402  (the probe script, tested here too)

HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
T0, T1 = "2023-11-16 18:15:46.6805900", "2023-11-16 18:15:50.9951690"
TRACES = {
    "ok": f"{HEADER}{T0},374,44\n{T1},396,109\n",
    "one_stamp": f"{HEADER}{T0},374,44\n{T0},396,109\n{T0},20,3\n",
    "g_1e9": f"{HEADER}{T0},374,1000000000\n{T1},396,109\n",
    "p_1e12": f"{HEADER}{T0},1000000000000,3\n{T1},5,3\n",
    "p_2_62": f"{HEADER}{T0},{2**62},3\n{T1},5,3\n",
    "g_2_62": f"{HEADER}{T0},5,{2**62}\n{T1},5,3\n",
    "underscore": f"{HEADER}{T0},1_000,3\n",
    "arabic": f"{HEADER}{T0},\u0663\u0660,3\n",
    "epoch": f"{HEADER}1700154946.68,374,44\n1700154950.99,396,109\n",
    "year_only": f"{HEADER}2023,374,44\n2024,396,109\n",
    "year_1000": f"{HEADER}1000-01-01 00:00:00,374,44\n1000-01-01 00:00:04,396,109\n",
    "year_9999": f"{HEADER}9999-12-31 23:59:55,374,44\n9999-12-31 23:59:59,396,109\n",
    "zone_z": f"{HEADER}2023-11-16T18:15:46Z,374,44\n2023-11-16T18:15:50Z,396,109\n",
    "zone_offsets": f"{HEADER}2023-11-16T18:15:46+01:00,374,44\n2023-11-16T17:15:50Z,396,109\n",
    "zone_mixed": f"{HEADER}2023-11-16T18:15:46Z,374,44\n2023-11-16T18:15:50,396,109\n",
    "epoch_iso_mixed": f"{HEADER}1700154946,374,44\n2023-11-16T18:15:50,396,109\n",
    "month_13": f"{HEADER}2023-13-16 18:15:46,5,3\n",
}
CAL = CALIBRATION  # the probe's well-formed calibration: each bad one below breaks one field of it


def _point(**change):
    points = [dict(p) for p in CAL["points"]]
    points[0].update(change)
    return {**CAL, "points": points}


def _every(**change):
    return {**CAL, "points": [{**p, **change} for p in CAL["points"]]}


def _points(**values):
    """Each point's ``key`` set to its own entry of ``values[key]`` (one value per point)."""
    return {**CAL, "points": [{**p, **{k: v[i] for k, v in values.items()}} for i, p in enumerate(CAL["points"])]}


CALS = {
    "cal_ok": CAL,
    "cal_device_str": {**CAL, "device": "H100"},
    "cal_points_5": {**CAL, "points": 5},
    "cal_model_int": {**CAL, "model": 8},
    "cal_no_batch": {**CAL, "points": [{k: v for k, v in p.items() if k != "batch"} for p in CAL["points"]]},
    "cal_zero_s": _point(seconds=0),
    "cal_nan_s": _point(seconds=float("nan")),
    "cal_neg_s": _point(seconds=-0.01),
    "cal_batch_huge": _point(batch=10**9),
    # issue 23: step times no GPU gives, which LAPACK printed about or the fit turned into nonsense
    "cal_gpu_tiny": _every(gpu_seconds=1e-300),
    "cal_s3_tiny": _points(seconds=[0.03, 0.5, 0.01, 1e-300]),
    "cal_s_1e9": _every(seconds=1e-9),
    "cal_s_huge": _every(seconds=1e300),
    "cal_s_fast": _every(seconds=1e-6),                               # in range, but 1e20 FLOP/s
    "cal_wall_below_kernels": _points(seconds=[1e-5] * 4, gpu_seconds=[p["seconds"] for p in CAL["points"]]),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve")
    out = {}
    for name, text in TRACES.items():
        out[name] = d / f"{name}.csv"
        out[name].write_text(text, encoding="utf-8")
    for name, cal in CALS.items():
        out[name] = d / f"{name}.json"
        out[name].write_text(json.dumps(cal))
    out["cal_not_json"] = d / "cal_not_json.json"
    out["cal_not_json"].write_text('{"schema": "packviz.serve-calibration/1",\n "points": [}')
    return {k: str(v) for k, v in out.items()}


def strict_json(text: str):
    def refuse(c):
        raise ValueError(f"not strict JSON: {c}")
    return json.loads(text, parse_constant=refuse)


def serve(capsys, files, *argv):
    try:
        rc = main(["serve", *(a.format(**files) for a in argv)])
    except SystemExit as e:      # argparse
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


# ---------------------------------------------------------------------- bad input: one line, exit 2
OK = ("--trace", "{ok}", "--policy", "continuous")
BAD = [  # (argv, text the one stderr line must hold)
    (OK + ("--max-batch", "1e30"), "--max-batch must be an integer, got '1e30'"),
    (OK + ("--max-batch", "100000000"), "--max-batch is 100000000, above the largest allowed value 1,048,576"),
    (OK + ("--max-batch", "1_000"), "--max-batch must be an integer, got '1_000' (ASCII digits"),
    (OK + ("--max-batch", "\u0663"), "--max-batch must be an integer, got '\u0663'"),
    (OK + ("--max-batch", "9" * 30), "above the largest allowed value 1,048,576"),
    (OK + ("--token-budget", str(2**40 + 1)), "--token-budget is 1099511627777, above the largest allowed value"),
    (OK + ("--kv-budget", str(2**63)), "--kv-budget is 9223372036854775808, above the largest allowed value"),
    (OK + ("--kv-budget", "1_000"), "--kv-budget must be an integer, got '1_000'"),
    (OK + ("--rate-scale", "1e-300"), "--rate-scale is 1e-300, outside 1e-06 .. 1e+06"),
    (OK + ("--rate-scale", "1e300"), "--rate-scale is 1e+300, outside"),
    (OK + ("--rate-scale", "\u0661"), "--rate-scale must be a number, got '\u0661'"),
    (OK + ("--rate-scale", "1_0"), "--rate-scale must be a number, got '1_0'"),
    (OK + ("--rate-scale", "inf"), "--rate-scale must be a finite number > 0, got inf"),
    (OK + ("--execute", "--requests", "1_0"), "--requests must be an integer, got '1_0'"),
    (OK + ("--capacity", "--slo-itl-p99", "\u0661"), "--slo-itl-p99 must be a number, got '\u0661'"),
    (("--trace", "{one_stamp}", "--policy", "static", "--capacity"), "every request of {one_stamp} arrives at one instant"),
    (("--trace", "{p_2_62}", "--policy", "continuous", "--kv-budget", str(2**62)),
     "request 0 holds P 4,611,686,018,427,387,904 + G 3 tokens, above the largest request"),
    (("--trace", "{g_2_62}", "--policy", "static", "--kv-budget", str(2**62)), "above the largest request the simulator takes"),
    (("--trace", "{p_1e12}", "--policy", "chunked", "--kv-budget", str(2**62)),
     "takes at least 488,281,251 steps one at a time, more than 1,000,000: raise --token-budget to at least 1,000,001"),
    (("--trace", "{underscore}", "--policy", "static"), "line 2: ContextTokens is '1_000', not an integer"),
    (("--trace", "{arabic}", "--policy", "static"), "line 2: ContextTokens is '\u0663\u0660', not an integer"),
    (("--trace", "{zone_mixed}", "--policy", "static"), "line 3: TIMESTAMP '2023-11-16T18:15:50' has no time zone"),
    (("--trace", "{epoch_iso_mixed}", "--policy", "static"), "line 2: TIMESTAMP '1700154946' is epoch seconds, but other lines are ISO 8601"),
    (("--trace", "{month_13}", "--policy", "static"), "line 2: TIMESTAMP '2023-13-16 18:15:46' is not a valid date"),
    (("--trace", "{ok}", "--policy", "static", "--gpu", "{cal_device_str}"), "{cal_device_str}: device is 'H100'"),
    (("--trace", "{ok}", "--policy", "static", "--gpu", "{cal_points_5}"), "{cal_points_5}: points is 5; expected a list"),
    (("--trace", "{ok}", "--policy", "static", "--gpu", "{cal_model_int}"), "{cal_model_int}: model is 8"),
    (("--trace", "{ok}", "--policy", "static", "--gpu", "{cal_no_batch}"), "{cal_no_batch}: points[0] has no 'batch'"),
    (("--trace", "{ok}", "--policy", "static", "--gpu", "{cal_zero_s}"), "{cal_zero_s}: points[0].seconds is 0"),
    (("--trace", "{ok}", "--policy", "static", "--gpu", "{cal_nan_s}"), "{cal_nan_s}: points[0].seconds is nan"),
    (("--trace", "{ok}", "--policy", "static", "--gpu", "{cal_neg_s}"), "{cal_neg_s}: points[0].seconds is -0.01"),
    (("--trace", "{ok}", "--policy", "static", "--gpu", "{cal_batch_huge}"), "points[0].batch is 1000000000"),
    # issue 23: one line naming the file and the field, nothing from LAPACK on stdout, no warning
    (("--trace", "{ok}", "--policy", "static", "--gpu", "{cal_gpu_tiny}"),
     "{cal_gpu_tiny}: points[0].gpu_seconds is 1e-300; expected seconds of one forward step, between 1e-06 and 1000"),
    (("--trace", "{ok}", "--policy", "static", "--gpu", "{cal_s3_tiny}"),
     "{cal_s3_tiny}: points[3].seconds is 1e-300; expected seconds of one forward step, between 1e-06 and 1000"),
    (("--trace", "{ok}", "--policy", "static", "--gpu", "{cal_s_1e9}"), "{cal_s_1e9}: points[0].seconds is 1e-09; expected"),
    (("--trace", "{ok}", "--policy", "static", "--gpu", "{cal_s_huge}"), "{cal_s_huge}: points[0].seconds is 1e+300; expected"),
    (("--trace", "{ok}", "--policy", "static", "--gpu", "{cal_s_fast}"),
     "{cal_s_fast}: the fitted roofline has a FLOP rate of 1.19e+20 FLOP/s, more than ten times any GPU's peak"),
    (("--trace", "{ok}", "--policy", "static", "--gpu", "{cal_wall_below_kernels}"),
     "{cal_wall_below_kernels}: the host's time per step (seconds - gpu_seconds, the median) is negative"),
    (("--trace", "{ok}", "--policy", "static", "--gpu", "{cal_not_json}"),
     "{cal_not_json} is not valid JSON (line 2, column 13: Expecting value)"),
    # issue 23: offline arrivals have no rate to scale; flags named as typed; pages said
    (OK + ("--arrivals", "offline", "--rate-scale", "2"),
     "--rate-scale 2 scales the trace's arrival times, but --arrivals offline sends every request at t = 0: a rate "
     "scale needs --arrivals trace"),
    (OK + ("--arrivals", "offline", "--rate-scale", "1"), "a rate scale needs --arrivals trace"),
    (OK + ("--kv-budget", "1"), "--kv-budget 1 is too small for request 0: P 374 + G 44 = 418 tokens, 432 in whole "
                                "pages of 16; give at least 512"),
    (OK + ("--max-batch", "0"), "--max-batch must be a positive integer, got 0"),
    (("--trace", "{ok}", "--policy", "chunked", "--token-budget", "8"), "--token-budget 8 is below --max-batch 32"),
    (OK + ("--ragged-attention", "sparse"), "--ragged-attention must be one of"),
    (OK + ("--arrivals", "later"), "--arrivals must be one of 'trace', 'offline'; got 'later'"),
]


@pytest.mark.parametrize("argv, shown", BAD, ids=[" ".join(a[2:])[:60] for a, _ in BAD])
def test_bad_serve_input_is_one_line_naming_the_value(capfd, files, argv, shown):
    rc, out, err = serve(capfd, files, *argv)   # capfd: LAPACK writes to the C-level stdout, past sys.stdout
    assert rc == 2 and out == "", (rc, err)
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert shown.format(**files) in err, err


@pytest.mark.parametrize("cal", ["cal_gpu_tiny", "cal_s3_tiny"])
def test_a_bad_calibration_prints_nothing_from_lapack_in_a_real_process(files, cal):
    """LAPACK's ``** On entry to DLASCL ...`` went to the C-level stdout (flushed at exit, past any capture)."""
    p = subprocess.run([sys.executable, "-m", "packviz", "serve", "--trace", files["ok"], "--policy", "static",
                        "--json", "--gpu", files[cal]], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"})
    assert p.returncode == 2 and p.stdout == "", (p.stdout, p.stderr)
    assert p.stderr.count("\n") == 1 and p.stderr.startswith(f"error: {files[cal]}: points["), p.stderr


# ---------------------------------------------------------------------- correct results, strict JSON
GOOD = [  # (argv, {key: value the JSON object must hold})
    (("--trace", "{ok}", "--policy", "static", "--arrivals", "offline"),
     {"offered_requests_per_s": None, "timestamps": "ISO 8601", "completed": 2}),
    (("--trace", "{one_stamp}", "--policy", "continuous"), {"offered_requests_per_s": None, "completed": 3}),
    (("--trace", "{ok}", "--policy", "continuous", "--max-batch", "1048576"), {"max_batch": 1048576, "completed": 2}),
    (("--trace", "{ok}", "--policy", "chunked", "--rate-scale", "1e-6"), {"rate_scale": 1e-6, "completed": 2}),
    (("--trace", "{epoch}", "--policy", "static"), {"timestamps": "epoch seconds", "offered_requests_per_s": 1 / 4.31}),
    (("--trace", "{year_only}", "--policy", "static"), {"timestamps": "epoch seconds", "offered_requests_per_s": 1.0}),
    (("--trace", "{year_1000}", "--policy", "static"), {"timestamps": "ISO 8601", "offered_requests_per_s": 0.25}),
    (("--trace", "{year_9999}", "--policy", "static"), {"offered_requests_per_s": 0.25}),
    (("--trace", "{zone_z}", "--policy", "static"), {"timestamps": "ISO 8601 with UTC offsets",
                                                      "offered_requests_per_s": 0.25}),
    (("--trace", "{zone_offsets}", "--policy", "static"), {"offered_requests_per_s": 0.25}),   # 17:15:46 UTC, 4 s later
    (("--trace", "{ok}", "--policy", "static", "--gpu", "{cal_ok}"), {"completed": 2}),
    (("--trace", "{g_1e9}", "--policy", "static", "--kv-budget", str(2**62)),
     {"generated_tokens": 1_000_000_109, "decode_useful_steps": 1_000_000_107, "completed": 2}),
    (("--trace", "{g_1e9}", "--policy", "chunked", "--kv-budget", str(2**62)), {"completed": 2}),
]


@pytest.mark.parametrize("argv, expect", GOOD, ids=[" ".join(a[1:])[:60] for a, _ in GOOD])
def test_serve_json_is_strict_and_correct(capsys, files, argv, expect):
    rc, out, err = serve(capsys, files, *argv, "--json")
    assert rc == 0 and err == "", err
    s = strict_json(out)
    for key, value in expect.items():
        assert s[key] == (pytest.approx(value, rel=1e-3) if isinstance(value, float) else value), (key, s[key])
    if s["offered_requests_per_s"] is None:
        assert "one instant" in s["offered_rate_note"]
    else:
        assert s["offered_rate_note"] is None


def test_json_ready_turns_what_is_not_finite_into_null():
    assert json_ready({"a": [1.0, float("inf")], "b": {"c": float("nan")}, "d": "x"}) == (
        {"a": [1.0, None], "b": {"c": None}, "d": "x"}, ["a[1]", "b.c"])


# ---------------------------------------------------------------------- memory: a request's length costs nothing
def _peak_rss_mb(argv) -> tuple[int, float]:
    """(exit status, peak RSS in MB) of ``python -m packviz serve ...`` in its own process."""
    p = subprocess.Popen([sys.executable, "-m", "packviz", "serve", *argv], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, usage.ru_maxrss / 1024


@pytest.mark.parametrize("policy", ["static", "continuous"])
def test_a_billion_generated_tokens_take_no_more_memory_than_a_hundred(files, policy):
    rc0, base = _peak_rss_mb(["--trace", files["ok"], "--policy", policy, "--json"])
    rc1, big = _peak_rss_mb(["--trace", files["g_1e9"], "--policy", policy, "--kv-budget", str(2**62), "--json"])
    assert rc0 == rc1 == 0
    assert big - base < 20, (base, big)        # was ~24 GiB: per-step ITL samples as long as the longest output


def test_max_batch_costs_no_memory_until_slots_are_used():
    tr = Trace(np.zeros(3), np.array([2, 3, 1]), np.array([3, 1, 2]))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    wide = simulate(tr, "continuous", model="tiny", max_batch=MAX_BATCH, kv_budget_tokens=64, fast_forward=False)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 20 * 1024      # KB: not 2**20 slots
    narrow = simulate(tr, "continuous", model="tiny", max_batch=8, kv_budget_tokens=64, fast_forward=False)
    assert [p.key() for p in wide.plans] == [p.key() for p in narrow.plans]
    assert wide.slot.tolist() == narrow.slot.tolist() == [0, 1, 2]
    two = simulate(tr, "continuous", model="tiny", max_batch=2, kv_budget_tokens=64, fast_forward=False)
    assert two.slot.tolist() == [0, 1, 1]                  # r2 takes the lowest free slot, r1's


# ---------------------------------------------------------------------- ITL percentiles in closed form
@pytest.mark.parametrize("policy, kw", [("static", {}), ("continuous", {"arrivals": "offline"}),
                                        ("chunked", {"rate_scale": 3.0, "ragged_attention": "dense"})])
def test_closed_form_itl_percentiles_equal_the_expanded_ones(policy, kw):
    led = simulate(azure_conv().window(1500, seed=1), policy, **kw).ledger
    steps = np.array(led.itl_steps, dtype=np.float64).reshape(-1, 2)
    spans = np.array([(*line, k, c) for line, k, c in led.itl_spans], dtype=np.float64).reshape(-1, 7)
    assert len(spans) > 100
    assert metrics.span_percentiles(steps, spans) == metrics.weighted_percentiles(*led.itl_samples())


def test_summary_switches_to_closed_form_without_changing_a_number(monkeypatch):
    r = simulate(azure_conv().window(400, seed=2), "static")
    expanded = summary(r)
    monkeypatch.setattr(metrics, "MAX_EXPANDED_ITL", 0)
    assert summary(r)["itl_s"] == expanded["itl_s"] and expanded["itl_s"]["p50"] is not None


def test_span_counts_match_counting_the_expanded_steps():
    rng = np.random.default_rng(0)
    spans = np.column_stack([rng.uniform(0, 1e-2, 50), rng.uniform(0, 1e-5, 50), rng.uniform(0, 1e-2, 50),
                             rng.uniform(0, 1e-5, 50), rng.uniform(0, 1e-3, 50), rng.integers(1, 400, 50), np.ones(50)])
    for x in (0.0, 5e-3, 1e-2, 1.3e-2, 1.0):
        expected = [int((np.maximum(u0 + u1 * np.arange(1, k + 1), v0 + v1 * np.arange(1, k + 1)) + o <= x).sum())
                    for u0, u1, v0, v1, o, k, _ in spans]
        assert metrics.span_counts(x, spans).tolist() == [int(e) for e in expected]


# ---------------------------------------------------------------------- timestamps
def test_timestamps_say_how_they_were_read_and_keep_nanoseconds():
    iso = parse_trace(f"{HEADER}{T0},3,1\n{T1},3,1\n")
    assert iso.timestamps == "ISO 8601" and iso.arrival_s[1] == 4.314579
    epoch = parse_trace(f"{HEADER}1700000000,3,1\n1700000002.000000001,3,1\n")
    assert epoch.timestamps == "epoch seconds" and epoch.arrival_s[1] == 2.000000001
    assert epoch.window(1, start=1).timestamps == "epoch seconds"
    far = parse_trace(f"{HEADER}0001-01-01 00:00:00,3,1\n9999-12-31 23:59:59,3,1\n")   # beyond int64 nanoseconds
    assert far.arrival_s[1] == pytest.approx(315537897599.0)


# ---------------------------------------------------------------------- the library's edges
TINY = Trace(np.zeros(3), np.array([2, 3, 1]), np.array([3, 1, 2]))
LONG = Trace(np.zeros(1), np.array([5]), np.array([MAX_STEPS_ONE_BY_ONE + 1]))
LIBRARY = [  # (call, exception, text the message must hold)
    (lambda: simulate("trace.csv"), TypeError, "trace must be a packviz.trace.Trace"),
    (lambda: simulate(TINY, 3), TypeError, "policy must be a policy name"),
    (lambda: simulate(TINY, "static", max_batch="32"), TypeError, "max_batch must be an integer, e.g. 32; got str '32'"),
    (lambda: simulate(TINY, "static", max_batch=None), TypeError, "max_batch must be an integer"),
    (lambda: simulate(TINY, "static", max_batch=2**20 + 1), ValueError, "above the largest allowed value 1,048,576"),
    (lambda: simulate(TINY, "static", kv_budget_tokens=2**63), ValueError, "kv_budget_tokens is 9223372036854775808"),
    (lambda: simulate(TINY, "static", rate_scale=1e-300), ValueError, "rate_scale is 1e-300, outside"),
    (lambda: simulate(TINY, "static", rate_scale=RATE_SCALES[1] * 2), ValueError, "outside 1e-06 .. 1e+06"),
    (lambda: simulate(TINY, "static", fast_forward="no"), ValueError, "fast_forward must be True or False"),
    (lambda: simulate(TINY, "static", clock=5), TypeError, "clock must be a list of step seconds"),
    (lambda: simulate(TINY, "static", clock=[0.1, "x"]), ValueError, "clock[1] must be a finite number > 0"),
    (lambda: simulate(LONG, "static", kv_budget_tokens=2**21, fast_forward=False), ValueError, "request 0 alone needs G = 1,000,001 steps"),
    (lambda: simulate(Trace(np.zeros(1), np.array([10**9]), np.array([1])), "chunked", token_budget=512,
                      kv_budget_tokens=2**40), ValueError, "takes at least 1,953,125 steps one at a time"),
    (lambda: ServeConfig("continuous", max_batch=1.5), ValueError, "max_batch must be a positive integer, got 1.5"),
    (lambda: ServeConfig(policy=None), TypeError, "policy must be a policy name"),
    (lambda: make_scheduler(TINY, "continuous", 64), TypeError, "cfg must be a ServeConfig"),
    (lambda: make_scheduler([1, 2], ServeConfig(), 64), TypeError, "trace must be a packviz.trace.Trace"),
    (lambda: summary({"policy": "static"}), TypeError, "r must be a SimResult"),
    (lambda: sweep.load_sweep(TINY, policies="static"), TypeError, "policies must be a list of policy names"),
    (lambda: sweep.budget_sweep(TINY, budgets=512), TypeError, "budgets must be a list of token budgets"),
    (lambda: check_point({"kind": "decode", "batch": 2, "tokens": "1", "seconds": 0.1}), ValueError,
     "calibration point.tokens is '1'; expected an integer"),
    (lambda: check_point({"kind": "decode", "batch": 2, "tokens": 1, "seconds": 0.1, "gpu_seconds": float("inf")}),
     ValueError, "calibration point.gpu_seconds is inf"),
    (lambda: fit_calibration({"points": CAL["points"][:2]}), ValueError, "calibration: points is"),
    # issue 23
    (lambda: simulate(TINY, "static", arrivals="offline", rate_scale=2.0), ValueError,
     "rate_scale is 2, but arrivals='offline' sends every request at t = 0 (no rate to scale): a rate scale needs "
     "arrivals='trace'"),
    (lambda: simulate(TINY, "static", model="tiny", kv_budget_tokens=4), ValueError,
     "kv_budget_tokens 4 is too small for request 0: P 2 + G 3 = 5 tokens, 16 in whole pages of 16"),
    (lambda: check_point({"kind": "decode", "batch": 2, "tokens": 1, "seconds": 1e-300}), ValueError,
     "calibration point.seconds is 1e-300; expected seconds of one forward step, between 1e-06 and 1000"),
    (lambda: check_point({"kind": "decode", "batch": 2, "tokens": 1, "seconds": True}), ValueError,
     "calibration point.seconds is True"),
    (lambda: fit_calibration(_every(seconds=1e-6)), ValueError, "calibration: the fitted roofline has a FLOP rate"),
    (lambda: fit_roofline([1e12] * 3, [1e9] * 3, [1e-300] * 3, preset_cost_model("h100")), ValueError,
     "seconds as small as 1e-300 make FLOPs per second overflow"),
    (lambda: fit_roofline([1e12, 1e12], [1e9], [0.1, 0.1], preset_cost_model("h100")), ValueError,
     "flops, nbytes and seconds must be 1-D of one length"),
    (lambda: fit_roofline([1e12], [1e9], [float("nan")], preset_cost_model("h100")), ValueError,
     "seconds must be finite seconds"),
    (lambda: check_fit({"overhead_s": -0.186, "decode_overhead_s": 0.0, "flop_rate": 1e14, "byte_rate": 1e12},
                       "c.json"), ValueError,
     "c.json: the fitted roofline has a negative overhead (-0.186 s): the points do not look like one GPU's step "
     "times; check their seconds"),
    (lambda: check_fit({"overhead_s": 0.0, "decode_overhead_s": 0.0, "flop_rate": float("nan"), "byte_rate": 1e12},
                       "c.json", "gpu_seconds"), ValueError, "c.json: the fitted roofline has a non-finite FLOP rate"),
    (lambda: load_calibration(__file__), ValueError, "test_serve_hardening.py is not valid JSON (line 1, column 3: Extra data)"),
]


@pytest.mark.parametrize("call, exc, shown", LIBRARY, ids=[str(i) for i in range(len(LIBRARY))])
def test_library_edge_is_one_line_naming_the_value(call, exc, shown):
    with pytest.raises(exc) as info:
        call()
    assert type(info.value) is exc and shown in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_the_probe_classifies_outcomes():

    def run(rc, out="", err="", argv=("--json",)):
        return {"rc": rc, "stdout": out, "stderr": err, "argv": list(argv), "timed_out": False}
    assert classify(run(0, '{"a": null}')) == "ok"
    assert classify(run(0, '{"a": Infinity}')) == "invalid JSON"
    assert classify(run(2, err="error: x is 0\n")) == "bad input"
    assert classify(run(2, err="error: x\nmore\n")) == "other"
    assert classify(run(1, err="error: internal error (KeyError: 'batch')\n")) == "internal error"
    assert classify(run(1, err="Traceback (most recent call last):\n")) == "traceback"


def test_the_human_summary_says_how_the_timestamps_were_read(capsys, files):
    rc, out, _ = serve(capsys, files, "--trace", "{epoch}", "--policy", "static")
    assert rc == 0 and out.splitlines()[0].startswith(f"static: {files['epoch']} (TIMESTAMP read as epoch seconds), 2 ")
