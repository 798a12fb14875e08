"""scripts/gpu_serve.sh end to end in its CPU smoke mode: every step, the files it writes, the engine's
outputs, the calibration driving the simulator, the simulator replaying the engine's schedule, the targets."""

import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from packviz.serving import calibration, cost_model, simulate, summary
from packviz.trace import Trace

ROOT = pathlib.Path(__file__).resolve().parent.parent
STEPS = ["ceilings", "model", "grid", "serve", "prefill", "windows"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("engine-smoke")
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "PACKVIZ_GIT_COMMIT": "abc123"}
    p = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_serve.sh"), "--smoke"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def res(smoke):
    return json.loads((smoke / "engine.json").read_text())


def test_smoke_writes_four_flat_files(smoke):
    assert sorted(f.name for f in smoke.iterdir()) == ["calibration.json", "engine.json", "env.txt", "serve.log"]
    assert all(f.is_file() for f in smoke.iterdir())
    assert "transformers" in (smoke / "env.txt").read_text()


def test_every_step_ran_and_says_where(res):
    assert res["schema"] == "packviz.engine-run/1" and res["mode"] == "smoke" and res["status"] == "complete"
    assert res["git_commit"] == "abc123"                          # the environment variable wins over git
    assert list(res["steps"]) == STEPS
    for name, step in res["steps"].items():
        assert step["status"] == "ok" and step["seconds"] > 0, name
    ceil = res["steps"]["ceilings"]
    assert "no CUDA" in ceil["note"] and res["device"]["type"] == "cpu"   # CPU figures labelled as such
    assert ceil["matmul"]["sustained_flops_per_s"] > 0 and ceil["copy"]["bytes_per_s"] > 0
    assert [g["weight"] for g in ceil["gemv"]] == [list(w) for w in res["settings"]["ceilings"]["gemv"]]
    assert ceil["nvidia_smi"]["start"] is None and ceil["nvidia_smi"]["end"] is None
    assert res["steps"]["model"]["random_weights"] and res["steps"]["model"]["name"] == "tiny"


def test_the_grid_times_every_decode_point_beside_its_roofline(res):
    g, cfg = res["steps"]["grid"], res["settings"]["grid"]
    assert g["engine"]["attention"] == "reference" and g["engine"]["cuda_graphs"] is False
    decodes = {(p["batch"], p["context"]) for p in g["points"] if p["kind"] == "decode"}
    assert decodes == {(b, c) for b in cfg["decode_batches"] for c in cfg["decode_contexts"]}
    assert {p["kind"] for p in g["points"]} == {"decode", "mixed", "prefill", "padded_prefill"}
    for p in g["points"]:
        r = p["roofline"]
        assert p["engine"] == "packviz" and p["gpu_seconds"] is None and not p["graphed"]
        assert r["roofline_s"] == max(r["bandwidth_s"], r["compute_s"]) > 0
        assert r["share_wall"] == pytest.approx(r["roofline_s"] / p["seconds"])
    one, two = (next(p for p in g["points"] if p["kind"] == "decode" and p["batch"] == b and p["context"] == 128)
                for b in (1, 2))
    assert two["roofline"]["bytes"] > one["roofline"]["bytes"]       # the same weights, twice the KV


def test_the_engine_gives_every_request_its_full_output(res):
    serve = res["steps"]["serve"]
    g = serve["requests"]["output_tokens"]
    assert serve["requests"]["output_cap"] is None and len(g) == serve["requests"]["count"]
    assert list(serve["policies"]) == ["static", "continuous", "chunked"]
    for name, p in serve["policies"].items():
        assert p["status"] == "ok" and p["outputs_full"] and p["output_lengths"] == g, name
        assert p["summary"]["generated_tokens"] == sum(g) and p["summary"]["completed"] == len(g)
        assert len(p["steps"]["seconds"]) == p["summary"]["steps"]
    pads = {n: p["summary"]["prefill_pad_tokens"] for n, p in serve["policies"].items()}
    assert pads["static"] > 0 and pads["continuous"] == pads["chunked"] == 0


def test_the_recorded_calibration_drives_the_simulator(smoke, res):
    cal = calibration.load_calibration(smoke / "calibration.json")
    assert cal["engine"] == "packviz" and cal["model"] == "tiny" and cal["fit"]["points"] == len(cal["points"])
    assert len(cal["points"]) == len(res["steps"]["grid"]["points"])
    cost = cost_model(str(smoke / "calibration.json"))
    assert cost.name == "calibrated" and cost.flop_rate > 0 and cost.byte_rate > 0
    assert cost.as_dict() == res["steps"]["serve"]["costs"]["calibrated"]     # what the predictions used
    assert calibration.latest_recorded(calibration.CALIBRATION_SCHEMA, smoke)["model"] == "tiny"


def test_the_engines_step_times_replay_its_schedule(res):
    serve = res["steps"]["serve"]
    req = serve["requests"]
    trace = Trace(np.zeros(req["count"]), np.array(req["prompt_tokens"]), np.array(req["output_tokens"]))
    for name, p in serve["policies"].items():
        s = p["summary"]
        r = simulate(trace, name, model="tiny", arrivals="offline", clock=p["steps"]["seconds"],
                     kv_budget_tokens=s["kv_budget_tokens"], **p["config"])
        assert summary(r)["makespan_s"] == pytest.approx(s["makespan_s"], rel=1e-12), name
        assert len(r.plans) == s["steps"] and p["predicted"]["replay"]["same_schedule"]
        assert [len(x.decodes) for x in r.plans] == p["steps"]["decodes"]
        for label in ("calibrated", "preset"):
            pred = p["predicted"][label]
            assert pred["predicted_over_measured"] == pytest.approx(pred["makespan_s"] / s["makespan_s"])


def test_prefill_controls_time_every_variant(res):
    rows = res["steps"]["prefill"]["rows"]
    assert [r["status"] for r in rows] == ["ok"] * len(rows) and rows[-1]["window"].startswith("uniform")
    assert set(rows[0]["variants"]) == {"padded-pad-zero", "padded-pad-random", "varlen-engine"}
    assert rows[-1]["ideal_speedup"] == 1.0 and rows[0]["ideal_speedup"] > 1.0
    spread = res["steps"]["windows"]["rows"]
    assert len(spread) == len(res["settings"]["prefill"]["percentiles"])
    assert all(r["ideal_speedup"] == pytest.approx(r["ideal_speedup_of_window"]) for r in spread)


def test_the_printed_report_gives_each_target_its_value_and_ratio(smoke, res):
    log = (smoke / "serve.log").read_text()
    lines = [x for x in log.splitlines() if x.startswith("target  ")]
    assert len(lines) == len(res["targets"]) == 8
    for t, line in zip(res["targets"], lines):
        assert t["target"] in line
        if t["measured"] is None:
            assert t["met"] is None and line.endswith("not measured")
        else:
            assert t["ratio"] == pytest.approx(t["measured"] / t["goal"])
            assert line.endswith("MET" if t["met"] else "MISSED")
            assert re.search(rf"ratio\s+{t['ratio']:.2f}", line)
    names = " ".join(t["target"] for t in res["targets"])
    for phrase in ("decode B=1", "bandwidth roofline", "host ms per graphed decode step",
                   "continuous / static", "chunked / continuous", "|predicted / measured makespan - 1|"):
        assert phrase in names
    host = next(t for t in res["targets"] if t["target"].startswith("host"))
    assert host["measured"] is None                                 # no CUDA events on a CPU
