"""scripts/gpu_serve.sh end to end in its CPU smoke mode: every step, the files it writes, and the
simulator reading the calibration it recorded."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from packviz.serving import calibration, cost_model

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("serve-smoke")
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "PACKVIZ_GIT_COMMIT": "abc123"}
    p = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_serve.sh"), "--smoke"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return out


def test_smoke_writes_few_flat_files(smoke):
    names = sorted(f.name for f in smoke.iterdir())
    assert names == ["calibration.json", "env.txt", "serve.json", "serve.log"]
    assert "transformers" in (smoke / "env.txt").read_text()


def test_smoke_runs_every_step(smoke):
    res = json.loads((smoke / "serve.json").read_text())
    assert res["schema"] == calibration.SERVE_SCHEMA and res["status"] == "complete"
    assert res["git_commit"] == "abc123"                          # the environment variable wins over git
    assert res["steps"]["preflight"] == {"static": "ok", "continuous": "ok", "continuous-graphs": "ok"}
    assert res["steps"]["calibration"]["points"] >= 9
    # on CPU the profiler sees no kernels: no device-only fit, no CUDA-graph prediction
    assert res["steps"]["calibration"]["fit_device"] is None and "continuous-graphs" not in res["predicted"]
    for name in ("static", "continuous", "continuous-graphs"):
        assert res["engines"][name]["status"] == "ok"
        assert res["engines"][name]["output_tokens"] == res["window"]["output_tokens"]
    # the engine's own count of what static generate ran equals the simulator's
    assert res["engines"]["static"]["prefill_pad_tokens"] == res["predicted"]["static"]["prefill_pad_tokens"]
    assert res["engines"]["static"]["decode_slot_steps"] == res["predicted"]["static"]["decode_slot_steps"]
    cmp = res["comparison"]
    assert cmp["measured_ratio"] > 0 and cmp["predicted_ratio"] > 0


def test_the_recorded_calibration_drives_the_simulator(smoke):
    cal = calibration.load_calibration(smoke / "calibration.json")
    assert {p["kind"] for p in cal["points"]} == {"prefill", "padded_prefill", "decode"}
    cost = cost_model(str(smoke / "calibration.json"))
    assert cost.name == "calibrated" and cost.flop_rate > 0 and cost.byte_rate > 0
    assert all(p["gpu_seconds"] is None for p in cal["points"])  # CPU: no kernel time
    with pytest.raises(ValueError, match="not every point has 'gpu_seconds'"):
        calibration.fit_calibration(cal, "gpu_seconds")
    assert calibration.latest_recorded(calibration.CALIBRATION_SCHEMA, smoke)["model"] == "tiny"
    assert calibration.latest_recorded(calibration.SERVE_SCHEMA, smoke)["status"] == "complete"
