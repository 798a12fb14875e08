"""What one forward step costs on a GPU: work counted from the model shape, time from a roofline.

numpy only. A serving step is one forward over whatever the scheduler put in it (prefill
tokens, prefill chunks, one token per decoding request). Its :class:`Work` is five counts;
its FLOPs and bytes follow from the :class:`~packviz.shapes.ModelShape`'s per-unit costs::

    FLOPs = tokens · linear_flops_per_token       every token slot computed (pads included)
          + lm_rows · lm_head_flops_per_token     one logits row per sequence that emits a token
          + pairs · attention_flops_per_pair      (query, key) pairs the attention kernel computes
    bytes = weight_bytes                          all weights, read once per step
          + (kv_read + kv_write) · kv_bytes_per_token

    seconds = max(FLOPs / flop_rate, bytes / byte_rate) + overhead_s          (the roofline)

Attention pairs depend on how the step runs it -- say which one each number assumes:

* padded prefill of a static batch (B rows of width W, the longest prompt): ``"masked"``
  (default) -- HF ``generate`` with padding builds a (B, 1, W, W) mask, SDPA then computes
  the full square, **W² pairs per row**; ``"causal"`` -- a causal kernel's triangle,
  W(W+1)/2 per row (what a padded batch *without* a mask would cost).
* ragged (varlen / paged) prefill: each sequence's own triangle, Σ n(n+1)/2.
* a chunk of c tokens after ``done`` already-cached ones: c·done + c(c+1)/2.
* decode: one query per running slot, attending over its context (pairs = context + 1).
* ``dense`` ragged steps (transformers' ``paged|sdpa`` without flash-attn): one masked
  square over the whole step, every query against every key read, Σq × Σk.

Rates: :data:`GPUS` holds datasheet and measured rates; :func:`preset_cost_model` turns a
preset into achievable rates (an assumption, stated there);
:func:`packviz.serving.calibration.cost_model` also loads costs fitted to a recorded
calibration. This module imports no other module of ``serving``.

Between two scheduling events a decode step's work grows by a constant each step (every
context +1), so K steps cost a closed-form sum (:func:`span_sums`) -- that is what lets
the simulator replay 19,366 requests in about a second:

>>> line = Line(u0=1.0, u1=0.5, v0=2.0, v1=0.0, overhead=0.1)   # compute 1+0.5k, memory 2
>>> [round(float(line.step(k)), 2) for k in (1, 2, 3, 4)]         # max(...) + 0.1
[2.1, 2.1, 2.6, 3.1]
>>> span_sums(line, 4)                                            # (Σ t_k, Σ k·t_k)
(9.9, 26.5)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..checks import (flag, instance_of, int_array, is_integer, nonnegative_float, nonnegative_int, one_of,
                      positive_float, positive_int, real_number, show)
from ..shapes import get_shape

PADDED_ATTENTION = ("masked", "causal")
"""How a padded static prefill is priced: the masked W² square (HF ``generate``) or the causal triangle."""
RAGGED_ATTENTION = ("varlen", "dense")
"""How a ragged step is priced: per-sequence (varlen / paged kernels) or one dense Σq × Σk square."""


# ---------------------------------------------------------------------- GPUs
@dataclass(frozen=True)
class Measured:
    """A rate measured on a lent GPU: its value and where it is recorded (a file under
    ``data/results/`` and the JSON key holding it; a test reads it back)."""

    value: float
    source: str
    key: str
    scale: float = 1.0           # the file holds value / scale (e.g. TFLOP/s: scale 1e12)


@dataclass(frozen=True)
class GPU:
    """A GPU's datasheet rates (dense, no 2:4 sparsity), and what was measured on one, with sources."""

    name: str
    peak_flops: float            # dense bf16 tensor-core FLOP/s, datasheet
    peak_bytes_per_s: float      # HBM bandwidth, datasheet
    memory_bytes: float          # HBM capacity, datasheet
    datasheet: str
    measured_flops: Measured | None = None          # bf16 8192³ matmul held >= 1 s
    measured_bytes_per_s: Measured | None = None    # device-to-device copy


GPUS: dict[str, GPU] = {
    "h100": GPU("H100 SXM 80GB", 989e12, 3.35e12, 80e9,
                "NVIDIA H100 datasheet (SXM5: 989 TFLOP/s dense BF16, 3.35 TB/s HBM3, 80 GB)",
                measured_flops=Measured(676.6776801372629e12, "2026-11-26-h100-b/bench.json", "ceiling_tflops", 1e12)),
    "h200": GPU("H200 SXM 141GB", 989e12, 4.8e12, 141e9,
                "NVIDIA H200 datasheet (SXM: 989 TFLOP/s dense BF16, 4.8 TB/s HBM3e, 141 GB)"),
    "a100": GPU("A100 SXM 80GB", 312e12, 2.039e12, 80e9,
                "NVIDIA A100 datasheet (SXM 80GB: 312 TFLOP/s dense BF16, 2.039 TB/s HBM2e, 80 GB)"),
}
"""GPU presets: datasheet rates, and rates measured on this project's lent GPUs only where a
recorded file holds them (the lent H100's matmul ran at 677-692 TFLOP/s, power-capped at about
1,350 MHz; no copy rate has been recorded yet)."""

FLOP_EFFICIENCY = 0.8
"""Assumption: a forward step reaches 80% of the matmul rate (its big GEMMs run near it;
attention, norms and small GEMMs pull the mix down)."""
BYTE_EFFICIENCY = 0.8
"""Assumption: a memory-bound step streams weights and KV at 80% of the datasheet bandwidth (no
copy rate is recorded yet; PyTorch's CI target for gpt-fast decoding is 81% of an A100's, and
gpt-fast reports 69%)."""
OVERHEAD_S = 0.002
"""Assumption: 2 ms per step outside the roofline (kernel launches, scheduler, sampling) -- an
engine that replays CUDA graphs. Python-eager transformers pays more; a calibration measures it."""
MEMORY_UTILIZATION = 0.9
"""Share of GPU memory given to weights + KV cache (vLLM's ``gpu_memory_utilization`` default)."""


@dataclass(frozen=True)
class CostModel:
    """Achievable rates of one GPU and the per-step overhead: ``seconds(flops, bytes)``.

    ``peak_flops`` / ``peak_bytes_per_s`` are the datasheet rates MFU and MBU divide by (0: none known).
    """

    name: str
    flop_rate: float
    byte_rate: float
    overhead_s: float
    peak_flops: float
    memory_bytes: float
    note: str = ""
    decode_overhead_s: float | None = None
    peak_bytes_per_s: float = 0.0

    def __post_init__(self) -> None:
        # rates of 0 mean "unknown" (an engine's cost model that only names its device); they price no step
        for attr in ("flop_rate", "byte_rate", "overhead_s", "peak_flops", "memory_bytes", "peak_bytes_per_s"):
            object.__setattr__(self, attr, nonnegative_float(f"CostModel.{attr}", getattr(self, attr)))
        if self.decode_overhead_s is not None:
            object.__setattr__(self, "decode_overhead_s", nonnegative_float("CostModel.decode_overhead_s",
                                                                            self.decode_overhead_s))

    @property
    def decode_overhead(self) -> float:
        """The overhead of a decode-only step: ``decode_overhead_s`` (an engine that replays decode steps
        from CUDA graphs has a far smaller host gap there than in its eager steps), else ``overhead_s``."""
        return self.overhead_s if self.decode_overhead_s is None else self.decode_overhead_s

    def overhead(self, decode: bool = False) -> float:
        return self.decode_overhead if decode else self.overhead_s

    def seconds(self, flops: float, nbytes: float, decode: bool = False) -> float:
        """max(flops / flop_rate, nbytes / byte_rate) + the overhead (of a decode-only step, if ``decode``)."""
        try:
            return max(flops / self.flop_rate, nbytes / self.byte_rate) + self.overhead(decode)
        except ZeroDivisionError:
            raise ValueError(f"cost model {self.name!r} has no flop_rate or byte_rate (0: unknown), so it prices no "
                             "step; use a preset or a calibration (packviz.serving.cost_model)") from None

    def as_dict(self) -> dict:
        return {"name": self.name, "flop_rate": self.flop_rate, "byte_rate": self.byte_rate,
                "overhead_s": self.overhead_s, "decode_overhead_s": self.decode_overhead,
                "peak_flops": self.peak_flops, "peak_bytes_per_s": self.peak_bytes_per_s,
                "memory_bytes": self.memory_bytes, "note": self.note}


GPU_CHOICES = tuple(GPUS) + ("calibrated",)
"""What ``--gpu`` accepts: a preset, or ``calibrated`` (the newest recorded calibration)."""


def preset_key(gpu) -> str:
    """``gpu`` (a preset name, any case) as a key of :data:`GPUS`, else ``ValueError`` listing them."""
    key = gpu.strip().lower() if isinstance(gpu, str) else None
    if key not in GPUS:
        raise ValueError(f"unknown GPU {show(gpu)}; choose one of {', '.join(GPUS)}")
    return key


def matmul_rate(key: str) -> tuple[float, str]:
    """(FLOP/s, where it comes from): measured on the lent GPU, or its datasheet scaled by the
    lent H100's measured ÷ datasheet ratio (the same power cap and clocks assumed)."""
    gpu, ref = GPUS[preset_key(key)], GPUS["h100"]
    if gpu.measured_flops:
        return gpu.measured_flops.value, f"measured ({gpu.measured_flops.source})"
    ratio = ref.measured_flops.value / ref.peak_flops
    return gpu.peak_flops * ratio, f"datasheet x {ratio:.3f} (the lent H100's measured / datasheet)"


def copy_rate(key: str) -> tuple[float, str]:
    """(bytes/s, where it comes from): measured on the lent GPU, else the datasheet's bandwidth."""
    gpu = GPUS[preset_key(key)]
    if gpu.measured_bytes_per_s:
        return gpu.measured_bytes_per_s.value, f"measured ({gpu.measured_bytes_per_s.source})"
    return gpu.peak_bytes_per_s, "datasheet (no copy rate recorded yet)"


def preset_cost_model(name: str = "h100", overhead_s: float | None = None) -> CostModel:
    """Achievable rates for a preset: FLOP_EFFICIENCY × its matmul rate, BYTE_EFFICIENCY × its copy rate
    (:func:`matmul_rate`, :func:`copy_rate`: measured where a recorded file holds it).

    >>> c = preset_cost_model("h100")
    >>> round(c.flop_rate / 1e12), round(c.byte_rate / 1e12, 2), c.overhead_s
    (541, 2.68, 0.002)
    """
    key = name.strip().lower() if isinstance(name, str) else None
    if key not in GPUS:
        raise ValueError(f"unknown GPU {show(name)}; choose one of {', '.join(GPU_CHOICES)}")
    gpu = GPUS[key]
    (flops, flops_from), (nbytes, bytes_from) = matmul_rate(key), copy_rate(key)
    overhead = OVERHEAD_S if overhead_s is None else positive_float("overhead_s", overhead_s)
    note = (f"{gpu.name}: {FLOP_EFFICIENCY:.0%} of {flops / 1e12:.0f} TFLOP/s ({flops_from}), {BYTE_EFFICIENCY:.0%} "
            f"of {nbytes / 1e12:.2f} TB/s ({bytes_from}), {overhead * 1e3:g} ms per step (assumed)")
    return CostModel(key, FLOP_EFFICIENCY * flops, BYTE_EFFICIENCY * nbytes, overhead, gpu.peak_flops,
                     gpu.memory_bytes, note, peak_bytes_per_s=gpu.peak_bytes_per_s)


# ---------------------------------------------------------------------- work of a step
class Work(NamedTuple):
    """What one forward step computes and moves (counts, not FLOPs)."""

    tokens: int      # token slots through the linear layers (pads included)
    lm_rows: int     # logits rows (sequences emitting a token this step)
    pairs: int       # attention (query, key) pairs computed
    kv_read: int     # KV-cache tokens read
    kv_write: int    # KV-cache tokens written


def padded_prefill_work(prompts, attention: str = "masked") -> Work:
    """A static batch's prefill, every prompt padded to the longest W: B·W slots.

    >>> padded_prefill_work([3, 5])               # W = 5: 2 rows × 25 pairs (masked square)
    Work(tokens=10, lm_rows=2, pairs=50, kv_read=0, kv_write=10)
    >>> padded_prefill_work([3, 5], "causal").pairs   # 2 rows × 15
    30
    """
    one_of("padded_attention", attention, PADDED_ATTENTION)
    prompts = int_array("prompts", prompts)
    b, w = len(prompts), int(prompts.max())
    per_row = w * w if attention == "masked" else w * (w + 1) // 2
    return Work(b * w, b, b * per_row, 0, b * w)


def varlen_prefill_work(prompts) -> Work:
    """A ragged prefill: only real tokens, each prompt its own causal triangle.

    >>> varlen_prefill_work([3, 5])                # 6 + 15 pairs
    Work(tokens=8, lm_rows=2, pairs=21, kv_read=0, kv_write=8)
    """
    n = int_array("prompts", prompts).tolist()
    return Work(sum(n), len(n), sum(p * (p + 1) // 2 for p in n), 0, sum(n))


def chunk_pairs(done: int, chunk: int) -> int:
    """Pairs of a prefill chunk of ``chunk`` tokens after ``done`` cached ones: chunk·done + chunk(chunk+1)/2.

    >>> chunk_pairs(0, 5), chunk_pairs(2, 3)      # a whole prompt; the last 3 of 5
    (15, 12)
    """
    return _chunk_pairs(nonnegative_int("done", done), nonnegative_int("chunk", chunk))


def _chunk_pairs(done: int, chunk: int) -> int:
    """:func:`chunk_pairs` unchecked (a step's pieces: the simulator's hot path)."""
    return chunk * done + chunk * (chunk + 1) // 2


def _takes_plan(fn):
    """``fn(plan, ...)`` with a plan of the wrong type refused by a ``TypeError`` naming it (checked only
    when ``fn`` fails, so a step's price costs nothing more)."""
    @functools.wraps(fn)
    def wrapper(plan, *args, **kw):
        try:
            return fn(plan, *args, **kw)
        except (AttributeError, TypeError):
            if all(hasattr(plan, a) for a in ("decodes", "contexts", "prefills", "idle", "kv_pad")):
                raise
            raise TypeError(f"plan must be a StepPlan (packviz.serving.scheduler), got {type(plan).__name__} "
                            f"{show(plan)}") from None
    return wrapper


@_takes_plan
def plan_work(plan, padded_attention: str = "masked", ragged_attention: str = "varlen") -> Work:
    """The :class:`Work` of one step's plan (a :class:`~packviz.serving.scheduler.StepPlan`).

    Decodes: one token each over its context (and the batch's pad KV, ``kv_pad``). Pieces:
    their tokens and pads; in a padded batch (static, some piece padded) every row costs the
    masked W² square or the causal triangle (``padded_attention``); a ragged piece its chunk's
    pairs. A static batch without pads costs the triangle either way (transformers drops an
    all-ones mask and runs causal). ``ragged_attention="dense"``:
    one Σq × Σk square for the whole step.

    >>> from packviz.serving.scheduler import Piece, StepPlan
    >>> plan_work(StepPlan(0, decodes=(0, 1), contexts=(10, 20), prefills=(Piece(2, 4, 3),)))
    Work(tokens=5, lm_rows=3, pairs=50, kv_read=34, kv_write=5)
    """
    n = len(plan.decodes)
    tokens = plan.num_tokens
    kv_read = sum(plan.contexts) + plan.kv_pad + sum(p.done for p in plan.prefills)
    lm_rows = n + sum(p.last for p in plan.prefills)
    if ragged_attention == "dense":
        pairs = tokens * (kv_read + tokens)
    else:
        masked = padded_attention == "masked" and any(p.pad for p in plan.prefills)   # HF masks every row then
        pairs = kv_read - sum(p.done for p in plan.prefills) + n
        for p in plan.prefills:
            w = p.tokens + p.pad
            pairs += w * w if masked else _chunk_pairs(p.done, w)
    return Work(tokens, lm_rows, pairs, kv_read, tokens)


class Waste(NamedTuple):
    """Work of one step that no request needed, by cause (counts; :func:`plan_waste`)."""

    pad_tokens: int = 0          # pad token slots of a padded prefill
    pad_pairs: int = 0           # attention pairs a padded batch computes beyond each real token's own
    idle_tokens: int = 0         # decodes of finished requests (a token and a logits row each)
    idle_pairs: int = 0
    recomputed_tokens: int = 0   # prefill tokens recomputing KV a preemption threw away
    recomputed_pairs: int = 0
    dense_pairs: int = 0         # pairs a dense Σq × Σk step computes beyond each sequence's own


@_takes_plan
def plan_waste(plan, padded_attention: str = "masked", ragged_attention: str = "varlen") -> Waste:
    """The :class:`Waste` inside one plan's :func:`plan_work`: everything minus what its requests needed.

    Useful is each real token once, each generated token's logits row once, and each real token's
    attention over its own sequence up to itself; summed over a run, ``work - waste`` is exactly the
    requests' own work (a test checks it against :func:`~packviz.serving.simulator.useful_flops`).

    >>> from packviz.serving.scheduler import Piece, StepPlan
    >>> plan_waste(StepPlan(0, prefills=(Piece(0, 0, 2, pad=1), Piece(1, 0, 3))))   # W = 3, masked: 9 - 3 and 9 - 6
    Waste(pad_tokens=1, pad_pairs=9, idle_tokens=0, idle_pairs=0, recomputed_tokens=0, recomputed_pairs=0, dense_pairs=0)
    """
    idle = set(plan.idle)
    idle_ctx = [c for r, c in zip(plan.decodes, plan.contexts) if r in idle]
    masked = padded_attention == "masked" and any(p.pad for p in plan.prefills)
    pad_pairs = plan.kv_pad
    for p in plan.prefills:
        w = p.tokens + p.pad
        if p.pad or masked:
            pad_pairs += (w * w if masked else _chunk_pairs(p.done, w)) - _chunk_pairs(p.done, p.tokens)
    dense = 0
    if ragged_attention == "dense":
        dense = plan_work(plan, padded_attention, "dense").pairs - plan_work(plan, padded_attention).pairs
    return Waste(sum(p.pad for p in plan.prefills), pad_pairs, len(idle_ctx), sum(idle_ctx) + len(idle_ctx),
                 sum(p.recomputed for p in plan.prefills),
                 sum(_chunk_pairs(p.done, p.recomputed) for p in plan.prefills), dense)


@_takes_plan
def plan_live_kv(plan) -> int:
    """KV tokens of live requests a plan reads and writes: non-idle decodes' contexts and new tokens,
    pieces' cached prefixes and real tokens (no pads, no idle slots)."""
    idle = set(plan.idle)
    decodes = sum(c + 1 for r, c in zip(plan.decodes, plan.contexts) if r not in idle)
    return decodes + sum(p.done + p.tokens for p in plan.prefills)


def streamed_weight_bytes(shape, bytes_per_param: int = 2) -> int:
    """Weight bytes a forward step reads: all of them but an untied input embedding table, of which
    a step gathers only its tokens' rows (a tied one is read whole, as the lm_head).

    >>> from packviz.shapes import get_shape
    >>> get_shape("llama-3-8b").weight_bytes() - streamed_weight_bytes("llama-3-8b")    # 128,256 × 4,096 × 2
    1050673152
    """
    shape = get_shape(shape)
    bytes_per_param = positive_int("bytes_per_param", bytes_per_param, maximum=64)
    embedding = 0 if shape.tied_embeddings else shape.vocab * shape.hidden * bytes_per_param
    return shape.weight_bytes(bytes_per_param) - embedding


class Pricer:
    """A model shape and a cost model, reduced to the constants a step's price needs.

    ``flops(work)``, ``bytes(work)``, ``seconds(work)``; :meth:`decode_line` gives the
    per-step times of a decode span as two straight lines (:class:`Line`).
    """

    def __init__(self, shape, cost: CostModel, bytes_per_param: int = 2):
        self.shape = get_shape(shape)
        self.cost = instance_of("cost", cost, CostModel, "a CostModel (packviz.serving.cost_model gives one)")
        self.linear = float(self.shape.linear_flops_per_token)
        self.lm_head = float(self.shape.lm_head_flops_per_token)
        self.attn = float(self.shape.attention_flops_per_pair)
        self.weight_bytes = float(streamed_weight_bytes(self.shape, bytes_per_param))
        self.kv_bytes = float(self.shape.kv_bytes_per_token(bytes_per_param))

    def flops(self, w: Work) -> float:
        return w.tokens * self.linear + w.lm_rows * self.lm_head + w.pairs * self.attn

    def waste_flops(self, w: "Waste") -> dict:
        """FLOPs of a :class:`Waste`, by cause."""
        return {"padding": w.pad_tokens * self.linear + w.pad_pairs * self.attn,
                "idle_slots": w.idle_tokens * (self.linear + self.lm_head) + w.idle_pairs * self.attn,
                "recompute": w.recomputed_tokens * self.linear + w.recomputed_pairs * self.attn,
                "dense_attention": w.dense_pairs * self.attn}

    def live_bytes(self, live_kv: float, steps: float = 1) -> float:
        """Bytes that must move for ``steps`` steps holding ``live_kv`` KV tokens of live requests read
        or written in all (the MBU numerator): the weights once per step, and that KV."""
        return steps * self.weight_bytes + live_kv * self.kv_bytes

    def bytes(self, w: Work) -> float:
        return self.weight_bytes + (w.kv_read + w.kv_write) * self.kv_bytes

    def seconds(self, w: Work, decode: bool = False) -> float:
        """The roofline time of a step's work (``decode``: a decode-only step, with its own overhead)."""
        return self.cost.seconds(self.flops(w), self.bytes(w), decode)

    def decode_line(self, n: int, kv_before: float, dense: bool = False) -> "Line":
        """Per-step time of decoding ``n`` slots that hold ``kv_before`` KV tokens before step 1.

        Step k (1, 2, ...) reads ``kv_before + n(k-1)`` KV tokens, writes ``n``, and computes
        ``kv_before + n·k`` pairs (each query over its context and itself; ``dense``: every
        query against every key read, ``n`` times that).
        """
        c = self.cost
        q = n if dense else 1
        u0 = (n * (self.linear + self.lm_head) + self.attn * q * kv_before) / c.flop_rate
        u1 = self.attn * q * n / c.flop_rate
        v0 = (self.weight_bytes + self.kv_bytes * kv_before) / c.byte_rate
        v1 = self.kv_bytes * n / c.byte_rate
        return Line(u0, u1, v0, v1, c.decode_overhead)


# ---------------------------------------------------------------------- closed-form spans
class Line(NamedTuple):
    """Step k of a span takes max(u0 + u1·k, v0 + v1·k) + overhead seconds (compute, memory)."""

    u0: float
    u1: float
    v0: float
    v1: float
    overhead: float

    def step(self, k):
        """Seconds of step k (k = 1, 2, ...; numpy arrays work too)."""
        return np.maximum(self.u0 + self.u1 * k, self.v0 + self.v1 * k) + self.overhead


def _range_sums(a: int, b: int) -> tuple[int, float, float]:
    """(count, Σk, Σk²) over k = a..b (zeros when b < a)."""
    if b < a:
        return 0, 0.0, 0.0
    s1 = (a + b) * (b - a + 1) / 2
    s2 = (b * (b + 1) * (2 * b + 1) - (a - 1) * a * (2 * a - 1)) / 6
    return b - a + 1, s1, s2


def _check_span(line, k, name: str) -> None:
    """``TypeError`` / ``ValueError`` unless ``line`` is a :class:`Line` and ``k`` an integer (type checks first:
    the simulator calls this for every decode span)."""
    if type(line) is not Line and not isinstance(line, Line):
        raise TypeError(f"line must be a Line (Pricer.decode_line gives one), got {type(line).__name__} {show(line)}")
    if type(k) is not int and not is_integer(k):
        raise ValueError(f"{name} must be an integer (a number of steps), got {show(k)}")


def span_sums(line: Line, k: int) -> tuple[float, float]:
    """(Σ t_j, Σ j·t_j) over steps j = 1..k of ``line``, in closed form (O(1), no loop).

    Σ max(u_j, v_j) = Σ v_j + Σ max(0, u_j - v_j); the difference is linear in j, so it is
    positive on one contiguous run of steps (at most one crossing).
    """
    _check_span(line, k, "k")
    if k <= 0:
        return 0.0, 0.0
    _, s1, s2 = _range_sums(1, k)
    base0 = line.v0 + line.overhead
    total, ktotal = base0 * k + line.v1 * s1, base0 * s1 + line.v1 * s2
    d0, d1 = line.u0 - line.v0, line.u1 - line.v1
    if d1 != 0:
        cross = min(max(-d0 / d1, 0.0), k + 1.0)       # u_j = v_j there (clamped to the span)
    if d1 > 0:
        lo, hi = math.floor(cross) + 1, k
    elif d1 < 0:
        lo, hi = 1, min(k, math.ceil(cross) - 1)
    else:
        lo, hi = (1, k) if d0 > 0 else (1, 0)
    c, c1, c2 = _range_sums(lo, hi)
    return total + d0 * c + d1 * c1, ktotal + d0 * c1 + d1 * c2


def steps_to_reach(line: Line, seconds: float, k_max: int) -> int | None:
    """The fewest steps j in 0..k_max whose summed time reaches ``seconds``; None if k_max do not.

    >>> steps_to_reach(Line(0, 0, 1.0, 0, 0), 2.5, 10)     # 1 s per step
    3
    """
    _check_span(line, k_max, "k_max")
    if type(seconds) is not float:
        seconds = real_number("seconds", seconds)
    if seconds <= 0:
        return 0
    if span_sums(line, k_max)[0] < seconds:
        return None
    # step times never shrink along a span (contexts only grow): t_1 ≤ t_k ≤ t_kmax brackets the answer
    u0, u1, v0, v1, o = line
    t_first, t_last = max(u0 + u1, v0 + v1) + o, max(u0 + u1 * k_max, v0 + v1 * k_max) + o
    lo = max(1, math.ceil(seconds / t_last) - 1)
    hi = min(k_max, math.ceil(seconds / t_first) + 1) if t_first > 0 else k_max
    lo = min(lo, hi)
    while lo < hi:
        mid = (lo + hi) // 2
        if span_sums(line, mid)[0] >= seconds:
            hi = mid
        else:
            lo = mid + 1
    return lo


def check_attention(padded: str, ragged: str) -> tuple[str, str]:
    """Both attention pricings, validated (``ValueError`` naming the bad one)."""
    return one_of("padded_attention", padded, PADDED_ATTENTION), one_of("ragged_attention", ragged, RAGGED_ATTENTION)


def describe(cost: CostModel) -> str:
    """One line: the cost model's name and rates."""
    cost = instance_of("cost", cost, CostModel, "a CostModel (packviz.serving.cost_model gives one)")
    return (f"{cost.name}: {cost.flop_rate / 1e12:,.0f} TFLOP/s and {cost.byte_rate / 1e12:.2f} TB/s achievable, "
            f"{cost.overhead_s * 1e3:.3g} ms per step")


# ---------------------------------------------------------------------- arithmetic intensity
def decode_work(batch: int, context: int) -> Work:
    """One decode step of ``batch`` requests with ``context`` tokens cached each: one new token per request.

    Each new query attends over its context and itself (``context + 1`` pairs), reads the
    cached K/V and writes its own.

    >>> decode_work(2, 3)
    Work(tokens=2, lm_rows=2, pairs=8, kv_read=6, kv_write=2)
    """
    b, c = positive_int("batch", batch), nonnegative_int("context", context)
    return Work(b, b, b * (c + 1), b * c, b)


def arithmetic_intensity(work: Work, shape, weights: bool = True, bytes_per_param: int = 2) -> float:
    """FLOPs per byte moved of one forward step: ``FLOPs / bytes`` as :class:`Pricer` counts them.

    ``weights=False`` leaves out the weights' bytes: the intensity a batch of such requests
    approaches as it grows (the weights are read once per step, whatever the batch). Above
    the GPU's :func:`ridge_point` the step is compute-bound, below it memory-bound.

    >>> round(arithmetic_intensity(decode_work(1, 0), "llama-3-8b"), 2)     # decode, batch 1
    1.0
    >>> round(arithmetic_intensity(varlen_prefill_work([1024]), "llama-3-8b"))  # one 1,024-token prompt
    962
    """
    shape = get_shape(shape)
    work = instance_of("work", work, Work, "a Work (decode_work, varlen_prefill_work or plan_work gives one)")
    weights = flag("weights", weights)
    bytes_per_param = positive_int("bytes_per_param", bytes_per_param, maximum=64)
    flops = (work.tokens * shape.linear_flops_per_token + work.lm_rows * shape.lm_head_flops_per_token
             + work.pairs * shape.attention_flops_per_pair)
    kv = (work.kv_read + work.kv_write) * shape.kv_bytes_per_token(bytes_per_param)
    nbytes = kv + (streamed_weight_bytes(shape, bytes_per_param) if weights else 0)
    return flops / nbytes if nbytes else math.inf


def ridge_point(gpu: str = "h100", measured: bool = True) -> float:
    """FLOPs per byte at which a GPU's compute and memory times are equal: FLOP rate ÷ byte rate.

    ``measured``: the lent GPU's rates where recorded (:func:`matmul_rate`, :func:`copy_rate`:
    the H100's matmul is measured, its bandwidth not yet, so the datasheet's); else the datasheet's.

    >>> round(ridge_point("h100")), round(ridge_point("h100", measured=False))   # 677 / 3.35, 989 / 3.35
    (202, 295)
    """
    key = preset_key(gpu)
    if flag("measured", measured):
        return matmul_rate(key)[0] / copy_rate(key)[0]
    return GPUS[key].peak_flops / GPUS[key].peak_bytes_per_s
