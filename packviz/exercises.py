"""Self-checking exercises for notebooks 01, 04, 05, 06, 08 and 09. The expected answers are computed by packviz itself.

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
from .flops import causal_pairs, compare, square_pairs, varlen_grid
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
    "contaminated_sequences": Exercise(
        "A pack holds sequences of 6, 1, 4 and 3 tokens, but its position_ids run 0..T-1 (not reset), so "
        "transformers finds no boundary and builds a plain causal mask. Which sequences (0-based indices) get "
        "logits different from running alone? (a list of ints)",
        lambda: _contaminated([6, 1, 4, 3]),
        "a query's logits change if the mask lets it see a key of another sequence; causal attention only looks back",
    ),
    "dense_extra_pairs": Exercise(
        "SDPA runs a pack of 4, 3 and 5 tokens with the dense block-diagonal mask. Per head, how many (query, key) "
        "scores does it compute that a causal varlen kernel, looping over cu_seqlens, never computes? (an int)",
        lambda: square_pairs([12]) - causal_pairs([4, 3, 5]),
        "the dense kernel scores the whole T × T square; the varlen one each sequence's triangle, n(n+1)/2",
    ),
    "varlen_uncovered": Exercise(
        "A varlen kernel with query blocks of 128 gets a stream of prompts of 3,000, 200, 100 and 50 tokens and "
        "max_seqlen=2,048 (copied from a config instead of taken from the batch). How many query tokens does no "
        "thread block compute? (an int)",
        lambda: varlen_grid([3000, 200, 100, 50], max_seqlen=2048, block_m=128)["uncovered_tokens"],
        "the grid holds ceil(max_seqlen / 128) query blocks per sequence, whatever cu_seqlens says: packviz.flops.varlen_grid",
    ),
    "varlen_speedup": Exercise(
        "For the seed scenario (packviz.lengths.seed_scenario(16, seed=0)) padded in batches of 8 and "
        "packed by BFD into rows of 8,192 tokens, what ideal speed-up over padding does a varlen kernel "
        "give on Llama-3-8B prefill, logits at each prompt's last token as a server computes them? "
        "(a float, 1% tolerance)",
        lambda: compare(*pad_and_pack(seed_scenario(16, seed=0), 8192, batch_size=8), "llama-3-8b",
                        lm_head="last")["speedup"]["varlen"],
        "padded FLOPs / varlen FLOPs: packviz.flops.compare(padded, packed, 'llama-3-8b', lm_head='last')",
        rel_tol=0.01,
    ),
    "window_slots": Exercise(
        "A server batches 4 consecutive requests with prompts of 50, 120, 4,000 and 300 tokens. Padded to the "
        "longest, the batch pays for some number of token slots; packed into rows of 8,192 (best-fit "
        "decreasing) for another. How many times as many slots does the padded batch pay for? (a float, 1% tolerance)",
        lambda: pack(WINDOW, 8192, "pad", batch_size=4).slots / pack(WINDOW, 8192, "bfd").slots,
        "padded: rows × the longest prompt; packed: rows of 8,192 × how many rows the prompts need",
        rel_tol=0.01,
    ),
    "attention_share_of_waste": Exercise(
        "The same 4 prompts (50, 120, 4,000, 300) as Llama-3-8B prefill, padded and run by a causal kernel with no "
        "mask, logits at each prompt's last token. What fraction of the FLOPs wasted on padding is attention? "
        "(a float, 1% tolerance)",
        lambda: _attention_share_of_waste(),
        "waste = padded - useful, for linear (2·P per token slot) and attention (4·heads·head_dim·layers per "
        "pair; a row of W has W(W+1)/2 causal pairs) apart: packviz.flops.compare(padded, packed, 'llama-3-8b', "
        "lm_head='last')['wasted']['padded']",
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
        "reaches the H100's ridge point (the measured matmul rate over the datasheet bandwidth, until a copy "
        "rate is recorded: packviz.serving.costs.ridge_point)? (an int, 2% tolerance)",
        lambda: _prefill_ridge_tokens(),
        "a prefill of n tokens does about 2·P·n FLOPs (P: the weights every token meets) and reads every "
        "weight once, lm_head included (2·(P + P_head) bytes), though only one row of logits needs it: its "
        "intensity is about n·P/(P + P_head) ≈ 0.93·n FLOPs per byte (notebook 02 prints the factor)",
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
    "static_idle_slot_steps": Exercise(
        "In notebook 09's static run (its 6 requests, batches of 3), how many decode slot-steps are idle: a "
        "finished request's slot, decoding a token that is thrown away? (an int)",
        lambda: _static_idle_slot_steps(),
        "each batch decodes (its longest G) - 1 steps with all 3 slots, and request i needs only G_i - 1 of them: "
        "sum over the two batches of 3 x (max G - 1), minus sum(G - 1). window.generated_tokens holds G",
    ),
    "first_preemption_256": Exercise(
        "Serve notebook 09's 6 requests under continuous with max_batch=3 and kv_budget_tokens=256 instead of "
        "288. Which request is preempted first, and before which step? (a list: [request, step])",
        lambda: _first_preemption(),
        "the scheduler preempts the most recently admitted running request, before the first step whose "
        "decodes' pages would exceed 256 // 16 = 16 pages. simulate(..., fast_forward=False) keeps the plans: "
        "look for the first plan with .preempted, or draw plot_serving.kv_page_bars(plans, 16, budget_tokens=256)",
    ),
    "seqused_k": Exercise(
        "One step decodes r0 over a context of 30 tokens and runs a chunk r1[12:17] (5 new tokens after 12 "
        "cached). What is seqused_k? (a list of ints, decode first)",
        lambda: _seqused_k(),
        "each sequence reads every key it has, its new ones included: context + 1 for a decode, done + tokens "
        "for a chunk",
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


WINDOW = (50, 120, 4000, 300)
"""The prompts of the ``window_slots`` and ``attention_share_of_waste`` exercises (notebook 01)."""


def serving_window():
    """The six requests notebook 09 serves: a real trace window (seed 3), prompts and outputs / 16, all at t = 0."""
    from .trace import Trace, azure_conv

    w = azure_conv().window(6, seed=3)
    return Trace(np.zeros(len(w)), -(-w.prompt_tokens // 16), -(-w.generated_tokens // 16), name="6 requests / 16")


def _static_idle_slot_steps() -> int:
    from .serving.simulator import simulate

    return simulate(serving_window(), "static", model="tiny", arrivals="offline", max_batch=3).ledger.decode_idle_slot_steps


def _first_preemption() -> list[int]:
    from .serving.simulator import simulate

    plans = simulate(serving_window(), "continuous", model="tiny", max_batch=3, kv_budget_tokens=256,
                     fast_forward=False).plans
    return next([p.preempted[0], p.step] for p in plans if p.preempted)


def _seqused_k() -> list[int]:
    from .serving.scheduler import Piece, StepPlan

    return list(StepPlan(0, decodes=(0,), contexts=(30,), prefills=(Piece(1, 12, 5),)).seqused_k)


def _attention_share_of_waste() -> float:
    wasted = compare(*pad_and_pack(WINDOW, 8192, batch_size=4), "llama-3-8b", lm_head="last")["wasted"]["padded"]
    return wasted.attention / wasted.total


def _contaminated(lengths) -> list[int]:
    """Sequences whose mask rows differ between the block-diagonal mask and a plain causal one."""
    row = pack(lengths, sum(lengths), "next-fit")
    block = row.block_causal_mask(0)
    causal = np.tril(np.ones_like(block))
    return sorted({int(s) for s in row.seq_idx(0)[(block != causal).any(axis=1)]})


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
