"""The model, the HF packed batch and the isolated forward: proofs on a tiny Llama-3 in fp32 on CPU."""

import json
import os
import warnings

import numpy as np
import pytest
import torch

from packviz import model as M
from packviz.attention import register_varlen, varlen_reference
from packviz.shapes import MODELS
from packviz.packing import pack

TOL = 1e-4  # packed vs per-sequence, fp32
TRAP = 1e-2  # a trap must move some logit by more than this

REF_VARLEN = "packviz_varlen_reference"  # the varlen plumbing with a CPU stand-in kernel


def _seqs(lengths, vocab=256, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (n,), generator=g) for n in lengths]


LENGTHS = (7, 1, 12, 5, 3)  # includes a 1-token sequence (a boundary right after a boundary)


pytestmark = pytest.mark.usefixtures("one_torch_thread")

@pytest.fixture(scope="module")
def tiny():
    return M.build_model("tiny", seed=0)


@pytest.fixture(scope="module")
def seqs():
    return _seqs(LENGTHS)


@pytest.fixture(scope="module")
def reference(tiny, seqs):
    tiny.set_attn_implementation("sdpa")
    return M.per_sequence_logits(tiny, seqs)


# ---------------------------------------------------------------------- the model
@pytest.mark.parametrize("name", sorted(MODELS))
def test_llama_config_has_the_llama3_values(name):
    shape = MODELS[name]
    cfg = M.llama_config(name)
    assert (cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers) == (shape.hidden, shape.intermediate, shape.layers)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim) == (shape.heads, 8, shape.head_dim)
    assert cfg.vocab_size == 128256 and cfg.rms_norm_eps == 1e-5
    rope = cfg.rope_parameters
    assert rope["rope_theta"] == 500000.0
    if name.startswith(("llama-3.1", "llama-3.2")):
        assert rope["rope_type"] == "llama3" and rope["original_max_position_embeddings"] == 8192
        assert rope["factor"] == (8.0 if name.startswith("llama-3.1") else 32.0)
        assert cfg.max_position_embeddings == 131072
    else:
        assert rope["rope_type"] == "default" and cfg.max_position_embeddings == 8192
    assert cfg.tie_word_embeddings is name.startswith("llama-3.2")
    assert cfg.use_cache is True  # the default that makes the kv_cache_on trap the default


def test_llama_config_overrides_and_unknown_name():
    assert M.llama_config("llama-3-8b", num_hidden_layers=2).num_hidden_layers == 2
    with pytest.raises(ValueError, match="unknown model"):
        M.llama_config("llama-2-7b")


def test_build_model_is_seeded_random_and_tied_where_llama32_ties():
    a = M.build_model("tiny", seed=0)
    b = M.build_model("tiny", seed=0)
    c = M.build_model("tiny", seed=1)
    wa, wb, wc = (m.model.layers[0].self_attn.q_proj.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    assert 0.01 < float(wa.detach().std()) < 0.04  # transformers' normal(0, 0.02) init, not zeros or empty memory
    assert a.dtype == torch.float32 and not a.training
    assert a.lm_head.weight is not a.model.embed_tokens.weight
    t = M.build_model("tiny-3.2")
    assert t.lm_head.weight is t.model.embed_tokens.weight
    assert torch.isfinite(t.model.rotary_emb.inv_freq).all()


def test_load_checkpoint_round_trip(tmp_path, tiny, seqs):
    tiny.save_pretrained(tmp_path, safe_serialization=True)
    assert list(tmp_path.glob("*.safetensors"))
    loaded = M.load_checkpoint(tmp_path)
    assert M.max_abs_diff(M.per_sequence_logits(loaded, seqs[:2]), M.per_sequence_logits(tiny, seqs[:2])) == 0.0


def test_load_checkpoint_refuses_what_it_should(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        M.load_checkpoint(tmp_path / "missing")
    d = tmp_path / "ckpt"
    d.mkdir()
    with pytest.raises(ValueError, match="config.json"):
        M.load_checkpoint(d)
    (d / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match="Llama"):
        M.load_checkpoint(d)
    (d / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (d / "pytorch_model.bin").write_bytes(b"not loaded: pickles are never read")
    with pytest.raises(ValueError, match="safetensors"):
        M.load_checkpoint(d)


# ---------------------------------------------------------------------- the batch
def test_packed_batch_equals_the_transformers_collator(seqs):
    from transformers import DataCollatorWithFlattening

    ours = M.packed_batch(seqs)
    theirs = DataCollatorWithFlattening(return_flash_attn_kwargs=True)(
        [{"input_ids": s.tolist()} for s in seqs], return_tensors="pt")
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        if isinstance(value, torch.Tensor):
            assert ours[key].dtype == value.dtype, key
            assert torch.equal(ours[key], value), key
        else:
            assert type(ours[key]) is type(value) and ours[key] == value, key


def test_packed_batch_by_hand():
    b = M.packed_batch([[5, 6, 7, 8], [9, 10, 11], [1, 2, 3, 4, 5]])
    assert b["input_ids"].shape == (1, 12)
    assert b["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2, 0, 1, 2, 3, 4]]
    assert b["cu_seq_lens_q"].tolist() == [0, 4, 7, 12] and b["cu_seq_lens_q"].dtype == torch.int32
    assert b["max_length_q"] == b["max_length_k"] == 5
    assert b["labels"][0, [0, 4, 7]].tolist() == [-100, -100, -100]
    assert M.last_token_index(b).tolist() == [3, 6, 11]


def test_packed_batch_pad_to_adds_one_filler_sequence():
    b = M.packed_batch([[5, 6, 7], [9]], pad_to=8)
    assert b["input_ids"].tolist() == [[5, 6, 7, 9, 0, 0, 0, 0]]
    assert b["position_ids"].tolist() == [[0, 1, 2, 0, 0, 1, 2, 3]]
    assert b["cu_seq_lens_q"].tolist() == [0, 3, 4, 8]
    assert M.last_token_index(b, 2).tolist() == [2, 3]
    with pytest.raises(ValueError, match="shorter"):
        M.packed_batch([[1, 2, 3]], pad_to=2)
    with pytest.raises(ValueError, match="at least one token"):
        M.packed_batch([[1], []])
    with pytest.raises(ValueError, match="pad_to must be a positive integer, got 0"):
        M.packed_batch([[1]], pad_to=0)
    with pytest.raises(ValueError, match="pad_id must be an integer >= 0, got -1"):
        M.padded_batch([[1]], pad_id=-1)
    with pytest.raises(ValueError, match=r"input_ids of shape \(1, T\), got \(2, 3\)"):
        M.packed_forward(None, {"input_ids": torch.zeros(2, 3, dtype=torch.int64)})


def test_padded_batch_is_right_padded():
    b = M.padded_batch([[5, 6, 7], [9]], pad_id=0)
    assert b["input_ids"].tolist() == [[5, 6, 7], [9, 0, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_batch_from_layout_follows_the_layout():
    lengths = np.array([5, 3, 8, 2, 6])
    toks = _seqs(lengths.tolist())
    packed = pack(lengths, 10, "bfd")
    for row in range(packed.num_rows):
        b = M.batch_from_layout(packed, row, toks)
        order = packed.row_segments(row)[:, 0]
        ref = M.packed_batch([toks[i] for i in order])
        assert all(torch.equal(b[k], ref[k]) for k in ("input_ids", "position_ids", "cu_seq_lens_q"))
        assert b["cu_seq_lens_q"].tolist() == packed.cu_seqlens(row).tolist()
        assert b["position_ids"][0].tolist() == packed.position_ids(row).tolist()
    padded = pack(lengths, 10, "pad", batch_size=2)
    rng = padded.batches()[1]
    b = M.batch_from_layout(padded, rng, toks)
    assert b["input_ids"].shape == (2, 8) and b["attention_mask"].sum().item() == 8 + 2
    split = pack([15], 10, "next-fit", overlong="split")
    with pytest.raises(ValueError, match="split"):
        M.batch_from_layout(split, 0, _seqs([15]))


# ---------------------------------------------------------------------- the proofs
def _run_backend(model, backend, fn):
    if backend == "flex_attention":
        # transformers compiles flex; on CPU that costs 10-40 s, so the proof runs flex's eager
        # (unfused) implementation of the same BlockMask. The compiled kernel: PACKVIZ_SLOW_TESTS=1.
        with torch.compiler.set_stance("force_eager"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn()
    return fn()


@pytest.mark.parametrize("backend", ["sdpa", "eager", "flex_attention", REF_VARLEN])
def test_packed_logits_equal_per_sequence_logits(tiny, seqs, reference, backend):
    if backend == REF_VARLEN:
        register_varlen(REF_VARLEN, kernel=varlen_reference)
    tiny.set_attn_implementation(backend)
    try:
        batch = M.packed_batch(seqs)
        full = _run_backend(tiny, backend, lambda: M.packed_forward(tiny, batch, last_token_only=False))
        last = _run_backend(tiny, backend, lambda: M.packed_forward(tiny, batch))
    finally:
        tiny.set_attn_implementation("sdpa")
    assert full.shape == (sum(LENGTHS), 256) and last.shape == (len(LENGTHS), 256)
    assert M.max_abs_diff(full, reference) <= TOL
    ends = np.cumsum(LENGTHS) - 1
    assert M.max_abs_diff(last, reference[ends]) <= TOL


@pytest.mark.skipif(not os.environ.get("PACKVIZ_SLOW_TESTS"), reason="compiles flex on CPU (10-40 s); PACKVIZ_SLOW_TESTS=1")
def test_compiled_flex_packed_logits_equal_per_sequence_logits(tiny, seqs, reference):
    tiny.set_attn_implementation("flex_attention")
    try:
        got = M.packed_forward(tiny, M.packed_batch(seqs), last_token_only=False)
    finally:
        tiny.set_attn_implementation("sdpa")
    assert M.max_abs_diff(got, reference) <= TOL


def test_padded_forward_equals_per_sequence_last_logits(tiny, seqs, reference):
    got = M.padded_forward(tiny, M.padded_batch(seqs))
    assert M.max_abs_diff(got, reference[np.cumsum(LENGTHS) - 1]) <= TOL


def test_llama32_style_tiny_model_packs_exactly_too():
    model = M.build_model("tiny-3.2", seed=2)
    seqs = _seqs([9, 4, 6], seed=3)
    assert M.contamination(model, seqs) <= TOL


def test_isolation_replacing_one_sequence_changes_only_that_sequence(tiny, seqs):
    victim = 2
    other = list(seqs)
    other[victim] = (seqs[victim] + 1 + torch.arange(len(seqs[victim]))) % 256  # every token different
    assert (other[victim] != seqs[victim]).all()
    a = M.packed_forward(tiny, M.packed_batch(seqs), last_token_only=False)
    b = M.packed_forward(tiny, M.packed_batch(other), last_token_only=False)
    cu = np.concatenate([[0], np.cumsum(LENGTHS)])
    own = torch.zeros(len(a), dtype=torch.bool)
    own[cu[victim]: cu[victim + 1]] = True
    assert M.max_abs_diff(a[~own], b[~own]) <= 1e-6  # every other sequence: unchanged
    assert M.max_abs_diff(a[own], b[own]) > TRAP  # its own logits did change


@pytest.mark.parametrize("trap", sorted(M.TRAPS))
def test_each_trap_contaminates(tiny, seqs, reference, trap):
    got = M.trap_forward(tiny, M.packed_batch(seqs), trap)
    assert M.max_abs_diff(got, reference) > TRAP
    # contamination flows forward only: the first sequence sees nothing before it
    assert M.max_abs_diff(got[: LENGTHS[0]], reference[: LENGTHS[0]]) <= TOL


def test_contamination_measures_the_correct_forward_and_a_trap(tiny, seqs):
    assert M.contamination(tiny, seqs) <= TOL
    assert M.contamination(tiny, seqs, "kv_cache_on") > TRAP
    with pytest.raises(ValueError, match="trap must be one of"):
        M.trap_forward(tiny, M.packed_batch(seqs), "no_such_trap")


def test_positions_not_reset_are_harmless_to_rope_when_the_mask_is_right(tiny, seqs, reference):
    # RoPE sees only position differences: what 'no_position_reset' breaks is the mask
    assert M.max_abs_diff(M.rope_offset_forward(tiny, M.packed_batch(seqs)), reference) <= TOL


def test_rope_offset_forward_at_large_offsets_fp32_and_bf16():
    seqs = _seqs([40, 24, 56], seed=4)
    batch = M.packed_batch(seqs)
    m32 = M.build_model("tiny", seed=0)
    ref32 = M.per_sequence_logits(m32, seqs)
    assert M.max_abs_diff(M.rope_offset_forward(m32, batch, start=8_000), ref32) <= TOL
    m16 = M.build_model("tiny", seed=0, dtype=torch.bfloat16)
    ref16 = M.per_sequence_logits(m16, seqs)
    noise = M.compare_logits(ref16, ref32).kl_mean  # what bf16 costs by itself
    for start in (8_000, 100_000):
        c = M.compare_logits(M.rope_offset_forward(m16, batch, start=start), ref16)
        assert c.kl_mean <= 10 * noise and c.top1_fraction >= 0.9  # bf16-sized rounding, not damage
    trap = M.compare_logits(M.trap_forward(m16, batch, "no_position_reset"), ref16)
    assert trap.kl_mean > 100 * noise
    with pytest.raises(ValueError, match="start"):
        M.rope_offset_forward(m32, batch, start=-1)


def test_replaced_changes_every_token_of_one_sequence_only():
    seqs = [[1, 2, 3], [4, 5], [255, 0, 7, 9]]
    out = M.replaced(seqs, 2, vocab=256)
    assert out[:2] == seqs[:2] and len(out[2]) == 4
    assert all(a != b and 0 <= a < 256 for a, b in zip(out[2], seqs[2]))
    long = M.replaced([list(range(5)) * 2], 0, vocab=3)[0]  # longer than the vocabulary
    assert all(a != b and 0 <= a < 3 for a, b in zip(long, list(range(5)) * 2))
    assert seqs == [[1, 2, 3], [4, 5], [255, 0, 7, 9]]  # the input is not modified
    with pytest.raises(ValueError, match="victim=3"):
        M.replaced(seqs, 3, vocab=256)
    with pytest.raises(ValueError, match="vocab"):
        M.replaced(seqs, 0, vocab=1)


def test_top1_agreement_and_kl_divergence():
    ref = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    got = torch.tensor([[1.0, 0.5, 0.0], [1.0, 0.0, 0.0]])
    assert M.top1_agreement(got, ref).tolist() == [True, False]
    kl = M.kl_divergence(ref, got)
    expect = torch.nn.functional.kl_div(torch.log_softmax(got.double(), -1), torch.log_softmax(ref.double(), -1),
                                        log_target=True, reduction="none").sum(-1)
    assert kl.dtype == torch.float64 and torch.allclose(kl, expect) and (kl > 0).all()
    assert M.kl_divergence(ref, ref).tolist() == [0.0, 0.0]
    assert M.top1_margin(ref).tolist() == [2.0, 1.0] and M.top1_margin(got).tolist() == [0.5, 1.0]
    with pytest.raises(ValueError, match="V >= 2"):
        M.top1_margin(ref[:, :1])
    assert M.kl_divergence(ref, ref + 3.0).max() < 1e-12  # a constant shift is the same distribution
    with pytest.raises(ValueError, match=r"\(T, V\)"):
        M.kl_divergence(ref, got[:1])
    with pytest.raises(ValueError, match=r"\(T, V\)"):
        M.top1_agreement(got[0], ref[0])


def test_per_sequence_comparison_of_the_correct_forward_and_a_trap(tiny, seqs, reference):
    b = M.packed_batch(seqs)
    good = M.per_sequence_comparison(M.packed_forward(tiny, b, last_token_only=False), reference, b["cu_seq_lens_q"])
    assert [c.positions for c in good] == list(LENGTHS)
    assert all(c.top1_agree == c.positions and c.kl_max < 1e-9 for c in good)
    bad = M.per_sequence_comparison(M.trap_forward(tiny, b, "stray_attention_mask"), reference, b["cu_seq_lens_q"])
    assert bad[0].top1_fraction == 1 and bad[0].kl_max < 1e-9  # nothing before the first sequence
    assert all(c.kl_mean > 1e-4 for c in bad[1:])  # every later one predicts from a different context
    assert sum(c.top1_agree for c in bad[1:]) < sum(LENGTHS[1:])
    assert good[0].text() == f"top-1 {LENGTHS[0]}/{LENGTHS[0]}, KL " + M.kl_text(good[0].kl_mean)
    table = M.comparison_table({"correct": good, "stray mask": bad}, "ABCDE").splitlines()
    assert len(table) == 3 and table[2].startswith("stray mask") and table[0].split() == list("ABCDE")
    with pytest.raises(ValueError, match="5 names"):
        M.comparison_table({"x": good[:2]}, "ABCDE")
    with pytest.raises(ValueError, match="equal shape"):
        M.per_sequence_comparison(reference[:3], reference, b["cu_seq_lens_q"])


def test_kl_text_is_stable_for_display():
    assert M.kl_text(0.0) == "0"
    assert M.kl_text(4e-12) == "< 1e-09"
    assert M.kl_text(0.013987) == "0.014" and M.kl_text(2.2e-7) == "2.2e-07"


def test_block_causal_mask_of_a_batch_is_the_layout_mask_in_additive_form():
    from packviz.layout import Layout

    b = M.packed_batch([[1, 2, 3], [4, 5]])
    additive = M.block_causal_mask(b, torch.bfloat16)
    assert additive.shape == (1, 1, 5, 5) and additive.dtype == torch.bfloat16
    layout = Layout.from_rows([[(0, 0, 3), (1, 3, 2)]], widths=[5])
    allowed = layout.block_causal_mask(0)
    assert (additive[0, 0] == 0).numpy().tolist() == allowed.tolist()
    assert (additive[0, 0][~torch.from_numpy(allowed)] == torch.finfo(torch.bfloat16).min).all()


def test_per_sequence_max_abs_diff_says_which_sequences_moved(tiny, seqs, reference):
    b = M.packed_batch(seqs)
    got = M.trap_forward(tiny, b, "kv_cache_on")
    per = M.per_sequence_max_abs_diff(got, reference, b["cu_seq_lens_q"])
    assert len(per) == len(LENGTHS)
    assert per[0] <= TOL and max(per) > TRAP  # the first sequence is clean, a later one is not
    assert max(per) == M.max_abs_diff(got, reference)
    assert M.per_sequence_max_abs_diff(reference, reference, [0, 7, 8]) == [0.0, 0.0]
    with pytest.raises(ValueError, match="equal shape"):
        M.per_sequence_max_abs_diff(got[:3], reference, b["cu_seq_lens_q"])


def test_diff_text_is_stable_for_display():
    assert M.diff_text(0.0) == "0 (bit-identical)"
    assert M.diff_text(2.1e-7) == M.diff_text(9e-6) == "< 1e-05 (rounding)"
    assert M.diff_text(0.62345) == "0.623"
    assert M.diff_text(0.05, tol=0.1) == "< 1e-01 (rounding)"


# ---------------------------------------------------------------------- the padded baselines
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_padded_without_a_mask_is_exact_for_every_real_token(tiny, seqs, attn):
    """Right padding + no mask (causal, native GQA) gives the masked run's logits on every real token."""
    tiny.set_attn_implementation(attn)
    try:
        batch = M.padded_batch(seqs)
        causal = M.padded_forward(tiny, batch, last_token_only=False, mask=False)
        masked = M.padded_forward(tiny, batch, last_token_only=False, mask=True)
    finally:
        tiny.set_attn_implementation("sdpa")
    real = batch["attention_mask"].bool()
    assert real.sum() == sum(LENGTHS) and causal.shape == masked.shape
    assert M.max_abs_diff(causal[real], masked[real]) <= 1e-5
    # and both equal each sequence run alone (the last tokens)
    last = M.padded_forward(tiny, batch, mask=False)
    ref_last = torch.stack([r[-1] for r in torch.split(M.per_sequence_logits(tiny, seqs), list(LENGTHS))])
    assert M.max_abs_diff(last, ref_last) <= TOL


def test_left_padding_without_a_mask_is_not_exact(tiny, seqs):
    """The claim needs RIGHT padding: left pads come before the real tokens, and a causal query sees them."""
    batch = M.padded_batch(seqs)
    width = batch["input_ids"].shape[1]
    left = {"input_ids": torch.stack([torch.cat([torch.zeros(width - len(s), dtype=torch.int64), s]) for s in seqs])}
    out = M.padded_forward(tiny, {**left, "attention_mask": torch.ones_like(left["input_ids"])}, mask=False)
    ref = torch.stack([r[-1] for r in torch.split(M.per_sequence_logits(tiny, seqs), list(LENGTHS))])
    assert M.max_abs_diff(out, ref) > TRAP


def test_packed_rows_in_one_forward_keep_every_sequence_isolated(tiny, seqs):
    rows = [seqs[:2], seqs[2:3], seqs[3:]]  # 7+1, 12, 5+3 tokens in rows of C = 16, each topped up by a filler
    batch = M.packed_rows_batch(rows, pad_to=16)
    assert batch["input_ids"].shape == (3, 16)
    assert batch["last_index"].tolist() == [[0, 6], [0, 7], [1, 11], [2, 4], [2, 7]]
    assert batch["position_ids"][0].tolist() == [0, 1, 2, 3, 4, 5, 6, 0] + list(range(8))
    got = M.rows_forward(tiny, batch)
    ref = torch.stack([r[-1] for r in torch.split(M.per_sequence_logits(tiny, seqs), list(LENGTHS))])
    assert got.shape == (len(seqs), tiny.config.vocab_size)
    assert M.max_abs_diff(got, ref) <= TOL
    with pytest.raises(ValueError, match="more than pad_to=8"):
        M.packed_rows_batch([seqs[2:3]], pad_to=8)
