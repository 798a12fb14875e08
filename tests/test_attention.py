"""Attention backends: varlen_attn signature detection and plumbing (on CPU, with stand-in kernels), availability."""

import importlib.util

import pytest
import torch

from packviz import attention as A
from packviz import model as M


pytestmark = pytest.mark.usefixtures("one_torch_thread")

# stand-ins with the three signatures varlen_attn has had
def _v210(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, is_causal=False, return_aux=None):
    _v210.calls.append({"is_causal": is_causal, "kv_heads": key.shape[1]})
    return A.varlen_reference(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k,
                              window_size=(-1, 0) if is_causal else (-1, -1))


def _v211(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
          window_size=(-1, -1)):
    _v211.calls.append({"window_size": window_size, "scale": scale, "kv_heads": key.shape[1]})
    return A.varlen_reference(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, scale=scale,
                              window_size=window_size)


def _v212(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
          window_size=(-1, -1), enable_gqa=False):
    _v212.calls.append({"window_size": window_size, "enable_gqa": enable_gqa, "kv_heads": key.shape[1]})
    return A.varlen_reference(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, scale=scale,
                              window_size=window_size, enable_gqa=enable_gqa)


@pytest.fixture(autouse=True)
def _reset_calls():
    for f in (_v210, _v211, _v212):
        f.calls = []


def test_signature_detection():
    assert A.varlen_signature(_v210) == {"causal": "is_causal", "enable_gqa": False, "scale": False}
    assert A.varlen_signature(_v211) == {"causal": "window_size", "enable_gqa": False, "scale": True}
    assert A.varlen_signature(_v212) == {"causal": "window_size", "enable_gqa": True, "scale": True}
    with pytest.raises(ValueError, match="neither"):
        A.varlen_signature(lambda q, k, v, a, b, c, d: None)


@pytest.mark.skipif(importlib.util.find_spec("torch.nn.attention.varlen") is None, reason="torch < 2.10")
def test_the_installed_varlen_attn_signature_is_understood():
    from torch.nn.attention.varlen import varlen_attn

    sig = A.varlen_signature(varlen_attn)
    assert sig["causal"] in ("window_size", "is_causal")


def _qkv(T=9, H=4, Hkv=2, D=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(T, H, D, generator=g), torch.randn(T, Hkv, D, generator=g),
            torch.randn(T, Hkv, D, generator=g))


@pytest.mark.parametrize("kernel", [_v210, _v211, _v212])
def test_call_varlen_is_causal_and_handles_gqa_for_every_signature(kernel):
    q, k, v = _qkv()
    cu = torch.tensor([0, 4, 5, 9], dtype=torch.int32)
    out = A.call_varlen(kernel, q, k, v, cu, cu, 4, 4, scale=8 ** -0.5)
    ref = A.varlen_reference(q, k, v, cu, cu, 4, 4, window_size=(-1, 0), enable_gqa=True)
    assert torch.allclose(out, ref, atol=1e-6)
    call = kernel.calls[-1]
    if kernel is _v210:
        assert call == {"is_causal": True, "kv_heads": 4}  # no enable_gqa: K/V repeated to 4 heads
    elif kernel is _v211:
        assert call["window_size"] == (-1, 0) and call["kv_heads"] == 4
    else:
        assert call["window_size"] == (-1, 0) and call["enable_gqa"] is True and call["kv_heads"] == 2


def test_call_varlen_refuses_a_scale_it_cannot_pass():
    q, k, v = _qkv()
    cu = torch.tensor([0, 9], dtype=torch.int32)
    with pytest.raises(ValueError, match="scale"):
        A.call_varlen(_v210, q, k, v, cu, cu, 9, 9, scale=0.5)


def test_varlen_reference_keeps_segments_apart():
    q, k, v = _qkv()
    cu = torch.tensor([0, 4, 9], dtype=torch.int32)
    out = A.varlen_reference(q, k, v, cu, cu, 5, 5, window_size=(-1, 0), enable_gqa=True)
    alone = A.varlen_reference(q[4:], k[4:], v[4:], torch.tensor([0, 5], dtype=torch.int32),
                               torch.tensor([0, 5], dtype=torch.int32), 5, 5, window_size=(-1, 0), enable_gqa=True)
    assert torch.allclose(out[4:], alone, atol=1e-6)


def test_varlen_loop_equals_sdpa_with_the_dense_block_mask():
    q, k, v = _qkv(T=12)
    cu = torch.tensor([0, 4, 7, 12], dtype=torch.int32)
    loop = A.varlen_reference(q, k, v, cu, cu, 5, 5, window_size=(-1, 0), enable_gqa=True)
    dense = A.dense_block_attention(q, k, v, cu)
    assert dense.shape == q.shape and torch.allclose(loop, dense, atol=1e-6)
    plain = A.dense_block_attention(q, k, v, [0, 12])  # one sequence: plain causal, differs after slot 4
    assert torch.allclose(plain[:4], dense[:4], atol=1e-6) and not torch.allclose(plain[4:], dense[4:], atol=1e-3)
    with pytest.raises(ValueError, match="cu_seqlens must rise from 0 to T=12"):
        A.dense_block_attention(q, k, v, [0, 4, 11])
    with pytest.raises(ValueError, match="not a multiple"):
        A.dense_block_attention(q, k[:, :1].expand(12, 3, 8), v[:, :1].expand(12, 3, 8), cu)


def test_cu_seqlens_from_positions():
    cu, mx = A.cu_seqlens_from_positions(torch.tensor([[0, 1, 2, 0, 0, 1]]))
    assert cu.tolist() == [0, 3, 4, 6] and cu.dtype == torch.int32 and mx == 3
    cu, mx = A.cu_seqlens_from_positions(torch.arange(5)[None])
    assert cu.tolist() == [0, 5] and mx == 5


@pytest.mark.parametrize("kernel", [_v210, _v212])
def test_registered_varlen_backend_runs_through_transformers(kernel):
    name = "packviz_varlen_test"
    A.register_varlen(name, kernel=kernel)
    model = M.build_model("tiny", seed=4)
    g = torch.Generator().manual_seed(5)
    seqs = [torch.randint(0, 256, (n,), generator=g) for n in (6, 2, 9)]
    ref = M.per_sequence_logits(model, seqs)
    model.set_attn_implementation(name)
    got = M.packed_forward(model, M.packed_batch(seqs), last_token_only=False)
    assert M.max_abs_diff(got, ref) <= 1e-4
    assert kernel.calls and all(c["kv_heads"] in (2, 4) for c in kernel.calls)
    # cu_seq_lens reached the kernel: one call per layer, none with a mask
    assert len(kernel.calls) == model.config.num_hidden_layers
    # a padding mask means the batch is not packed: refused, not silently ignored
    with pytest.raises(ValueError, match="attention_mask"):
        M.padded_forward(model, M.padded_batch(seqs))


def test_set_backend_switches_and_rejects_unknown_methods():
    model = M.build_model("tiny")
    assert A.set_backend(model, "dense").attn_implementation == "sdpa"
    assert A.set_backend(model, "varlen").attn_implementation == A.VARLEN_NAME
    assert model.config._attn_implementation == A.VARLEN_NAME
    with pytest.raises(ValueError, match="method must be one of 'padded', .*; got 'paged'"):
        A.set_backend(model, "paged")


def test_availability_reports_every_method_with_a_reason():
    rows = A.availability("cpu")
    assert [r["method"] for r in rows] == list(A.METHODS)
    by = {r["method"]: r for r in rows}
    assert all(r["reason"] for r in rows)
    assert by["padded"]["available"] and by["dense"]["available"] and by["padded-masked"]["available"]
    assert not by["varlen"]["available"] and "CPU" in by["varlen"]["reason"]
    stand_in = {r["method"]: r for r in A.availability("cpu", cpu_varlen_reference=True)}["varlen"]
    assert stand_in["available"] and "varlen_reference" in stand_in["reason"]
    assert not by["flash"]["available"]
    assert A.available_methods("cpu") == [r["method"] for r in rows if r["available"]]
    text = A.format_availability(rows)
    assert len(text.splitlines()) == len(rows)


def test_backend_table_is_consistent_with_the_flop_model():
    from packviz.flops import EXECUTIONS

    from packviz.flops import PRICING

    for b in A.BACKENDS.values():
        assert b.execution in EXECUTIONS and b.layout in A.LAYOUTS
        assert b.padding_mask == (b.method == "padded-masked")
        assert b.offline == (b.method == "padded-sorted")
        if b.method in PRICING:  # flops.compare prices each way the bench runs it
            assert PRICING[b.method][1] == b.execution
    # the baseline is the padded batch at its best: causal, no mask
    assert A.BACKENDS["padded"].execution == "causal" and not A.BACKENDS["padded"].padding_mask


def test_triton_build_problem_names_what_triton_needs_to_compile_flex(tmp_path):
    # triton builds a C launcher at run time: a C compiler and the Python headers (stand-ins here)
    nothing = dict(environ={}, which=lambda name: None, python_include=str(tmp_path))
    assert "C compiler" in A.triton_build_problem(**nothing)
    with_cc = dict(nothing, which=lambda name: "/usr/bin/gcc" if name == "gcc" else None)
    assert "Python.h" in A.triton_build_problem(**with_cc)
    elsewhere = tmp_path / "inc"
    elsewhere.mkdir()
    (elsewhere / "Python.h").write_text("")
    assert A.triton_build_problem(**dict(with_cc, environ={"CPATH": str(elsewhere)})) is None
    (tmp_path / "Python.h").write_text("")
    assert A.triton_build_problem(**with_cc) is None
    assert A.triton_build_problem(**dict(nothing, environ={"CC": "cc"}, python_include=str(tmp_path))) is None
    real = A.triton_build_problem()  # this machine's answer: either is fine, it must not raise
    assert real is None or isinstance(real, str)
