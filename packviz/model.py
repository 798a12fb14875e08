"""A Llama-3 to run: built with random weights or loaded locally; its packed batch and isolated forward.

**The weights are random** (seeded normal, std 0.02) unless a local checkpoint is given.
That does not change speed: a forward's time is set by the shapes (the matmuls and
attention it runs, the bytes it moves), never by the values in the weights. What random
weights cannot show is model quality, which packing must not change at all -- and the
proofs here check exactly that: packed logits equal per-sequence logits.

From token-id sequences A (3 tokens) and B (2), the padding-free batch (the same keys and
values as ``DataCollatorWithFlattening(return_flash_attn_kwargs=True)``)::

    input_ids      [[a0 a1 a2 b0 b1]]       (1, T)
    position_ids   [[ 0  1  2  0  1]]       restart at 0 per sequence
    labels         [[-100 a1 a2 -100 b1]]   (for training; never passed to the forward here)
    cu_seq_lens_q = cu_seq_lens_k = [0, 3, 5]   int32
    max_length_q  = max_length_k  = 3           int

A packed forward is isolated by construction (:func:`packed_forward`, whose docstring lists
the pitfalls): ``use_cache=False``, no ``attention_mask``, ``position_ids`` restarting at 0,
and logits only where needed (each sequence's last token, serving-style prefill: full
logits for T tokens are (T, V) = T × 128,256 floats, 4 GB at 16k tokens in fp16).
:data:`TRAPS` are the ways to get this wrong; :func:`trap_forward` runs each one.

Shapes in the notation of :mod:`packviz.layout` (V: the vocabulary).
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass

import numpy as np

from .model_extra import require_model_extra

require_model_extra("packviz.model")  # before torch: without it, one line naming packviz[model]
import torch

from .checks import (flag, instance_of, int_array, int_in_range, is_integer, items, mapping, nonnegative_int, one_of, positive_float,
                     positive_int, real_number, show)
from .layout import as_layout, block_causal_mask as _block_causal_mask_np, seq_idx_from_lengths
from .shapes import get_shape

RANDOM_WEIGHTS_NOTE = (
    "Weights are random (seeded normal, std 0.02), not trained. Speed does not depend on weight "
    "values: the same shapes run the same kernels over the same FLOPs and bytes. (Token ids are "
    "random too: all-zero inputs would make some matmuls measurably faster.)"
)


def llama_config(name_or_shape="tiny", **overrides):
    """A transformers ``LlamaConfig`` with Llama-3 values (RoPE theta 500k, GQA, 3.1/3.2 scaling, ties).

    ``overrides`` are LlamaConfig keyword arguments (e.g. ``num_hidden_layers=2``).
    """
    from transformers import LlamaConfig

    shape = get_shape(name_or_shape)
    kw = shape.config_kwargs()
    if shape.vocab == 128256:  # the real Llama-3 tokenizer's special tokens
        kw.update(bos_token_id=128000, eos_token_id=128001)
    kw.update(name_or_path=shape.name)        # so that results name the shape (shape_from_config reads it)
    kw.update(overrides)
    return LlamaConfig(**kw)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device) -> torch.dtype:
    """bf16 on a GPU, fp32 on CPU (fp32 keeps the CPU proofs exact to ~1e-6)."""
    return torch.bfloat16 if check_device(device).type == "cuda" else torch.float32


def check_device(device) -> torch.device:
    """``device`` (a name, index or ``torch.device``) as a ``torch.device``, else ``ValueError`` naming it."""
    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"unknown device {show(device)}; use e.g. cpu, cuda, cuda:0") from None


def resolve_device_dtype(device, dtype):
    """``(torch.device, torch.dtype)`` from names or objects; ``None`` picks the defaults.

    Unknown names and a CUDA device without CUDA raise ``ValueError`` naming the value.
    """
    if device is None:
        device = default_device()
    else:
        device = check_device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} asked for, but CUDA is not available here")
    if isinstance(dtype, str):
        name = dtype
        dtype = getattr(torch, name, None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"unknown dtype {name!r}; use e.g. bfloat16, float16, float32")
    return device, dtype if dtype is not None else default_dtype(device)


def _attn_impl(attn_implementation: str) -> str:
    from .attention import BACKENDS, VARLEN_NAME, register_varlen

    if attn_implementation in BACKENDS:  # a packviz method name
        attn_implementation = BACKENDS[attn_implementation].attn_implementation
    if attn_implementation == VARLEN_NAME:
        register_varlen()
    return attn_implementation


def build_model(name_or_shape="tiny", *, dtype=None, device=None, seed: int = 0,
                attn_implementation: str = "sdpa", **config_overrides):
    """A ``LlamaForCausalLM`` with random, seeded weights, in eval mode.

    Built directly on ``device`` (``with torch.device(device)``: an 8B model initialises on
    the GPU in seconds) with transformers' own init (normal, std 0.02; norms at 1). Not via
    meta tensors + ``to_empty``, which leaves the RoPE buffers uninitialised.
    ``dtype``: default bf16 on CUDA, fp32 on CPU. ``attn_implementation``: a transformers
    name or a method of :data:`packviz.attention.BACKENDS`.
    """
    from transformers import LlamaForCausalLM

    seed = nonnegative_int("seed", seed)
    device, dtype = resolve_device_dtype(device, dtype)
    cfg = llama_config(name_or_shape, **config_overrides)
    impl = _attn_impl(attn_implementation)
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM._from_config(cfg, dtype=dtype, attn_implementation=impl)
    return model.eval()


def load_checkpoint(path, *, dtype=None, device=None, attn_implementation: str = "sdpa"):
    """A ``LlamaForCausalLM`` from a local directory: safetensors only, no remote code, no hub.

    The directory must hold a ``config.json`` with ``model_type: "llama"`` and
    ``*.safetensors`` weights (``save_pretrained(..., safe_serialization=True)`` writes them).
    """
    from transformers import LlamaForCausalLM

    path = pathlib.Path(path)
    if not path.is_dir():
        raise ValueError(f"checkpoint directory not found: {path}")
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise ValueError(f"{path} has no config.json")
    model_type = json.loads(cfg_file.read_text()).get("model_type")
    if model_type != "llama":
        raise ValueError(f"{path}: model_type is {model_type!r}; packviz loads Llama checkpoints only")
    if not any(path.glob("*.safetensors")):
        raise ValueError(f"{path} has no *.safetensors files; packviz loads safetensors only (no pickle)")
    device, dtype = resolve_device_dtype(device, dtype)
    model = LlamaForCausalLM.from_pretrained(
        path, dtype=dtype, local_files_only=True, use_safetensors=True, trust_remote_code=False,
        attn_implementation=_attn_impl(attn_implementation),
    )
    return model.to(device).eval()


# ---------------------------------------------------------------------- checks
def check_model(model):
    """``model`` if it is a causal LM with ``.model`` and ``.lm_head`` (a ``LlamaForCausalLM``), else ``TypeError``."""
    if not (isinstance(model, torch.nn.Module) and hasattr(model, "model") and hasattr(model, "lm_head")):
        raise TypeError(f"model must be a LlamaForCausalLM (packviz.model.build_model gives one); "
                        f"got {type(model).__name__} {show(model)}")
    return model


def check_tensor(name: str, value, ndim: int | None = None) -> torch.Tensor:
    """``value`` if it is a ``torch.Tensor`` (of ``ndim`` dimensions, when given), else ``TypeError`` / ``ValueError``."""
    instance_of(name, value, torch.Tensor, "a torch.Tensor")
    if ndim is not None and value.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(value.shape)}")
    return value


def check_batch(batch, keys=("input_ids",), what: str = "a batch of packviz.model.packed_batch or padded_batch",
                name: str = "batch") -> dict:
    """``batch`` if it is a dict holding ``keys``, each a tensor, else ``TypeError`` / ``ValueError`` naming the key."""
    mapping(name, batch, keys, what)
    for k in keys:
        check_tensor(f"{name}[{k!r}]", batch[k])
    return batch


def _as_list(seq, name: str = "sequence") -> list[int]:
    """One sequence's token ids (a list, array or 1-D integer tensor) as a list of ints >= 0, shape (n,)."""
    if isinstance(seq, torch.Tensor):
        if seq.dtype.is_floating_point or seq.dtype.is_complex or seq.dtype == torch.bool or seq.dim() != 1:
            raise ValueError(f"{name} must be a 1-D tensor of integer token ids, got {seq.dtype} of shape {tuple(seq.shape)}")
        seq = seq.tolist()
    if hasattr(seq, "__len__") and not isinstance(seq, (str, bytes)) and len(seq) == 0:
        raise ValueError(f"{name} is empty: every sequence needs at least one token")
    return int_array(name, seq, minimum=0).tolist()


def _pad_id(pad_id) -> int:
    """``pad_id`` as a token id: an ``int`` from 0 to 2**63 - 1 (an int64 tensor holds it), else ``ValueError``."""
    pad_id = nonnegative_int("pad_id", pad_id)
    if pad_id >= 2**63:
        raise ValueError(f"pad_id is {pad_id}, beyond int64 token ids; use an id of the model's vocabulary")
    return pad_id


def _check_sequences(sequences) -> list[list[int]]:
    seqs = [_as_list(s, f"sequences[{i}]") for i, s in enumerate(items("sequences", sequences, "a list of token-id lists"))]
    if not seqs:
        raise ValueError("sequences is empty: need at least one sequence")
    return seqs


# ---------------------------------------------------------------------- batches


def packed_batch(sequences, *, pad_to: int | None = None, pad_id: int = 0, device=None) -> dict:
    """The padding-free batch of ``sequences`` (lists / arrays / 1-D tensors of token ids).

    Keys and values as ``DataCollatorWithFlattening(return_flash_attn_kwargs=True)``:
    ``input_ids``, ``labels`` (-100 on each sequence's first token), ``position_ids``
    (all int64, (1, T)), ``cu_seq_lens_q`` = ``cu_seq_lens_k`` (int32, (N + 1,)),
    ``max_length_q`` = ``max_length_k`` (int).

    ``pad_to``: append a filler segment of ``pad_id`` tokens (its own sequence, labels -100)
    so that T == pad_to -- one static shape for compiled kernels. The filler is the last
    segment; see :func:`last_token_index`.

    Pitfalls
    --------
    * ``position_ids`` must restart at 0 for every sequence: transformers finds the
      boundaries in them (``find_packed_sequence_indices``). ``0 .. T-1`` across the row
      gives one long sequence and a plain causal mask (``"no_position_reset"``).
    """
    device = None if device is None else check_device(device)
    seqs = _check_sequences(sequences)
    pad_id = _pad_id(pad_id)
    lengths = [len(s) for s in seqs]
    total = sum(lengths)
    fill = 0
    if pad_to is not None:
        if positive_int("pad_to", pad_to, maximum=2**31 - 1) < total:
            raise ValueError(f"pad_to={pad_to} is shorter than the {total} tokens of the sequences; "
                             f"use pad_to >= {total} or None")
        fill = pad_to - total
    ids, labels, pos = [], [], []
    for s in seqs:
        ids += s
        labels += [-100] + s[1:]
        pos += list(range(len(s)))
    cu = np.concatenate([[0], np.cumsum(lengths)])
    if fill:
        ids += [pad_id] * fill
        labels += [-100] * fill
        pos += list(range(fill))
        cu = np.concatenate([cu, [total + fill]])
        lengths = lengths + [fill]
    cu_t = torch.tensor(cu, dtype=torch.int32, device=device)
    return {
        "input_ids": torch.tensor([ids], dtype=torch.int64, device=device),
        "labels": torch.tensor([labels], dtype=torch.int64, device=device),
        "position_ids": torch.tensor([pos], dtype=torch.int64, device=device),
        "cu_seq_lens_q": cu_t,
        "cu_seq_lens_k": cu_t.clone(),
        "max_length_q": int(max(lengths)),
        "max_length_k": int(max(lengths)),
    }


def padded_batch(sequences, *, pad_id: int = 0, pad_to: int | None = None, device=None) -> dict:
    """A right-padded batch: ``input_ids`` and ``attention_mask`` (1 real, 0 pad), both (B, L) int64.

    L is the longest sequence (or ``pad_to``). Right padding keeps every real token at its
    own position 0..n-1 and causal attention never reaches the pads that follow it.
    """
    device = None if device is None else check_device(device)
    seqs = _check_sequences(sequences)
    pad_id = _pad_id(pad_id)
    width = max(len(s) for s in seqs)
    if pad_to is not None:
        if positive_int("pad_to", pad_to, maximum=2**31 - 1) < width:
            raise ValueError(f"pad_to={pad_to} is shorter than the longest sequence ({width}); "
                             f"use pad_to >= {width} or None")
        width = pad_to
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.int64)
    mask = torch.zeros((len(seqs), width), dtype=torch.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.int64)
        mask[i, : len(s)] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


def batch_from_layout(layout, row, token_ids, *, pad_to: int | None = None, device=None) -> dict:
    """The batch for one forward of a :class:`~packviz.layout.Layout`.

    ``token_ids[i]`` are the tokens of sequence ``i`` (the layout's ``seg_seq``). For a
    packed layout ``row`` is a row index and the result is :func:`packed_batch` of the row's
    segments in slot order; for a padded one ``row`` may also be a range of rows (one of
    ``layout.batches()``) and the result is :func:`padded_batch`. A segment shorter than its
    sequence (``overlong="truncate"``) takes the sequence's first tokens. Split sequences
    (several segments per sequence) are not supported: their chunks are separate sequences.
    A sequence with fewer tokens than its segment is refused, naming it (never a shorter batch).
    """
    layout = as_layout("layout", layout)
    if np.unique(layout.seg_seq).size != layout.num_segments:
        raise ValueError("the layout splits sequences into several segments; pass each chunk as its own sequence")
    rows = list(row) if isinstance(row, range) else [row]
    seqs = []
    for r in rows:
        for s, _, n in layout.row_segments(r).tolist():
            try:
                tokens = _as_list(token_ids[s], f"token_ids[{s}]")
            except (IndexError, KeyError, TypeError):
                raise ValueError(f"token_ids has no sequence {s}, which row {r} of the layout holds; "
                                 f"give the tokens of all {layout.num_sequences} sequences") from None
            if len(tokens) < n:
                raise ValueError(f"token_ids[{s}] has {len(tokens)} tokens, but the layout places {n} of "
                                 f"sequence {s} in row {r}; give each sequence at least as many tokens as its segment")
            seqs.append(tokens[:n])
    if layout.kind == "padded":
        return padded_batch(seqs, pad_to=pad_to, device=device)
    if len(rows) != 1:
        raise ValueError("a packed layout runs one row per forward; pass a single row index")
    return packed_batch(seqs, pad_to=pad_to, device=device)


def last_token_index(batch: dict, num_sequences: int | None = None) -> torch.Tensor:
    """Index in the packed stream of each sequence's last token: ``cu_seq_lens_q[1:] - 1``.

    ``num_sequences``: keep only the first ones (drop a ``pad_to`` filler segment).
    """
    check_batch(batch, ("cu_seq_lens_q",), "a batch of packviz.model.packed_batch")
    if num_sequences is not None:
        num_sequences = nonnegative_int("num_sequences", num_sequences)
    idx = batch["cu_seq_lens_q"][1:].long() - 1
    return idx if num_sequences is None else idx[:num_sequences]


def _flash_kwargs(batch: dict) -> dict:
    return {k: batch[k] for k in ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k") if k in batch}


# ---------------------------------------------------------------------- forwards
def packed_forward(model, batch: dict, last_token_only: bool = True, keep=None) -> torch.Tensor:
    """Logits of a packed batch, each sequence isolated from the others.

    ``use_cache=False``, no ``attention_mask``, restarting ``position_ids`` and the
    ``cu_seq_lens``/``max_length`` kwargs (read by the varlen and flash backends; the SDPA
    and flex ones build their block-diagonal mask from ``position_ids``). The lm_head runs
    only where logits are needed:

    * ``last_token_only=True`` (default): each sequence's last token -> ``(N, V)``
    * ``keep``: a 1-D tensor of stream positions -> ``(len(keep), V)``
    * ``last_token_only=False``: every token -> ``(T, V)``

    Pitfalls
    --------
    Each of these silently lets every sequence attend to the ones before it
    (:data:`TRAPS`; :func:`contamination` measures them):

    * ``use_cache`` left at its default (True): a KV cache is created even for one
      forward, and with a cache transformers no longer builds the block-diagonal mask.
    * a stray ``attention_mask`` (the tokenizer's all-ones one): with any 2-D mask
      transformers skips the block-diagonal mask.
    * ``position_ids`` not reset at each sequence start: transformers finds no boundaries.
    """
    check_batch(batch, ("input_ids",), "a batch of packviz.model.packed_batch")
    if batch["input_ids"].shape[0] != 1:
        raise ValueError(f"a packed batch has one row: input_ids of shape (1, T), got {tuple(batch['input_ids'].shape)}; "
                         "use rows_forward for several rows")
    check_model(model)
    check_batch(batch, ("input_ids", "position_ids"), "a batch of packviz.model.packed_batch")
    last_token_only = flag("last_token_only", last_token_only)
    with torch.inference_mode():
        out = model.model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                          use_cache=False, **_flash_kwargs(batch))
        hidden = out.last_hidden_state[0]
        if keep is not None:
            keep = int_array("keep", keep.tolist() if isinstance(keep, torch.Tensor) else keep, minimum=0)
            if int(keep.max()) >= hidden.shape[0]:
                raise ValueError(f"keep holds position {int(keep.max())}, beyond the stream's {hidden.shape[0]} tokens")
            hidden = hidden[torch.as_tensor(keep, device=hidden.device)]
        elif last_token_only:
            hidden = hidden[last_token_index(batch).to(hidden.device)]
        return model.lm_head(hidden)


def padded_forward(model, batch: dict, last_token_only: bool = True, mask: bool = True) -> torch.Tensor:
    """Logits of a right-padded batch (``use_cache=False``).

    ``mask=True`` passes the batch's 2-D padding ``attention_mask`` (what ``generate()`` does:
    transformers builds a (B, 1, L, L) mask, turns SDPA's ``is_causal`` off and repeats K/V).
    ``mask=False`` passes no mask: SDPA runs ``is_causal`` with native GQA, its fastest kernel --
    exact for every real token, since right padding puts every pad *after* the real tokens of
    its row and a causal query never looks ahead.

    ``last_token_only=True``: ``(B, V)`` at each row's last real token; else ``(B, L, V)``
    (pad positions hold garbage with ``mask=False``: read only the real ones).

    Pitfalls
    --------
    * ``mask=False`` is exact only with *right* padding. With left padding (what
      ``generate()`` uses for decoding) the pads come first and a causal query attends to them.
    """
    check_model(model)
    check_batch(batch, ("input_ids", "attention_mask"), "a batch of packviz.model.padded_batch")
    last_token_only, mask = flag("last_token_only", last_token_only), flag("mask", mask)
    kw = {"attention_mask": batch["attention_mask"]} if mask else {}
    with torch.inference_mode():
        out = model.model(input_ids=batch["input_ids"], use_cache=False, **kw)
        hidden = out.last_hidden_state
        if last_token_only:
            last = batch["attention_mask"].sum(1) - 1
            hidden = hidden[torch.arange(hidden.shape[0], device=hidden.device), last.to(hidden.device)]
        return model.lm_head(hidden)


def packed_rows_batch(rows, *, pad_to: int, pad_id: int = 0, device=None) -> dict:
    """Several packed rows in one forward: ``rows[r]`` is the list of sequences packed into row r.

    Each row is filled up to ``pad_to`` (C) by a filler sequence of ``pad_id`` tokens whose
    positions restart at 0, so transformers sees it as a sequence of its own and every row has
    the same static shape. Returns ``input_ids`` and ``position_ids`` (R, C) int64, and
    ``last_index`` (N, 2): the (row, column) of each real sequence's last token, in order.
    No ``attention_mask``: transformers builds each row's block-diagonal mask from the
    restarting positions (``find_packed_sequence_indices`` works row by row).
    """
    rows = items("rows", rows, "a list of rows, each a list of token-id lists")
    if not rows:
        raise ValueError("rows is empty: give at least one row (a list of token-id lists)")
    pad_to = positive_int("pad_to", pad_to, maximum=2**31 - 1)  # a packed row's C (packing.MAX_PACK_LEN)
    pad_id = _pad_id(pad_id)
    ids = torch.full((len(rows), pad_to), pad_id, dtype=torch.int64)
    pos = torch.zeros((len(rows), pad_to), dtype=torch.int64)
    last = []
    for r, seqs in enumerate(rows):
        col = 0
        for s in _check_sequences(seqs):
            n = len(s)
            if col + n > pad_to:
                raise ValueError(f"row {r} holds more than pad_to={pad_to} tokens; raise pad_to or pack fewer sequences per row")
            ids[r, col:col + n] = torch.tensor(s, dtype=torch.int64)
            pos[r, col:col + n] = torch.arange(n)
            col += n
            last.append((r, col - 1))
        pos[r, col:] = torch.arange(pad_to - col)
    return {"input_ids": ids.to(device), "position_ids": pos.to(device),
            "last_index": torch.tensor(last, dtype=torch.int64, device=device)}


def rows_forward(model, batch: dict) -> torch.Tensor:
    """Logits ``(N, vocab)`` at each sequence's last token of a :func:`packed_rows_batch`.

    ``use_cache=False`` and no ``attention_mask``: either would stop transformers from building
    the block-diagonal mask, and the sequences of a row would attend to each other.
    """
    check_model(model)
    check_batch(batch, ("input_ids", "position_ids", "last_index"), "a batch of packviz.model.packed_rows_batch")
    with torch.inference_mode():
        hidden = model.model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                             use_cache=False).last_hidden_state
        r, c = batch["last_index"][:, 0], batch["last_index"][:, 1]
        return model.lm_head(hidden[r, c])


def per_sequence_logits(model, sequences, last_token_only: bool = False) -> torch.Tensor:
    """The reference: each sequence run alone (batch of one, no padding, no packing).

    Concatenated in order: ``(T, V)`` (or ``(N, V)`` with ``last_token_only``).
    """
    check_model(model)
    last_token_only = flag("last_token_only", last_token_only)
    device = next(model.parameters()).device
    outs = []
    with torch.inference_mode():
        for s in _check_sequences(sequences):
            ids = torch.tensor([s], dtype=torch.int64, device=device)
            h = model.model(input_ids=ids, use_cache=False).last_hidden_state[0]
            outs.append(model.lm_head(h[-1:] if last_token_only else h))
    return torch.cat(outs)


def max_abs_diff(a, b) -> float:
    """max |a - b| in fp32 (a Python float)."""
    check_tensor("a", a), check_tensor("b", b)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return float((a.float() - b.float()).abs().max())


def per_sequence_max_abs_diff(a, b, cu_seqlens) -> list[float]:
    """max |a - b| over each sequence's rows of two ``(T, ...)`` outputs of one packed stream.

    ``cu_seqlens``: the stream's (N + 1,) boundaries (``batch["cu_seq_lens_q"]``). Returns N floats:
    which sequences moved, not just how much the worst one did.
    """
    return per_sequence(max_abs_diff, a, b, cu_seqlens)


def per_sequence(fn, a, b, cu_seqlens) -> list:
    """``fn(a[lo:hi], b[lo:hi])`` for each sequence ``lo:hi`` of ``cu_seqlens`` (N + 1,), over two
    ``(T, ...)`` outputs of one packed stream; ``ValueError`` if the shapes do not fit the boundaries."""
    if not callable(fn):
        raise TypeError(f"fn must be a function of two tensors, got {show(fn)}")
    check_tensor("a", a), check_tensor("b", b)
    if isinstance(cu_seqlens, torch.Tensor):
        cu_seqlens = cu_seqlens.tolist()
    cu_seqlens = int_array("cu_seqlens", cu_seqlens, minimum=0)
    cu = [int(c) for c in (cu_seqlens.tolist() if hasattr(cu_seqlens, "tolist") else cu_seqlens)]
    if len(cu) < 2 or cu[-1] > a.shape[0] or a.shape != b.shape:
        raise ValueError(f"need outputs of equal shape (T, ...) with T >= {cu[-1] if cu else '?'}, "
                         f"got {tuple(a.shape)} and {tuple(b.shape)}")
    return [fn(a[lo:hi], b[lo:hi]) for lo, hi in zip(cu[:-1], cu[1:])]


def diff_text(d: float, tol: float = 1e-5) -> str:
    """A max |Δ| for display, stable across CPUs: ``"0 (bit-identical)"``, ``"< 1e-05 (rounding)"``
    (below ``tol``: float rounding, whose exact digits vary with the machine) or the value to 3 decimals."""
    d = real_number("d", d)
    tol = positive_float("tol", tol)
    if d == 0:
        return "0 (bit-identical)"
    if d < tol:
        return f"< {tol:.0e} (rounding)"
    return f"{d:.3f}"


def replaced(sequences, victim: int, vocab: int) -> list[list[int]]:
    """A copy of ``sequences`` with every token of sequence ``victim`` changed: the isolation probe.

    Token i of the victim becomes ``(t + 1 + i) mod vocab``: different at every position (never
    the same id), still a valid id. The other sequences are copied unchanged. ``sequences``: N
    lists / arrays / 1-D tensors of token ids; returns N lists of ints, same lengths.

    >>> replaced([[5, 6], [7]], 0, vocab=8)
    [[6, 0], [7]]
    """
    seqs = _check_sequences(sequences)
    vocab = positive_int("vocab", vocab)
    if vocab < 2:
        raise ValueError(f"vocab={vocab}: need at least 2 token ids to change one")
    if not (is_integer(victim) and 0 <= victim < len(seqs)):
        raise ValueError(f"victim={show(victim)} is not a sequence index; use 0 .. {len(seqs) - 1}")
    out = [list(s) for s in seqs]
    out[victim] = [(t + 1 + i) % vocab if (t + 1 + i) % vocab != t else (t + 2 + i) % vocab
                   for i, t in enumerate(seqs[victim])]
    return out


# ---------------------------------------------------------------------- comparing logits
def top1_agreement(logits, reference) -> torch.Tensor:
    """Does each position predict the reference's most likely next token? ``(T,)`` bool.

    ``logits``, ``reference``: ``(T, V)``. On a random model every logit is small, so a max
    |Δlogit| alone says little; a changed argmax is a changed greedy token.

    >>> top1_agreement(torch.tensor([[1., 0.], [0., 1.]]), torch.tensor([[2., 0.], [2., 0.]])).tolist()
    [True, False]
    """
    check_tensor("logits", logits), check_tensor("reference", reference)
    if logits.shape != reference.shape or logits.dim() != 2:
        raise ValueError(f"need two (T, V) logits of one shape, got {tuple(logits.shape)} and {tuple(reference.shape)}")
    return logits.argmax(-1) == reference.argmax(-1)


def top1_margin(logits) -> torch.Tensor:
    """The most likely token's logit minus the runner-up's, at each position: ``(T,)`` float32.

    ``logits``: ``(T, V)``, V ≥ 2. A top-1 change under a perturbation of at most ε per logit
    needs a margin ≤ 2ε: near-ties flip first.

    >>> top1_margin(torch.tensor([[3., 1., 2.], [0., 0., 0.]])).tolist()
    [1.0, 0.0]
    """
    check_tensor("logits", logits)
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise ValueError(f"need (T, V) logits with V >= 2, got {tuple(logits.shape)}")
    top2 = logits.float().topk(2, dim=-1).values
    return top2[:, 0] - top2[:, 1]


def kl_divergence(reference, logits) -> torch.Tensor:
    """KL(p_reference ‖ p_logits) at each position, in nats: ``(T,)`` float64, ≥ 0.

    ``reference``, ``logits``: ``(T, V)`` (softmax over V). Computed in float64 from
    ``log_softmax``: identical rows give exactly 0; rounding never makes it negative.

    >>> kl_divergence(torch.zeros(1, 4), torch.zeros(1, 4)).tolist()
    [0.0]
    >>> round(float(kl_divergence(torch.tensor([[0., 0.]]), torch.tensor([[0., 2.]]))[0]), 4)
    0.4338
    """
    check_tensor("reference", reference), check_tensor("logits", logits)
    if logits.shape != reference.shape or logits.dim() != 2:
        raise ValueError(f"need two (T, V) logits of one shape, got {tuple(reference.shape)} and {tuple(logits.shape)}")
    lp = torch.log_softmax(reference.double(), -1)
    lq = torch.log_softmax(logits.double(), -1)
    return (lp.exp() * (lp - lq)).sum(-1).clamp_min(0)


@dataclass(frozen=True)
class LogitsComparison:
    """How far ``positions`` rows of logits are from a reference: top-1 agreement, KL and max |Δ|."""

    positions: int
    top1_agree: int  # positions whose argmax matches the reference's
    kl_mean: float  # mean KL(reference ‖ logits), nats
    kl_max: float
    max_abs_diff: float

    @property
    def top1_fraction(self) -> float:
        return self.top1_agree / self.positions

    def text(self, kl_tol: float = 1e-9) -> str:
        """``"top-1 4/4, KL < 1e-09"``: stable across CPUs (see :func:`kl_text`)."""
        return f"top-1 {self.top1_agree}/{self.positions}, KL {kl_text(self.kl_mean, kl_tol)}"


def compare_logits(logits, reference) -> LogitsComparison:
    """:class:`LogitsComparison` of ``(T, V)`` logits against the ``(T, V)`` reference, over all T rows."""
    kl = kl_divergence(reference, logits)
    return LogitsComparison(int(logits.shape[0]), int(top1_agreement(logits, reference).sum()),
                            float(kl.mean()), float(kl.max()), max_abs_diff(logits, reference))


def per_sequence_comparison(logits, reference, cu_seqlens) -> list[LogitsComparison]:
    """:func:`compare_logits` over each sequence's rows of one packed stream: N comparisons.

    ``logits``, ``reference``: ``(T, V)``; ``cu_seqlens``: the (N + 1,) boundaries.
    """
    return per_sequence(compare_logits, logits, reference, cu_seqlens)


def kl_text(kl: float, tol: float = 1e-9) -> str:
    """A KL for display: ``"0"``, ``"< 1e-09"`` (below ``tol``: float rounding) or 2 significant digits.

    >>> kl_text(0.0), kl_text(3e-15), kl_text(0.01234)
    ('0', '< 1e-09', '0.012')
    """
    kl = real_number("kl", kl)
    tol = positive_float("tol", tol)
    if kl == 0:
        return "0"
    return f"< {tol:.0e}" if kl < tol else f"{kl:.2g}"


def comparison_table(rows: dict, names) -> str:
    """A text table: one line per entry of ``rows`` (label -> N :class:`LogitsComparison`), one
    column per sequence (``names``, N of them), each cell ``"top-1 a/n, KL x"``."""
    rows = mapping("rows", rows, what="a dict {label: [LogitsComparison, ...]}")
    names = list(names) if isinstance(names, str) else [str(n) for n in items("names", names, "a list of sequence names")]
    for label, comps in rows.items():
        for c in items(f"rows[{label!r}]", comps, "a list of LogitsComparison"):
            instance_of(f"rows[{label!r}]'s entries", c, LogitsComparison, "LogitsComparison (compare_logits gives one)")
    names = list(names)
    width = max([len(str(k)) for k in rows] + [10]) + 2
    lines = [f"{'':<{width}}" + "".join(f"{n:>24}" for n in names)]
    for label, comps in rows.items():
        if len(comps) != len(names):
            raise ValueError(f"row {label!r} has {len(comps)} comparisons for {len(names)} names")
        lines.append(f"{label:<{width}}" + "".join(f"{c.text():>24}" for c in comps))
    return "\n".join(lines)


# ---------------------------------------------------------------------- the traps
TRAPS = {
    "no_position_reset": "position_ids run 0..T-1 across the whole row: transformers finds no "
                         "boundaries, builds a plain causal mask, and each sequence attends to the ones before it",
    "no_block_mask": "position_ids restart, but the mask is plain causal over the stream "
                     "(a kernel or mask that ignores the boundaries)",
    "kv_cache_on": "use_cache left at its default (True): a KV cache is created even for one forward, "
                   "and with a cache transformers skips the block-diagonal mask",
    "stray_attention_mask": "an all-ones attention_mask passed along (as a tokenizer returns it): "
                            "with any 2-D mask transformers skips the block-diagonal mask",
}
"""Ways a packed forward silently contaminates sequences with each other (name -> what goes wrong)."""


def _additive_mask(allowed: torch.Tensor, dtype) -> torch.Tensor:
    """A 4-D additive mask (0 where allowed, dtype min elsewhere): eager, SDPA and flex all take it."""
    out = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    out.masked_fill_(~allowed, torch.finfo(dtype).min)
    return out[None, None]


def block_causal_mask(batch: dict, dtype=torch.float32) -> torch.Tensor:
    """The block-diagonal causal mask of a packed batch as a (1, 1, T, T) additive mask.

    :func:`packviz.layout.block_causal_mask` of the batch's sequences (from ``cu_seq_lens_q``),
    0 where a query may attend, ``dtype``'s minimum elsewhere: the form eager, SDPA and flex take.
    """
    check_batch(batch, ("input_ids", "cu_seq_lens_q"), "a batch of packviz.model.packed_batch")
    cu = batch["cu_seq_lens_q"].detach().cpu().numpy()
    allowed = torch.from_numpy(_block_causal_mask_np(seq_idx_from_lengths(np.diff(cu))))
    return _additive_mask(allowed.to(batch["input_ids"].device), dtype)


def trap_inputs(model, batch: dict, trap: str) -> dict:
    """The keyword arguments of ``model.model`` for a packed batch run the broken way ``trap``.

    One of :data:`TRAPS`; the tensors are (1, T) (a (1, 1, T, T) additive mask for
    ``no_block_mask``). No ``labels``: add them to run a training step the same way
    (:mod:`packviz.training`).
    """
    check_model(model)
    check_batch(batch, ("input_ids", "position_ids"), "a batch of packviz.model.packed_batch")
    one_of("trap", trap, TRAPS)
    ids, pos = batch["input_ids"], batch["position_ids"]
    kw: dict = {"input_ids": ids}
    if trap == "no_position_reset":
        kw.update(position_ids=torch.arange(ids.shape[1], device=ids.device)[None], use_cache=False)
    elif trap == "no_block_mask":
        T = ids.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool, device=ids.device).tril()
        kw.update(position_ids=pos, attention_mask=_additive_mask(causal, model.dtype), use_cache=False)
    elif trap == "kv_cache_on":
        kw.update(position_ids=pos)  # use_cache not passed: the config default (True) applies
    elif trap == "stray_attention_mask":
        kw.update(position_ids=pos, attention_mask=torch.ones_like(ids), use_cache=False)
    return kw


def trap_forward(model, batch: dict, trap: str) -> torch.Tensor:
    """Logits ``(T, V)`` of a packed batch run the broken way ``trap`` (one of :data:`TRAPS`)."""
    kw = trap_inputs(model, batch, trap)
    with torch.inference_mode():
        hidden = model.model(**kw).last_hidden_state[0]
        return model.lm_head(hidden)


def rope_offset_forward(model, batch: dict, start: int = 0) -> torch.Tensor:
    """Positions NOT reset but the block-diagonal mask given explicitly: logits ``(T, V)``.

    The positions run ``start .. start + T - 1`` across the row (``start`` > 0: the row sits
    after ``start`` tokens of a longer pack). Not a trap for Llama: RoPE makes q·k depend on
    position *differences* only, and inside one sequence every position is shifted by the
    same offset, so the logits match the per-sequence ones up to rounding. transformers
    computes the RoPE angles in fp32 and rounds only cos/sin to the model dtype, so in bf16
    the shift costs bf16-sized rounding at any offset (an implementation that computes the
    angles in bf16 cannot even represent position 8,001). What breaks when positions are not
    reset is the mask transformers derives from them (``no_position_reset``), and any model
    with absolute position embeddings.
    """
    check_model(model)
    check_batch(batch, ("input_ids", "cu_seq_lens_q"), "a batch of packviz.model.packed_batch")
    ids = batch["input_ids"]
    mask = block_causal_mask(batch, model.dtype)
    pos = torch.arange(ids.shape[1], device=ids.device)[None] + int_in_range("start", start, 0, 2**62)
    with torch.inference_mode():
        hidden = model.model(input_ids=ids, position_ids=pos,
                             attention_mask=mask, use_cache=False).last_hidden_state[0]
        return model.lm_head(hidden)


def contamination(model, sequences, trap: str | None = None) -> float:
    """max |Δlogit| of a packed forward (``trap=None``: the correct one) vs each sequence alone."""
    check_model(model)
    device = next(model.parameters()).device
    batch = packed_batch(sequences, device=device)
    ref = per_sequence_logits(model, sequences)
    got = packed_forward(model, batch, last_token_only=False) if trap is None else trap_forward(model, batch, trap)
    return max_abs_diff(got, ref)
