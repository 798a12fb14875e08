"""Exercises: right answers pass, wrong and missing ones get a hint, never an exception."""

import math

import numpy as np
import pytest

from packviz import exercises


def test_hand_computed_answers_are_accepted():
    assert exercises.check("padded_utilization", 800 / 1600).startswith("✓")
    assert exercises.check("position_ids", [0, 1, 2, 0, 1, 0, 1, 2, 3]).startswith("✓")
    assert exercises.check("position_ids", np.array([0, 1, 2, 0, 1, 0, 1, 2, 3])).startswith("✓")
    assert exercises.check("cu_seqlens", [0, 3, 5, 9]).startswith("✓")
    # 2,800 tokens: lower bound 3; BFD: [700+300], [600+400], [500+200+100]
    assert exercises.check("bfd_rows", 3).startswith("✓")
    # 04: the plain causal mask reaches back across every boundary after the first sequence
    assert exercises.check("contaminated_sequences", [1, 2, 3]).startswith("✓")
    assert exercises.check("dense_extra_pairs", 144 - (10 + 6 + 15)).startswith("✓")
    assert exercises.check("varlen_uncovered", 3000 - 16 * 128).startswith("✓")
    # 4 rows x 4,000 slots padded; 4,470 tokens fit one row of 8,192
    assert exercises.check("window_slots", 16000 / 8192).startswith("✓")


def test_attention_share_of_waste_from_per_unit_costs():
    from packviz.shapes import get_shape

    s, n = get_shape("llama-3-8b"), [50, 120, 4000, 300]
    linear = (4 * 4000 - sum(n)) * s.linear_flops_per_token          # lm_head: one row per prompt either way
    attention = (4 * 4000 * 4001 // 2 - sum(k * (k + 1) // 2 for k in n)) * s.attention_flops_per_pair
    assert exercises.check("attention_share_of_waste", attention / (attention + linear)).startswith("✓")


def test_every_solution_checks_and_near_misses_do_not():
    for name in exercises.EXERCISES:
        sol = exercises.solution(name)
        assert exercises.check(name, sol).startswith("✓")
        wrong = [x + 1 for x in sol] if isinstance(sol, list) else sol * 1.05 + 1
        verdict = exercises.check(name, wrong)
        assert verdict.startswith("✗") and "Hint:" in verdict
        assert "not answered yet" in exercises.check(name, None)
        assert exercises.question(name)


def test_garbage_answers_and_unknown_names():
    assert exercises.check("cu_seqlens", "abc").startswith("✗")
    assert exercises.check("cu_seqlens", [0, 3, 5.9, 9]).startswith("✗")  # not truncated to 5
    assert exercises.check("cu_seqlens", ["0", "3", "5", "9"]).startswith("✗")  # strings are not numbers
    assert exercises.check("cu_seqlens", [0.0, 3.0, 5.0, 9.0]).startswith("✓")
    assert exercises.check("padded_utilization", "half").startswith("✗")
    with pytest.raises(ValueError, match="exercise must be one of 'padded_utilization', .*; got 'nope'"):
        exercises.check("nope", 1)


def test_hand_computed_answers_of_the_flops_and_packing_exercises():
    from packviz.shapes import get_shape

    # rows of 1,000: online windows {900, 800} -> 2 rows, {100, 200} -> 1; offline 900+100, 800+200
    assert exercises.check("online_offline_rows", [3, 2]).startswith("✓")
    s = get_shape("llama-3-8b")
    L, A, h = s.linear_flops_per_token, s.attention_flops_per_pair, s.lm_head_flops_per_token
    spent = 6000 * L + 2 * h + 2 * (3000 * 3001 // 2) * A      # 2 rows × 3,000 slots, causal triangles
    useful = 4000 * L + 2 * h + (1000 * 1001 // 2 + 3000 * 3001 // 2) * A
    assert exercises.check("padded_causal_waste", 1 - useful / spent).startswith("✓")


# ---------------------------------------------------------------------------------------------------
# Every exercise solved again from its hint and worked method, by code written here (no exercise's own
# answer function is called): if the words and the answer drift apart, this fails.
def _bfd(lengths, capacity):
    rows = []                                                   # room left in each open row
    for n in sorted(lengths, reverse=True):
        fits = [i for i, room in enumerate(rows) if room >= n]
        if fits:
            best = min(fits, key=lambda i: rows[i])
            rows[best] -= n
        else:
            rows.append(capacity - n)
    return len(rows)


def _triangle(n):
    return n * (n + 1) // 2


def _llama():
    from packviz.shapes import get_shape

    s = get_shape("llama-3-8b")
    return s.linear_flops_per_token, s.attention_flops_per_pair, s.lm_head_flops_per_token


def _padded_vs_varlen_flops(lengths, batch):
    L, A, h = _llama()
    padded = 0
    for i in range(0, len(lengths), batch):
        b = lengths[i:i + batch]
        padded += len(b) * max(b) * L + len(b) * _triangle(max(b)) * A
    varlen = sum(lengths) * L + sum(_triangle(n) for n in lengths) * A
    return padded + len(lengths) * h, varlen + len(lengths) * h


def _solve_varlen_speedup():
    from packviz.lengths import seed_scenario

    padded, varlen = _padded_vs_varlen_flops([int(n) for n in seed_scenario(16, seed=0)], 8)
    return padded / varlen


def _solve_attention_share_of_waste():
    L, A, _ = _llama()
    n = [50, 120, 4000, 300]
    linear = (4 * 4000 - sum(n)) * L                            # lm_head: one row per prompt either way
    attention = (4 * _triangle(4000) - sum(_triangle(k) for k in n)) * A
    return attention / (attention + linear)


def _solve_padded_causal_waste():
    L, A, h = _llama()
    spent = 6000 * L + 2 * h + 2 * _triangle(3000) * A
    useful = 4000 * L + 2 * h + (_triangle(1000) + _triangle(3000)) * A
    return 1 - useful / spent


def _solve_prefill_ridge_tokens():
    from packviz.serving.costs import ridge_point

    L, A, h = _llama()
    weight_bytes = L + h                                       # 2 bytes × (P + P_head) = 2·P + 2·P_head FLOPs' worth
    ridge = ridge_point("h100")
    return next(n for n in range(1, 10_000) if (n * L + h + _triangle(n) * A) / weight_bytes >= ridge)


def _solve_masked_flattery():
    from packviz.bench.config import BenchConfig
    from packviz.bench.scenarios import plan

    methods = plan(BenchConfig(scenarios=("trace",)))[0]["methods"]
    return methods["padded-masked"]["flops_model"]["total"] / methods["padded"]["flops_model"]["total"]


def _contaminated(lengths):
    """A query's logits change when a key at or before it (the plain causal mask) is another sequence's."""
    seq = [k for k, n in enumerate(lengths) for _ in range(n)]
    return sorted({s for t, s in enumerate(seq) if any(seq[j] != s for j in range(t + 1))})


def _static_idle(outputs, batch):
    idle = 0
    for i in range(0, len(outputs), batch):
        g = outputs[i:i + batch]
        idle += len(g) * (max(g) - 1) - sum(x - 1 for x in g)
    return idle


def _solve_first_preemption_256():
    """Drive the scheduler by hand and check the rule the method states at the preemption."""
    from packviz.serving.scheduler import ServeConfig, make_scheduler

    sched = make_scheduler(exercises.serving_window(), ServeConfig("continuous", max_batch=3), kv_budget_tokens=256)
    running, written = [], {}
    while not sched.done:
        sched.arrive()
        plan = sched.plan()
        if plan.preempted:
            [victim] = plan.preempted
            assert victim == running[-1], "the most recently admitted running request is preempted"
            pages = sum(-(-(written[r] + 1) // 16) for r in running)
            assert pages > 256 // 16, "preempted only when the decodes' pages would exceed the budget"
            return [victim, plan.step]
        running += list(plan.admitted)
        for piece in plan.prefills:
            written[piece.request] = written.get(piece.request, 0) + piece.tokens
        for r in plan.decodes:
            written[r] += 1
        running = [r for r in running if r not in plan.released]
        sched.commit(plan, 1.0)
    raise AssertionError("no preemption at kv_budget_tokens=256")


INDEPENDENT = {
    "padded_utilization": lambda: (100 + 400 + 250 + 50) / (4 * 400),
    "bfd_rows": lambda: _bfd([700, 600, 500, 400, 300, 200, 100], 1000),
    "position_ids": lambda: [i for n in (3, 2, 4) for i in range(n)],
    "cu_seqlens": lambda: [0, 3, 3 + 2, 3 + 2 + 4],
    "contaminated_sequences": lambda: _contaminated((6, 1, 4, 3)),
    "dense_extra_pairs": lambda: 12 * 12 - (_triangle(4) + _triangle(3) + _triangle(5)),
    "varlen_uncovered": lambda: sum(max(0, n - math.ceil(2048 / 128) * 128) for n in (3000, 200, 100, 50)),
    "varlen_speedup": _solve_varlen_speedup,
    "window_slots": lambda: 4 * 4000 / (math.ceil((50 + 120 + 4000 + 300) / 8192) * 8192),
    "attention_share_of_waste": _solve_attention_share_of_waste,
    "padded_causal_waste": _solve_padded_causal_waste,
    "prefill_ridge_tokens": _solve_prefill_ridge_tokens,
    "online_offline_rows": lambda: [_bfd([900, 800], 1000) + _bfd([100, 200], 1000), _bfd([900, 800, 100, 200], 1000)],
    "masked_flattery": _solve_masked_flattery,
    "static_batch_idle": lambda: 4 * (130 - 1) - sum(g - 1 for g in (40, 130, 75, 12)),
    "static_idle_slot_steps": lambda: _static_idle(exercises.serving_window().generated_tokens.tolist(), 2),
    "first_preemption_256": _solve_first_preemption_256,
    "seqused_k": lambda: [30 + 1, 12 + 5],
    "sequence_mean_weight": lambda: (0.5 / (50 - 1)) / (0.5 / (4000 - 1)),
    "accumulation_weight": lambda: (1 / (2 * 100)) / (1 / (300 + 100)),
}


def test_every_exercise_is_solved_again_from_its_method():
    assert set(INDEPENDENT) == set(exercises.EXERCISES), "write an independent solution for every exercise"
    for name, solve in INDEPENDENT.items():
        verdict = exercises.check(name, solve())
        assert verdict.startswith("✓"), f"{name}: the method's answer {solve()!r} is rejected: {verdict}"


def test_every_exercise_has_a_hint_a_method_and_a_collapsed_solution():
    for name, ex in exercises.EXERCISES.items():
        assert ex.hint and len(ex.method) > len(ex.hint) / 2, name
        sol = exercises.reveal(name)
        html = sol._repr_html_()
        assert html.startswith("<details>") and "<summary>" in html and "open" not in html.split(">")[0], name
        assert repr(exercises.solution(name)) in str(sol) and ex.method in str(sol), name


def test_the_answer_key_is_current():
    """docs/answer_key.md is what ``python -m packviz.exercises`` writes from the notebooks as they are."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    key = exercises.answer_key(exercises.checked_in(root / "notebooks"))
    assert (root / "docs" / "answer_key.md").read_text(encoding="utf-8") == key, (
        "docs/answer_key.md is stale: run `python -m packviz.exercises` from the repository root")
    for name, ex in exercises.EXERCISES.items():
        assert f"### `{name}`" in key and ex.method in key


def test_check_cells_finds_the_first_checking_cell_only():
    nb = {"cells": [{"cell_type": "markdown", "source": "check('bfd_rows', 3)"},
                    {"cell_type": "code", "source": ["answer = None\n", "exercises.check( 'bfd_rows', answer)"]},
                    {"cell_type": "code", "source": "exercises.reveal('bfd_rows'); check(\"seqused_k\", 1)"},
                    {"cell_type": "code", "source": "check('bfd_rows', 3)"}]}
    assert exercises.check_cells(nb) == {"bfd_rows": 1, "seqused_k": 2}
