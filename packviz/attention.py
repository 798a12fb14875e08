"""Attention backends for padded and packed Llama forwards, and which of them run here.

One row per way of running the same requests (``bench`` times each; :mod:`packviz.flops`
prices each as it runs). A *forward* is one model call; in the serving-fair ``trace``
scenario every method's forward holds the same B consecutive requests::

    method         layout  attn_implementation  one forward                          priced as
    -------------  ------  -------------------  -----------------------------------  ------------
    padded         padded  "sdpa"               (B, W) rectangle, no mask: is_causal  causal
    padded-masked  padded  "sdpa"               (B, W) + 2-D padding mask             masked
    padded-sorted  sorted  "sdpa"               length-sorted (B, W), no mask         causal
    dense          packed  "sdpa"               (R, C) rows, block-diag from position_ids  masked
    flex           packed  "flex_attention"     (R, C) rows, BlockMask (compiled)     block-sparse
    varlen         stream  "packviz_varlen"     (1, T) stream, cu_seqlens, no rows    varlen
    flash          stream  "flash_attention_2"  (1, T) stream, cu_seqlens, no rows    varlen

* ``padded`` is the padded baseline **at its best**: right-padded rows, no attention mask.
  transformers then passes ``is_causal=True`` and ``enable_gqa`` to SDPA (no ``repeat_kv``),
  which picks its fastest kernel (flash / cuDNN). Exact for every real token: with right
  padding a real token's causal window holds only real tokens of its own row.
* ``padded-masked``: the same rows with the 2-D padding mask, as ``generate()`` and most user
  code run them: transformers builds a (B, 1, W, W) mask, turns ``is_causal`` off and expands
  K/V with ``repeat_kv``; SDPA cannot use its flash kernel. Reported beside ``padded``, never
  instead of it: it flatters packing.
* ``padded-sorted``: length-sorted batches of B (offline bucketing: a server cannot wait to
  sort requests that arrive over time).
* ``dense``: transformers builds the block-diagonal mask itself from ``position_ids`` that
  restart at 0, but **only** when ``attention_mask is None`` and there is no KV cache
  (``masking_utils._preprocess_mask_arguments`` / ``find_packed_sequence_indices``). SDPA then
  gets a dense boolean mask: every (query, key) pair of each C × C square is computed.
* ``flex``: the same mask as a ``BlockMask``; tiles that are fully masked are skipped. Compiled
  with ``torch.compile`` on first use (tens of seconds; on CPU the inductor C++ backend). Rows
  are filled to C with a filler sequence, so its shapes stay fixed.
* ``varlen``: ``torch.nn.attention.varlen.varlen_attn`` (torch >= 2.10) on the ``(T, H, D)``
  stream with ``cu_seqlens``, registered through transformers' ``AttentionInterface``. CUDA
  only (flash kernels, sm80+, fp16/bf16): no CPU kernel (a slow reference loop,
  :func:`varlen_reference`, stands in for tests). Its signature changed: torch 2.10 takes
  ``is_causal=True``; 2.11+ take ``window_size=(-1, 0)``; 2.12+ add ``enable_gqa`` (without it
  we repeat the K/V heads). :func:`varlen_signature` reads the installed one.
* ``flash``: flash-attn's ``flash_attn_varlen_func`` through transformers'
  ``"flash_attention_2"``, which goes varlen when given ``cu_seq_lens_q/k`` and
  ``max_length_q/k``. Only when the ``flash_attn`` package imports (not on the lent GPU image).

:func:`availability` says which run here and why the others do not.
"""

from __future__ import annotations

import importlib.util
import inspect
from dataclasses import dataclass

from .checks import one_of

VARLEN_NAME = "packviz_varlen"
"""The name under which :func:`register_varlen` registers the varlen_attn backend."""


@dataclass(frozen=True)
class Backend:
    """One way to run a batch: its layout, transformers attention, mask and FLOP pricing."""

    method: str
    layout: str  # "padded" | "sorted" | "packed" | "stream" (see packviz.bench.scenarios)
    attn_implementation: str
    execution: str  # packviz.flops execution model: how the FLOP model prices it
    padding_mask: bool  # padded rows passed with their 2-D attention_mask
    offline: bool  # needs the whole sample up front (sorting): not something a server can do
    description: str


LAYOUTS = ("padded", "sorted", "packed", "stream")

BACKENDS: dict[str, Backend] = {
    "padded": Backend("padded", "padded", "sdpa", "causal", False, False,
                      "right-padded batch, no mask: SDPA is_causal with native GQA (the baseline at its best)"),
    "padded-masked": Backend("padded-masked", "padded", "sdpa", "masked", True, False,
                             "right-padded batch with its 2-D padding mask, as generate() runs it"),
    "padded-sorted": Backend("padded-sorted", "sorted", "sdpa", "causal", False, True,
                             "length-sorted batches, no mask (offline bucketing)"),
    "dense": Backend("dense", "packed", "sdpa", "masked", False, False,
                     "rows of C, SDPA with the dense block-diagonal mask transformers builds from position_ids"),
    "flex": Backend("flex", "packed", "flex_attention", "block-sparse", False, False,
                    "rows of C, FlexAttention with a block-sparse BlockMask (compiled)"),
    "varlen": Backend("varlen", "stream", VARLEN_NAME, "varlen", False, False,
                      "one 1-D stream, torch.nn.attention.varlen.varlen_attn with cu_seqlens"),
    "flash": Backend("flash", "stream", "flash_attention_2", "varlen", False, False,
                     "one 1-D stream, flash-attn flash_attn_varlen_func with cu_seqlens"),
}
METHODS = tuple(BACKENDS)
COMPILED = ("flex",)
"""Methods whose first use compiles kernels: a run times them last, after every other method."""


def get_backend(method: str) -> Backend:
    """The :class:`Backend` of a method of :data:`METHODS`, else ``ValueError`` listing them."""
    return BACKENDS[one_of("method", method, METHODS)]


# ---------------------------------------------------------------------- varlen_attn
def varlen_signature(fn=None) -> dict:
    """How the installed ``varlen_attn`` (or ``fn``) asks for causality and GQA.

    Returns ``{"causal": "window_size" | "is_causal", "enable_gqa": bool, "scale": bool}``; raises
    ``ValueError`` if neither causal argument exists (an API this code does not know).
    """
    if fn is None:
        from torch.nn.attention.varlen import varlen_attn as fn
    params = inspect.signature(fn).parameters
    if "window_size" in params:
        causal = "window_size"  # torch >= 2.11: (-1, 0) is causal
    elif "is_causal" in params:
        causal = "is_causal"  # torch 2.10
    else:
        raise ValueError(f"varlen_attn{inspect.signature(fn)} has neither window_size nor is_causal")
    return {"causal": causal, "enable_gqa": "enable_gqa" in params, "scale": "scale" in params}


def call_varlen(kernel, q, k, v, cu_q, cu_k, max_q: int, max_k: int, scale=None, signature: dict | None = None):
    """Causal ``kernel(q, k, v, cu_q, cu_k, max_q, max_k, ...)`` on ``(T, H, D)`` tensors, any signature.

    K/V with fewer heads than Q (GQA) are passed with ``enable_gqa=True`` when the kernel
    takes it, else repeated to the query heads first.
    """
    sig = signature or varlen_signature(kernel)
    kw = {}
    if scale is not None:
        if sig.get("scale", True):
            kw["scale"] = scale
        elif abs(scale - q.shape[-1] ** -0.5) > 1e-6 * scale:
            raise ValueError(f"this varlen_attn takes no scale and uses 1/sqrt(head_dim), not {scale}")
    if sig["causal"] == "window_size":
        kw["window_size"] = (-1, 0)
    else:
        kw["is_causal"] = True
    if k.shape[1] != q.shape[1]:
        if sig["enable_gqa"]:
            kw["enable_gqa"] = True
        else:
            rep = q.shape[1] // k.shape[1]
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
    return kernel(q, k, v, cu_q, cu_k, int(max_q), int(max_k), **kw)


def varlen_reference(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, scale=None,
                     window_size=(-1, -1), enable_gqa=False):
    """A slow pure-torch stand-in with ``varlen_attn``'s (torch >= 2.12) signature: runs anywhere.

    Each segment ``cu[i]:cu[i+1]`` attends only to itself, via SDPA. For tests of the
    plumbing on CPU, where the real kernel does not exist.
    """
    import torch
    import torch.nn.functional as F

    causal = tuple(window_size) == (-1, 0)
    if key.shape[1] != query.shape[1] and not enable_gqa:
        raise ValueError("query and key/value heads differ: pass enable_gqa=True")
    out = torch.empty_like(query)
    bounds = cu_seq_q.tolist()
    for a, b in zip(bounds[:-1], bounds[1:]):
        q = query[a:b].transpose(0, 1)
        k = key[a:b].transpose(0, 1)
        v = value[a:b].transpose(0, 1)
        if k.shape[0] != q.shape[0]:
            k = k.repeat_interleave(q.shape[0] // k.shape[0], dim=0)
            v = v.repeat_interleave(q.shape[0] // v.shape[0], dim=0)
        out[a:b] = F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale).transpose(0, 1)
    return out


def dense_block_attention(query, key, value, cu_seqlens, *, scale=None):
    """The same attention as a causal :func:`varlen_reference`, as a dense kernel computes it.

    One SDPA call over the whole stream with the (T, T) block-diagonal causal mask of
    ``cu_seqlens`` (what the ``dense`` method hands SDPA): every (query, key) pair of the
    T × T square is scored, the masked ones are thrown away. ``query`` (T, H, D), ``key`` and
    ``value`` (T, H_kv, D) with H a multiple of H_kv (repeated for GQA); ``cu_seqlens`` (N + 1,)
    int. Returns (T, H, D).
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    from .layout import block_causal_mask, seq_idx_from_lengths

    cu = np.asarray(cu_seqlens.tolist() if hasattr(cu_seqlens, "tolist") else cu_seqlens, dtype=np.int64)
    if cu.ndim != 1 or cu.size < 2 or cu[0] != 0 or cu[-1] != query.shape[0] or np.any(np.diff(cu) < 1):
        raise ValueError(f"cu_seqlens must rise from 0 to T={query.shape[0]} in steps >= 1, got {cu.tolist()}")
    if query.shape[1] % key.shape[1]:
        raise ValueError(f"{query.shape[1]} query heads are not a multiple of {key.shape[1]} key/value heads")
    mask = torch.from_numpy(block_causal_mask(seq_idx_from_lengths(np.diff(cu)))).to(query.device)
    rep = query.shape[1] // key.shape[1]
    q, k, v = (x.transpose(0, 1) for x in (query, key.repeat_interleave(rep, 1), value.repeat_interleave(rep, 1)))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale).transpose(0, 1)


def cu_seqlens_from_positions(position_ids):
    """``(cu_seqlens int32, max_seqlen)`` of one row of ``position_ids``: a new sequence wherever
    the position does not go up by exactly 1 (the rule transformers uses)."""
    import torch
    
    if not isinstance(position_ids, torch.Tensor) or position_ids.dim() not in (1, 2) or position_ids.numel() == 0 \
            or position_ids.dtype.is_floating_point:
        raise ValueError(f"position_ids must be a non-empty (T,) or (1, T) integer tensor, got {position_ids!r:.80}")
    import torch

    p = position_ids.reshape(-1) if position_ids.dim() == 1 else position_ids[0]
    breaks = torch.nonzero(torch.diff(p) != 1).flatten() + 1
    ends = torch.tensor([p.numel()], device=p.device)
    cu = torch.cat([torch.zeros_like(ends), breaks, ends]).to(torch.int32)
    return cu, int((cu[1:] - cu[:-1]).max())


def make_varlen_attention(kernel=None):
    """A transformers attention function running ``kernel`` (default: torch's ``varlen_attn``).

    transformers calls it per layer as ``fn(module, query, key, value, attention_mask,
    scaling=..., dropout=..., **kwargs)`` with ``query`` of shape ``(1, H, T, D)``; the
    ``cu_seq_lens_q/k`` and ``max_length_q/k`` of the batch arrive in ``kwargs``. It
    returns ``((1, T, H, D), None)``. No attention mask is accepted: the boundaries are
    the mask.
    """
    state = {"kernel": kernel, "sig": None}

    def varlen_attention_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                                 cu_seq_lens_q=None, cu_seq_lens_k=None, max_length_q=None,
                                 max_length_k=None, **kwargs):
        if state["kernel"] is None:
            from torch.nn.attention.varlen import varlen_attn
            state["kernel"] = varlen_attn
        if state["sig"] is None:
            state["sig"] = varlen_signature(state["kernel"])
        if cu_seq_lens_q is None or max_length_q is None:
            # no boundaries given: derive them from position_ids (a sequence starts wherever
            # the position does not continue), as transformers' flash path does. Costs a sync.
            if kwargs.get("position_ids") is None:
                raise ValueError(f"{VARLEN_NAME} needs cu_seq_lens_q/k and max_length_q/k (or position_ids) "
                                 "in the forward kwargs (build the batch with packviz.model.packed_batch)")
            cu_seq_lens_q, max_length_q = cu_seqlens_from_positions(kwargs["position_ids"])
            cu_seq_lens_k, max_length_k = cu_seq_lens_q, max_length_q
        if attention_mask is not None:
            raise ValueError(f"{VARLEN_NAME} takes no attention_mask (a padding mask means the batch "
                             "is not packed); pass cu_seq_lens instead")
        if query.shape[0] != 1:
            raise ValueError(f"{VARLEN_NAME} expects one packed row (batch size 1), got {query.shape[0]}")
        if dropout:
            raise ValueError(f"{VARLEN_NAME} is inference-only (dropout must be 0)")
        cu_k = cu_seq_lens_k if cu_seq_lens_k is not None else cu_seq_lens_q
        max_k = max_length_k if max_length_k is not None else max_length_q
        q = query[0].transpose(0, 1).contiguous()  # (T, H, D)
        k = key[0].transpose(0, 1).contiguous()
        v = value[0].transpose(0, 1).contiguous()
        out = call_varlen(state["kernel"], q, k, v, cu_seq_lens_q, cu_k, max_length_q, max_k,
                          scale=scaling, signature=state["sig"])
        return out.unsqueeze(0), None

    return varlen_attention_forward


def register_varlen(name: str = VARLEN_NAME, kernel=None) -> str:
    """Register the varlen backend with transformers under ``name`` and return the name.

    Registers the attention function (``AttentionInterface``) and, as its mask function,
    transformers' flash-attention one (returns ``None`` unless a real padding mask is given),
    so no dense mask is ever built. Re-registering replaces the previous function.
    """
    from transformers import AttentionInterface

    AttentionInterface.register(name, make_varlen_attention(kernel))
    try:
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, flash_attention_mask

        ALL_MASK_ATTENTION_FUNCTIONS.register(name, flash_attention_mask)
    except ImportError:  # older transformers: mask creation already skips unknown names
        pass
    return name


def set_backend(model, method: str, varlen_kernel=None) -> Backend:
    """Switch ``model`` to ``method``'s attention (registering the varlen one if needed).

    ``varlen_kernel``: what the varlen backend calls (default: torch's ``varlen_attn``; on CPU
    :func:`varlen_reference` stands in).
    """
    backend = get_backend(method)
    if backend.attn_implementation == VARLEN_NAME:
        register_varlen(kernel=varlen_kernel)
    if model.config._attn_implementation != backend.attn_implementation:
        model.set_attn_implementation(backend.attn_implementation)
    return backend


# ---------------------------------------------------------------------- availability
def triton_build_problem(environ=None, which=None, python_include=None) -> str | None:
    """Why Triton could not build its CUDA launcher here, or ``None`` if it can.

    Triton (3.x, including 3.6 of the lent GPU image) compiles a small C module at run time
    -- its CUDA driver utilities and each kernel's launcher (``triton/runtime/build.py``:
    ``$CC``, else ``gcc``, else ``clang``, with ``#include <Python.h>``) -- unless
    ``triton.knobs.build.impl`` is set. Without a C compiler or the Python headers, every
    compiled FlexAttention call fails, so ``flex`` is reported unavailable instead of
    spending the GPU run's time on a compile that cannot finish. ``environ`` / ``which`` /
    ``python_include``: stand-ins for ``os.environ`` / ``shutil.which`` / the headers'
    directory (tests).
    """
    import os
    import shutil
    import sysconfig

    environ = os.environ if environ is None else environ
    which = shutil.which if which is None else which
    try:
        from triton import knobs

        if getattr(getattr(knobs, "build", None), "impl", None):
            return None  # a custom build function replaces the C compiler
    except Exception:  # noqa: BLE001 -- older triton: no knobs; fall through to the checks
        pass
    cc = environ.get("CC") or which("gcc") or which("clang")
    if not cc:
        return "no C compiler (gcc/clang/$CC): triton compiles its CUDA launcher at run time"
    if python_include is None:
        scheme = sysconfig.get_default_scheme()
        python_include = sysconfig.get_paths(scheme="posix_prefix" if scheme == "posix_local" else scheme)["include"]
    # triton passes -I<python_include>; the compiler also searches $CPATH / $C_INCLUDE_PATH
    dirs = [python_include] + [d for var in ("CPATH", "C_INCLUDE_PATH")
                               for d in environ.get(var, "").split(os.pathsep) if d]
    if not any(os.path.isfile(os.path.join(d, "Python.h")) for d in dirs):
        return (f"no Python.h under {python_include} (python3-dev): triton compiles its CUDA launcher "
                "against the Python headers at run time")
    return None


def _device_type(device) -> str:
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device).type


def _flex_status(cuda: bool) -> tuple[bool, str]:
    import torch

    if importlib.util.find_spec("torch.nn.attention.flex_attention") is None:
        return False, f"torch {torch.__version__} has no torch.nn.attention.flex_attention (needs >= 2.5)"
    if cuda and importlib.util.find_spec("triton") is None:
        return False, "FlexAttention on CUDA compiles with triton, which is not installed"
    if cuda and (problem := triton_build_problem()) is not None:
        return False, f"FlexAttention cannot compile here: {problem}"
    if cuda:
        return True, "FlexAttention compiled with triton on first use (tens of seconds)"
    return True, ("FlexAttention compiled by inductor's C++ backend on first use "
                  "(10-40 s on CPU; slower than SDPA there: CPU numbers are not meaningful)")


def _varlen_status(cuda: bool, cap, cpu_reference: bool) -> tuple[bool, str]:
    import torch

    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        varlen_attn = None
    if varlen_attn is None:
        why = f"torch {torch.__version__} has no torch.nn.attention.varlen (needs >= 2.10)"
    else:
        try:
            sig = varlen_signature(varlen_attn)
        except ValueError as e:
            return False, str(e)
        why = (f"signature: {'window_size=(-1, 0)' if sig['causal'] == 'window_size' else 'is_causal=True'}"
               f", enable_gqa {'yes' if sig['enable_gqa'] else 'no (K/V heads repeated)'}")
    if not cuda:
        if cpu_reference:
            return True, ("CPU stand-in: varlen_reference, a pure-torch loop over cu_seqlens (tests the "
                          "plumbing; its timings mean nothing)")
        return False, f"varlen_attn has no CPU kernel: CUDA sm80+ only ({why})"
    if varlen_attn is None:
        return False, why
    if cap < (8, 0):
        return False, f"varlen_attn needs sm80+ (this GPU is sm{cap[0]}{cap[1]})"
    return True, f"torch {torch.__version__} varlen_attn on sm{cap[0]}{cap[1]} ({why})"


def _flash_status(cuda: bool, cap) -> tuple[bool, str]:
    if importlib.util.find_spec("flash_attn") is None:
        return False, "flash-attn is not installed (pip install flash-attn: compiles for a long time)"
    if not cuda or cap < (8, 0):
        return False, "flash-attn needs a CUDA GPU, Ampere (sm80) or newer"
    try:
        import flash_attn
    except Exception as e:  # noqa: BLE001 -- a broken build (ABI mismatch) fails at import
        return False, f"flash-attn is installed but does not import: {type(e).__name__}: {e}"
    return True, f"flash-attn {getattr(flash_attn, '__version__', '?')} via transformers flash_attention_2"


def availability(device=None, cpu_varlen_reference: bool = False) -> list[dict]:
    """Which methods run on ``device`` (default: CUDA if present, else CPU), and why not.

    Returns one dict per method in :data:`METHODS`: ``{"method", "attn_implementation",
    "available": bool, "reason": str}``. ``cpu_varlen_reference``: on CPU, count ``varlen``
    as available through :func:`varlen_reference` (tests of the plumbing only).
    """
    import torch

    dev = _device_type(device)
    cuda = dev == "cuda" and torch.cuda.is_available()
    cap = tuple(torch.cuda.get_device_capability()) if cuda else (0, 0)
    status = {
        "padded": (True, f"torch SDPA, no mask (is_causal) on {dev}"),
        "padded-masked": (True, f"torch SDPA with the (B, 1, W, W) padding mask on {dev}"),
        "padded-sorted": (True, f"torch SDPA, no mask (is_causal) on {dev}"),
        "dense": (True, f"torch SDPA with a dense block-diagonal bool mask on {dev}"),
        "flex": _flex_status(cuda),
        "varlen": _varlen_status(cuda, cap, cpu_varlen_reference),
        "flash": _flash_status(cuda, cap),
    }
    return [{"method": m, "attn_implementation": BACKENDS[m].attn_implementation,
             "available": bool(status[m][0]), "reason": status[m][1]} for m in METHODS]


def available_methods(device=None, cpu_varlen_reference: bool = False) -> list[str]:
    """The methods of :func:`availability` that run on ``device``, in :data:`METHODS` order."""
    return [row["method"] for row in availability(device, cpu_varlen_reference) if row["available"]]


def format_availability(rows: list[dict]) -> str:
    """The availability report as aligned text lines."""
    if not isinstance(rows, (list, tuple)) or not rows or not all(
            isinstance(r, dict) and {"method", "available", "reason"} <= set(r) for r in rows):
        raise ValueError(f"rows must be the non-empty list of dicts availability() returns, got {rows!r:.80}")
    width = max(len(r["method"]) for r in rows)
    return "\n".join(f"{r['method']:<{width}}  {'yes' if r['available'] else 'no ':<3}  {r['reason']}" for r in rows)
