"""Packing benchmark: rows, utilisation and time of every strategy (a script that prints, not a test).

    python scripts/bench_packing.py [--trace FILE]

1. The Azure conversation trace shipped in the package (or FILE in the same CSV format), all
   of it, in arrival order, at C = 8192 and C = 4096: arrival-order batches of 32 for the
   padded strategies, overlong sequences split.
"rows" of a padded strategy are sequences (one per row, B rows per batch); "slots / C" puts
every strategy on the same footing: the token slots allocated, in rows of C.

2. 1,000,000 synthetic lengths resampled from the trace (packviz.lengths.azure_resample),
   packed by every packing strategy.
"""

import argparse

from packviz.lengths import azure_resample
from packviz.packing import STRATEGIES, format_strategy_table, strategy_table
from packviz.trace import azure_conv, read_trace


def table(lengths, pack_len, strategies=STRATEGIES, batch_size=32):
    print(f"\n{len(lengths):,} lengths, {int(lengths.sum()):,} tokens, C = {pack_len}")
    print(format_strategy_table(strategy_table(lengths, pack_len, batch_size, strategies=strategies), seconds=True))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", default=None, help="a CSV in the Azure format (default: the shipped trace)")
    args = ap.parse_args()
    trace = read_trace(args.trace) if args.trace else azure_conv()
    print(f"{trace.name}: {len(trace):,} requests in arrival order")
    for c in (8192, 4096):
        table(trace.prompt_tokens, c)
    print("\n1,000,000 lengths resampled from the trace (synthetic)")
    table(azure_resample(1_000_000, seed=0), 8192, strategies=("next-fit", "ffd", "bfd"))


if __name__ == "__main__":
    main()
