"""The physical KV cache: one region per running request, written and read in place.

torch only. The scheduler budgets KV in pages (``page_size``, ``kv_budget_tokens``: the
simulator's numbers); this module holds the tensors the GPU kernel reads. Layout::

    k, v: (layers, S + 1, Hkv, D)      S tokens of regions, then one spare slot
    request 3 -> [start, start + length)   its whole sequence, contiguous

A request's region is allocated when it is admitted and freed when it finishes or is
preempted. Its length is everything it will hold: P + G under ``continuous`` / ``chunked``
(the engine knows G because the trace fixes every output length and EOS is ignored -- a
shortcut a real server cannot take), W + max G or P + max G per slot under the static
policies (what they reserve). Contiguity is what lets FlashAttention-2 read a request's K/V
in place with ``seqused_k`` (no block table on torch 2.11), and no step gathers a context
into a new tensor. When no hole is long enough although enough tokens are free, the regions
are **compacted** (moved to the front, one copy of the live K/V); the engine counts how often.

Writes go through a slot mapping (``index_copy_``): token j of the step lands at row
``slot_mapping[j]``. Rows of a CUDA-graph bucket beyond the real batch write the spare
slot S, never out of bounds.
"""

from __future__ import annotations

import torch


class KVCache:
    """Regions of ``capacity`` tokens for ``layers`` layers of (Hkv, D) keys and values, plus one spare slot."""

    def __init__(self, layers: int, capacity: int, kv_heads: int, head_dim: int, dtype, device):
        self.capacity = int(capacity)
        self.spare = self.capacity
        nbytes = 2 * layers * (self.capacity + 1) * kv_heads * head_dim * torch.empty((), dtype=dtype).element_size()
        try:
            self.kv = torch.zeros((2, layers, self.capacity + 1, kv_heads, head_dim), dtype=dtype, device=device)
        except (RuntimeError, MemoryError) as e:       # torch.OutOfMemoryError is a RuntimeError
            raise ValueError(f"the KV cache of {self.capacity:,} tokens needs {nbytes / 2**30:.1f} GiB on {device}, "
                             f"which is not free ({str(e).splitlines()[0][:120]}); serve fewer requests at once "
                             "(max_batch) or shorter ones") from None
        self.k, self.v = self.kv[0], self.kv[1]        # (layers, S + 1, Hkv, D) each
        self.nbytes = nbytes
        self.regions: dict[int, tuple[int, int]] = {}  # request -> (start, length)
        self.compactions = 0

    # -- regions --------------------------------------------------------------
    @property
    def used(self) -> int:
        return sum(n for _, n in self.regions.values())

    def holes(self) -> list[tuple[int, int]]:
        """Free (start, length) runs between the regions, in address order."""
        out, cursor = [], 0
        for start, n in sorted(self.regions.values()):
            if start > cursor:
                out.append((cursor, start - cursor))
            cursor = start + n
        if cursor < self.capacity:
            out.append((cursor, self.capacity - cursor))
        return out

    def allocate(self, request: int, length: int) -> int:
        """A region of ``length`` tokens for ``request`` (first fit; compacting when fragmented); its start."""
        if request in self.regions:
            raise RuntimeError(f"request {request} already holds a KV region")
        if self.used + length > self.capacity:
            raise RuntimeError(f"KV cache full: request {request} needs {length:,} tokens, "
                               f"{self.capacity - self.used:,} of {self.capacity:,} are free")
        start = next((s for s, n in self.holes() if n >= length), None)
        if start is None:
            self.compact()
            start = self.used
        self.regions[request] = (start, length)
        return start

    def free(self, request: int) -> None:
        del self.regions[request]

    def compact(self) -> None:
        """Move every region to the front, in address order (one copy of the live K/V of all layers)."""
        cursor = 0
        for request, (start, n) in sorted(self.regions.items(), key=lambda kv: kv[1][0]):
            if start != cursor:
                self.kv[:, :, cursor:cursor + n] = self.kv[:, :, start:start + n].clone()
                self.regions[request] = (cursor, n)
            cursor += n
        self.compactions += 1

    def start(self, request: int) -> int:
        return self.regions[request][0]

    # -- the step's writes ------------------------------------------------------
    def write(self, layer: int, slot_mapping: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Token j's (Hkv, D) key and value go to row ``slot_mapping[j]`` of the layer's caches: (T,) indices."""
        self.k[layer].index_copy_(0, slot_mapping, k)
        self.v[layer].index_copy_(0, slot_mapping, v)

    def check_reads(self, requests, k_starts, seqused_k) -> None:
        """Debug: every sequence reads inside its own region (no step reads another request's K/V)."""
        for r, start, used in zip(requests, k_starts, seqused_k):
            own, n = self.regions[r]
            if start != own or not 0 < used <= n:
                raise AssertionError(f"request {r} reads [{start}, {start + used}) outside its region "
                                     f"[{own}, {own + n})")
