"""Every README figure that can be regenerated, printed as the README quotes it (a script that prints, not a test).

    python scripts/readme_numbers.py [--json] [--no-timing]

A maintainer runs it and pastes what changed; ``tests/test_readme_numbers.py`` checks that the
README holds every fragment below except the timings. In README order:

1. **Measured on an H100**: the prefill table of the newest recorded run
   (``packviz.bench.results.latest_result``), its matmul ceiling and the equal-length control;
   then the headline's context: the FLOP model's ideal speed-up over every window of B = 32
   consecutive requests of the shipped trace (p10, median, p90; ``packviz.trace_numbers.prefill_speedups``)
   beside the ideal of each window the run timed (``packviz.bench.scenarios.recorded_windows``).
2. **Trace facts** the README quotes: requests, tokens, windows, online packing's utilisation,
   where attention overtakes the linear layers.
3. **Packing the real trace**: ``scripts/bench_packing.py``'s tables (``--no-timing`` leaves them out:
   their seconds depend on the machine).
4. **Serving the real trace** (``--serving``): the policies at the trace's own rate (offered load),
   static against continuous flat out (busy, MFU, MBU, where the time went), and the capacity of
   every configuration under the SLOs (minutes; not re-checked by the tests).

Timings of the test suite and of ``scripts/bench_big_inputs.py`` are not regenerated here: they
take minutes and depend on the machine; the README gives each with its date and machine.
"""

import argparse
import json

import numpy as np

from packviz import trace_numbers
from packviz.bench import results, scenarios
from packviz.flops import attention_crossover
from packviz.lengths import azure_resample
from packviz.packing import format_strategy_table, strategy_table
from packviz.trace import azure_conv

ROWS = {  # method -> its row label in the README's prefill table ({C}: the run's pack length)
    "padded": "padded (causal, no mask)",
    "padded-masked": "padded-masked (what `generate()` runs)",
    "padded-sorted": "padded-sorted (offline bucketing)",
    "dense": "dense block-diagonal mask, rows of {C}",
    "flex": "FlexAttention (block-sparse), rows of {C}",
    "varlen": "`varlen_attn` with `cu_seqlens`, one 1-D stream",
}
PACKED = ("dense", "flex", "varlen")


def ideal_of(m: dict) -> float:
    """The ideal the benchmark's tables use: in whole kernel tiles where the run priced them."""
    return m.get("ideal_speedup_tiled") or m["ideal_speedup"]


def run_conditions(res: dict) -> list[str]:
    """The run's conditions as the README's prose words them: versions, the sample, its prompts."""
    ver = {k: ".".join(str(res["versions"][k]).split(".")[:2]) for k in ("torch", "transformers")}
    trace = next(s for s in res["scenarios"] if s["name"] == "trace")
    rec = scenarios.recorded_windows(res, PACKED)
    info, cfg = trace["info"], res["config"]
    clipped = "none" if not info["clipped_sequences"] else f"{info['clipped_sequences']:,}"
    return [f"torch {ver['torch']}, transformers {ver['transformers']}",
            f"the same {info['num_sequences']} consecutive real requests of the Azure trace "
            f"(requests {rec['windows'][0][0]:,}–{rec['windows'][-1][1] - 1:,} in arrival order; prompts of "
            f"{info['lengths']['min']:,} to {info['lengths']['max']:,} tokens, {clipped} clipped to the "
            f"{cfg['pack_len']:,} limit) cut into {len(rec['windows'])} windows of B = {cfg['batch_size']}",
            f"each time is the median of {cfg['repeats']} passes over both windows"]


def prefill_table(res: dict) -> str:
    """The README's prefill table: the ``trace`` scenario of a recorded run, one row per timed method."""
    trace = next(s for s in res["scenarios"] if s["name"] == "trace")
    cfg = res["config"]
    lines = [f"| method ({cfg['trace_n']} trace requests, windows of B = {cfg['batch_size']}) "
             "| valid tokens/s | × padded | ideal × (FLOP model) | measured ÷ ideal | useful work ÷ matmul ceiling |",
             "|---|---|---|---|---|---|"]
    for method, label in ROWS.items():
        m = trace["methods"].get(method) or {}
        if m.get("median_s"):
            lines.append(f"| {label.format(C=format(cfg['pack_len'], ','))} | {m['valid_tokens_per_s']:,.0f} "
                         f"| {m['measured_speedup']:.2f} | {ideal_of(m):.2f} | {m['measured_over_ideal']:.2f} "
                         f"| {m['useful_fraction_of_ceiling']:.1%} |")
    return "\n".join(lines)


def ceiling_and_control(res: dict) -> str:
    """The run's matmul ceiling and what the equal-length control measured."""
    uniform = next(s for s in res["scenarios"] if s["name"] == "uniform")
    got = {m: uniform["methods"][m]["measured_speedup"] for m in ("varlen", "dense")}
    return (f"{res['ceiling_tflops']:,.0f} TFLOP/s; the equal-length control gains nothing "
            f"(varlen {got['varlen']:.2f}×, dense {got['dense']:.2f}×)")


def spread_table(res: dict) -> str:
    """Per packed method: the ideal over the trace's windows (p10, median, p90) beside the run's windows."""
    spread = trace_numbers.prefill_speedups(res["config"]["batch_size"], res["config"]["pack_len"],
                                            res["config"]["model"], tuple(res["config"]["tile"] or ()) or None)
    rec = scenarios.recorded_windows(res, PACKED)
    lines = [f"| method | ideal × over the trace's {spread['windows']} windows: p10 / median / p90 "
             f"| ideal × of the {len(rec['windows'])} measured windows | measured ÷ ideal on them |",
             "|---|---|---|---|"]
    for m in PACKED:
        s = spread["spread"][m]
        lines.append(f"| {m} | {s['p10']:.2f} / {s['p50']:.2f} / {s['p90']:.2f} "
                     f"| {', '.join(f'{x:.2f}' for x in rec['ideal'][m])} | {rec['measured_over_ideal'][m]:.2f} |")
    return "\n".join(lines)


def headline(res: dict, method: str = "varlen") -> str:
    """The headline sentence: measured ÷ ideal on the run's windows, the ideal over the trace p10-p90."""
    spread = trace_numbers.prefill_speedups(res["config"]["batch_size"], res["config"]["pack_len"],
                                            res["config"]["model"], tuple(res["config"]["tile"] or ()) or None)
    rec = scenarios.recorded_windows(res, PACKED)
    s, per_window = spread["spread"][method], spread["speedup"][method]
    ideals = " and ".join(f"{x:.2f}×" for x in rec["ideal"][method])
    ranks = " and ".join(ordinal(round(100 * float(np.mean(per_window < x)))) for x in rec["ideal"][method])
    return (f"`{method}` ran at **{rec['measured_over_ideal'][method]:.2f} of its ideal** on the measured windows "
            f"({rec['measured_speedup'][method]:.2f}× against {rec['recorded_ideal'][method]:.2f}×); over the "
            f"whole trace its ideal is **{s['p10']:.2f}×–{s['p90']:.2f}× (p10–p90)**, median {s['p50']:.2f}×. "
            f"The measured windows' own ideals, {ideals}, sit at the trace's {ranks} percentiles.")


def ordinal(n: int) -> str:
    """1 -> '1st', 5 -> '5th', 72 -> '72nd'."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def trace_facts() -> dict:
    """The trace numbers the README quotes (prose)."""
    t = azure_conv()
    s = trace_numbers.summary()
    return {"requests": f"{len(t):,}", "tokens": f"{t.prompt_tokens.sum() / 1e6:.1f} M",
            "windows": f"{s['windows']}", "left_out": f"{len(t) - s['windows'] * s['batch_size']}",
            "packed_in_windows": f"{s['packed_online']['utilization']:.1%}",
            "attention_crossover": f"{attention_crossover('llama-3-8b') // 1000}k"}


def packing_tables() -> str:
    """``scripts/bench_packing.py``'s output: the trace at C = 8192 and 4096, a million resampled lengths."""
    out = []
    for title, lengths, pack_len, strategies in (
            (None, azure_conv().prompt_tokens, 8192, None), (None, azure_conv().prompt_tokens, 4096, None),
            ("1,000,000 lengths resampled from the trace (synthetic)", azure_resample(1_000_000, seed=0), 8192,
             ("next-fit", "ffd", "bfd"))):
        if title:
            out.append(title + "\n")
        kw = {"strategies": strategies} if strategies else {}
        out.append(f"{len(lengths):,} lengths, {int(lengths.sum()):,} tokens, C = {pack_len}")
        out.append(format_strategy_table(strategy_table(lengths, pack_len, 32, **kw), seconds=True) + "\n")
    return "\n".join(out).rstrip()


SERVING = (("static, B = 32", {"policy": "static", "max_batch": 32}),
           ("static-packed, B = 32", {"policy": "static-packed", "max_batch": 32}),
           ("continuous, B = 32", {"policy": "continuous", "max_batch": 32}),
           ("chunked, B = 32, 2,048 tokens", {"policy": "chunked", "max_batch": 32, "token_budget": 2048}),
           ("orca-like, B = 1,024", None), ("vllm-v1-like", None))
"""The serving configurations the README compares (``None``: ``packviz.serving.ENGINE_CONFIGS``)."""


def serving_config(label: str, kw) -> dict:
    from packviz.serving import ENGINE_CONFIGS

    return dict(kw if kw is not None else ENGINE_CONFIGS[label.split(",")[0]])


def capacity_table() -> str:
    """Capacity of every configuration under the TTFT SLO, and under TTFT + ITL (minutes: ~25 replays each)."""
    from packviz.serving import SLO_ITL_P99_S, SLO_TTFT_P99_S, capacity

    rows, base = [], None
    for label, kw in SERVING:
        kw = serving_config(label, kw)
        policy = kw.pop("policy")
        a = capacity(None, policy, rel_tol=0.02, **kw)
        b = capacity(None, policy, slo_itl_p99_s=SLO_ITL_P99_S, rel_tol=0.02, **kw)
        base = base or (a, b)
        rows.append(f"| {label} | {a['requests_per_s']:.2f} | {a['output_tokens_per_s']:,.0f} | "
                    f"{a['requests_per_s'] / base[0]['requests_per_s']:.1f}× | {b['requests_per_s']:.2f} | "
                    f"{b['output_tokens_per_s']:,.0f} | {b['requests_per_s'] / base[1]['requests_per_s']:.1f}× |")
    head = (f"| configuration | requests/s (TTFT p99 ≤ {SLO_TTFT_P99_S:g} s) | output tokens/s | × static | "
            f"requests/s (and ITL p99 ≤ {SLO_ITL_P99_S * 1e3:g} ms) | output tokens/s | × static |\n"
            "|---|---|---|---|---|---|---|")
    return head + "\n" + "\n".join(rows)


def offered_load_table() -> str:
    """The four policies at the trace's own rate (B = 32): arrival-bound, so latency is the comparison."""
    from packviz.serving import POLICIES, format_table, simulate, summary

    return format_table([summary(simulate(None, p, max_batch=32)) for p in POLICIES], seconds=False)


def saturated_split() -> str:
    """static against continuous with every request waiting at t = 0 (B = 32): busy, MFU, MBU and where
    the time went, as shares of the makespan."""
    from packviz.serving import simulate, summary

    lines = []
    for policy in ("static", "continuous"):
        s = summary(simulate(None, policy, arrivals="offline", max_batch=32))
        split = ", ".join(f"{k.replace('_', ' ')} {v / s['makespan_s']:.1%}" for k, v in s["time_split_s"].items()
                          if v / s["makespan_s"] >= 0.0005)
        lines.append(f"- `{policy}`: {s['output_tokens_per_s']:,.0f} output tokens/s; busy "
                     f"{s['gpu_busy_fraction']:.1%}, MFU {s['mfu']:.1%}, MBU {s['mbu']:.1%}; the time: {split}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object instead")
    ap.add_argument("--no-timing", action="store_true", help="leave out the packing tables (timed on this machine)")
    ap.add_argument("--serving", action="store_true",
                    help="add the serving figures (the capacity table replays the whole trace ~300 times: minutes)")
    args = ap.parse_args()
    res = results.load_results(results.RESULTS_DIR)
    out = {"run": "/".join(res["path"].split("/")[-4:]), "run_conditions": run_conditions(res),
           "prefill_table": prefill_table(res), "ceiling_and_control": ceiling_and_control(res),
           "spread_table": spread_table(res), "headline": headline(res), "trace": trace_facts()}
    if not args.no_timing:
        out["packing_tables"] = packing_tables()
    if args.serving:
        out.update(offered_load_table=offered_load_table(), saturated_split=saturated_split(),
                   capacity_table=capacity_table())
    if args.json:
        print(json.dumps(out, indent=1))
        return
    for key, value in out.items():
        print(f"## {key}\n")
        if isinstance(value, dict):
            value = "\n".join(f"{k}: {v}" for k, v in value.items())
        print("\n".join(value) if isinstance(value, list) else value, end="\n\n")


if __name__ == "__main__":
    main()
