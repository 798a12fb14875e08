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
* ``flash-seqused-k`` -- ``torch.ops.aten._flash_attention_forward``, the FlashAttention-2
  kernel inside torch (CUDA sm80+, fp16/bf16): one launch for all sequences; ``cu_seqlens_k``
  holds each region's start and ``seqused_k`` how many of its keys to read. The same op exists
  from torch 2.4 through 2.13, so it runs on the lent GPU's torch 2.11 (whose ``varlen_attn``
  has no ``seqused_k``).

.. warning:: Pitfalls

   * SDPA's ``is_causal=True`` is *top-left* aligned when query and key lengths differ: a
     decode would see only key 0. Use a bottom-right mask (``causal_lower_right``).
   * ``torch.nn.attention.varlen.varlen_attn`` with a paged ``block_table`` and split-KV
     returns wrong rows (pytorch#194167); this engine uses no block table.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PATHS = ("reference", "flash-seqused-k")


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


FUNCTIONS = {"reference": reference, "flash-seqused-k": flash_seqused_k}


def choose_path(device, dtype, probe) -> tuple[str, str]:
    """``(path, why)``: ``flash-seqused-k`` on a CUDA device in fp16/bf16 when ``probe(path)`` (a
    comparison against ``reference`` on a small mixed step) passes; ``reference`` otherwise."""
    device = torch.device(device)
    if device.type != "cuda":
        return "reference", f"{device.type}: no FlashAttention kernel on this device"
    if dtype not in (torch.float16, torch.bfloat16):
        return "reference", f"{dtype}: FlashAttention-2 takes fp16 or bf16 only"
    if torch.cuda.get_device_capability(device) < (8, 0):
        return "reference", "FlashAttention-2 needs compute capability 8.0 (Ampere) or newer"
    try:
        err = probe("flash-seqused-k")
    except Exception as e:  # noqa: BLE001 -- any failure of the probe means: do not use the path
        return "reference", f"flash-seqused-k failed its probe: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
    if err > 2e-2:
        return "reference", f"flash-seqused-k differs from the reference by {err:.3g} (relative) on the probe"
    return "flash-seqused-k", f"probe matched the reference within {err:.2g} (relative)"
