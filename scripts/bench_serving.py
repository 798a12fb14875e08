"""Serving benchmarks on this machine: the simulator over the whole trace, and packviz's engine against
transformers on the tiny Llama.

    python scripts/bench_serving.py                      # the real rate, then the rate where static saturates
    python scripts/bench_serving.py --rate-scale 1       # one table (the 5-second check: `time` this)
    python scripts/bench_serving.py --gpu h200 --max-batch 64
    python scripts/bench_serving.py --engine             # engine vs transformers, tiny Llama, CPU (~30 s)

A benchmark script, not a test: it prints what it measured. The simulator's figures are
simulated (Llama-3-8B, H100 preset unless told otherwise) with its own wall time per policy.
``--engine`` serves the same requests (a real trace window, prompts and outputs / 8) with
the same policy on both engines and prints steps/s and wall ms per step: on a CPU, with a
model this small, that is host time (Python, the scheduler, kernel launches) -- exactly what
decides whether a small GPU decode step is host-bound.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

T0 = time.perf_counter()
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from packviz.serving import POLICIES, format_table, saturation_rate_scale, simulate, summary  # noqa: E402
from packviz.trace import azure_conv  # noqa: E402


def table(trace, rate_scale: float, **kw) -> tuple[str, float]:
    """The four policies at one rate: (text table, seconds to simulate them)."""
    t = time.perf_counter()
    rows = [summary(simulate(trace, p, rate_scale=rate_scale, **kw)) for p in POLICIES]
    return format_table(rows), time.perf_counter() - t


def engine_vs_transformers(n: int = 16, scale: int = 8, batch: int = 8, token_budget: int = 128) -> list[dict]:
    """The same requests on both engines, a static and a chunked policy each: wall seconds, forward steps,
    and whether every request's tokens equal it run alone."""
    import numpy as np
    import torch

    from packviz.model import build_model
    from packviz.serving import run_engine
    from packviz.serving.hf import continuous_generate, disable_eos, generate_alone, static_generate
    from packviz.trace import Trace, request_ids

    torch.set_num_threads(1)
    w = azure_conv().window(n, seed=0)
    trace = Trace(np.zeros(n), -(-w.prompt_tokens // scale), -(-w.generated_tokens // scale), name=w.name)
    g = trace.generated_tokens.tolist()
    model = build_model("tiny", seed=0)
    disable_eos(model)
    prompts = request_ids(trace.prompt_tokens, model.config.vocab_size, seed=0)     # what run_engine draws
    rows = []
    for policy in ("static", "chunked"):
        run_engine(model, trace, policy, max_batch=batch, token_budget=token_budget)          # warm-up
        r = run_engine(model, trace, policy, max_batch=batch, token_budget=token_budget)
        rows.append(dict(engine="packviz", policy=policy, seconds=float(np.sum(r.step_seconds)),
                         steps=len(r.step_seconds), outputs=r.outputs))
    t = time.perf_counter()
    st = static_generate(model, prompts, g, batch_size=batch)
    rows.append(dict(engine="transformers generate", policy="static", seconds=time.perf_counter() - t,
                     steps=st["forward_calls"], outputs=st["outputs"]))
    cb = continuous_generate(model, prompts, g, max_batch=batch, token_budget=token_budget, num_blocks=256,
                             page_size=16)
    rows.append(dict(engine="transformers continuous batching", policy="chunked", seconds=cb["seconds"],
                     steps=None, outputs=cb["outputs"]))
    alone = generate_alone(model, prompts, g)
    for row in rows:
        row["equal_alone"] = row.pop("outputs") == alone
        row["tokens"] = int(sum(g))
    return rows


def print_engines(rows: list[dict]) -> None:
    """One line per (engine, policy): seconds, steps, steps/s, wall ms per step, output tokens/s."""
    print(f"{'engine':<33} {'policy':<8} {'seconds':>8} {'steps':>6} {'steps/s':>8} {'ms/step':>8} "
          f"{'out tok/s':>9}  tokens = alone")
    for r in rows:
        steps, per_s, ms = ("-", "-", "-") if r["steps"] is None else (
            f"{r['steps']:,}", f"{r['steps'] / r['seconds']:,.0f}", f"{r['seconds'] / r['steps'] * 1e3:.2f}")
        print(f"{r['engine']:<33} {r['policy']:<8} {r['seconds']:>8.2f} {steps:>6} {per_s:>8} {ms:>8} "
              f"{r['tokens'] / r['seconds']:>9,.0f}  {r['equal_alone']}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate-scale", type=float, action="append", help="repeatable; default: 1 and static's saturation")
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--gpu", default="h100")
    ap.add_argument("--model", default="llama-3-8b")
    ap.add_argument("--engine", action="store_true", help="packviz's engine vs transformers on the tiny Llama (CPU)")
    args = ap.parse_args(argv)
    if args.engine:
        print("16 consecutive trace requests, prompts and outputs / 8, tiny Llama, fp32, one CPU thread; "
              "static B = 8, chunked 8 running / 128 tokens per step; wall time after a warm-up\n")
        print_engines(engine_vs_transformers())
        return 0
    kw = dict(max_batch=args.max_batch, gpu=args.gpu, model=args.model)
    trace = azure_conv()
    print(f"{trace.name}: {len(trace):,} requests, {trace.rate_per_s:.2f} requests/s over {trace.duration_s / 60:.0f} "
          f"min; {args.model}, {args.gpu}, max batch {args.max_batch}\n")
    scales = args.rate_scale
    if not scales:
        sat = saturation_rate_scale(trace, "static", **kw)
        print(f"static saturates at rate x{sat:.3f} ({sat * trace.rate_per_s:.2f} requests/s): its throughput with "
              "a full queue (every request waiting at t = 0)\n")
        scales = [1.0, round(sat, 3)]
    for r in scales:
        text, seconds = table(trace, r, **kw)
        print(f"rate x{r:g} ({r * trace.rate_per_s:.2f} requests/s), four policies simulated in {seconds:.2f} s")
        print(text, "\n")
    print(f"total {time.perf_counter() - T0:.2f} s since the script started (imports and trace load included)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
