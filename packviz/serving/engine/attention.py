"""Attention over a KV cache read in place: one call per layer serves a whole mixed step.

torch only. Every path computes, for each sequence b of the step, its queries
``q[cu_seqlens_q[b] : cu_seqlens_q[b+1]]`` against its own keys
``k_cache[k_starts[b] : k_starts[b] + seqused_k[b]]`` with a **bottom-right** causal mask:
the step's queries are the *last* ``n_q`` positions of the ``n_k`` keys (a decode reads its
whole context, a chunk its cached prefix and itself)::

    a chunk of 3 after 2 cached tokens        keys:  0 1 2 3 4
        query at position 2                          ■ ■ ■ ⬚ ⬚
        query at position 3                          ■ ■ ■ ■ ⬚
        query at position 4                          ■ ■ ■ ■ ■

K/V heads are not repeated for grouped-query attention (Hkv < H): the kernels take them as they are.

Paths, each named in every result:

* ``reference`` -- per-sequence SDPA over a view of the request's cache region, mask from
  ``causal_lower_right``; exact, any device and dtype, a Python loop over sequences (CPU, tests).
* ``varlen-attn`` -- ``torch.nn.attention.varlen.varlen_attn`` (torch >= 2.12, the public API):
  ``cu_seq_k`` holds each region's start, ``seqused_k`` how many of its keys to read,
  ``enable_gqa`` takes Hkv < H as it is, ``window_size=(-1, 0)`` is causal. CUDA sm80+, fp16/bf16.
* ``flash-seqused-k`` -- ``torch.ops.aten._flash_attention_forward``, the FlashAttention-2
  kernel under both: the same arguments, and the op exists from torch 2.4 through 2.13, so it
  runs on the lent GPU's torch 2.11 (whose ``varlen_attn`` has no ``seqused_k``).

A probe at start-up runs each GPU path on a small mixed step against ``reference`` and takes
the first that agrees (``varlen-attn``, then ``flash-seqused-k``).

.. warning:: Pitfalls

   * SDPA's ``is_causal=True`` is *top-left* aligned when query and key lengths differ: a
     decode would see only key 0. Use a bottom-right mask (``causal_lower_right``).
   * ``torch.nn.attention.varlen.varlen_attn`` with a paged ``block_table`` and split-KV
     returns wrong rows (pytorch#194167); this engine uses no block table.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PATHS = ("reference", "varlen-attn", "flash-seqused-k")


def reference(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, step) -> torch.Tensor:
    """(T, H, D) queries against per-sequence regions of the (S, Hkv, D) caches -> (T, H, D); exact."""
    from torch.nn.attention.bias import causal_lower_right

    out = torch.empty_like(q)
    for b, (q0, q1, k0, used) in enumerate(zip(step.host.cu_seqlens_q[:-1], step.host.cu_seqlens_q[1:],
                                               step.host.k_starts, step.host.seqused_k)):
        n_q = q1 - q0
        qb = q[q0:q1].transpose(0, 1)[None]                           # (1, H, n_q, D)
        kb = k_cache[k0:k0 + used].transpose(0, 1)[None]              # (1, Hkv, n_k, D): a view of the region
        vb = v_cache[k0:k0 + used].transpose(0, 1)[None]
        mask = None if n_q == 1 else causal_lower_right(n_q, used)
        o = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask, enable_gqa=True)
        out[q0:q1] = o[0].transpose(0, 1)
    return out


def flash_seqused_k(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, step) -> torch.Tensor:
    """The same through FlashAttention-2 (``aten._flash_attention_forward``): one launch, K/V read in place."""
    out = torch.ops.aten._flash_attention_forward(
        q, k_cache, v_cache, step.cu_seqlens_q, step.k_starts, step.max_seqlen_q, step.max_seqlen_k,
        0.0, True, False, seqused_k=step.seqused_k)
    return out[0]


def varlen_attn(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, step) -> torch.Tensor:
    """The same through the public ``varlen_attn`` (torch >= 2.12: ``seqused_k``, ``enable_gqa``)."""
    from torch.nn.attention.varlen import varlen_attn as kernel

    return kernel(q, k_cache, v_cache, step.cu_seqlens_q, step.k_starts, step.max_seqlen_q, step.max_seqlen_k,
                  window_size=(-1, 0), enable_gqa=True, seqused_k=step.seqused_k)


FUNCTIONS = {"reference": reference, "varlen-attn": varlen_attn, "flash-seqused-k": flash_seqused_k}
PROBE_TOLERANCE = 2e-2
"""Largest relative difference from the reference a GPU path may show on the probe (bf16 rounding)."""


def gpu_candidates() -> list[str]:
    """The GPU paths this torch has, in order of preference."""
    import inspect

    out = []
    try:
        from torch.nn.attention.varlen import varlen_attn as kernel

        if {"seqused_k", "enable_gqa"} <= set(inspect.signature(kernel).parameters):
            out.append("varlen-attn")
    except ImportError:
        pass
    if hasattr(torch.ops.aten, "_flash_attention_forward"):
        out.append("flash-seqused-k")
    return out


def choose_path(device, dtype, probe) -> tuple[str, str]:
    """``(path, why)``: the first GPU path whose ``probe(path)`` (relative difference from ``reference``
    on a small mixed step) is within :data:`PROBE_TOLERANCE`; ``reference`` when none is, or off a GPU."""
    device = torch.device(device)
    if device.type != "cuda":
        return "reference", f"{device.type}: no FlashAttention kernel on this device"
    if dtype not in (torch.float16, torch.bfloat16):
        return "reference", f"{dtype}: FlashAttention-2 takes fp16 or bf16 only"
    if torch.cuda.get_device_capability(device) < (8, 0):
        return "reference", "FlashAttention-2 needs compute capability 8.0 (Ampere) or newer"
    failed = []
    for path in gpu_candidates():
        try:
            err = probe(path)
        except Exception as e:  # noqa: BLE001 -- any failure of the probe means: do not use the path
            failed.append(f"{path} failed its probe ({type(e).__name__}: {str(e).splitlines()[0][:160]})")
            continue
        if err <= PROBE_TOLERANCE:
            return path, "; ".join(failed + [f"{path} matched the reference within {err:.2g} (relative) on the probe"])
        failed.append(f"{path} differs from the reference by {err:.3g} (relative) on the probe")
    return "reference", "; ".join(failed) or "no FlashAttention path in this torch"
