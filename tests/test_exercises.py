"""Exercises: right answers pass, wrong and missing ones get a hint, never an exception."""

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
