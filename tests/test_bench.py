"""The benchmark: pricing, the smoke run end to end, preflight, skips, fallback, phases, deadline, results."""

import json
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from packviz import attention as A
from packviz import model as M
from packviz.bench import config, measure, results, runner, scenarios
from packviz.flops import Flops
from packviz.shapes import ModelShape

ROOT = pathlib.Path(__file__).resolve().parent.parent
QUIET = dict(log=lambda msg: None)
TOY = ModelShape("toy", hidden=2, intermediate=3, layers=1, heads=1, kv_heads=1, head_dim=2, vocab=5)
BODY, HEAD, PAIR = 68, 20, 8  # per token (no lm_head), per lm_head row, per (query, key) pair


def smoke(**kw):
    return config.smoke_config(progress=False, **kw)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    return out, runner.run(smoke(), out, **QUIET)


# ---------------------------------------------------------------------- pricing (no torch)
def _toy_scenario(lengths, batch_size, pack_len, kind="window"):
    lengths = np.asarray(lengths)
    make = scenarios.window_layouts if kind == "window" else scenarios.offline_layouts
    layouts, forwards = make(lengths, batch_size, pack_len)
    return scenarios.Scenario("toy", kind, "", lengths, layouts, forwards, {})


def test_every_method_is_priced_as_its_kernel_runs_by_hand():
    # two windows of B = 2: [3, 1] and [2, 2]; C = 4
    sc = _toy_scenario([3, 1, 2, 2], batch_size=2, pack_len=4)
    p = {m: scenarios.price(sc, m, TOY) for m in A.METHODS}
    f = {m: Flops(p[m]["flops_model"]["linear"], p[m]["flops_model"]["attention"]) for m in p}
    head = 4 * HEAD  # lm_head on each prompt's last token
    # padded, causal, no mask: rows of width 3 (window 1) and 2 (window 2), each its triangle
    assert f["padded"] == Flops((3 + 3 + 2 + 2) * BODY + head, (6 + 6 + 3 + 3) * PAIR)
    # padded with the mask: window 1 has a pad -> squares; window 2 has none -> mask dropped, triangles
    assert f["padded-masked"] == Flops(10 * BODY + head, (9 + 9 + 3 + 3) * PAIR)
    # dense: each window packed into rows of 4 ([3, 1] and [2, 2]): two full 4 x 4 squares
    assert f["dense"] == Flops(8 * BODY + head, (16 + 16) * PAIR)
    # varlen and flash: the real tokens only, each sequence its own triangle
    assert f["varlen"] == f["flash"] == Flops(8 * BODY + head, (6 + 1 + 3 + 3) * PAIR)
    # flex: BlockMask tiles of 128 -- one row of 4 slots is one tile of 128 x 128
    assert f["flex"] == Flops(8 * BODY + head, 2 * 128 * 128 * PAIR)
    assert [p[m]["requests_per_forward"] for m in ("padded", "dense", "varlen")] == [2, 2, 2]
    assert p["dense"]["processed_tokens"] == 8 and p["varlen"]["processed_tokens"] == 8
    assert p["padded"]["processed_tokens"] == 10 and p["padded"]["pad_tokens"] == 2
    ideal = scenarios.ideal_speedups(p)
    assert ideal["padded"] == 1.0 and ideal["varlen"] == pytest.approx(f["padded"].total / f["varlen"].total)


def test_sorted_batches_regroup_the_sample_and_offline_packs_it_whole():
    sc = _toy_scenario([5, 1, 5, 1], batch_size=2, pack_len=6, kind="offline")
    # sorted: [1, 1] and [5, 5] -- no pads left
    assert scenarios.price(sc, "padded-sorted", TOY)["pad_tokens"] == 0
    assert scenarios.price(sc, "padded", TOY)["pad_tokens"] == 8
    # offline BFD over the whole sample: rows [5, 1] and [5, 1], one row per forward
    p = scenarios.price(sc, "dense", TOY)
    assert p["forwards"] == 2 and p["requests_per_forward"] == 2 and p["processed_tokens"] == 12
    v = scenarios.price(sc, "varlen", TOY)
    assert v["forwards"] == 2 and v["pad_tokens"] == 0


def test_sorting_one_window_changes_no_batch():
    one = _toy_scenario([1, 5, 2], batch_size=3, pack_len=8)
    assert runner.batch_sets(one, "sorted") == runner.batch_sets(one, "padded") == [frozenset({0, 1, 2})]
    two = _toy_scenario([1, 5, 2, 6], batch_size=2, pack_len=8)
    assert runner.batch_sets(two, "sorted") == [frozenset({0, 2}), frozenset({1, 3})]


def test_tiled_prices_count_whole_tiles_on_both_sides_of_the_ratio():
    sc = _toy_scenario([5, 2], batch_size=2, pack_len=8)
    prices = {m: scenarios.price(sc, m, TOY, tile=(2, 2)) for m in A.METHODS}
    v, p = prices["varlen"], prices["padded"]
    # varlen: n = 5 touches 6 tiles of 2 x 2 (24 pairs), n = 2 one tile (4 pairs)
    assert v["flops_model_tiled"]["attention"] == (24 + 4) * PAIR and v["flops_model"]["attention"] == (15 + 3) * PAIR
    # padded: two rows of width 5, each 6 tiles
    assert p["flops_model_tiled"]["attention"] == 2 * 24 * PAIR
    for m in ("dense", "flex", "padded-masked"):
        assert "flops_model_tiled" not in prices[m]
    tiled = scenarios.ideal_speedups(prices)
    assert tiled["varlen"] == pytest.approx((10 * BODY + 2 * HEAD + 48 * PAIR) / (7 * BODY + 2 * HEAD + 28 * PAIR))


def test_trace_scenario_is_a_real_window_in_arrival_order_clipped_to_the_pack_length():
    from packviz.trace import azure_conv

    cfg = config.BenchConfig(pack_len=1000, trace_n=200)
    sc = scenarios.build("trace", cfg)
    raw = azure_conv().window(200, seed=cfg.seed).prompt_tokens
    assert (sc.lengths == np.minimum(raw, 1000)).all()
    assert sc.info["clipped_sequences"] == int((raw > 1000).sum()) > 0
    assert sc.info["real_tokens"] == int(sc.lengths.sum())
    # windows of B consecutive requests: forward k of every online layout holds requests kB .. kB+B-1
    for layout in ("padded", "packed", "stream"):
        lay = sc.layouts[layout]
        for k, rows in enumerate(sc.forwards[layout]):
            seqs = sorted(s for r in rows for s in lay.row_segments(r)[:, 0].tolist())
            assert seqs == list(range(32 * k, min(32 * k + 32, 200))), layout
    with pytest.raises(ValueError, match="unknown scenario"):
        scenarios.scenario_lengths("nope", cfg)


def test_plan_prices_every_method_without_a_gpu():
    planned = scenarios.plan(config.BenchConfig(scenarios=("trace", "uniform")))
    t, u = planned
    assert t["model"] == "llama-3-8b" and set(t["ideal_speedup"]) == set(A.METHODS)
    assert t["ideal_speedup"]["varlen"] > t["ideal_speedup"]["flex"] > t["ideal_speedup"]["dense"] > 1
    assert t["ideal_speedup"]["padded-masked"] < 1  # the square costs more than the triangle
    assert u["methods"]["padded"]["pad_tokens"] == 0 and u["ideal_speedup"]["padded-masked"] == 1.0
    assert u["ideal_speedup"]["dense"] < 1  # equal lengths: packing can only lose
    text = scenarios.format_plan(planned)
    assert len(text.splitlines()) == 1 + 2 * len(A.METHODS)
    assert f"{t['ideal_speedup']['varlen']:.2f}x" in text


@pytest.mark.parametrize("bad, shown", [
    (dict(methods=("padded", "paged")), "'paged'"), (dict(scenarios=("trace", "nope")), "'nope'"),
    (dict(repeats=0), "repeats must be a positive integer, got 0"), (dict(pack_len=-1), "pack_len"),
    (dict(seed=-1), "seed must be an integer >= 0, got -1"), (dict(deadline=-5.0), "deadline"),
    (dict(tile=(0, 2)), "tile"), (dict(trace_scale=float("nan")), "trace_scale"),
])
def test_bad_configs_fail_before_any_work(bad, shown):
    with pytest.raises(ValueError, match=re.escape(shown)):
        config.BenchConfig(**bad)


# ---------------------------------------------------------------------- the smoke run
def test_smoke_writes_every_key_the_issue_asks_for(smoke_run):
    out, res = smoke_run
    disk = json.loads((out / "bench.json").read_text())
    assert disk["status"] == res["status"] == "complete" and disk["schema"] == results.SCHEMA
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and disk["errors"] == []
    assert "cudnn" in disk["versions"] and disk["versions"]["torch"]
    assert disk["sdpa"]["priority_order"] and set(disk["sdpa"]["enabled"]) == {"flash", "efficient", "cudnn", "math"}
    assert "start" in disk["nvidia_smi"] and "end" in disk["nvidia_smi"]  # None here: no nvidia-smi
    c0, c1 = disk["ceiling_start"], disk["ceiling_end"]
    assert disk["ceiling_tflops"] == min(c0["tflops"], c1["tflops"])
    assert all(s >= 0.05 for s in c0["group_seconds"])  # each measurement at least ceiling_seconds
    assert disk["git_commit"] and "random" in disk["weights"]
    assert set(disk["preflight"]) == {"padded", "padded-masked", "padded-sorted", "dense", "varlen"}
    for m, rec in disk["preflight"].items():
        assert rec["status"] == "ok" and rec["check"]["max_abs_diff"] < 1e-4 and rec["kernel"], m
        assert rec["check"]["top1_agreement"] == 1.0 and rec["check"]["max_rel_diff"] < 1e-4


def test_smoke_measures_every_method_the_same_requests_per_forward(smoke_run):
    _, res = smoke_run
    sc = {s["name"]: s for s in res["scenarios"]}
    cfg = smoke()
    for name in ("trace", "seed", "uniform"):
        for m, r in sc[name]["methods"].items():
            if r["status"] == "complete":
                assert r["requests_per_forward"] == cfg.batch_size, (name, m)
                assert r["real_tokens"] == sc[name]["info"]["real_tokens"]
                assert len(r["times_s"]) == cfg.repeats and r["min_s"] <= r["median_s"] <= r["max_s"]
                assert r["check"]["max_abs_diff"] < 1e-4 and r["kernel"]
                assert r["valid_tokens_per_s"] == pytest.approx(r["real_tokens"] / r["median_s"])
                assert r["useful_fraction_of_ceiling"] == pytest.approx(
                    sc[name]["useful_flops"]["total"] / r["median_s"] / 1e12 / res["ceiling_tflops"])
    t = sc["trace"]["methods"]
    assert t["padded"]["measured_speedup"] == 1.0
    assert t["varlen"]["processed_tokens"] == t["varlen"]["real_tokens"]  # one stream, no pads
    assert t["dense"]["processed_tokens"] % cfg.pack_len == 0  # rows of C
    assert t["padded-sorted"]["label"] == "offline" and t["padded"]["label"] == "online"
    assert t["flash"]["status"].startswith("unavailable") and t["flex"]["status"].startswith("skipped")
    # the kernel each SDPA method ran: the baseline causal with native GQA, the masked one with its mask
    assert "is_causal" in t["padded"]["kernel"] and "enable_gqa" in t["padded"]["kernel"]
    assert "mask (" in t["padded-masked"]["kernel"] and "is_causal" not in t["padded-masked"]["kernel"]
    assert "varlen_reference" in t["varlen"]["kernel"]


def test_offline_scenario_packs_the_whole_sample_and_shares_the_padded_baseline(smoke_run):
    _, res = smoke_run
    sc = {s["name"]: s for s in res["scenarios"]}
    off, tr = sc["offline"]["methods"], sc["trace"]["methods"]
    assert off["padded"]["times_s"] == tr["padded"]["times_s"] and "trace" in off["padded"]["shared_from"]
    assert off["dense"]["label"] == "offline" and off["dense"]["times_s"] != tr["dense"]["times_s"]
    assert off["dense"]["forwards"] == off["dense"]["processed_tokens"] // smoke().pack_len  # one row per forward


def test_controls_skip_what_cannot_differ(smoke_run):
    _, res = smoke_run
    u = {s["name"]: s for s in res["scenarios"]}["uniform"]["methods"]
    assert u["padded-sorted"]["status"].startswith("skipped: sorting changes no batch")
    assert u["padded-masked"]["ideal_speedup"] == 1.0  # no pads: the mask is dropped, it runs causal
    assert "is_causal" in u["padded-masked"]["kernel"]


def test_targets_and_tables(smoke_run):
    out, res = smoke_run
    t = res["targets"]
    assert t["scenario"] == "trace" and "not tested" in t["note"]
    v = res["scenarios"][0]["methods"]["varlen"]
    assert t["varlen_measured_over_ideal"] == pytest.approx(v["measured_speedup"] / v["ideal_speedup_tiled"])
    info = results.format_run_info(results.load_results(out))
    for key in ("device:", "versions:", "date:", "commit:", "model:", "ceiling:"):
        assert key in info
    table = results.format_results(res)
    assert "trace     varlen" in table and "padded-sorted *" in table and "CPU run:" in table
    assert "kernel   padded " in table and results.sanity(res) == []  # no GPU sanity rules on a CPU run


def test_recorded_windows_price_each_window_of_a_run_as_the_run_priced_them_all(smoke_run):
    _, res = smoke_run  # tiny model, lengths scaled by 1/16, windows of 4, tiles of 16 x 16
    rec = scenarios.recorded_windows(res)
    cfg = res["config"]
    assert len(rec["windows"]) == cfg["trace_n"] // cfg["batch_size"]
    assert all(b - a == cfg["batch_size"] for a, b in rec["windows"])
    assert all(w[1] == nxt[0] for w, nxt in zip(rec["windows"], rec["windows"][1:]))  # consecutive
    for m in ("dense", "flex", "varlen"):  # both windows together: exactly the ideal the run recorded
        assert rec["ideal_pooled"][m] == pytest.approx(rec["recorded_ideal"][m], rel=1e-12)
        assert min(rec["ideal"][m]) <= rec["ideal_pooled"][m] <= max(rec["ideal"][m])
    assert rec["recorded_ideal"]["varlen"] == res["scenarios"][0]["methods"]["varlen"]["ideal_speedup_tiled"]
    with pytest.raises(ValueError, match="no 'trace' scenario"):
        scenarios.recorded_windows(dict(res, scenarios=res["scenarios"][2:]))


def test_the_recorded_h100_windows_sit_in_the_trace_spread():
    from packviz import trace_numbers

    res = results.load_results(results.RESULTS_DIR)
    rec = scenarios.recorded_windows(res)
    for m in ("dense", "flex", "varlen"):
        assert rec["ideal_pooled"][m] == pytest.approx(rec["recorded_ideal"][m], rel=1e-12)
    lengths = trace_numbers.trace_prompts()
    (a, b), (c, d) = rec["windows"]
    assert b == c and f"[{a}:{d}]" in rec["sample"]
    alone = trace_numbers.window_prefill_flops(lengths[a:b], 32)
    assert rec["ideal"]["varlen"][0] == pytest.approx(alone["padded"][0] / alone["varlen"][0], rel=1e-12)
    assert [round(x, 2) for x in rec["ideal"]["varlen"]] == [2.37, 4.03]  # the issue's two windows
    spread = trace_numbers.prefill_speedups()["spread"]["varlen"]
    assert spread["min"] < rec["ideal"]["varlen"][0] < spread["p10"] < spread["p50"] < rec["ideal"]["varlen"][1]


# ---------------------------------------------------------------------- failures, fallback, phases
def test_a_method_failing_in_preflight_is_skipped_everywhere_and_never_retried(tmp_path, monkeypatch):
    calls = []
    real = runner.forward

    def forward(ctx, method, batch):
        if method == "dense":
            calls.append(method)
            raise RuntimeError("kernel refused (test)")
        return real(ctx, method, batch)

    monkeypatch.setattr(runner, "forward", forward)
    res = runner.run(smoke(png=False, scenarios=("trace", "uniform"), methods=("padded", "dense"), repeats=1),
                     tmp_path, **QUIET)
    assert res["preflight"]["dense"]["status"].startswith("error: RuntimeError: kernel refused")
    assert calls == ["dense"]  # tried once, in the preflight
    for s in res["scenarios"]:
        assert s["methods"]["dense"]["status"].startswith("skipped: failed earlier (error: RuntimeError")
        assert s["methods"]["padded"]["status"] == "complete"
    assert res["status"] == "complete" and res["errors"][0]["method"] == "dense"


def test_a_method_failing_later_is_recorded_and_skipped_from_then_on(tmp_path, monkeypatch):
    real = runner.one_pass
    calls = []

    def one_pass(ctx, method, batches):
        if method == "dense":
            calls.append(method)
            raise RuntimeError("out of memory (test)")
        return real(ctx, method, batches)

    monkeypatch.setattr(runner, "one_pass", one_pass)
    res = runner.run(smoke(png=False, scenarios=("trace", "seed"), methods=("padded", "dense"), repeats=1),
                     tmp_path, **QUIET)
    tr, sd = (s["methods"]["dense"] for s in res["scenarios"])
    assert tr["status"].startswith("error: RuntimeError: out of memory") and tr["error"] == tr["status"]
    assert sd["status"].startswith("skipped: failed earlier")
    assert calls == ["dense"]
    assert any(e.get("method") == "dense" for e in res["errors"])


def test_a_refused_baseline_falls_back_once_to_an_explicit_sdpa_backend(tmp_path, monkeypatch):
    active = []
    real_backends, real_forward = runner.sdpa_backends, M.padded_forward

    def sdpa_backends(names):
        if names:
            active.append(tuple(names))
        return real_backends(names)

    def padded_forward(model, batch, last_token_only=True, mask=True):
        if not mask and not active:
            raise RuntimeError("No available kernel. Aborting execution. (test)")
        return real_forward(model, batch, last_token_only, mask)

    monkeypatch.setattr(runner, "sdpa_backends", sdpa_backends)
    monkeypatch.setattr(M, "padded_forward", padded_forward)
    lines = []
    res = runner.run(smoke(png=False, scenarios=("uniform",), methods=("padded",), repeats=1), tmp_path,
                     log=lines.append)
    p = res["scenarios"][0]["methods"]["padded"]
    assert p["status"] == "complete" and p["fallback"] == "EFFICIENT_ATTENTION, MATH"
    assert res["preflight"]["padded"]["fallback"] == ["EFFICIENT_ATTENTION", "MATH"]
    assert sum("retrying under EFFICIENT_ATTENTION, MATH" in ln for ln in lines) == 1  # once, not per scenario
    assert "fallback: EFFICIENT_ATTENTION, MATH" in results.format_results(res)


def test_compiled_methods_run_in_a_second_phase_after_every_other(tmp_path, monkeypatch):
    monkeypatch.setattr(A, "COMPILED", ("dense",))  # stand in for flex, which compiles for 10-40 s on CPU
    lines = []
    runner.run(smoke(png=False, scenarios=("trace", "uniform"), methods=("padded", "varlen", "dense"), repeats=1),
               tmp_path, log=lines.append)
    steps = [ln.split(":")[0] for ln in lines if re.match(r"^(preflight \S+|\w+/\S+):", ln)]
    assert steps == ["preflight padded", "preflight varlen", "trace/padded", "trace/varlen", "uniform/padded",
                     "uniform/varlen", "preflight dense", "trace/dense", "uniform/dense"]


def test_deadline_ends_a_run_cleanly_with_what_it_measured(tmp_path):
    res = runner.run(smoke(png=False, deadline=1e-9), tmp_path, **QUIET)
    disk = json.loads((tmp_path / "bench.json").read_text())
    assert res["status"] == disk["status"] == "deadline"
    statuses = [m["status"] for s in disk["scenarios"] for m in s["methods"].values()]
    assert any(s.startswith("skipped: deadline") for s in statuses)


def test_results_are_on_disk_after_every_step_and_every_exit_path(tmp_path, monkeypatch):
    seen = []
    real = runner.run_method

    def run_method(ctx, sc, sr, m, tokens):
        if sc.name == "seed":
            seen.append(json.loads((tmp_path / "bench.json").read_text()))
            raise KeyboardInterrupt  # the run is killed in its second scenario
        return real(ctx, sc, sr, m, tokens)

    monkeypatch.setattr(runner, "run_method", run_method)
    with pytest.raises(KeyboardInterrupt):
        runner.run(smoke(png=False, scenarios=("uniform", "seed"), methods=("padded",)), tmp_path, **QUIET)
    [before] = seen
    assert before["status"] == "running" and before["scenarios"][0]["methods"]["padded"]["status"] == "complete"
    after = json.loads((tmp_path / "bench.json").read_text())
    assert after["status"].startswith("failed: KeyboardInterrupt") and after["finished"]
    assert after["scenarios"][0]["methods"]["padded"]["median_s"] > 0


def test_a_setup_failure_still_writes_a_final_status(tmp_path):
    with pytest.raises(ValueError, match="unknown model 'llama-9'"):
        runner.run(smoke(model="llama-9"), tmp_path, **QUIET)
    disk = json.loads((tmp_path / "bench.json").read_text())
    assert disk["status"].startswith("failed: ValueError: unknown model 'llama-9'") and disk["finished"]


def test_guess_scales_padded_by_the_flop_model_and_allows_one_compile():
    cfg = smoke(warmup=1, repeats=3)
    ctx = runner.Context(cfg, None, TOY, M.torch.device("cpu"), None, 0.0, print, print)
    sr = results.Scenario("s", "window", "", {}, {"total": 1})
    sr.methods["padded"] = results.Method("padded", "", "online", "padded", "causal", "sdpa",
                                          flops_model={"total": 400}, median_s=2.0)
    flex = results.Method("flex", "", "online", "packed", "block-sparse", "flex_attention", flops_model={"total": 100})
    # 2 x (1 warm-up + 3 repeats) x padded's 2 s x flex's FLOPs / padded's FLOPs; no compile allowance on CPU
    assert runner.guess_seconds(ctx, sr, flex) == pytest.approx(2 * 4 * 2.0 / 4)
    assert runner.guess_seconds(ctx, sr, sr.methods["padded"]) is None


# ---------------------------------------------------------------------- measuring helpers
def test_stats_and_ceiling():
    s = measure.stats([3.0, 1.0, 2.0, 10.0])
    assert s["median_s"] == 2.5 and s["min_s"] == 1.0 and s["max_s"] == 10.0
    assert measure.stats([])["median_s"] is None
    c = measure.matmul_ceiling("cpu", M.torch.float32, n=64, min_seconds=0.02, groups=2)
    assert c["tflops"] > 0 and len(c["tflops_groups"]) == 2 and min(c["group_seconds"]) >= 0.02


def test_git_commit_from_the_environment_wins(monkeypatch):
    monkeypatch.setenv("PACKVIZ_GIT_COMMIT", "abc123")
    assert measure.git_commit() == "abc123"


def test_sdpa_recorder_names_the_kernel_and_restores_sdpa():
    import torch
    import torch.nn.functional as F

    original = F.scaled_dot_product_attention
    q = torch.randn(1, 2, 8, 4)
    with measure.SdpaRecorder() as rec:
        F.scaled_dot_product_attention(q, q, q, is_causal=True)
        F.scaled_dot_product_attention(q, q, q, attn_mask=torch.ones(8, 8, dtype=torch.bool))
    assert F.scaled_dot_product_attention is original
    assert rec.calls[0]["is_causal"] and rec.calls[1]["mask"] == "(8, 8) bool"
    assert all(c["kernel"] in ("FLASH_ATTENTION", "MATH", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION") for c in rec.calls)
    assert "is_causal" in rec.summary() and "mask (8, 8) bool" in rec.summary()


# ---------------------------------------------------------------------- CLI, script, recorded runs
def test_cli_bench_smoke(tmp_path, capsys):
    from packviz.cli import main

    argv = ["bench", "--smoke", "--out", str(tmp_path), "--scenarios", "uniform", "--methods", "padded,dense",
            "--repeats", "1", "--no-progress"]
    assert main(argv + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "complete" and set(out["scenarios"]) == {"uniform"}
    assert out["scenarios"]["uniform"]["dense"]["median_s"] > 0
    assert pathlib.Path(out["json"]).is_file() and pathlib.Path(out["png"]).is_file()
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "device:" in text and "scenario  method" in text and "uniform   dense" in text
    assert main(["bench", "--smoke", "--out", str(tmp_path), "--scenarios", "nope"]) == 2


def test_cli_bench_setup_errors_are_one_line(tmp_path, capsys):
    from packviz.cli import main

    f = tmp_path / "a-file"
    f.write_text("x")
    for argv, shown in ((["--out", str(tmp_path / "o"), "--device", "tpu9"], "unknown device 'tpu9'"),
                        (["--out", str(tmp_path / "o2"), "--model", "llama-9"], "unknown model 'llama-9'"),
                        (["--out", str(tmp_path / "o3"), "--dtype", "float12"], "unknown dtype 'float12'"),
                        (["--out", str(f)], "exists and is not a directory")):
        assert main(["bench", "--smoke", "--no-progress", *argv]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and shown in err, (argv, err)


def test_gpu_script_is_one_bounded_call_with_a_timeline():
    script = ROOT / "scripts" / "gpu_bench.sh"
    text = script.read_text()
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert "$OUT" in text and "timeout" in text and "nvidia-smi" in text and "--smoke" in text
    assert "PACKVIZ_GIT_COMMIT" in text
    limit = max(int(x) for x in re.findall(r"LIMIT:-(\d+)", text))
    deadline = int(re.search(r"DEADLINE:-(\d+)", text).group(1))
    assert deadline < limit <= 450 - 30  # python's own limit, leaving the probe and the kill grace inside 7.5 min
    timeline = re.findall(r"^#\s+~?\s*(\d+)\s*s\b", text, flags=re.M)
    assert len(timeline) >= 5  # the estimated timeline per step, in the header
    from packviz.cli import build_parser

    words = re.search(r"ARGS=\((--model .*?)\)", text, flags=re.S).group(1).split()
    words = [re.sub(r'^"\$\{DEADLINE:-(\d+)\}"$', r"\1", w) for w in words if w != '"$@"']
    ns = build_parser().parse_args(["bench", "--out", "x"] + words)
    assert ns.model == "llama-3-8b" and ns.pack_len == 8192 and ns.batch_size == 32 and not ns.smoke


def _result_file(path, started, **extra):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"schema": results.SCHEMA, "started": started, "scenarios": [], **extra}))
    return path


def test_find_latest_and_load_recorded_results(tmp_path):
    assert results.find_results(tmp_path / "missing") == [] and results.latest_result(tmp_path) is None
    with pytest.raises(FileNotFoundError, match="no benchmark results"):
        results.load_results(tmp_path)
    (tmp_path / "notes.json").write_text('{"not": "a result"}')
    (tmp_path / "broken.json").write_text("{")
    new = _result_file(tmp_path / "a" / "bench.json", "2025-02-01T00:00:00+00:00", status="complete")
    old = _result_file(tmp_path / "z-old.json", "2025-01-01T00:00:00+00:00")
    assert results.find_results(tmp_path) == [old, new] and results.latest_result(tmp_path) == new
    assert results.load_results(tmp_path)["path"] == str(new)
    with pytest.raises(ValueError, match="not a packviz benchmark result"):
        results.load_results(tmp_path / "notes.json")


def test_sanity_flags_what_would_be_a_bug_on_a_gpu():
    m = {"padded": {"median_s": 2.0}, "padded-masked": {"median_s": 1.0},
         "varlen": {"measured_speedup": 5.0, "ideal_speedup": 4.0, "useful_fraction_of_ceiling": 1.2}}
    res = {"device": {"type": "cuda"}, "scenarios": [{"name": "trace", "methods": m}]}
    found = results.sanity(res)
    assert len(found) == 3 and any("above the ideal" in f for f in found)
    assert any("slower than padded-masked" in f for f in found)


def test_bench_never_imports_widgets_or_pyplot():
    code = ("import sys, packviz.bench.runner, packviz.bench.results, packviz.bench.scenarios; "
            "bad = [m for m in ('packviz.widgets', 'matplotlib.pyplot', 'ipywidgets') if m in sys.modules]; "
            "assert not bad, bad")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_bench_figure_draws_each_timing_once_where_it_was_measured(smoke_run):
    from packviz import plot

    _, res = smoke_run
    top, bottom = plot.bench_figure(res)
    assert top.figure is bottom.figure and isinstance(top.figure, plot.PackvizFigure)
    assert [t.get_text() for t in top.get_xticklabels()] == list(config.SCENARIOS)
    timed = ["padded-masked", "padded-sorted", "dense", "varlen"]  # the smoke's timed methods besides padded
    heights = [p.get_height() for p in top.patches]
    assert len(heights) == len(timed) * len(config.SCENARIOS)
    offline = {s["name"]: s for s in res["scenarios"]}["offline"]["methods"]
    i_off = config.SCENARIOS.index("offline")
    # padded-masked's offline timings are trace's, shared: no second bar
    assert heights[0 * len(config.SCENARIOS) + i_off] == 0 and offline["padded-masked"]["shared_from"]
    assert heights[2 * len(config.SCENARIOS) + i_off] == pytest.approx(offline["dense"]["measured_speedup"])
    assert bottom.get_ylim() == (0, 100) and plot.to_png(top).startswith(b"\x89PNG")


def test_bench_figure_names_every_method_without_a_bar_and_why():
    from packviz import plot

    res = {"scenarios": [
        {"name": "trace", "methods": {
            "padded": {"median_s": 2.0, "measured_speedup": 1.0, "ideal_speedup": 1.0},
            "varlen": {"median_s": 1.0, "measured_speedup": 2.0, "ideal_speedup": 2.5},
            "flash": {"status": "unavailable: flash-attn is not installed (pip install flash-attn)"},
            "flex": {"status": "skipped: deadline (12 s left, about 40 s needed)"}}},
        {"name": "offline", "methods": {
            "padded": {"median_s": 2.0, "shared_from": "trace"},
            "varlen": {"median_s": 1.1, "measured_speedup": 1.8, "ideal_speedup": 2.5},
            "flash": {"status": "unavailable: flash-attn is not installed (pip install flash-attn)"}}}]}
    assert results.not_timed(res) == {("flash", "unavailable: flash-attn is not installed"): ["trace", "offline"],
                                      ("flex", "skipped: deadline"): ["trace"]}
    ax = plot.bench_speedups(res)
    notes = [t.get_text() for t in ax.texts if t.get_text().startswith("not timed")]
    assert len(notes) == 1
    note = " ".join(notes[0].split())
    assert "flash in every scenario (unavailable: flash-attn is not installed)" in note
    assert "flex in trace (skipped: deadline)" in note and "padded" not in note  # shared timings are timed
    everything = {"scenarios": [{"name": "trace", "methods": {"padded": {"median_s": 1.0}}}]}
    assert not [t for t in plot.bench_speedups(everything).texts if t.get_text().startswith("not timed")]
