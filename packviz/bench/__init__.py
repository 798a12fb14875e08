"""The prefill benchmark: the same requests run padded and packed on a real Llama-3, timed fairly.

Measuring functions and a short linear driver, in the shape of nanoGPT's ``bench.py``::

    config     BenchConfig: what a run depends on; validation; the smoke preset   (no torch)
    scenarios  samples, layouts and forwards per scenario; the FLOP model's price  (no torch)
    measure    timer, statistics, matmul ceiling, device / version / kernel capture
    runner     setup → ceiling → preflight → phase 1 → phase 2 (compiled) → ceiling → done
    results    the JSON schema (dataclasses), derived metrics, find / load / format runs (no torch)

``python -m packviz bench --smoke`` runs it on CPU in seconds; ``scripts/gpu_bench.sh`` on a GPU.
"""
