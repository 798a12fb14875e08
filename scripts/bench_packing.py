"""Packing benchmark: rows, utilisation and time of every strategy (a script that prints, not a test).

    python scripts/bench_packing.py [--trace PATH]

1. The Azure conversation trace (the raw CSV if it is beside the repo, else lengths resampled
   from the shipped summary) at C = 8192 and C = 4096, arrival-order batches of 32 for the
   padded strategies, overlong sequences split.
"rows" of a padded strategy are sequences (one per row, B rows per batch); "slots / C" puts
every strategy on the same footing: the token slots allocated, in rows of C.

2. 1,000,000 lengths drawn from the trace's distribution, packed by every packing strategy.
"""

import argparse
import pathlib
from packviz.lengths import DATA_DIR, azure_conv, read_lengths
from packviz.packing import STRATEGIES, format_strategy_table, strategy_table

TRACE = DATA_DIR.parent.parent / "shared/data/azure-llm-inference-2023/AzureLLMInferenceTrace_conv.csv"


def table(lengths, pack_len, strategies=STRATEGIES, batch_size=32):
    print(f"\n{len(lengths):,} lengths, {int(lengths.sum()):,} tokens, C = {pack_len}")
    print(format_strategy_table(strategy_table(lengths, pack_len, batch_size, strategies=strategies), seconds=True))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", default=str(TRACE))
    args = ap.parse_args()
    trace = pathlib.Path(args.trace)
    if trace.exists():
        lengths, what = read_lengths(trace), f"raw trace {trace.name}"
    else:
        lengths, what = azure_conv(19_366, seed=0), "resampled from data/azure_conv_2023_lengths.json"
    print(f"Azure LLM inference trace 2023, conversation ({what})")
    for c in (8192, 4096):
        table(lengths, c)
    print("\n1,000,000 lengths from the trace distribution")
    table(azure_conv(1_000_000, seed=0), 8192, strategies=("next-fit", "ffd", "bfd"))


if __name__ == "__main__":
    main()
