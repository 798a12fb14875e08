"""Plot benchmark: how long the heatmaps take to render (a script that prints, not a test).

    python scripts/bench_plots.py

Target (issue 3): a 256 × 8192 batch grid renders to PNG in under 1 s on a 2-core laptop-class CPU.
"""

import time

import numpy as np

from packviz import plot
from packviz.lengths import azure_conv
from packviz.packing import pack, pad_and_pack


def best_of(n, draw):
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        plot.to_png(draw())
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    random_256 = pack(np.random.default_rng(0).integers(1, 8193, 256), 8192, "pad", batch_size=256)
    trace = azure_conv(2048, seed=0)
    trace_pad, trace_pack = pad_and_pack(trace, 8192, batch_size=32, overlong="truncate")
    cases = {
        "batch grid 256 x 8192 (random lengths, padded)": lambda: plot.batch_grid(random_256),
        "padded vs packed, 2,048 trace prompts": lambda: plot.padded_vs_packed(trace_pad, trace_pack)[0],
        "mask of an 8,192-token pack": lambda: plot.mask(trace_pack, 0),
        "position_ids of an 8,192-token pack": lambda: plot.position_sawtooth(trace_pack, 0),
    }
    print(f"{'figure':<48}{'best of 3, s':>14}")
    for name, draw in cases.items():
        print(f"{name:<48}{best_of(3, draw):>14.3f}")


if __name__ == "__main__":
    main()
