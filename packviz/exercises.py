"""Self-checking exercises for the notebooks. The expected answers are computed by packviz itself.

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
import re
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
    method: str = ""
    """The worked solution in words, shown by :func:`reveal` above the computed answer."""


@dataclass(frozen=True)
class Solution:
    """A worked solution that displays collapsed: a ``<details>`` block the learner opens on purpose."""

    name: str
    method: str
    answer: Any

    def __str__(self) -> str:
        return f"Solution to {self.name}: {self.method} Answer: {self.answer!r}"

    def _repr_html_(self) -> str:
        import html

        return (f"<details><summary>Solution to <code>{html.escape(self.name)}</code> (click to reveal)</summary>"
                f"<p>{html.escape(self.method)}</p><p>Answer: <code>{html.escape(repr(self.answer))}</code></p>"
                "</details>")


EXERCISES: dict[str, Exercise] = {
    "padded_utilization": Exercise(
        "Four prompts of 100, 400, 250 and 50 tokens are padded into ONE batch. "
        "What fraction of the token slots hold real tokens? (a float between 0 and 1)",
        lambda: pack([100, 400, 250, 50], 400, "pad", batch_size=4).utilization,
        "every row is as long as the longest prompt: real tokens / (rows × longest)",
        rel_tol=1e-3,
        method=(
            "Padded into one batch, every row is as long as the longest prompt, 400 tokens: 4 rows × 400 = 1,600 "
            "token slots. The real tokens are 100 + 400 + 250 + 50 = 800, so 800 of the 1,600 slots hold real "
            "tokens; the rest are pads."),
    ),
    "bfd_rows": Exercise(
        "Best-fit decreasing packs prompts of 700, 600, 500, 400, 300, 200 and 100 tokens into rows "
        "of 1,000. How many rows? (an int)",
        lambda: pack([700, 600, 500, 400, 300, 200, 100], 1000, "bfd").num_rows,
        "longest first; each prompt into the row with the least room that still fits it. "
        "Compare with ceil(total / 1000)",
        method=(
            "The prompts total 2,800 tokens, so no packing needs fewer than ceil(2,800 / 1,000) = 3 rows. "
            "Best-fit decreasing takes them longest first and puts each into the open row with the least room "
            "that still fits it: 700 opens row A (300 left); 600 does not fit A and opens B (400 left); 500 opens "
            "C (500 left); 400 fills B exactly, 300 fills A exactly; 200 goes to C (300 left) and 100 to C (200 "
            "left). Three rows: the lower bound."),
    ),
    "position_ids": Exercise(
        "A pack holds sequences of 3, 2 and 4 tokens. Write its position_ids. (a list of ints)",
        lambda: pack([3, 2, 4], 9, "next-fit").position_ids(0).tolist(),
        "positions restart at 0 at every sequence start",
        method=(
            "position_ids count from 0 inside each sequence and restart at every sequence start, so that RoPE "
            "rotates each token as if its sequence ran alone: 0, 1, 2 for the first sequence, 0, 1 for the "
            "second, 0, 1, 2, 3 for the third."),
    ),
    "cu_seqlens": Exercise(
        "The same pack (3, 2 and 4 tokens): its cu_seqlens, as flash-attn expects them. (a list of ints)",
        lambda: pack([3, 2, 4], 9, "next-fit").cu_seqlens(0).tolist(),
        "N+1 cumulative boundaries, starting at 0",
        method=(
            "cu_seqlens are the running sums of the lengths with a leading 0, N + 1 = 4 boundaries: 0, then 0 + 3 "
            "= 3, 3 + 2 = 5, 5 + 4 = 9. Sequence i holds stream tokens cu_seqlens[i] to cu_seqlens[i + 1] - 1."),
    ),
    "contaminated_sequences": Exercise(
        "A pack holds sequences of 6, 1, 4 and 3 tokens, but its position_ids run 0..T-1 (not reset), so "
        "transformers finds no boundary and builds a plain causal mask. Which sequences (0-based indices) get "
        "logits different from running alone? (a list of ints)",
        lambda: _contaminated([6, 1, 4, 3]),
        "a query's logits change if the mask lets it see a key of another sequence; causal attention only looks back",
        method=(
            "With no position reset the mask is one causal triangle over all 14 tokens. A query's logits change "
            "when its row of that mask lets it see a key of another sequence, and causal attention only looks "
            "back. Sequence 0 (tokens 0-5) has nothing before it: it sees only itself, exactly as alone. Every "
            "later sequence sees the sequences before it: sequence 1 (one token) sees sequence 0, sequence 2 sees "
            "0 and 1, sequence 3 sees 0, 1 and 2. So sequences 1, 2 and 3 are contaminated."),
    ),
    "dense_extra_pairs": Exercise(
        "SDPA runs a pack of 4, 3 and 5 tokens with the dense block-diagonal mask. Per head, how many (query, key) "
        "scores does it compute that a causal varlen kernel, looping over cu_seqlens, never computes? (an int)",
        lambda: square_pairs([12]) - causal_pairs([4, 3, 5]),
        "the dense kernel scores the whole T × T square; the varlen one each sequence's triangle, n(n+1)/2",
        method=(
            "The dense kernel scores the whole T × T square of the pack, masked pairs included: 12 × 12 = 144 "
            "pairs per head. The varlen kernel scores only each sequence's causal triangle, n(n + 1)/2: 4·5/2 + "
            "3·4/2 + 5·6/2 = 10 + 6 + 15 = 31. The difference, 144 - 31, is computed by SDPA and then thrown away "
            "by the mask."),
    ),
    "varlen_uncovered": Exercise(
        "A varlen kernel with query blocks of 128 gets a stream of prompts of 3,000, 200, 100 and 50 tokens and "
        "max_seqlen=2,048 (copied from a config instead of taken from the batch). How many query tokens does no "
        "thread block compute? (an int)",
        lambda: varlen_grid([3000, 200, 100, 50], max_seqlen=2048, block_m=128)["uncovered_tokens"],
        "the grid holds ceil(max_seqlen / 128) query blocks per sequence, whatever cu_seqlens says: packviz.flops.varlen_grid",
        method=(
            "The kernel launches ceil(max_seqlen / 128) = ceil(2,048 / 128) = 16 query blocks per sequence, "
            "whatever cu_seqlens says: 16 × 128 = 2,048 query rows each. The prompts of 200, 100 and 50 tokens "
            "fit. The 3,000-token prompt has 3,000 - 2,048 query tokens beyond its last block: no thread block "
            "computes them, and nothing reports it."),
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
        method=(
            "Take the 16 lengths of seed_scenario(16, seed=0). Padded: batches of 8 in order, each row as long as "
            "its batch's longest prompt; every slot pays the linear layers (2·P FLOPs per token) and every row "
            "its causal triangle of attention pairs. Varlen: each prompt pays only its own tokens and its own "
            "causal triangle. Both run lm_head only at each prompt's last token. The ideal speed-up is padded "
            "FLOPs / varlen FLOPs; packviz.flops.compare(padded, packed, 'llama-3-8b', lm_head='last') sums them "
            "per kernel."),
    ),
    "window_slots": Exercise(
        "A server batches 4 consecutive requests with prompts of 50, 120, 4,000 and 300 tokens. Padded to the "
        "longest, the batch pays for some number of token slots; packed into rows of 8,192 (best-fit "
        "decreasing) for another. How many times as many slots does the padded batch pay for? (a float, 1% tolerance)",
        lambda: pack(WINDOW, 8192, "pad", batch_size=4).slots / pack(WINDOW, 8192, "bfd").slots,
        "padded: rows × the longest prompt; packed: rows of 8,192 × how many rows the prompts need",
        rel_tol=0.01,
        method=(
            "Padded to the longest, the batch is 4 rows × 4,000 = 16,000 slots. The prompts hold 50 + 120 + 4,000 "
            "+ 300 = 4,470 tokens, which fit one row of 8,192: packed pays for 8,192 slots. So padded pays 16,000 "
            "/ 8,192 times as many."),
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
        method=(
            "Waste = padded - useful, for the two parts apart. Linear: 4 × 4,000 = 16,000 slots run for 4,470 "
            "real tokens, so 16,000 - 4,470 = 11,530 slots × 2·P FLOPs are wasted (lm_head runs at the 4 last "
            "tokens either way: no waste there). Attention: each padded row computes 4,000 · 4,001 / 2 causal "
            "pairs where its prompt needs n(n + 1)/2; the difference, summed over the 4 rows, × 4 · heads · "
            "head_dim · layers FLOPs per pair. The share is attention waste / (attention waste + linear waste): "
            "small, because 11,530 wasted token slots each cost a whole 2·P."),
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
        method=(
            "Padded, both rows run 3,000 slots: 6,000 token slots through every linear layer for 4,000 real "
            "tokens (2·P FLOPs each), and two causal triangles of 3,000 · 3,001 / 2 pairs where the prompts need "
            "1,000 · 1,001 / 2 + 3,000 · 3,001 / 2 (4 · heads · head_dim · layers FLOPs per pair). lm_head runs "
            "at each prompt's last token either way. The waste fraction is 1 - useful / padded; the 2,000 pad "
            "tokens through the linear layers are most of it."),
    ),
    "prefill_ridge_tokens": Exercise(
        "How many prompt tokens must ONE Llama-3-8B prefill forward hold before its arithmetic intensity "
        "reaches the H100's ridge point (the measured matmul rate over the datasheet bandwidth, until a copy "
        "rate is recorded: packviz.serving.costs.ridge_point)? (an int, 2% tolerance)",
        lambda: _prefill_ridge_tokens(),
        "a prefill of n tokens does about 2·P·n FLOPs (P: the weights every token meets) and reads every "
        "weight once, lm_head included (2·(P + P_head) bytes), though only one row of logits needs it: its "
        "intensity is about n·P/(P + P_head) ≈ 0.93·n FLOPs per byte (notebook 02 prints the factor), so n ≈ "
        "the ridge (costs.ridge_point('h100'), notebook 02 prints it) ÷ that factor",
        rel_tol=0.02,
        method=(
            "The ridge point is costs.ridge_point('h100'): the measured matmul rate over the datasheet bandwidth, "
            "in FLOPs per byte. A prefill of n tokens does about 2·P·n FLOPs (P: the weights every token meets) "
            "plus its attention pairs and one row of lm_head, and reads every weight once, lm_head included: 2·(P "
            "+ P_head) bytes in bf16. Its intensity is about n·P/(P + P_head), a little below n. Step n up until "
            "costs.arithmetic_intensity(costs.varlen_prefill_work([n]), 'llama-3-8b') reaches the ridge: the "
            "first such n, a little above the ridge itself."),
    ),
    "online_offline_rows": Exercise(
        "Four prompts arrive in this order: 900, 800, 100 and 200 tokens; rows hold 1,000 tokens. Online, "
        "each window of 2 arrivals is packed on its own by best-fit decreasing; offline, all four at once. "
        "How many rows each? (a list: [online, offline])",
        lambda: [pack_in_windows([900, 800, 100, 200], 1000, 2).num_rows,
                 pack([900, 800, 100, 200], 1000, "bfd").num_rows],
        "a window sees only its own arrivals: 900 and 800 cannot share a row, and neither can wait for "
        "the short prompts that come later (packviz.packing.pack_in_windows)",
        method=(
            "Online, the first window holds 900 and 800: 1,700 tokens cannot share a row of 1,000, so 2 rows; the "
            "second window holds 100 and 200: 1 row; 3 rows in all. Offline, best-fit decreasing sees all four: "
            "900 opens a row (100 left), 800 opens a second (200 left), 200 fills the second exactly and 100 the "
            "first: 2 rows."),
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
        method=(
            "Both speed-ups divide the baseline's FLOPs by the same varlen FLOPs, so the factor is "
            "F(padded-masked) / F(padded): how much more a masked padded forward computes than a causal one on "
            "the same layout. The linear layers are identical; only attention differs: masked SDPA scores each "
            "padded row's whole W × W square, the causal kernel its triangle W(W + 1)/2. "
            "plan(BenchConfig(scenarios=('trace',)))[0]['ideal_speedup']['padded-masked'] is padded-masked's "
            "speed-up over padded, F(padded) / F(padded-masked), below 1: the factor is its inverse."),
    ),
    "static_batch_idle": Exercise(
        "Four requests wait at t = 0 with outputs of G = 40, 130, 75 and 12 tokens. A static server runs them as "
        "one batch of 4. How many decode slot-steps produce nothing: a finished request's slot, decoding a token "
        "that is thrown away? (an int)",
        lambda: _static_batch_idle(),
        "a request's first token comes from its prefill, so it needs G - 1 decode steps; the batch keeps all 4 "
        "slots decoding until its longest output is done",
        method=(
            "The batch decodes max(G) - 1 = 129 steps with all 4 slots: 4 × 129 = 516 slot-steps. Request i "
            "needs G_i - 1 of them: 39 + 129 + 74 + 11 = 253. The other 516 - 253 slot-steps decode tokens that "
            "are thrown away: 4 × (max G - 1) - Σ(G - 1)."),
    ),
    "static_idle_slot_steps": Exercise(
        "Notebook 09's 6 requests (serving_window()) are served static in batches of 2 instead of 3. How many "
        "decode slot-steps are idle: a finished request's slot, decoding a token that is thrown away? (an int)",
        lambda: _static_idle_slot_steps(),
        "batches are taken in arrival order; each keeps its slots decoding until its longest output is done, and a "
        "request's first token comes from its prefill. window.generated_tokens holds G; the static step grid above "
        "shows the idle slots hatched for batches of 3",
        method=(
            "Static takes the requests in arrival order, 2 at a time. A request's first token comes from its "
            "prefill, so a request of G tokens needs G - 1 decode steps, and its batch keeps both slots decoding "
            "until its longest G is done: max(G) - 1 steps. Per batch the idle slot-steps are 2 × (max G - 1) - "
            "Σ(G - 1); add them up over the three batches of window.generated_tokens."),
    ),
    "first_preemption_256": Exercise(
        "Serve notebook 09's 6 requests under continuous with max_batch=3 and kv_budget_tokens=256 instead of "
        "288. Which request is preempted first, and before which step? (a list: [request, step])",
        lambda: _first_preemption(),
        "the scheduler preempts the most recently admitted running request, before the first step whose "
        "decodes' pages would exceed 256 // 16 = 16 pages. simulate(..., fast_forward=False) keeps the plans: "
        "look for the first plan with .preempted, or draw plot_serving.kv_page_bars(plans, 16, budget_tokens=256)",
        method=(
            "The budget is 256 // 16 = 16 pages. Run simulate(serving_window(), 'continuous', model='tiny', "
            "max_batch=3, kv_budget_tokens=256, fast_forward=False) and read its plans in order. Before each step "
            "the scheduler adds up the pages its running requests will hold after the step's tokens (ceil(tokens "
            "/ 16) each); at the first step where that exceeds 16 pages it preempts the most recently admitted "
            "running request. The first plan with a non-empty .preempted gives the request and plan.step."),
    ),
    "seqused_k": Exercise(
        "One step decodes r0 over a context of 30 tokens and runs a chunk r1[12:17] (5 new tokens after 12 "
        "cached). What is seqused_k? (a list of ints, decode first)",
        lambda: _seqused_k(),
        "each sequence reads every key it has, its new ones included: context + 1 for a decode, done + tokens "
        "for a chunk",
        method=(
            "seqused_k counts the keys each sequence reads, its new tokens included, decodes first. The decode of "
            "r0 adds 1 token to a context of 30: 30 + 1 = 31 keys. The chunk r1[12:17] adds 5 tokens after 12 "
            "cached: 12 + 5 = 17 keys."),
    ),
    "sequence_mean_weight": Exercise(
        "One step trains on two examples of 50 and 4,000 tokens, with the loss averaged per sequence "
        "(each sequence's mean, then the mean of the two). How many times the weight of one target token "
        "of the 4,000-token example does one target token of the 50-token example get? (a float, 1% tolerance)",
        lambda: float(token_weights([50, 4000], "sequence")[0] / token_weights([50, 4000], "sequence")[1]),
        "a sequence of n tokens has n - 1 targets; each sequence's targets share 1/2 of the loss",
        rel_tol=0.01,
        method=(
            "A sequence of n tokens has n - 1 targets. Averaged per sequence, each of the two sequences gets 1/2 "
            "of the loss, shared equally by its targets: one target of the 50-token example weighs (1/2) / 49, "
            "one of the 4,000-token example (1/2) / 3,999. The ratio is 3,999 / 49."),
    ),
    "accumulation_weight": Exercise(
        "An optimizer step accumulates two micro-batches holding 300 and 100 target tokens. Each micro-batch's "
        "loss is its own token mean, divided by 2. One target token of the 100-token micro-batch gets how many "
        "times the weight it would get in the full-batch token mean? (a float, 1% tolerance)",
        lambda: float(accumulation_weights([300, 100], "micro_batch")[1] / accumulation_weights([300, 100], "step")[1]),
        "its weight is 1 / (2 × 100); in the full-batch token mean every target weighs 1 / (300 + 100)",
        rel_tol=0.01,
        method=(
            "Each micro-batch's loss is its own token mean divided by 2, so one target of the 100-token "
            "micro-batch weighs 1 / (2 × 100) = 1/200. In the full-batch token mean every target weighs 1 / (300 "
            "+ 100) = 1/400. So it weighs 400 / 200 times its fair share (and a target of the 300-token "
            "micro-batch 400 / 600)."),
    ),
}


WINDOW = (50, 120, 4000, 300)
"""The prompts of the ``window_slots`` and ``attention_share_of_waste`` exercises (notebook 01)."""


def serving_window():
    """The six requests notebook 09 serves: a real trace window (seed 3), prompts and outputs / 16, all at t = 0."""
    from .trace import Trace, azure_conv

    w = azure_conv().window(6, seed=3)
    return Trace(np.zeros(len(w)), -(-w.prompt_tokens // 16), -(-w.generated_tokens // 16), name="6 requests / 16")


STATIC_BATCH = ((100, 20, 60, 10), (40, 130, 75, 12))
"""The prompts and outputs of the ``static_batch_idle`` exercise (notebook 07)."""


def _static_batch_idle() -> int:
    from .serving.simulator import simulate
    from .trace import Trace

    prompts, outputs = (np.array(x) for x in STATIC_BATCH)
    return simulate(Trace(np.zeros(len(prompts)), prompts, outputs), "static", arrivals="offline",
                    max_batch=len(prompts)).ledger.decode_idle_slot_steps


def _static_idle_slot_steps() -> int:
    from .serving.simulator import simulate

    return simulate(serving_window(), "static", model="tiny", arrivals="offline", max_batch=2).ledger.decode_idle_slot_steps


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


def reveal(name: str) -> Solution:
    """The worked solution of exercise ``name``, collapsed until clicked (put it in the cell after the check)."""
    ex = _get(name)
    return Solution(name, ex.method or f"Hint: {ex.hint}", ex.answer())


def check_cells(notebook: dict) -> dict[str, int]:
    """The index of the first code cell of a notebook (its parsed JSON) that checks each exercise.

    >>> check_cells({"cells": [{"cell_type": "code", "source": ["print(question('bfd_rows'))"]},
    ...                        {"cell_type": "code", "source": ["print(check('bfd_rows', 3))"]}]})
    {'bfd_rows': 1}
    """
    found: dict[str, int] = {}
    for i, cell in enumerate(notebook.get("cells", [])):
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        if cell.get("cell_type") == "code":
            for name in re.findall(r"""\bcheck\(\s*["']([a-z0-9_]+)["']""", source):
                found.setdefault(name, i)
    return found


def checked_in(notebooks) -> dict[str, str]:
    """Which notebook file checks each exercise: ``{name: file name}``, from the ``*.ipynb`` under ``notebooks``."""
    import json
    from pathlib import Path

    where: dict[str, str] = {}
    for path in sorted(Path(notebooks).glob("*.ipynb")):
        for name in check_cells(json.loads(path.read_text(encoding="utf-8"))):
            where.setdefault(name, path.name)
    return where


def answer_key(where: dict[str, str] | None = None) -> str:
    """The instructors' answer key as Markdown: every exercise's question, answer, hint and worked solution,
    grouped by the notebook that checks it (``where``, from :func:`checked_in`)."""
    where = where or {}
    order = sorted(EXERCISES, key=lambda n: (where.get(n, "~"), list(EXERCISES).index(n)))
    lines = ["# Answer key (for instructors)", "",
             "Generated from `packviz/exercises.py` by `python -m packviz.exercises` (run from the repository root); "
             "`tests/test_exercises.py` fails when it is stale. Every answer below is computed by packviz. Learners "
             "see the same worked solution collapsed, in the cell `exercises.reveal(name)` after each check.", ""]
    heading = None
    for name in order:
        if where.get(name, "not checked in a notebook") != heading:
            heading = where.get(name, "not checked in a notebook")
            lines += [f"## {heading}", ""]
        ex = EXERCISES[name]
        tol = f" (accepted within {ex.rel_tol:.1%})" if ex.rel_tol else ""
        lines += [f"### `{name}`", "", f"**Question.** {ex.question}", "",
                  f"**Answer.** `{_shown(ex.answer())}`{tol}", "", f"**Hint** (printed by `check`). {ex.hint}", "",
                  f"**Worked solution** (shown by `reveal`). {ex.method}", ""]
    return "\n".join(lines)


def write_answer_key(path="docs/answer_key.md", notebooks="notebooks") -> str:
    """Write :func:`answer_key` (notebooks found under ``notebooks``) to ``path``; returns the text."""
    from pathlib import Path

    text = answer_key(checked_in(notebooks))
    Path(path).write_text(text, encoding="utf-8")
    return text


def _shown(value):
    return f"{value:.6g}" if isinstance(value, float) else repr(value)


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


if __name__ == "__main__":
    write_answer_key()
    print("wrote docs/answer_key.md")
