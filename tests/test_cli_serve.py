"""``python -m packviz serve``: the JSON contract, the human summary, and one-line errors."""

import json
import subprocess
import sys

import pytest

from packviz.cli import main

CSV = ("TIMESTAMP,ContextTokens,GeneratedTokens\n"
       "2023-11-16 18:15:46.6805900,374,44\n"
       "2023-11-16 18:15:50.9951690,396,109\n"
       "2023-11-16 18:15:51.0000000,20,3\n")
KEYS = {"policy", "num_requests", "completed", "prompt_tokens", "generated_tokens", "prefill_pad_tokens",
        "decode_slot_steps", "decode_useful_steps", "output_tokens_per_s", "makespan_s", "ttft_s", "tpot_s",
        "e2e_s", "gpu_busy_fraction", "useful_flop_fraction", "seconds"}


@pytest.fixture
def trace_file(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text(CSV)
    return path


def run(capsys, *argv):
    rc = main(["serve", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("policy", ["static", "static-packed", "continuous", "chunked"])
def test_json_contract(capsys, trace_file, policy):
    rc, out, err = run(capsys, "--trace", trace_file, "--policy", policy, "--arrivals", "offline", "--json")
    assert rc == 0 and err == ""
    s = json.loads(out)
    assert KEYS <= set(s)
    assert (s["policy"], s["num_requests"], s["completed"]) == (policy, 3, 3)
    assert (s["prompt_tokens"], s["generated_tokens"], s["decode_useful_steps"]) == (790, 156, 153)
    assert set(s["ttft_s"]) == {"p50", "p90", "p99"}
    if policy == "static":                       # all three at t = 0, one batch: pads to 396, every slot to G = 109
        assert s["prefill_pad_tokens"] == 3 * 396 - 790 and s["decode_slot_steps"] == 3 * 108
    if policy in ("continuous", "chunked"):
        assert s["decode_slot_steps"] == s["decode_useful_steps"]


def test_options_reach_the_simulator(capsys, trace_file):
    rc, out, _ = run(capsys, "--trace", trace_file, "--policy", "static", "--arrivals", "offline", "--max-batch", 1,
                     "--gpu", "a100", "--model", "llama-3.2-1b", "--kv-budget", 20000, "--json")
    s = json.loads(out)
    assert rc == 0 and s["max_batch"] == 1 and s["arrivals"] == "offline" and s["model"] == "llama-3.2-1b"
    assert s["gpu"]["name"] == "a100" and s["kv_budget_tokens"] == 20000
    assert s["prefill_pad_tokens"] == 0                      # batches of one are never padded
    rc, out, _ = run(capsys, "--trace", trace_file, "--policy", "continuous", "--rate-scale", 4, "--json")
    assert json.loads(out)["rate_scale"] == 4.0


def test_human_summary(capsys, trace_file):
    rc, out, _ = run(capsys, "--trace", trace_file, "--policy", "static")
    assert rc == 0
    assert out.startswith("static: ") and "completed:  3 of 3" in out and "nvidia-smi" in out


@pytest.mark.parametrize("content, argv, message", [
    ("TIMESTAMP,ContextTokens\n2023-11-16 18:15:46,3\n", [], "has no GeneratedTokens column"),
    (CSV.replace(",374,", ",0,"), [], "line 2: ContextTokens is 0; a token count must be >= 1"),
    (CSV.replace(",109", ",many"), [], "line 3: GeneratedTokens is 'many', not an integer"),
    (CSV.replace(",109", ",1.5"), [], "line 3: GeneratedTokens is '1.5', not an integer"),
    (CSV, ["--rate-scale", "0"], "--rate-scale must be a finite number > 0, got 0.0"),
    (CSV, ["--rate-scale", "-1"], "got -1.0"),
    (CSV, ["--rate-scale", "fast"], "--rate-scale must be a number, got 'fast'"),
    (CSV, ["--kv-budget", "100"], "--kv-budget 100 is too small for request 0"),
    (CSV, ["--max-batch", "0"], "--max-batch must be a positive integer, got 0"),
    (CSV, ["--max-batch", "two"], "--max-batch must be an integer, got 'two'"),
    (CSV, ["--policy", "fifo"], "policy must be one of 'static', 'static-packed', 'continuous', 'chunked'; got 'fifo'"),
    (CSV, ["--arrivals", "later"], "arrivals must be one of 'trace', 'offline'; got 'later'"),
    (CSV, ["--gpu", "b200"], "unknown GPU 'b200'"),
    (CSV, ["--model", "llama-9"], "unknown model 'llama-9'"),
    (CSV, ["--policy", "chunked", "--token-budget", "8"], "--token-budget 8 is below --max-batch 32"),
])
def test_bad_input_one_line_naming_the_value(capsys, tmp_path, content, argv, message):
    path = tmp_path / "t.csv"
    path.write_text(content)
    if "--policy" not in argv:
        argv = ["--policy", "static", *argv]
    rc, out, err = run(capsys, "--trace", path, *argv)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err


def test_missing_trace_file(capsys, tmp_path):
    rc, _, err = run(capsys, "--trace", tmp_path / "nope.csv", "--policy", "static")
    assert rc == 2 and err == f"error: trace file not found: {tmp_path / 'nope.csv'}\n"


def test_process_runs_the_shipped_trace_without_torch():
    code = ("import sys, runpy; sys.argv = ['packviz', 'serve', '--policy', 'static', '--json']; "
            "from packviz.cli import main; rc = main(sys.argv[1:]); "
            "assert not [m for m in ('torch', 'transformers', 'matplotlib') if m in sys.modules]; sys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["num_requests"] == s["completed"] == 19366


# ---------------------------------------------------------------------- --execute: the engine on a real model
def test_execute_runs_the_engine_and_prints_the_same_contract(capsys, trace_file, one_torch_thread):
    rc, out, err = run(capsys, "--trace", trace_file, "--policy", "continuous", "--arrivals", "offline",
                       "--execute", "--requests", 3, "--json")
    assert rc == 0 and err == ""
    s = json.loads(out)
    assert KEYS <= set(s) and s["clock"] == "executed" and s["model"] == "tiny"
    assert (s["num_requests"], s["completed"], s["generated_tokens"]) == (3, 3, 156)
    assert s["engine"]["attention"] == "reference" and s["engine"]["device"] == "cpu"
    assert s["engine"]["step_ms"]["p50"] > 0 and s["steps"] == 109       # one step admits all three, then G = 109
    rc, out, _ = run(capsys, "--trace", trace_file, "--policy", "static", "--execute", "--requests", 2)
    assert rc == 0 and "executed" in out and "attention reference" in out and "step ms:" in out


@pytest.mark.parametrize("argv, message", [
    (("--execute", "--gpu", "a100"), "--gpu prices a simulated run; --execute measures on this machine"),
    (("--execute", "--ragged-attention", "dense"), "--ragged-attention prices a simulated run"),
    (("--requests", "4"), "--requests is an option of an executed run; add --execute"),
    (("--seed", "1"), "--seed is an option of an executed run"),
    (("--execute", "--requests", "0"), "--requests must be 1 .. 3"),
    (("--execute", "--requests", "x"), "--requests must be an integer, got 'x'"),
    (("--execute", "--device", "cuda"), "CUDA is not available here"),
    (("--execute", "--dtype", "float8"), "unknown dtype 'float8'"),
])
def test_execute_bad_input_one_line(capsys, trace_file, argv, message):
    rc, out, err = run(capsys, "--trace", trace_file, "--policy", "continuous", *argv)
    assert rc == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------- named engines and capacity (issue 20)
def test_config_names_an_engine(capsys, trace_file):
    rc, out, _ = run(capsys, "--trace", trace_file, "--config", "vllm-v1-like", "--json")
    s = json.loads(out)
    assert rc == 0 and (s["policy"], s["max_batch"], s["token_budget"]) == ("chunked", 1024, 8192)


@pytest.fixture
def window_file(tmp_path):
    """300 consecutive requests of the shipped trace as a CSV (a capacity search replays it a dozen times)."""
    import datetime

    from packviz.trace import azure_conv

    w, t0 = azure_conv().window(300, seed=5), datetime.datetime(2023, 11, 16, 18, 0, 0)
    rows = [f"{t0 + datetime.timedelta(seconds=float(a))},{p},{g}"
            for a, p, g in zip(w.arrival_s, w.prompt_tokens, w.generated_tokens)]
    path = tmp_path / "window.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "\n".join(rows) + "\n")
    return path


def test_capacity_under_two_slos(capsys, window_file):
    rc, out, err = run(capsys, "--trace", window_file, "--policy", "continuous", "--capacity", "--slo-itl-p99", "0.1",
                       "--json")
    c = json.loads(out)
    assert rc == 0 and err == "" and c["capacity"] and c["slo"] == {"ttft_p99_s": 5.0, "itl_p99_s": 0.1}
    assert c["rate_scale"] > 1 and c["itl_p99_s"] <= 0.1 and c["ttft_p99_s"] <= 5.0
    rc, out, _ = run(capsys, "--trace", window_file, "--policy", "static", "--capacity")
    assert rc == 0 and out.startswith("static: capacity ") and "under TTFT p99 <= 5 s" in out


@pytest.mark.parametrize("argv, message", [
    (("--config", "sglang"), "--config must be one of orca-like, vllm-v1-like, got 'sglang'"),
    (("--config", "vllm-v1-like", "--policy", "static"), "--config vllm-v1-like sets the policy"),
    (("--policy", "static", "--slo-itl-p99", "0.1"), "--slo-itl-p99 is an SLO of --capacity; add --capacity"),
    (("--policy", "static", "--capacity", "--rate-scale", "2"), "--capacity searches the arrival rate itself"),
    (("--policy", "static", "--capacity", "--execute"), "--capacity searches rates with the simulator"),
    (("--policy", "static", "--capacity", "--slo-itl-p99", "-1"), "--slo-itl-p99 must be a finite number > 0"),
])
def test_config_and_capacity_bad_input(capsys, trace_file, argv, message):
    rc, out, err = run(capsys, "--trace", trace_file, *argv)
    assert rc == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1
