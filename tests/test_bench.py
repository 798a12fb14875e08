"""The benchmark: the --smoke run end to end on CPU, the deadline, incremental results, the GPU script."""

import ast
import json
import math
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from packviz import bench, results
from packviz.attention import METHODS

ROOT = pathlib.Path(__file__).resolve().parent.parent
QUIET = dict(log=lambda msg: None)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    res = bench.run(bench.smoke_config(progress=False), out, **QUIET)
    return out, res


def test_smoke_writes_json_and_png(smoke):
    out, res = smoke
    on_disk = json.loads((out / "bench.json").read_text())
    assert on_disk["status"] == res["status"] == "complete"
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert on_disk["png"] == str(out / "bench.png")
    assert on_disk["errors"] == []
    for key in ("device", "versions", "git_commit", "config", "weights", "model", "availability", "ceiling"):
        assert key in on_disk
    assert on_disk["versions"]["torch"] and on_disk["versions"]["transformers"]
    assert on_disk["device"]["type"] == "cpu" and on_disk["device"]["name"]
    assert "random" in on_disk["weights"] and "does not depend on weight values" in on_disk["weights"]
    assert on_disk["model"]["random_weights"] is True
    assert on_disk["config"]["smoke"] is True and on_disk["config"]["model"] == "tiny"
    assert [r["method"] for r in on_disk["availability"]] == list(METHODS)


def test_smoke_measures_every_scenario_and_method(smoke):
    _, res = smoke
    assert res["ceiling"]["tflops"] > 0 and res["ceiling"]["dtype"] == "float32"
    assert [s["name"] for s in res["scenarios"]] == list(bench.SCENARIOS)
    for s in res["scenarios"]:
        useful = s["flops"]["useful"]["total"]
        assert 0 < useful <= s["flops"]["varlen"]["total"] <= s["flops"]["padded"]["total"]
        for m in ("padded", "dense"):
            r = s["methods"][m]
            assert r["status"] == "complete"
            assert len(r["times_s"]) == 2 and all(t > 0 for t in r["times_s"])
            assert r["min_s"] <= r["median_s"] <= r["max_s"] and r["iqr_s"] >= 0
            assert r["valid_tokens"] == s["real_tokens"]
            assert r["processed_tokens"] >= r["valid_tokens"]
            assert math.isclose(r["valid_tokens_per_s"], r["valid_tokens"] / r["median_s"])
            assert math.isclose(r["useful_tflops_per_s"], useful / r["median_s"] / 1e12)
            assert math.isclose(r["useful_fraction_of_ceiling"], r["useful_tflops_per_s"] / res["ceiling"]["tflops"])
            assert r["measured_speedup"] > 0 and r["ideal_speedup"] > 0
            assert r["peak_memory_bytes"] is None  # not measured on CPU, said so
            # the logits of this method, checked on this device against each sequence alone
            assert r["check"]["max_abs_diff"] <= 1e-4
        assert s["methods"]["padded"]["measured_speedup"] == 1.0
        # not run on CPU, and the results say why
        assert s["methods"]["varlen"]["status"].startswith("unavailable")
        assert "CPU" in s["methods"]["varlen"]["status"]
        assert s["methods"]["flex"]["status"].startswith(("skipped", "unavailable"))


def test_smoke_scenarios_teach_what_they_should(smoke):
    _, res = smoke
    sc = {s["name"]: s for s in res["scenarios"]}
    # seed mix and trace: padding wastes a lot, dense packing wins in the FLOP model
    for name in ("seed", "trace"):
        assert sc[name]["layouts"]["padded"]["utilization"] < 0.7
        assert sc[name]["methods"]["dense"]["ideal_speedup"] > 1.2
    # the control: equal lengths, nothing to unpad; the dense T x T square makes packing lose
    u = sc["uniform"]
    assert u["layouts"]["padded"]["pads"] == 0
    assert u["methods"]["dense"]["ideal_speedup"] < 1
    assert u["lengths"]["min"] == u["lengths"]["max"]


def test_smoke_targets_are_reported_not_tested(smoke):
    _, res = smoke
    t = res["targets"]
    assert t["scenario"] == "trace" and "not tested" in t["note"]
    assert t["varlen_measured_over_ideal"] is None  # varlen does not run on CPU


def test_deadline_ends_a_run_cleanly(tmp_path):
    res = bench.run(bench.smoke_config(progress=False, png=False, deadline=0.0), tmp_path, **QUIET)
    assert res["status"] == "deadline"
    on_disk = json.loads((tmp_path / "bench.json").read_text())
    assert on_disk["status"] == "deadline"
    assert all(s.get("status") == "skipped: deadline" for s in on_disk["scenarios"])


def test_results_are_on_disk_after_every_step(tmp_path, monkeypatch):
    seen = []
    original = bench._Run.scenario

    def scenario(self, name, progress):
        if name == "seed":
            seen.append(json.loads((tmp_path / "bench.json").read_text()))
            raise KeyboardInterrupt  # the run is killed in its second scenario
        return original(self, name, progress)

    monkeypatch.setattr(bench._Run, "scenario", scenario)
    with pytest.raises(KeyboardInterrupt):
        bench.run(bench.smoke_config(progress=False, png=False, scenarios=("uniform", "seed"),
                                     methods=("padded",)), tmp_path, **QUIET)
    [before] = seen
    assert before["ceiling"]["tflops"] > 0
    assert before["scenarios"][0]["methods"]["padded"]["status"] == "complete"
    after = json.loads((tmp_path / "bench.json").read_text())
    assert after["status"].startswith("failed: KeyboardInterrupt")
    assert after["scenarios"][0]["methods"]["padded"]["median_s"] > 0


def test_stats():
    s = bench.stats([3.0, 1.0, 2.0, 10.0])
    assert s["median_s"] == 2.5 and s["min_s"] == 1.0 and s["max_s"] == 10.0
    assert s["iqr_s"] == pytest.approx(np.percentile([1, 2, 3, 10], 75) - np.percentile([1, 2, 3, 10], 25))
    assert bench.stats([])["median_s"] is None


def test_scenario_lengths_clip_to_the_pack_length():
    cfg = bench.BenchConfig(pack_len=1000, trace_n=200)
    lengths, info = bench.scenario_lengths("trace", cfg)
    assert lengths.max() <= 1000 and info["clipped_sequences"] > 0
    assert info["clipped_tokens"] > 0 and info["real_tokens"] == int(lengths.sum())
    with pytest.raises(ValueError, match="unknown scenario"):
        bench.scenario_lengths("nope", cfg)


def test_cli_bench_smoke(tmp_path, capsys):
    from packviz.cli import main

    argv = ["bench", "--smoke", "--out", str(tmp_path), "--scenarios", "uniform", "--methods", "padded,dense",
            "--repeats", "1", "--no-progress"]
    assert main(argv + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "complete" and set(out["scenarios"]) == {"uniform"}
    assert out["scenarios"]["uniform"]["dense"]["median_s"] > 0
    assert pathlib.Path(out["json"]).is_file() and pathlib.Path(out["png"]).is_file()
    # without --json: the run info and the results table, as text
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "device:" in text and "scenario  method" in text and "uniform   dense" in text
    assert f"written: {out['json']}" in text
    assert main(["bench", "--smoke", "--out", str(tmp_path), "--scenarios", "nope"]) == 2


def test_bench_and_model_never_import_the_display_stack():
    for mod in ("bench", "model", "attention"):
        tree = ast.parse((ROOT / "packviz" / f"{mod}.py").read_text())
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                names.add(("." * node.level) + (node.module or ""))
                names |= {a.name for a in node.names}
        assert not {"plot", "widgets", ".plot", ".widgets", "packviz.plot", "packviz.widgets",
                    "ipywidgets"} & names, mod


def test_gpu_script_is_one_bounded_call():
    script = ROOT / "scripts" / "gpu_bench.sh"
    text = script.read_text()
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert "$OUT" in text and "timeout" in text and "nvidia-smi" in text and "--smoke" in text
    limit = max(int(x) for x in re.findall(r"LIMIT:-(\d+)", text))
    deadline = int(re.search(r"DEADLINE:-(\d+)", text).group(1))
    assert deadline < limit < 8 * 60 - 20  # the whole call stays under 8 minutes
    # the GPU arguments are ones the CLI accepts
    from packviz.cli import build_parser

    words = re.search(r"ARGS=\((--model .*?)\)", text, flags=re.S).group(1).split()
    words = [re.sub(r'^"\$\{DEADLINE:-(\d+)\}"$', r"\1", w) for w in words if w != '"$@"']
    ns = build_parser().parse_args(["bench", "--out", "x"] + words)
    assert ns.model == "llama-3-8b" and ns.pack_len == 8192 and ns.batch_size == 32
    assert ns.deadline == deadline and not ns.smoke


def test_bench_runs_the_varlen_method_end_to_end_with_a_stand_in_kernel(tmp_path, monkeypatch):
    # varlen_attn has no CPU kernel; the CPU reference with its signature drives the same plumbing
    from packviz import attention as A

    real_availability, real_register = A.availability, A.register_varlen

    def availability(device=None):
        rows = real_availability(device)
        for r in rows:
            if r["method"] == "varlen":
                r.update(available=True, reason="CPU stand-in kernel (test)")
        return rows

    monkeypatch.setattr(A, "availability", availability)
    monkeypatch.setattr(A, "register_varlen", lambda name=A.VARLEN_NAME, kernel=None:
                        real_register(name, kernel=A.varlen_reference))
    try:
        res = bench.run(bench.smoke_config(progress=False, png=False, scenarios=("trace",),
                                           methods=("padded", "dense", "varlen"), repeats=1), tmp_path, **QUIET)
    finally:
        real_register()  # put the real kernel back under the public name
    [sc] = res["scenarios"]
    v, d = sc["methods"]["varlen"], sc["methods"]["dense"]
    assert v["status"] == "complete" and v["check"]["max_abs_diff"] <= 1e-4
    assert v["processed_tokens"] == v["valid_tokens"] == sc["real_tokens"]  # no pads, no filler
    assert d["processed_tokens"] == sc["layouts"]["packed"]["num_rows"] * 256  # dense rows padded to C
    assert v["ideal_speedup"] > d["ideal_speedup"] > 1
    t = res["targets"]
    assert t["varlen_measured_over_ideal"] == pytest.approx(v["measured_speedup"] / v["ideal_speedup"])
    assert isinstance(t["varlen_beats_dense"], bool) and isinstance(t["varlen_reaches_0.6_of_ceiling"], bool)


@pytest.mark.parametrize("bad, shown", [
    (dict(methods=("padded", "paged")), "paged"), (dict(scenarios=("trace", "nope")), "nope"),
    (dict(repeats=0), "repeats"), (dict(pack_len=-1), "pack_len"), (dict(seed=-1), "seed must be an integer >= 0, got -1"),
    (dict(deadline=-5.0), "deadline must be seconds >= 0"), (dict(device="gpu0"), "unknown device 'gpu0'"),
])
def test_bad_configs_fail_before_any_work(tmp_path, bad, shown):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=re.escape(shown)):
        bench.run(bench.smoke_config(progress=False, **bad), out, **QUIET)
    assert not out.exists()  # not even the directory


def test_cuda_asked_for_where_there_is_none_is_a_value_error(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="'cuda' asked for, but CUDA is not available"):
        bench.run(bench.smoke_config(progress=False, device="cuda"), tmp_path, **QUIET)


def test_cli_bench_bad_device_and_out_are_one_line(tmp_path, capsys):
    from packviz.cli import main

    f = tmp_path / "a-file"
    f.write_text("x")
    for argv, shown in ((["--out", str(tmp_path / "o"), "--device", "tpu9"], "unknown device 'tpu9'"),
                        (["--out", str(f)], "exists and is not a directory")):
        assert main(["bench", "--smoke", "--no-progress", *argv]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and shown in err


def test_write_png_leaves_pyplot_and_its_backend_alone(tmp_path):
    """A notebook that runs a benchmark keeps its own matplotlib backend and gets no warning."""
    code = f"""
import warnings, matplotlib
matplotlib.use("svg")
warnings.simplefilter("error")
from packviz import bench
bench.write_png({{"scenarios": [{{"name": "seed", "methods": {{"padded": {{"status": "skipped: deadline"}}}}}}]}},
                {str(tmp_path / "b.png")!r})
import sys
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert "matplotlib.pyplot" not in sys.modules, "pyplot imported"
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------- plan, recorded results, tables
def test_plan_predicts_what_a_run_reports_without_running(smoke):
    _, res = smoke
    cfg = bench.smoke_config(progress=False)
    planned = bench.plan(cfg)
    assert [p["name"] for p in planned] == list(cfg.scenarios)
    for p, s in zip(planned, res["scenarios"]):
        assert p["real_tokens"] == s["real_tokens"]
        assert p["layouts"] == s["layouts"] and p["flops"] == s["flops"]
        assert set(p["ideal_speedup"]) == set(METHODS)
        for m, r in s["methods"].items():
            assert p["ideal_speedup"][m] == pytest.approx(r["ideal_speedup"])
    assert bench.plan(cfg) == planned  # deterministic
    text = bench.format_plan(planned)
    assert len(text.splitlines()) == 2 + len(planned)
    assert "ideal speed-up" in text and f"{planned[0]['ideal_speedup']['dense']:.2f}x" in text


def test_plan_for_the_gpu_run_needs_no_gpu_and_a_checkpoint_needs_a_shape():
    planned = bench.plan(bench.BenchConfig(trace_n=16, seed_n=8, uniform_n=4, scenarios=("seed", "uniform")))
    assert planned[0]["model"] == "llama-3-8b" and planned[0]["ideal_speedup"]["varlen"] > 2
    assert planned[1]["layouts"]["padded"]["pads"] == 0
    with pytest.raises(ValueError, match="shape="):
        bench.plan(bench.BenchConfig(checkpoint="/some/dir"))


def _result_file(path, started, **extra):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"schema": bench.SCHEMA, "started": started, "scenarios": [], **extra}))
    return path


def test_find_latest_and_load_recorded_results(tmp_path):
    assert results.find_results(tmp_path / "missing") == [] and results.latest_result(tmp_path) is None
    with pytest.raises(FileNotFoundError, match="no benchmark results"):
        results.load_results(tmp_path)
    (tmp_path / "notes.json").write_text('{"not": "a result"}')
    (tmp_path / "broken.json").write_text("{")
    # newest by the run's own start time, not by name or file time
    new = _result_file(tmp_path / "a" / "bench.json", "2025-02-01T00:00:00+00:00", status="complete")
    old = _result_file(tmp_path / "z-old.json", "2025-01-01T00:00:00+00:00")
    assert results.find_results(tmp_path) == [old, new]
    assert results.latest_result(tmp_path) == new
    res = results.load_results(tmp_path)
    assert res["status"] == "complete" and res["path"] == str(new)
    assert results.load_results(old)["started"].startswith("2025-01")
    with pytest.raises(ValueError, match="not a packviz benchmark result"):
        results.load_results(tmp_path / "notes.json")
    with pytest.raises(FileNotFoundError):
        results.load_results(tmp_path / "nope.json")


def test_run_info_and_results_tables(smoke):
    out, res = smoke
    info = results.format_run_info(results.load_results(out))
    for key in ("device:", "versions:", "date:", "commit:", "model:", "ceiling:"):
        assert key in info
    assert "torch" in info and "random weights" in info and "144 k parameters" in info
    table = results.format_results(res).splitlines()
    noted = [(s["name"], m) for s in res["scenarios"] for m, r in s["methods"].items() if r.get("attention_note")]
    assert ("uniform", "padded") in noted  # the control has no pads: its baseline ran causal
    assert len(table) == 1 + sum(len(s["methods"]) for s in res["scenarios"]) + len(noted)
    assert table[-1].startswith("note (") and "no batch has pads" in table[-1]
    dense = next(line for line in table if line.startswith("trace") and " dense " in line)
    r = res["scenarios"][0]["methods"]["dense"]
    assert f"{r['measured_speedup']:.2f}x" in dense and f"{r['ideal_speedup']:.2f}x" in dense
    assert any("(unavailable)" in line for line in table if " varlen " in line)


def test_bench_speedups_plot_of_a_results_dict(smoke):
    from packviz import plot

    _, res = smoke
    ax = plot.bench_speedups(res)
    assert isinstance(ax.figure, plot.PackvizFigure)
    assert tuple(ax.figure.get_size_inches()) == pytest.approx((9, 3.6))
    assert [t.get_text() for t in ax.get_xticklabels()] == list(bench.SCENARIOS)
    assert len(ax.patches) == len(bench.SCENARIOS)  # one timed packed method (dense) per scenario
    assert plot.to_png(ax).startswith(b"\x89PNG")


def test_run_order_puts_the_baseline_first_and_the_compiling_method_last(smoke, tmp_path):
    _, res = smoke
    for s in res["scenarios"]:
        assert list(s["methods"]) == ["padded", "varlen", "flash", "dense", "flex"]
    # padded always runs, whatever order the methods were asked in
    run = bench._Run(bench.smoke_config(methods=("flex", "dense", "varlen")), tmp_path, **QUIET)
    run.avail = [{"method": m, "available": True, "reason": ""} for m in METHODS]
    assert [m for m, _ in run.methods()] == ["padded", "varlen", "dense", "flex"]


def test_padded_baseline_without_pads_says_it_ran_causal(smoke):
    _, res = smoke
    sc = {s["name"]: s for s in res["scenarios"]}
    assert "causal" in sc["uniform"]["methods"]["padded"]["attention_note"]  # no pads: HF drops the mask
    assert "attention_note" not in sc["trace"]["methods"]["padded"]


def test_one_log_line_per_method(tmp_path):
    lines = []
    bench.run(bench.smoke_config(progress=False, png=False, scenarios=("uniform",), methods=("padded", "dense"),
                                 repeats=1), tmp_path, log=lines.append)
    per_method = [ln for ln in lines if ln.startswith("uniform/")]
    assert [ln.split(":")[0] for ln in per_method] == ["uniform/padded", "uniform/dense"]
    assert "median" in per_method[0] and "complete" in per_method[0]
    assert any(ln.startswith("uniform/dense: complete") and "x padded" in ln for ln in per_method)


def test_flex_compile_allowance_only_until_flex_has_compiled(tmp_path):
    run = bench._Run(bench.smoke_config(), tmp_path, **QUIET)
    run.cuda = True  # the allowance is for GPU compiles
    info = {"methods": {"padded": {"median_s": 10.0}}}
    r = {"method": "flex", "ideal_speedup": 4.0}
    assert run._guess(r, info) == pytest.approx(2 * 10.0 / 4.0 + 60.0)
    run.flex_compiled = True
    assert run._guess(r, info) == pytest.approx(5.0)
    assert run._guess({"method": "padded", "ideal_speedup": 1.0}, info) is None
