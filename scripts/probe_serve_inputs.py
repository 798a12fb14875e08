"""Probe ``python -m packviz serve`` with a few hundred bad (and some good) invocations, as a new user would.

Each invocation runs in its own process under a memory cap (``resource.setrlimit(RLIMIT_AS)``) and a
timeout. An outcome is one of:

* ``ok``          -- exit 0 (with ``--json``: the output loads with a strict JSON parser, NaN and Infinity refused);
* ``bad input``   -- exit 2 and exactly one stderr line, ``error: ...``;
* ``traceback``, ``internal error``, ``invalid JSON``, ``out of memory``, ``timeout``, ``other``: failures.

Usage::

    python scripts/probe_serve_inputs.py                 # every case (about 300; 2 at a time)
    python scripts/probe_serve_inputs.py --jobs 1 --quick  # one case in five, for a smoke run

Prints a table of the failures (if any), the counts, the peak resident memory of the worst input and of
the billion-token static case beside the baseline, then one JSON object.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

MEMORY_CAP_BYTES = 3 * 2**30
"""Address space each probe may take (3 GiB): a runaway allocation fails instead of taking the machine."""
TIMEOUT_S = 120.0
HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
T0 = "2023-11-16 18:15:46.6805900"
T1 = "2023-11-16 18:15:50.9951690"

TRACES = {  # name -> CSV text
    "ok": f"{HEADER}{T0},374,44\n{T1},396,109\n",
    "one_stamp": f"{HEADER}{T0},374,44\n{T0},396,109\n{T0},20,3\n",
    "one_request": f"{HEADER}{T0},374,44\n",
    "g_1e9": f"{HEADER}{T0},374,1000000000\n{T1},396,109\n",
    "p_1e9": f"{HEADER}{T0},1000000000,3\n{T1},396,109\n",
    "g_1e12": f"{HEADER}{T0},5,1000000000000\n{T1},5,3\n",
    "p_2_62": f"{HEADER}{T0},{2**62},3\n{T1},5,3\n",
    "g_2_62": f"{HEADER}{T0},5,{2**62}\n{T1},5,3\n",
    "g_2_63": f"{HEADER}{T0},5,{2**63}\n",
    "p_big": f"{HEADER}{T0},{'9' * 30},3\n",
    "zero": f"{HEADER}{T0},0,3\n",
    "negative": f"{HEADER}{T0},5,-3\n",
    "float": f"{HEADER}{T0},5.0,3\n",
    "underscore": f"{HEADER}{T0},1_000,3\n",
    "arabic": f"{HEADER}{T0},\u0663\u0660,3\n",
    "empty": "",
    "header_only": HEADER,
    "no_column": "TIMESTAMP,ContextTokens\n2023-11-16 18:15:46,3\n",
    "short_row": f"{HEADER}{T0},5\n",
    "bad_stamp": f"{HEADER}yesterday,5,3\n",
    "empty_stamp": f"{HEADER},5,3\n",
    "month_13": f"{HEADER}2023-13-16 18:15:46,5,3\n",
    "out_of_order": f"{HEADER}{T1},5,3\n{T0},5,3\n",
    "epoch": f"{HEADER}1700154946.68,374,44\n1700154950.99,396,109\n",
    "epoch_int": f"{HEADER}1700154946,374,44\n1700154950,396,109\n",
    "year_only": f"{HEADER}2023,374,44\n2024,396,109\n",
    "year_1000": f"{HEADER}1000-01-01 00:00:00,374,44\n1000-01-01 00:00:04,396,109\n",
    "year_1800": f"{HEADER}1800-01-01 00:00:00,374,44\n1800-01-01 00:00:04,396,109\n",
    "year_2300": f"{HEADER}2300-01-01 00:00:00,374,44\n2300-01-01 00:00:04,396,109\n",
    "year_9999": f"{HEADER}9999-12-31 23:59:58,374,44\n9999-12-31 23:59:59,396,109\n",
    "centuries": f"{HEADER}0001-01-01 00:00:00,374,44\n9999-12-31 23:59:59,396,109\n",
    "zone_z": f"{HEADER}2023-11-16T18:15:46Z,374,44\n2023-11-16T18:15:50Z,396,109\n",
    "zone_offsets": f"{HEADER}2023-11-16T18:15:46+01:00,374,44\n2023-11-16T17:15:50Z,396,109\n",
    "zone_mixed": f"{HEADER}2023-11-16T18:15:46Z,374,44\n2023-11-16T18:15:50,396,109\n",
    "epoch_iso_mixed": f"{HEADER}1700154946,374,44\n2023-11-16T18:15:50,396,109\n",
    "epoch_huge": f"{HEADER}{'9' * 40},374,44\n{'9' * 41},396,109\n",
    "nan_stamp": f"{HEADER}nan,5,3\n",
    "many_same": HEADER + "".join(f"{T0},{1 + i % 700},{1 + i % 90}\n" for i in range(3000)),
}
GOOD = ["--trace", "{ok}", "--policy", "continuous"]
CALIBRATION = {"schema": "packviz.serve-calibration/1", "engine": "packviz", "model": "llama-3-8b",
               "device": {"name": "NVIDIA H100 80GB HBM3"},
               "points": [{"kind": "prefill", "batch": 1, "tokens": 512, "context": 0, "seconds": 0.03},
                          {"kind": "prefill", "batch": 4, "tokens": 2048, "context": 0, "seconds": 0.5},
                          {"kind": "decode", "batch": 8, "tokens": 1, "context": 1000, "seconds": 0.01},
                          {"kind": "decode", "batch": 64, "tokens": 1, "context": 2000, "seconds": 0.02}]}


def calibrations() -> dict:
    """name -> calibration JSON text: the good one and one bad field at a time."""
    def with_point(**change):
        points = [dict(p) for p in CALIBRATION["points"]]
        points[0].update(change)
        return {**CALIBRATION, "points": points}

    def without(key):
        return {**CALIBRATION, "points": [{k: v for k, v in p.items() if k != key} for p in CALIBRATION["points"]]}

    cases = {"cal_ok": CALIBRATION, "cal_device_str": {**CALIBRATION, "device": "H100"},
             "cal_device_name_int": {**CALIBRATION, "device": {"name": 5}},
             "cal_memory_neg": {**CALIBRATION, "device": {"name": "x", "memory_bytes": -1}},
             "cal_points_5": {**CALIBRATION, "points": 5}, "cal_points_2": {**CALIBRATION, "points": CALIBRATION["points"][:2]},
             "cal_points_str": {**CALIBRATION, "points": "many"}, "cal_model_int": {**CALIBRATION, "model": 8},
             "cal_model_bad": {**CALIBRATION, "model": "llama-9"}, "cal_no_batch": without("batch"),
             "cal_no_seconds": without("seconds"), "cal_no_kind": without("kind")}
    for name, change in {"zero_s": dict(seconds=0), "nan_s": dict(seconds=float("nan")), "neg_s": dict(seconds=-0.01),
                         "inf_s": dict(seconds=float("inf")), "str_s": dict(seconds="fast"), "gpu_zero": dict(gpu_seconds=0),
                         "batch_0": dict(batch=0), "batch_float": dict(batch=2.5), "batch_huge": dict(batch=10**9),
                         "tokens_str": dict(tokens="512"), "context_neg": dict(context=-1), "kind_bad": dict(kind="warp"),
                         "bool_batch": dict(batch=True)}.items():
        cases[f"cal_{name}"] = with_point(**change)
    for name, change in {"gpu_tiny": dict(gpu_seconds=1e-300), "s_tiny": dict(seconds=1e-300), "s_1e9": dict(seconds=1e-9),
                         "s_huge": dict(seconds=1e300), "s_fast": dict(seconds=1e-6), "s_slow": dict(seconds=1e3)}.items():
        cases[f"cal_every_{name}"] = {**CALIBRATION, "points": [{**p, **change} for p in CALIBRATION["points"]]}
    last = [dict(p) for p in CALIBRATION["points"]]
    last[3]["seconds"] = 1e-300
    cases["cal_s3_tiny"] = {**CALIBRATION, "points": last}
    cases["cal_wall_below_kernels"] = {**CALIBRATION, "points": [{**p, "seconds": 1e-5, "gpu_seconds": p["seconds"]}
                                                                 for p in CALIBRATION["points"]]}
    out = {k: json.dumps(v) for k, v in cases.items()}
    out.update(cal_list="[1, 2]", cal_broken='{"schema": ', cal_no_schema="{}")
    return out


def option_cases() -> list[list[str]]:
    """Every option with values a user might mistype, on the small good trace."""
    values = {
        "--max-batch": ["0", "-1", "1", "1e30", "100000000", "1048576", "1048577", "1_000", "\u0663", "1.5", "", " 8",
                        "9" * 30, "0x10", "two"],
        "--token-budget": ["0", "1", "1e30", "1_024", "\u0661\u0660\u0662\u0664", str(2**40), str(2**40 + 1), "-5"],
        "--kv-budget": ["0", "1", "100", "1000", str(2**62), str(2**63), "9" * 30, "1_000", "1e9", "nan"],
        "--rate-scale": ["0", "-1", "nan", "inf", "-inf", "1e-300", "1e300", "1e-6", "1e6", "1e-7", "1_0", "\u0661",
                         "0x1p3", "fast", "1e", "2.5"],
        "--arrivals": ["offline", "trace", "later", ""],
        "--policy": ["fifo", "STATIC", ""],
        "--gpu": ["h100", "h200", "a100", "b200", "calibrated", "{missing}.json", "{dir}"],
        "--model": ["llama-9", "tiny", "llama-3.2-1b", "{cal_ok}"],
        "--padded-attention": ["sparse", "causal"],
        "--ragged-attention": ["sparse", "dense"],
        "--requests": ["3"], "--seed": ["1"], "--slo-itl-p99": ["0.1"],
    }
    out = []
    for flag, vals in values.items():
        for v in vals:
            base = GOOD if flag != "--policy" else ["--trace", "{ok}"]
            out.append(base + [flag, v])
            if flag in ("--max-batch", "--rate-scale", "--arrivals"):
                out.append(["--trace", "{ok}", "--policy", "static", flag, v, "--json"])
    return out


def trace_cases() -> list[list[str]]:
    """Every trace under every policy (a huge KV budget for the huge ones), with and without --json."""
    out = []
    for name in TRACES:
        for policy in ("static", "static-packed", "continuous", "chunked"):
            extra = ["--kv-budget", str(2**62)] if any(s in name for s in ("1e", "2_6", "big")) else []
            out.append(["--trace", f"{{{name}}}", "--policy", policy, "--json", *extra])
        out.append(["--trace", f"{{{name}}}", "--policy", "static", "--arrivals", "offline"])
    return out


def other_cases() -> list[list[str]]:
    out = [["--trace", "{ok}", "--policy", "static", "--gpu", f"{{{name}}}", "--json"] for name in calibrations()]
    out += [
        ["--trace", "{missing}", "--policy", "static"], ["--trace", "{dir}", "--policy", "static"],
        ["--trace", "{binary}", "--policy", "static"], ["--trace", "{gzip_bad}", "--policy", "static"],
        ["--policy", "static", "--json"], ["--trace", "{ok}"], ["--trace", "{ok}", "--config", "sglang"],
        ["--trace", "{ok}", "--config", "vllm-v1-like", "--json"], ["--trace", "{ok}", "--config", "orca-like", "--max-batch", "4"],
        ["--trace", "{ok}", "--policy", "static", "--capacity", "--json"],
        ["--trace", "{one_stamp}", "--policy", "static", "--capacity", "--json"],
        ["--trace", "{one_request}", "--policy", "continuous", "--capacity"],
        ["--trace", "{ok}", "--policy", "static", "--capacity", "--slo-ttft-p99", "nan"],
        ["--trace", "{ok}", "--policy", "static", "--capacity", "--slo-ttft-p99", "1e-300", "--json"],
        ["--trace", "{ok}", "--policy", "static", "--capacity", "--slo-itl-p99", "\u0661"],
        ["--trace", "{ok}", "--policy", "chunked", "--token-budget", "4", "--max-batch", "4", "--json"],
        ["--trace", "{p_1e9}", "--policy", "chunked", "--token-budget", "1", "--max-batch", "1", "--kv-budget", str(2**40)],
        ["--trace", "{ok}", "--policy", "continuous", "--execute", "--requests", "1_0"],
        ["--trace", "{ok}", "--policy", "continuous", "--execute", "--requests", "0"],
        ["--trace", "{ok}", "--policy", "continuous", "--execute", "--seed", "\u0661"],
        ["--trace", "{g_1e9}", "--policy", "continuous", "--execute", "--requests", "2"],
        ["--trace", "{ok}", "--policy", "continuous", "--execute", "--requests", "2", "--json"],
        ["--trace", "{ok}", "--policy", "static", "--arrivals", "offline", "--rate-scale", "2", "--json"],
        ["--trace", "{ok}", "--policy", "continuous", "--arrivals", "offline", "--rate-scale", "1"],
        ["--trace", "{ok}", "--policy", "static", "--arrivals", "offline", "--capacity", "--rate-scale", "2"],
        ["--trace", "{ok}", "--policy", "continuous", "--execute", "--arrivals", "offline", "--rate-scale", "2"],
        ["--trace", "{ok}", "--policy", "continuous", "--kv-budget", "1", "--json"],
    ]
    return out


def write_files(d: Path) -> dict:
    """The probe's input files under ``d``: name -> path."""
    paths = {}
    for name, text in {**TRACES, **calibrations()}.items():
        paths[name] = d / (f"{name}.json" if name.startswith("cal_") else f"{name}.csv")
        paths[name].write_text(text, encoding="utf-8")
    (d / "binary.csv").write_bytes(b"TIMESTAMP,ContextTokens,GeneratedTokens\n\x89PNG\x00\xff\n")
    (d / "gzip_bad.csv").write_bytes(b"\x1f\x8b\x08\x00garbage")
    (d / "a-dir").mkdir(exist_ok=True)
    paths.update(binary=d / "binary.csv", gzip_bad=d / "gzip_bad.csv", dir=d / "a-dir", missing=d / "no-such")
    return {k: str(v) for k, v in paths.items()}


def limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP_BYTES, MEMORY_CAP_BYTES))


def run_one(argv: list[str], timeout: float = TIMEOUT_S) -> dict:
    """One ``serve`` invocation in its own capped process: exit status, output, peak RSS (from ``wait4``)."""
    import subprocess

    cmd = [sys.executable, "-m", "packviz", "serve", *argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}
    env.pop("PACKVIZ_TRACEBACK", None)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, preexec_fn=limit_memory, env=env)
        status, usage, timed_out = None, None, False
        while status is None:
            pid, st, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                status, usage = st, ru
            elif time.perf_counter() - t0 > timeout:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                timed_out = True
            else:
                time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)     # reaped here, not by Popen
        out.seek(0), err.seek(0)
        return {"argv": argv, "rc": proc.returncode, "stdout": out.read().decode("utf-8", "replace"),
                "stderr": err.read().decode("utf-8", "replace"), "timed_out": timed_out,
                "rss_mb": usage.ru_maxrss / 1024, "seconds": time.perf_counter() - t0}


def strict_json(text: str):
    """``json.loads`` that refuses NaN and Infinity (what a strict parser does)."""
    def refuse(c):
        raise ValueError(f"not JSON: {c}")
    return json.loads(text, parse_constant=refuse)


def classify(r: dict) -> str:
    """The outcome of one run (module docstring)."""
    err = r["stderr"]
    if r["timed_out"]:
        return "timeout"
    if "Traceback (most recent call last)" in err:
        return "traceback"
    if "internal error" in err:
        return "internal error"
    if "out of memory" in err or "MemoryError" in err:
        return "out of memory"
    if r["rc"] == 0:
        if "--json" in r["argv"]:
            try:
                strict_json(r["stdout"])
            except ValueError:
                return "invalid JSON"
        return "ok" if not err.strip() else "other"
    if r["rc"] == 2 and err.count("\n") == 1 and err.startswith("error: ") and not r["stdout"]:
        return "bad input"
    return "other"


def cases(paths: dict, quick: bool) -> list[list[str]]:
    every = trace_cases() + option_cases() + other_cases()
    every = [[a.format(**paths) if "{" in a else a for a in argv] for argv in every]
    return every[::5] if quick else every


def report(results: list[dict], baseline_mb: float, billion: dict) -> dict:
    counts = {}
    for r in results:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    worst = max(results, key=lambda r: r["rss_mb"])
    simulated = max((r for r in results if "--execute" not in r["argv"]), key=lambda r: r["rss_mb"])
    bad = [r for r in results if r["outcome"] not in ("ok", "bad input")]
    for r in bad:
        print(f"{r['outcome']:<15} rc={r['rc']} {' '.join(r['argv'])[:110]}\n    {r['stderr'].strip()[:300]}")
    summary = {"cases_tried": len(results), "ok": counts.get("ok", 0), "bad_input_one_line": counts.get("bad input", 0),
               "tracebacks": counts.get("traceback", 0), "internal_errors": counts.get("internal error", 0),
               "invalid_json": counts.get("invalid JSON", 0), "out_of_memory": counts.get("out of memory", 0),
               "timeouts": counts.get("timeout", 0), "other": counts.get("other", 0),
               "peak_rss_mb": round(worst["rss_mb"], 1), "peak_rss_argv": worst["argv"],
               "peak_rss_simulated_mb": round(simulated["rss_mb"], 1), "peak_rss_simulated_argv": simulated["argv"],
               "baseline_rss_mb": round(baseline_mb, 1),
               "static_1e9_generated_rss_mb": round(billion["rss_mb"], 1), "static_1e9_outcome": billion["outcome"]}
    for k in ("cases_tried", "ok", "bad_input_one_line", "tracebacks", "internal_errors", "invalid_json",
              "out_of_memory", "timeouts", "other"):
        print(f"{k.replace('_', ' '):<22} {summary[k]}")
    print(f"peak RSS               {summary['peak_rss_mb']} MB: {' '.join(worst['argv'])[:100]}")
    print(f"peak RSS, simulated    {summary['peak_rss_simulated_mb']} MB: {' '.join(simulated['argv'])[:100]}")
    print(f"1e9-token static       {summary['static_1e9_generated_rss_mb']} MB ({billion['outcome']}), "
          f"baseline {summary['baseline_rss_mb']} MB (the two-request trace)")
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2, help="processes at once (default 2)")
    ap.add_argument("--quick", action="store_true", help="one case in five")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        paths = write_files(Path(d))
        todo = cases(paths, args.quick)
        with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
            results = list(pool.map(run_one, todo))
        for r in results:
            r["outcome"] = classify(r)
        baseline = run_one(["--trace", paths["ok"], "--policy", "static", "--json"])
        billion = run_one(["--trace", paths["g_1e9"], "--policy", "static", "--kv-budget", str(2**62), "--json"])
        billion["outcome"] = classify(billion)
    summary = report(results, baseline["rss_mb"], billion)
    print(json.dumps(summary))
    return 0 if summary["ok"] + summary["bad_input_one_line"] == summary["cases_tried"] else 1


if __name__ == "__main__":
    sys.exit(main())
