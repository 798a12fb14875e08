"""Packing for training: the packed step equals the padded one; each failure mode stays a failure.

Lengths are real (a window of the Azure trace, prompt + response) scaled down 16× so that a
tiny Llama trains on them in milliseconds; every proof runs on the real ``LlamaForCausalLM``.
"""

import doctest

import numpy as np
import pytest
import torch

from packviz import model as M
from packviz import steps, training as T
from packviz.layout import Layout
from packviz.packing import pack
from packviz.trace import azure_conv

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def lengths():
    w = azure_conv().window(8, seed=0)
    return steps.scale_lengths(w.prompt_tokens + w.generated_tokens, 16)


@pytest.fixture(scope="module")
def tiny():
    return M.build_model("tiny", device="cpu", seed=0)


@pytest.fixture(scope="module")
def seqs(lengths, tiny):
    return T.random_sequences(lengths, tiny.config.vocab_size, seed=0)


@pytest.fixture(scope="module")
def micro_packs(lengths, seqs):
    """Packs of 128 in arrival order (next-fit): micro-batches with unequal target counts."""
    return T.packs_of(pack(lengths, 128, "next-fit"), seqs)


def equal(r):
    return r["loss_rel_diff"] <= T.PROOF_TOLERANCE and r["grad_rel_diff"] <= T.PROOF_TOLERANCE


def failed(r):
    """A failure is far out of the proof's reach: loss beyond its tolerance, gradients beyond 1e-2."""
    return r["loss_rel_diff"] > T.PROOF_TOLERANCE and r["grad_rel_diff"] > T.FAILURE_THRESHOLD


# ---------------------------------------------------------------------- conventions
def test_lengths_are_ragged_and_scaled_from_the_trace(lengths):
    assert lengths.min() >= 2 and lengths.max() >= 10 * lengths.min()  # ragged: equal lengths hide bugs
    assert len(set(lengths.tolist())) >= 6


def test_shift_convention_matches_transformers_loss(tiny, seqs):
    """Our shifted targets and count reproduce ForCausalLMLoss, with and without num_items_in_batch."""
    batch = M.packed_batch(seqs[:3])
    targets = T.shifted_targets(batch["labels"])
    cu = batch["cu_seq_lens_q"].tolist()
    for end in cu[1:]:
        assert targets[0, end - 1] == T.IGNORE_INDEX  # last token of each sequence: no target
    with torch.no_grad():
        logits = tiny(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        ce = torch.nn.functional.cross_entropy(logits[0], targets[0], reduction="sum")
        n = T.count_targets(batch["labels"])
        assert n == sum(len(s) - 1 for s in seqs[:3])
        mean = tiny(**T.model_inputs(batch)).loss
        summed = tiny(**T.model_inputs(batch), num_items_in_batch=2 * n).loss
    assert torch.allclose(mean, ce / n, rtol=1e-6)
    assert torch.allclose(summed, ce / (2 * n), rtol=1e-6)


def test_padded_and_packed_count_the_same_targets_after_the_shift(seqs):
    packed, padded = M.packed_batch(seqs), T.padded_train_batch(seqs)
    assert T.count_targets(packed["labels"]) == T.count_targets(padded["labels"]) == sum(len(s) - 1 for s in seqs)
    # before the shift the padded labels count one more per sequence (its first token)
    assert int((padded["labels"] != -100).sum()) - int((packed["labels"] != -100).sum()) == len(seqs)
    assert (padded["labels"][padded["attention_mask"] == 0] == -100).all()


def test_packed_rows_batch_pads_each_row_with_a_filler_sequence(seqs):
    b = T.packed_rows_batch([seqs[:2], seqs[2:3]])
    w0, w1 = len(seqs[0]) + len(seqs[1]), len(seqs[2])
    assert b["input_ids"].shape == (2, max(w0, w1))
    short = 1 if w0 > w1 else 0
    fill = abs(w0 - w1)
    assert b["position_ids"][short, -fill:].tolist() == list(range(fill))
    assert (b["labels"][short, -fill:] == -100).all()


def test_packs_of_rejects_what_it_cannot_pair(lengths, seqs):
    with pytest.raises(ValueError, match="packed layout"):
        T.packs_of(pack(lengths, 128, "pad", batch_size=4), seqs)
    with pytest.raises(ValueError, match="sequence 0 has"):
        T.packs_of(pack([5] + list(lengths[1:]), 128, "next-fit"), seqs)


# ---------------------------------------------------------------------- the proof
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_one_pack_equals_the_padded_batch(attn, seqs):
    model = M.build_model("tiny", device="cpu", seed=0, attn_implementation=attn)
    r = T.prove_one_pack(model, seqs)
    assert equal(r), r
    assert r["targets"] == r["ref_targets"] == sum(len(s) - 1 for s in seqs)


def test_two_packs_equal_the_padded_batch(tiny, lengths, seqs):
    packs = T.packs_of(pack(lengths, 224, "bfd"), seqs)
    assert len(packs) == 2 and len(packs[0]) != len(packs[1])
    assert equal(T.prove_packs(tiny, packs))


def test_accumulation_with_num_items_in_batch_equals_the_full_batch(tiny, micro_packs):
    counts = [sum(len(s) - 1 for s in p) for p in micro_packs]
    assert len(set(counts)) == len(counts)  # micro-batches hold different target counts
    assert equal(T.prove_accumulation(tiny, micro_packs, "step"))


# ---------------------------------------------------------------------- the failure modes
def test_sequence_mean_is_not_the_token_mean(tiny, seqs):
    assert failed(T.sequence_mean_failure(tiny, seqs))


def test_a_per_sequence_mean_computed_per_segment_is_layout_invariant(tiny, lengths, seqs):
    """If a per-sequence objective is wanted, computing it per segment gives it in any layout."""
    padded = T.sequence_mean_step(tiny, T.padded_train_batch(seqs))
    one_row = T.sequence_mean_step(tiny, M.packed_batch(seqs))
    two_rows = T.sequence_mean_step(tiny, T.packed_rows_batch(T.packs_of(pack(lengths, 224, "bfd"), seqs)))
    assert equal(T.compare_steps(one_row, padded)) and equal(T.compare_steps(two_rows, padded))


def test_equal_lengths_hide_the_sequence_mean_bug(tiny):
    same = T.random_sequences([20] * 4, tiny.config.vocab_size, seed=1)
    assert equal(T.sequence_mean_failure(tiny, same))


def test_sequence_mean_weighs_a_50_token_example_like_a_4000_token_one():
    assert np.allclose(steps.example_weights([50, 4000], "sequence"), [0.5, 0.5])
    tok = steps.example_weights([50, 4000], "token")
    assert tok[1] / tok[0] == pytest.approx(3999 / 49)
    w = steps.token_weights([50, 4000], "sequence")
    assert w[0] / w[1] == pytest.approx(3999 / 49)
    assert steps.token_weights([50, 4000], "token").tolist() == pytest.approx([1 / 4048, 1 / 4048])  # 49 + 3,999 targets


def test_micro_batch_normalisation_fails_when_counts_differ(tiny, micro_packs):
    assert failed(T.prove_accumulation(tiny, micro_packs, "micro_batch"))


def test_micro_batch_normalisation_is_exact_when_counts_are_equal(tiny):
    """The error is the imbalance of target counts, nothing else: equal counts, no error."""
    a = T.random_sequences([30, 11], tiny.config.vocab_size, seed=2)   # 29 + 10 targets
    b = T.random_sequences([20, 21], tiny.config.vocab_size, seed=3)   # 19 + 20 targets
    assert equal(T.prove_accumulation(tiny, [a, b], "micro_batch"))


def test_accumulation_weights():
    assert steps.accumulation_weights([300, 100], "step").tolist() == [1 / 400, 1 / 400]
    w = steps.accumulation_weights([300, 100], "micro_batch")
    assert w.tolist() == pytest.approx([1 / 600, 1 / 200])
    assert (w * [300, 100]).sum() == pytest.approx(1.0)  # still sums to one over all targets


def test_unmasked_boundary_labels_train_across_sequences(tiny, seqs):
    r = T.boundary_label_failure(tiny, seqs)
    assert failed(r)
    assert r["targets"] - r["ref_targets"] == len(seqs) - 1  # one extra target per boundary


def test_a_correct_pack_isolates_the_gradient_exactly(tiny, seqs):
    victim = len(seqs) - 1
    r = T.isolation_failure(tiny, seqs, victim)
    assert r["loss_rel_diff"] == 0 and r["grad_rel_diff"] == 0  # bit-identical, not merely close
    batch = M.packed_batch(seqs)
    in_pack = T.trap_step(tiny, batch, None, T.only_sequence_labels(batch, victim))
    alone = T.train_step(tiny, M.packed_batch([seqs[victim]]))
    assert T.compare_steps(in_pack, alone)["grad_rel_diff"] <= T.PROOF_TOLERANCE


@pytest.mark.parametrize("trap", list(M.TRAPS))
def test_every_isolation_trap_leaks_the_neighbour_into_the_gradient(trap, tiny, seqs):
    assert failed(T.isolation_failure(tiny, seqs, len(seqs) - 1, trap))


def test_the_first_sequence_is_clean_under_every_trap(tiny, seqs):
    """Causal attention only looks back: nothing leaks into the first sequence of a pack."""
    for trap in M.TRAPS:
        assert T.isolation_failure(tiny, seqs, 0, trap)["grad_rel_diff"] <= T.PROOF_TOLERANCE


def test_failure_table_names_every_failure(tiny, seqs, micro_packs):
    rows = T.failure_table(tiny, seqs, micro_packs, len(seqs) - 1)
    assert [r["name"] for r in rows] == list(T.FAILURES)
    assert all(failed(r) for r in rows)
    text = T.format_comparisons(rows)
    assert all(name in text for name in T.FAILURES)
    zero = [{"name": "x", "loss_rel_diff": 0.0, "grad_rel_diff": 0.0, "worst_param": "lm_head.weight"}]
    assert "0 (exact)" in T.format_comparisons(zero, mark_exact=True)
    plain = T.format_comparisons(zero)
    assert "< 1e-05" in plain and "exact" not in plain and "lm_head" not in plain  # no place for rounding


def test_bad_arguments_are_named(tiny, seqs):
    with pytest.raises(ValueError, match="normalize must be one of"):
        T.train_step(tiny, M.packed_batch(seqs[:2]), normalize="mean")
    with pytest.raises(ValueError, match="sequence index 5 out of range"):
        T.only_sequence_labels(M.packed_batch(seqs[:2]), 5)
    with pytest.raises(ValueError, match="trap must be one of"):
        T.trap_step(tiny, M.packed_batch(seqs[:2]), "nope")
    with pytest.raises(ValueError, match="no target"):
        T.train_step(tiny, [M.packed_batch([[5]])])
    with pytest.raises(ValueError, match=r"lengths\[1\] is 0: lengths must be integers >= 1"):
        T.random_sequences([3, 0], 256)
    with pytest.raises(ValueError, match="packs is empty"):
        T.packed_rows_batch([])
    with pytest.raises(ValueError, match="one-token sequence"):
        steps.token_weights([5, 1])
    with pytest.raises(ValueError, match="reduction must be one of"):
        steps.token_weights([5, 3], "median")


# ---------------------------------------------------------------------- tokens per step
def test_step_tokens_counts_a_hand_made_layout():
    lay = Layout.from_rows([[(0, 0, 3), (1, 3, 2)], [(2, 0, 4)], [(3, 0, 1)]], widths=[5, 5, 5])
    st = steps.step_tokens(lay, rows_per_step=2)
    assert st["tokens"].tolist() == [9, 1]
    assert st["sequences"].tolist() == [3, 1]
    assert st["targets"].tolist() == [6, 0]
    assert st["slots"].tolist() == [10, 5]
    padded = pack([3, 5, 2, 7, 1], 8, "pad", batch_size=2)
    assert steps.step_tokens(padded)["tokens"].tolist() == [8, 9, 1]
    assert steps.step_tokens(padded)["slots"].tolist() == [10, 14, 1]


def test_packing_makes_tokens_per_step_nearly_constant_on_the_trace():
    w = azure_conv().window(4096, seed=0)
    lengths = w.prompt_tokens + w.generated_tokens
    padded = pack(lengths, 8192, "pad", batch_size=8, overlong="truncate")
    bfd = pack(lengths, 8192, "bfd", overlong="truncate")
    table = {r["label"]: r for r in steps.step_table({"pad": padded, "bfd": bfd})}
    assert table["pad"]["tokens"]["cv"] > 0.2 > 0.05 > table["bfd"]["tokens"]["cv"]
    assert table["pad"]["per_token_lr_swing"] > 2 and table["bfd"]["per_token_lr_swing"] < 1.05
    assert table["pad"]["sequences"]["std"] == 0 and table["bfd"]["sequences"]["std"] > 1
    assert "bfd" in steps.format_step_table(list(table.values()))


def test_spread_and_scale_lengths():
    s = steps.spread([1, 2, 3, 4])
    assert s["mean"] == 2.5 and s["min"] == 1 and s["max"] == 4 and s["cv"] == pytest.approx(np.std([1, 2, 3, 4]) / 2.5)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        steps.spread([])
    with pytest.raises(ValueError, match=r"x\[1\] is nan: spread needs finite numbers"):
        steps.spread([1, float("nan")])
    assert steps.scale_lengths([50, 4000, 7], 16).tolist() == [3, 250, 2]
    with pytest.raises(ValueError, match="divisor must be a positive integer"):
        steps.scale_lengths([50], 0)


def test_docstring_examples():
    for module in (steps, T):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0


# ---------------------------------------------------------------------- the pictures
def test_training_plots_draw_what_they_are_given():
    from matplotlib.figure import Figure

    from packviz import plot

    series = {"padded": np.array([10, 30, 20, 40]), "packed": np.array([25, 25, 24, 25])}
    ax = plot.step_tokens(series, max_steps=4, figsize=(6, 3))
    assert isinstance(ax.figure, plot.PackvizFigure) and tuple(ax.figure.get_size_inches()) == (6, 3)
    lines = ax.get_lines()
    assert lines[0].get_ydata().tolist() == [10, 30, 20, 40]
    assert list(lines[1].get_ydata()) == [25, 25]  # the dashed mean
    assert "mean 25" in ax.get_legend().get_texts()[0].get_text()
    assert plot.to_png(ax).startswith(b"\x89PNG")

    given = Figure(figsize=(4, 3)).add_subplot()
    shares = {"token": steps.example_weights([50, 4000]), "sequence": steps.example_weights([50, 4000], "sequence")}
    assert plot.loss_shares([50, 4000], shares, ax=given) is given
    heights = [p.get_height() for p in given.patches]
    assert heights == pytest.approx([49 / 4048, 3999 / 4048, 0.5, 0.5])
    assert [t.get_text() for t in given.get_xticklabels()] == ["50", "4,000"]
