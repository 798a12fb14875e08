"""All 19,366 requests of the shipped conversation trace under every policy: the table, and how long it took.

    python scripts/bench_serving.py                      # the real rate, then the rate where static saturates
    python scripts/bench_serving.py --rate-scale 1       # one table (the 5-second check: `time` this)
    python scripts/bench_serving.py --gpu h200 --max-batch 64

A benchmark script, not a test: it prints what it measured (simulated serving figures and
the simulator's own wall time per policy). Llama-3-8B, H100 preset unless told otherwise.
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate-scale", type=float, action="append", help="repeatable; default: 1 and static's saturation")
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--gpu", default="h100")
    ap.add_argument("--model", default="llama-3-8b")
    args = ap.parse_args(argv)
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
