"""Self-checking exercises for notebooks 05, 06 and 08. The expected answers are computed by packviz itself.

>>> print(question("padded_utilization"))
Four prompts of 100, 400, 250 and 50 tokens are padded into ONE batch. What fraction of the token slots hold real tokens? (a float between 0 and 1)
>>> check("padded_utilization", 0.5)
'✓ padded_utilization: correct'
>>> check("padded_utilization", None)
'… padded_utilization: not answered yet. Hint: every row is as long as the longest prompt: real tokens / (rows × longest)'

``check`` never raises on a wrong answer (a notebook cell left unanswered must still run);
it returns a one-line verdict with a hint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .checks import one_of
from .flops import compare
from .lengths import seed_scenario
from .packing import pack, pack_in_windows, pad_and_pack
from .steps import accumulation_weights, token_weights


@dataclass(frozen=True)
class Exercise:
    question: str
    answer: Callable[[], Any]
    hint: str
    rel_tol: float = 0.0


EXERCISES: dict[str, Exercise] = {
    "padded_utilization": Exercise(
        "Four prompts of 100, 400, 250 and 50 tokens are padded into ONE batch. "
        "What fraction of the token slots hold real tokens? (a float between 0 and 1)",
        lambda: pack([100, 400, 250, 50], 400, "pad", batch_size=4).utilization,
        "every row is as long as the longest prompt: real tokens / (rows × longest)",
        rel_tol=1e-3,
    ),
    "bfd_rows": Exercise(
        "Best-fit decreasing packs prompts of 700, 600, 500, 400, 300, 200 and 100 tokens into rows "
        "of 1,000. How many rows? (an int)",
        lambda: pack([700, 600, 500, 400, 300, 200, 100], 1000, "bfd").num_rows,
        "longest first; each prompt into the row with the least room that still fits it. "
        "Compare with ceil(total / 1000)",
    ),
    "position_ids": Exercise(
        "A pack holds sequences of 3, 2 and 4 tokens. Write its position_ids. (a list of ints)",
        lambda: pack([3, 2, 4], 9, "next-fit").position_ids(0).tolist(),
        "positions restart at 0 at every sequence start",
    ),
    "cu_seqlens": Exercise(
        "The same pack (3, 2 and 4 tokens): its cu_seqlens, as flash-attn expects them. (a list of ints)",
        lambda: pack([3, 2, 4], 9, "next-fit").cu_seqlens(0).tolist(),
        "N+1 cumulative boundaries, starting at 0",
    ),
    "varlen_speedup": Exercise(
        "For the seed scenario (packviz.lengths.seed_scenario(16, seed=0)) padded in batches of 8 and "
        "packed by BFD into rows of 8,192 tokens, what ideal speed-up over padding does a varlen kernel "
        "give on Llama-3-8B prefill? (a float, 1% tolerance)",
        lambda: compare(*pad_and_pack(seed_scenario(16, seed=0), 8192, batch_size=8), "llama-3-8b")["speedup"]["varlen"],
        "padded FLOPs / varlen FLOPs: packviz.flops.compare(padded, packed, 'llama-3-8b')",
        rel_tol=0.01,
    ),
    "padded_causal_waste": Exercise(
        "Two prompts of 1,000 and 3,000 tokens run as ONE right-padded batch through Llama-3-8B, causal "
        "kernel, no mask, logits at each prompt's last token only. What fraction of the prefill FLOPs is "
        "waste? (a float, 1% tolerance)",
        lambda: compare(*pad_and_pack([1000, 3000], 4096, batch_size=2), "llama-3-8b",
                        lm_head="last")["waste_fraction"]["padded"],
        "the short row runs 3,000 slots: 2,000 wasted tokens through every linear layer, and its causal "
        "triangle of 3,000 instead of 1,000 (packviz.flops.compare, lm_head='last')",
        rel_tol=0.01,
    ),
    "prefill_ridge_tokens": Exercise(
        "How many prompt tokens must ONE Llama-3-8B prefill forward hold before its arithmetic intensity "
        "reaches the H100's ridge point (measured rates, packviz.serving.costs.ridge_point)? (an int, 2% tolerance)",
        lambda: _prefill_ridge_tokens(),
        "a prefill of n tokens does about 2·P·n FLOPs and reads the 2·P weight bytes once: its intensity "
        "is about n FLOPs per byte",
        rel_tol=0.02,
    ),
    "online_offline_rows": Exercise(
        "Four prompts arrive in this order: 900, 800, 100 and 200 tokens; rows hold 1,000 tokens. Online, "
        "each window of 2 arrivals is packed on its own by best-fit decreasing; offline, all four at once. "
        "How many rows each? (a list: [online, offline])",
        lambda: [pack_in_windows([900, 800, 100, 200], 1000, 2).num_rows,
                 pack([900, 800, 100, 200], 1000, "bfd").num_rows],
        "a window sees only its own arrivals: 900 and 800 cannot share a row, and neither can wait for "
        "the short prompts that come later (packviz.packing.pack_in_windows)",
    ),
    "masked_flattery": Exercise(
        "The GPU run's trace scenario (packviz.bench.config.BenchConfig(): 64 consecutive real requests, "
        "windows of B = 32, rows of C = 8,192, Llama-3-8B) prices varlen's ideal speed-up over padded, the "
        "baseline at its best. By what factor does that ideal grow if the baseline is padded-masked instead? "
        "(a float, 0.1% tolerance)",
        lambda: _masked_flattery(),
        "the ratio of the two baselines' FLOPs: packviz.bench.scenarios.plan(...)[0]['ideal_speedup'] holds "
        "both speed-ups over padded",
        rel_tol=1e-3,
    ),
    "sequence_mean_weight": Exercise(
        "One step trains on two examples of 50 and 4,000 tokens, with the loss averaged per sequence "
        "(each sequence's mean, then the mean of the two). How many times the weight of one target token "
        "of the 4,000-token example does one target token of the 50-token example get? (a float, 1% tolerance)",
        lambda: float(token_weights([50, 4000], "sequence")[0] / token_weights([50, 4000], "sequence")[1]),
        "a sequence of n tokens has n - 1 targets; each sequence's targets share 1/2 of the loss",
        rel_tol=0.01,
    ),
    "accumulation_weight": Exercise(
        "An optimizer step accumulates two micro-batches holding 300 and 100 target tokens. Each micro-batch's "
        "loss is its own token mean, divided by 2. One target token of the 100-token micro-batch gets how many "
        "times the weight it would get in the full-batch token mean? (a float, 1% tolerance)",
        lambda: float(accumulation_weights([300, 100], "micro_batch")[1] / accumulation_weights([300, 100], "step")[1]),
        "its weight is 1 / (2 × 100); in the full-batch token mean every target weighs 1 / (300 + 100)",
        rel_tol=0.01,
    ),
}


def _prefill_ridge_tokens() -> int:
    from .serving.costs import arithmetic_intensity, ridge_point, varlen_prefill_work

    ridge = ridge_point("h100")
    return next(n for n in range(1, 100_000) if arithmetic_intensity(varlen_prefill_work([n]), "llama-3-8b") >= ridge)


def _masked_flattery() -> float:
    from .bench.config import BenchConfig
    from .bench.scenarios import plan

    ideal = plan(BenchConfig(scenarios=("trace",)))[0]["ideal_speedup"]
    # over padded-masked: F_masked / F_varlen = (F_padded / F_varlen) x (F_masked / F_padded)
    return 1 / ideal["padded-masked"]


def question(name: str) -> str:
    """The text of exercise ``name``."""
    return _get(name).question


def check(name: str, value) -> str:
    """A one-line verdict on ``value`` as the answer to exercise ``name`` (never raises on a wrong answer)."""
    ex = _get(name)
    if value is None or value is Ellipsis:
        return f"… {name}: not answered yet. Hint: {ex.hint}"
    ok = _matches(value, ex.answer(), ex.rel_tol)
    return f"✓ {name}: correct" if ok else f"✗ {name}: not quite ({value!r}). Hint: {ex.hint}"


def solution(name: str):
    """The expected answer (computed by packviz)."""
    return _get(name).answer()


def _get(name: str) -> Exercise:
    return EXERCISES[one_of("exercise", name, EXERCISES)]


def _matches(value, expected, rel_tol: float) -> bool:
    if isinstance(expected, list):
        try:
            got = np.asarray(value).ravel().tolist()
        except (TypeError, ValueError):
            return False
        # equal numbers only: 2.0 is 2, but 2.9 is not (no int() truncation) and "2" is not a number
        return len(got) == len(expected) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v == e for v, e in zip(got, expected))
    try:
        return math.isclose(float(value), float(expected), rel_tol=rel_tol, abs_tol=0 if rel_tol else 1e-12)
    except (TypeError, ValueError):
        return False
