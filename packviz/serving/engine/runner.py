"""One step of the engine: a plan becomes one ragged token stream, the model runs, tokens are sampled.

torch only. :func:`build_step` lays a :class:`~packviz.serving.scheduler.StepPlan` out as
flat tensors -- every decode's token, then every prefill piece's tokens -- with what the
attention path and the cache need, built in one place::

    plan: decode r0 (context 5) | prefill r2[0:3]        regions: r0 at 0, r2 at 40
    input_ids      (T,)     [tok, p0, p1, p2]             T = 4 tokens
    positions      (T,)     [5,   0,  1,  2]              restart at 0 per sequence
    slot_mapping   (T,)     [5,  40, 41, 42]              region start + position: where K/V are written
    cu_seqlens_q   (N+1,)   [0, 1, 4]                     N = 2 sequences
    k_starts       (N+1,)   [0, 40, S]                    each region's first row (S: the spare slot)
    seqused_k      (N,)     [6, 3]                        keys each sequence reads, its new ones included
    logits_rows    (R,)     [0, 3]                        the last token of each sequence that emits

Decode-only steps can be replayed from **CUDA graphs** (:class:`DecodeGraphs`): one graph per
batch-size bucket (1, 2, 4, 8, 16, 32, 64, 128, 256, up to the running cap), captured once
with static input buffers; a step copies its inputs into the buffers of the smallest bucket
that holds it and replays. Rows beyond the real batch read and write only the spare slot.
A replay launches the whole forward (hundreds of kernels) at once, so a small decode step
is no longer paced by Python; prefill and mixed steps, whose shapes vary, run eagerly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass
class HostMeta:
    """The step's layout on the host: what the reference path loops over and the debug check reads."""

    cu_seqlens_q: list
    k_starts: list
    seqused_k: list
    requests: list             # (N,) the request of each sequence
    emit_to: list              # (R,) the request each sampled token goes to, None for an idle decode


@dataclass
class StepInputs:
    """A step as tensors on the device (shapes in the module docstring)."""

    input_ids: torch.Tensor
    positions: torch.Tensor
    slot_mapping: torch.Tensor
    cu_seqlens_q: torch.Tensor
    k_starts: torch.Tensor
    seqused_k: torch.Tensor
    max_seqlen_q: int
    max_seqlen_k: int
    logits_rows: torch.Tensor
    host: HostMeta


def step_arrays(plan, seqs, starts: dict, spare: int, pad_id: int = 0) -> dict:
    """numpy arrays of a plan's stream. ``seqs[r]``: request r's tokens so far (prompt + outputs);
    ``starts[r]``: its region's first row. Decodes are laid out in bulk (one list each), pieces one by one."""
    idle = set(plan.idle)
    dec, ctx = plan.decodes, plan.contexts
    ids = [[seqs[r][c] if c < len(seqs[r]) else pad_id for r, c in zip(dec, ctx)]]
    pos = [list(ctx)]
    qlen = [1] * len(dec)
    kstart = [starts[r] for r in dec]
    used = list(plan.seqused_k)
    rows = list(range(len(dec)))
    emit_to = [None if r in idle else r for r in dec]
    requests = list(dec)
    t = len(dec)
    for p in plan.prefills:
        n = p.tokens + p.pad
        ids.append(seqs[p.request][p.done:p.done + p.tokens] + [pad_id] * p.pad)
        pos.append(np.arange(p.done, p.done + n))
        qlen.append(n), kstart.append(starts[p.request]), requests.append(p.request)
        if p.last:
            rows.append(t + p.tokens - 1), emit_to.append(p.request)
        t += n
    positions = np.concatenate([np.asarray(x, dtype=np.int64) for x in pos])
    slots = positions + np.repeat(np.asarray(kstart, dtype=np.int64), qlen)
    cu = np.concatenate([[0], np.cumsum(qlen)]).astype(np.int32)
    return {"input_ids": np.concatenate([np.asarray(x, dtype=np.int64) for x in ids]), "positions": positions,
            "slot_mapping": slots, "cu_seqlens_q": cu, "k_starts": np.asarray(kstart + [spare], dtype=np.int32),
            "seqused_k": np.asarray(used, dtype=np.int32), "logits_rows": np.asarray(rows, dtype=np.int64),
            "host": HostMeta(cu.tolist(), kstart, used, requests, emit_to),
            "max_seqlen_q": max(qlen), "max_seqlen_k": max(used)}


def to_device(arrays: dict, device) -> StepInputs:
    """The arrays as :class:`StepInputs` on ``device``: one host-to-device copy per integer width."""
    longs = ("input_ids", "positions", "slot_mapping", "logits_rows")
    ints = ("cu_seqlens_q", "k_starts", "seqused_k")
    out = {}
    for names, dtype in ((longs, torch.int64), (ints, torch.int32)):
        blob = torch.from_numpy(np.concatenate([arrays[k] for k in names])).to(device, dtype)
        for k, part in zip(names, blob.split([len(arrays[k]) for k in names])):
            out[k] = part
    return StepInputs(**out, max_seqlen_q=arrays["max_seqlen_q"], max_seqlen_k=arrays["max_seqlen_k"],
                      host=arrays["host"])


def sample(logits: torch.Tensor) -> torch.Tensor:
    """Greedy: the argmax of each (R, vocab) row, EOS ignored (the trace fixes every output length)."""
    return logits.argmax(dim=-1)


class DecodeGraphs:
    """CUDA graphs of decode-only steps, one per batch-size bucket, sharing one memory pool."""

    def __init__(self, llama, cache, attend, max_batch: int, max_seqlen_k: int):
        self.llama, self.cache, self.attend = llama, cache, attend
        self.buckets = [b for b in BUCKETS if b < max_batch] + [max_batch]
        self.max_seqlen_k = int(max_seqlen_k)
        n, dev = self.buckets[-1], llama.device
        self.longs = torch.zeros(4 * n, dtype=torch.int64, device=dev)      # ids, positions, slots, rows
        self.ints = torch.zeros(2 * n + 1, dtype=torch.int32, device=dev)   # k_starts (n + 1), seqused (n)
        self.cu = torch.arange(n + 1, dtype=torch.int32, device=dev)
        self.tokens = torch.zeros(n, dtype=torch.int64, device=dev)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.capture()

    def inputs(self, b: int) -> StepInputs:
        n = self.buckets[-1]
        ids, pos, slots, rows = self.longs.view(4, n)[:, :b]
        return StepInputs(ids, pos, slots, self.cu[:b + 1], self.ints[:b + 1], self.ints[n + 1:n + 1 + b],
                          1, self.max_seqlen_k, rows, None)

    def fill(self, arrays: dict | None, b: int) -> None:
        """Copy a step's arrays into the static buffers of bucket b (rows beyond it: the spare slot)."""
        n, spare = self.buckets[-1], self.cache.spare
        longs = np.zeros((4, n), dtype=np.int64)
        longs[2], longs[3] = spare, np.arange(n)
        ints = np.full(2 * n + 1, spare, dtype=np.int32)
        ints[n + 1:] = 1
        if arrays is not None:
            m = len(arrays["input_ids"])
            longs[0, :m], longs[1, :m], longs[2, :m] = arrays["input_ids"], arrays["positions"], arrays["slot_mapping"]
            ints[:m], ints[n + 1:n + 1 + m] = arrays["k_starts"][:m], arrays["seqused_k"]
        self.longs.copy_(torch.from_numpy(longs.ravel()))
        self.ints.copy_(torch.from_numpy(ints))

    def run(self, b: int) -> None:
        self.tokens[:b] = sample(self.llama.forward(self.inputs(b), self.cache, self.attend))

    def capture(self) -> None:
        """Largest bucket first, so the smaller ones reuse its memory pool (as nano-vllm does)."""
        pool = None
        self.fill(None, self.buckets[-1])
        for b in reversed(self.buckets):
            self.run(b)                                   # warm-up: cuBLAS picks its kernels outside the capture
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self.run(b)
            pool = graph.pool() if pool is None else pool
            self.graphs[b] = graph
        torch.cuda.synchronize()

    def bucket(self, n: int) -> int:
        return next(b for b in self.buckets if b >= n)

    def replay(self, arrays: dict) -> torch.Tensor:
        """The sampled tokens (n,) of a decode-only step, from the smallest bucket that holds it."""
        n = len(arrays["input_ids"])
        b = self.bucket(n)
        self.fill(arrays, b)
        self.graphs[b].replay()
        return self.tokens[:n]
