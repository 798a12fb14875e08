"""Replay a request trace under a serving policy: when each request is prefilled, decodes, finishes.

numpy only. A request arrives with P prompt tokens and needs G generated tokens: one
prefill (which yields its first token) and G - 1 decode steps. The server runs one forward
**step** at a time, priced by :class:`~packviz.serving.costs.Pricer`. Four policies:

* ``static`` -- when the server is free, take up to B waiting requests (FIFO), prefill them
  padded to the longest prompt W, then decode all B slots every step until the batch's
  longest G is done; then the next batch. KV reserved per slot: W + max G.
* ``static-packed`` -- the same, with the prefill one ragged (varlen) stream: no prompt
  padding; decode still waits for the batch's longest G. KV reserved per slot: P + max G.
* ``continuous`` -- iteration-level scheduling (Orca, OSDI '22): every step finished requests
  leave and waiting ones join (whole-prompt prefill in the same step as the others'
  decodes), within ``max_batch`` running requests and a KV cache held in pages of 16
  tokens (vLLM's paged attention, SOSP '23).
* ``chunked`` -- continuous with a per-step token budget (Sarathi-Serve, OSDI '24; vLLM's
  ``max_num_batched_tokens``): decodes first, then prefills split into chunks to fill it.

Three requests, one slot each, on a toy cost model where every step takes 1 s::

    static, B = 2        step:  1    2    3    4    5    6
      r0 (G = 3)            prefill dec  dec
      r1 (G = 1)            prefill ···  ···       <- slot held, decoding nothing
      r2 (G = 2)                            prefill dec
    continuous, B = 2
      r0                    prefill dec  dec
      r1                    prefill
      r2                            prefill dec    <- joins as soon as r1 leaves

When the KV cache is full a running request is **preempted** (the most recently admitted,
as vLLM does): its pages are freed and it returns to the head of the queue, to be
prefilled again over its prompt and the tokens it already generated (recomputation).

Between events (an arrival that can join, a completion, a full cache) the running set is
constant, so ``continuous`` and ``chunked`` advance whole spans of decode steps at once in
closed form (:func:`~packviz.serving.costs.span_sums`) -- the same steps, the same times,
without a Python loop per step.

Conventions: time is in seconds from the first arrival; a request's first token is ready
at the end of its prefill step (TTFT = that - arrival); it finishes when its last token is
produced (a streaming server; without streaming, ``static`` would return every request at
its batch's end, which only makes it look worse). ``release_s`` is when its slot and KV
are freed: its batch's end under ``static``, its finish otherwise.
"""

from __future__ import annotations

import collections
import heapq
import math
import time
from dataclasses import dataclass

import numpy as np

from ..checks import one_of, positive_float, positive_int
from ..shapes import get_shape
from ..trace import Trace
from .costs import (MEMORY_UTILIZATION, CostModel, Pricer, Work, check_attention, chunk_pairs, cost_model,
                    padded_prefill_work, span_sums, steps_to_reach, varlen_prefill_work)

POLICIES = ("static", "static-packed", "continuous", "chunked")
ARRIVALS = ("trace", "offline")
PAGE_SIZE = 16
"""KV-cache page (block) size in tokens: vLLM's default ``block_size``."""
MAX_PAGE_SIZE = 2**16
"""The largest page size accepted (the simulator keeps a counter per token of a page)."""


@dataclass(frozen=True)
class ServeConfig:
    """How the server schedules.

    ``max_batch``: B for the static policies, the cap on running requests (vLLM's
    ``max_num_seqs``) for the others. ``token_budget``: ``chunked`` only, tokens per step
    (``max_num_batched_tokens``), at least ``max_batch`` so every decode fits.
    ``kv_budget_tokens``: KV-cache capacity; ``None``: what is left of 90% of the GPU's
    memory after the weights. ``padded_attention`` / ``ragged_attention``: how attention
    is priced (:mod:`packviz.serving.costs`).
    """

    policy: str = "continuous"
    max_batch: int = 32
    token_budget: int = 2048
    kv_budget_tokens: int | None = None
    page_size: int = PAGE_SIZE
    padded_attention: str = "masked"
    ragged_attention: str = "varlen"

    def __post_init__(self) -> None:
        one_of("policy", self.policy, POLICIES)
        positive_int("max_batch", self.max_batch)
        positive_int("token_budget", self.token_budget)
        positive_int("page_size", self.page_size, maximum=MAX_PAGE_SIZE)
        if self.kv_budget_tokens is not None:
            positive_int("kv_budget_tokens", self.kv_budget_tokens)
        check_attention(self.padded_attention, self.ragged_attention)
        if self.policy == "chunked" and self.token_budget < self.max_batch:
            raise ValueError(f"token_budget {self.token_budget} is below max_batch {self.max_batch}: every running "
                             "request decodes one token per step; raise the token budget or lower max_batch")


@dataclass
class Ledger:
    """Totals of a run, charged step by step (every count over all steps)."""

    steps: int = 0
    busy_s: float = 0.0                 # time some step was running
    flops: float = 0.0                  # FLOPs computed (pads, junk decodes, recomputation included)
    prefill_tokens: int = 0             # token slots computed by prefills (pads and recomputation included)
    prefill_pad_tokens: int = 0
    decode_slot_steps: int = 0          # running slots summed over decode steps
    decode_idle_slot_steps: int = 0     # of those, slots whose request had already finished
    kv_reserved_token_s: float = 0.0    # ∫ KV tokens reserved dt
    kv_used_token_s: float = 0.0        # ∫ KV tokens of unfinished requests dt
    kv_reserved_peak: int = 0
    kv_used_peak: int = 0
    prefill_emissions: int = 0          # tokens emitted by prefills (first tokens, and after a recomputation)
    preemptions: int = 0
    recomputed_tokens: int = 0          # KV tokens discarded by preemptions (computed again later)


@dataclass(frozen=True, eq=False)
class SimResult:
    """One replay. Per-request arrays have shape (N,), in the trace's order.

    ``trace`` holds the arrivals as served (after ``rate_scale`` or ``offline``).
    """

    trace: Trace
    config: ServeConfig
    model: str
    cost: CostModel
    kv_budget_tokens: int
    start_s: np.ndarray         # first scheduled (its prefill step starts)
    first_token_s: np.ndarray   # end of its prefill step
    finish_s: np.ndarray        # its last token
    release_s: np.ndarray       # its slot and KV freed
    slot: np.ndarray            # the slot it ran in (its last one, if preempted)
    ledger: Ledger
    useful_flops: float
    arrivals: str = "trace"
    rate_scale: float = 1.0
    seconds: float = 0.0        # wall time of the simulation


# ---------------------------------------------------------------------- set-up
def served_trace(trace: Trace, arrivals: str = "trace", rate_scale: float = 1.0) -> Trace:
    """The requests with the arrivals a run uses: the trace's own times ÷ ``rate_scale``, or all at 0."""
    one_of("arrivals", arrivals, ARRIVALS)
    rate_scale = positive_float("rate_scale", rate_scale)
    if arrivals == "offline":
        return Trace(np.zeros(len(trace)), trace.prompt_tokens, trace.generated_tokens, name=f"{trace.name} offline")
    return trace if rate_scale == 1.0 else trace.scaled(rate_scale)


def kv_budget(shape, cost: CostModel, kv_budget_tokens: int | None = None) -> int:
    """KV-cache capacity in tokens: given, or (90% of GPU memory - weights) / KV bytes per token.

    >>> from packviz.serving.costs import preset_cost_model
    >>> kv_budget("llama-3-8b", preset_cost_model("h100"))     # (72 GB - 16.06 GB) / 128 KiB
    426784
    """
    shape = get_shape(shape)
    if kv_budget_tokens is not None:
        return positive_int("kv_budget_tokens", kv_budget_tokens)
    free = cost.memory_bytes * MEMORY_UTILIZATION - shape.weight_bytes()
    if free < shape.kv_bytes_per_token():
        raise ValueError(f"{shape.name} ({shape.weight_bytes() / 1e9:.1f} GB of weights) leaves no room for a KV "
                         f"cache on {cost.name} ({cost.memory_bytes / 1e9:.0f} GB); choose a larger GPU")
    return int(free // shape.kv_bytes_per_token())


def check_fits(trace: Trace, budget: int, page_size: int) -> None:
    """``ValueError`` naming the first request whose P + G tokens (in whole pages) exceed the KV budget."""
    need = -(-(trace.prompt_tokens + trace.generated_tokens) // page_size) * page_size
    bad = np.flatnonzero(need > budget)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"kv_budget_tokens {budget:,} is too small for request {i} (P {trace.prompt_tokens[i]:,} + "
                         f"G {trace.generated_tokens[i]:,} tokens needs {need[i]:,}); give at least {need.max():,}")


def useful_flops(trace: Trace, pricer: Pricer) -> float:
    """FLOPs the requests need, whatever the policy: each prompt's own tokens and causal triangle,
    one lm_head row per generated token, each decode's attention over its own context."""
    p = trace.prompt_tokens.astype(np.float64)
    d = trace.generated_tokens.astype(np.float64) - 1          # decode steps
    tokens = p.sum() + d.sum()
    pairs = (p * (p + 1) / 2).sum() + (d * p + d * (d + 1) / 2).sum()
    return tokens * pricer.linear + (d + 1).sum() * pricer.lm_head + pairs * pricer.attn


# ---------------------------------------------------------------------- static
def _static_take(p: np.ndarray, g: np.ndarray, budget: int, packed: bool) -> int:
    """How many of the (B,) candidates fit the KV budget (at least 1): slots × (W + max G), or Σ (P + max G)."""
    gmax = np.maximum.accumulate(g)
    n = np.arange(1, len(p) + 1)
    need = np.cumsum(p) + n * gmax if packed else n * (np.maximum.accumulate(p) + gmax)
    return max(1, int((need <= budget).sum()))


def _static_batch(p, g, t, cfg: ServeConfig, pricer: Pricer, ledger: Ledger, packed: bool):
    """Run one static batch from time ``t``: (first token time, (n,) finish times, batch end)."""
    n, w, gmax = len(p), int(p.max()), int(g.max())
    work = varlen_prefill_work(p) if packed else padded_prefill_work(p, cfg.padded_attention)
    t_pf = pricer.seconds(work)
    kv0 = int(p.sum()) if packed else n * w
    line = pricer.decode_line(n, kv0)
    k = np.arange(1, gmax, dtype=np.float64)                 # decode steps 1 .. gmax - 1
    tk = line.step(k)
    cum = np.concatenate([[0.0], np.cumsum(tk)])
    kcum = np.concatenate([[0.0], np.cumsum(k * tk)])
    first = t + t_pf
    duration = t_pf + cum[-1]
    reserved = kv0 + n * gmax
    ledger.steps += gmax
    ledger.busy_s += duration
    ledger.flops += pricer.flops(work) + pricer.cost.flop_rate * float(((line.u0 + line.u1 * k)).sum())
    ledger.prefill_tokens += work.tokens
    ledger.prefill_pad_tokens += work.tokens - int(p.sum())
    ledger.decode_slot_steps += n * (gmax - 1)
    ledger.decode_idle_slot_steps += n * (gmax - 1) - int((g - 1).sum())
    ledger.prefill_emissions += n
    ledger.kv_reserved_token_s += reserved * duration
    ledger.kv_reserved_peak = max(ledger.kv_reserved_peak, reserved)
    d = g - 1                                                # each request's own decode steps
    ledger.kv_used_token_s += float((p * (t_pf + cum[d]) + kcum[d]).sum())
    ledger.kv_used_peak = max(ledger.kv_used_peak, int(p.sum()) + _alive_growth_peak(p, d))
    return first, first + cum[d], first + cum[-1]


def _alive_growth_peak(p: np.ndarray, d: np.ndarray) -> int:
    """max over decode steps j ≥ 1 of Σ_{i alive at j} (P_i + j) - ΣP (0 when nothing decodes).

    ``p``, ``d``: (n,) prompt tokens and decode steps of a batch's requests; request i is
    alive at steps 1..d_i. Computed from counts by d, no (n, steps) matrix.
    """
    if d.max() <= 0:
        return 0
    j = np.arange(1, int(d.max()) + 1)
    alive = np.bincount(d, minlength=len(j) + 1)[::-1].cumsum()[::-1][1:]      # #{d_i >= j}
    alive_p = np.bincount(d, weights=p, minlength=len(j) + 1)[::-1].cumsum()[::-1][1:]
    return int(max(0.0, (alive_p + alive * j).max() - p.sum()))


def run_static(trace: Trace, cfg: ServeConfig, pricer: Pricer, budget: int, ledger: Ledger) -> dict:
    """``static`` / ``static-packed``: FIFO batches of up to B, each run to its longest G.

    Returns per-request arrays (N,): start_s, first_token_s, finish_s, release_s, slot.
    """
    packed = cfg.policy == "static-packed"
    a, p_all, g_all = trace.arrival_s, trace.prompt_tokens, trace.generated_tokens
    n_req = len(trace)
    out = {k: np.zeros(n_req) for k in ("start_s", "first_token_s", "finish_s", "release_s")}
    out["slot"] = np.zeros(n_req, dtype=np.int64)
    i, t = 0, 0.0
    while i < n_req:
        t = max(t, float(a[i]))
        arrived = int(np.searchsorted(a, t, side="right"))
        j = i + min(cfg.max_batch, arrived - i)
        j = i + _static_take(p_all[i:j], g_all[i:j], budget, packed)
        first, finish, end = _static_batch(p_all[i:j], g_all[i:j], t, cfg, pricer, ledger, packed)
        out["start_s"][i:j], out["first_token_s"][i:j], out["finish_s"][i:j] = t, first, finish
        out["release_s"][i:j], out["slot"][i:j] = end, np.arange(j - i)
        i, t = j, end
    return out


# ---------------------------------------------------------------------- continuous and chunked
class IterationLevel:
    """The ``continuous`` / ``chunked`` scheduler: one instance replays one trace.

    State, in the vocabulary of vLLM's scheduler: ``waiting`` (FIFO; preempted requests go
    back to its head), ``running`` (admission order; prefilling or decoding), a decoding
    request's KV tokens at the start of global step s = ``base[i] + s``, its last decode
    step ``last[i]`` (a heap gives the next completion), prefilling requests' progress
    ``prefill[i] = [done, target]``, and free slots (a heap: the lowest free slot is reused).
    """

    def __init__(self, trace: Trace, cfg: ServeConfig, pricer: Pricer, budget: int, ledger: Ledger,
                 fast_forward: bool = True):
        self.a = trace.arrival_s.tolist()
        self.p, self.g = trace.prompt_tokens.tolist(), trace.generated_tokens.tolist()
        self.cfg, self.pricer, self.ledger = cfg, pricer, ledger
        self.chunked, self.dense = cfg.policy == "chunked", cfg.ragged_attention == "dense"
        self.fast_forward = fast_forward
        self.ps, self.page_limit = cfg.page_size, budget // cfg.page_size
        n = len(self.a)
        self.t, self.s, self.nxt = 0.0, 0, 0
        self.waiting: collections.deque = collections.deque()
        self.running: dict[int, None] = {}
        self.base: dict[int, int] = {}
        self.last: dict[int, int] = {}
        self.heap: list[tuple[int, int]] = []
        self.sum_base = 0
        self.prefill: dict[int, list[int]] = {}
        self.emitted = [0] * n
        self.free_slots = list(range(cfg.max_batch))
        self.slot_of = [0] * n
        self.residue = [0] * cfg.page_size      # decoding requests by (-base) mod page_size: exact page counts
        self.held_after_decodes = 0             # pages after this step's decodes (set when a step is planned)
        self.out = {k: [math.nan] * n for k in ("start_s", "first_token_s", "finish_s")}
        self.finished = 0

    # -- KV pages -----------------------------------------------------------
    def pages_after(self, k: int) -> int:
        """Pages held after k more pure-decode steps (decoding requests grown by k; prefills as they are).

        Σ ceil(x_i / ps) = (Σ x_i + Σ (-x_i mod ps)) / ps with x_i = base_i + s + k; the second sum
        comes from how many requests have each residue of -base_i: O(page_size), not O(requests).
        """
        ps, t = self.ps, self.s + k
        slack = sum(c * ((r - t) % ps) for r, c in enumerate(self.residue) if c)
        pages = (self.sum_base + len(self.base) * t + slack) // ps
        return pages + (sum(-(-d // ps) for d, _ in self.prefill.values()) if self.prefill else 0)

    def fits(self, k: int, extra: int = 0) -> bool:
        """Do the pages held after k pure-decode steps, plus ``extra``, fit the budget?

        An O(1) upper bound first (each request wastes < 1 page): exact only near a full cache.
        """
        n = len(self.base) + len(self.prefill)
        bound = (self.sum_base + len(self.base) * (self.s + k) + sum(d for d, _ in self.prefill.values())) \
            // self.ps + n
        return bound + extra <= self.page_limit or self.pages_after(k) + extra <= self.page_limit

    def decode_steps_that_fit(self, k_max: int) -> int:
        """The most pure-decode steps (≤ k_max) after each of which the pages fit the budget."""
        if self.fits(k_max):
            return k_max
        lo, hi = 0, k_max - 1            # pages_after(lo) fits (or lo = 0), pages_after(hi + 1) does not
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.pages_after(mid) <= self.page_limit:
                lo = mid
            else:
                hi = mid - 1
        return lo

    # -- membership ---------------------------------------------------------
    def start_decoding(self, i: int, kv: int, s_next: int) -> None:
        """Request i holds ``kv`` KV tokens at the start of step ``s_next`` and decodes from then on."""
        self.base[i] = kv - s_next
        self.sum_base += kv - s_next
        self.last[i] = s_next + (self.g[i] - self.emitted[i]) - 1
        heapq.heappush(self.heap, (self.last[i], i))
        self.residue[(s_next - kv) % self.ps] += 1

    def leave(self, i: int) -> None:
        """Request i stops running (finished or preempted): its slot and pages are freed."""
        del self.running[i]
        if i in self.base:
            base = self.base.pop(i)
            self.sum_base -= base
            self.residue[-base % self.ps] -= 1
            del self.last[i]
        self.prefill.pop(i, None)
        heapq.heappush(self.free_slots, self.slot_of[i])

    def preempt_last(self) -> None:
        """Preempt the most recently admitted request: back to the queue's head, to be recomputed."""
        i = next(reversed(self.running))
        if i in self.prefill:
            done = self.prefill[i][0]
        else:                                   # decoding: tokens so far = G - decode steps still to run
            done = self.base[i] + self.s
            self.emitted[i] = self.g[i] - (self.last[i] - self.s + 1)
        self.leave(i)
        self.waiting.appendleft(i)
        self.ledger.preemptions += 1
        self.ledger.recomputed_tokens += done

    def arrive(self) -> None:
        while self.nxt < len(self.a) and self.a[self.nxt] <= self.t:
            self.waiting.append(self.nxt)
            self.nxt += 1

    def retire(self) -> None:
        """Requests whose last decode step has run finish now."""
        while self.heap and self.heap[0][0] < self.s:
            last, i = heapq.heappop(self.heap)
            if self.last.get(i) == last:            # not a stale entry of a preempted request
                self.out["finish_s"][i] = self.t
                self.emitted[i] = self.g[i]
                self.finished += 1
                self.leave(i)

    # -- one step with prefill work -----------------------------------------
    def target(self, i: int) -> int:
        """Tokens a (re)prefill of request i computes: its prompt and the tokens it already emitted."""
        return self.p[i] + self.emitted[i]

    def plan_prefills(self) -> list[tuple[int, int, int]]:
        """This step's prefill pieces [(request, done before, tokens)], admitting from the queue.

        Decodes come first: make room for their growth (preempting), then continue
        prefilling requests in admission order, then admit the queue's head while the
        running cap, the token budget (``chunked``) and the pages allow -- unless this step
        preempted (as vLLM, which admits nothing in a step that had to preempt).
        """
        preempted = False
        while self.base and not self.fits(1):
            self.preempt_last()
            preempted = True
        room = self.cfg.token_budget - len(self.base) if self.chunked else math.inf
        self.held_after_decodes = self.pages_after(1)           # admissions add no pages until their pieces
        free = self.page_limit - self.held_after_decodes
        pieces = []
        for i, (done, target) in self.prefill.items():
            c = min(target - done, room)
            extra = -(-(done + c) // self.ps) - -(-done // self.ps)
            if c <= 0 or extra > free:
                break
            pieces.append((i, done, c))
            room, free = room - c, free - extra
        while not preempted and self.waiting and room > 0 and len(self.running) < self.cfg.max_batch:
            i = self.waiting[0]
            c = min(self.target(i), room)
            if -(-c // self.ps) > free:
                break
            self.admit(self.waiting.popleft())
            pieces.append((i, 0, c))
            room, free = room - c, free - -(-c // self.ps)
        return pieces

    def admit(self, i: int) -> None:
        self.running[i] = None
        self.prefill[i] = [0, self.target(i)]
        self.slot_of[i] = heapq.heappop(self.free_slots)
        if math.isnan(self.out["start_s"][i]):
            self.out["start_s"][i] = self.t

    def step_work(self, pieces) -> Work:
        """The :class:`Work` of one step: every decoding request's token plus the prefill pieces."""
        n = len(self.base)
        kv_dec = self.sum_base + n * self.s
        done_total = sum(d for _, d, _ in pieces)
        tokens = n + sum(c for _, _, c in pieces)
        finishing = sum(1 for i, d, c in pieces if d + c == self.prefill[i][1])
        kv_read, kv_write = kv_dec + done_total, tokens
        if self.dense:
            pairs = tokens * (kv_read + kv_write)
        else:
            pairs = kv_dec + n + sum(chunk_pairs(d, c) for _, d, c in pieces)
        return Work(tokens, n + finishing, pairs, kv_read, kv_write)

    def mixed_step(self) -> None:
        """One step with prefill work (and the decodes of everyone decoding)."""
        pieces = self.plan_prefills()
        w = self.step_work(pieces)
        if w.tokens == 0:               # cannot happen while every request fits the budget alone; a guard
            raise RuntimeError(f"scheduler stalled at t = {self.t:.6g} s with {len(self.running)} running, "
                               f"{len(self.waiting)} waiting")
        dt = self.pricer.seconds(w)
        self.charge_step(w, dt, pieces)
        self.t += dt
        self.s += 1
        self.retire()
        for i, done, c in pieces:
            self.prefill[i][0] = done + c
            if done + c == self.prefill[i][1]:
                self.prefill_done(i)

    def charge_step(self, w: Work, dt: float, pieces) -> None:
        led = self.ledger
        led.steps += 1
        led.busy_s += dt
        led.flops += self.pricer.flops(w)
        led.prefill_tokens += w.tokens - len(self.base)
        led.decode_slot_steps += len(self.base)
        prefill_kv = sum(d for d, _ in self.prefill.values()) + (w.tokens - len(self.base))
        used = self.sum_base + len(self.base) * (self.s + 1) + prefill_kv
        reserved = self.ps * self.held_after_decodes + self.prefill_page_growth(pieces)
        led.kv_used_token_s += used * dt
        led.kv_reserved_token_s += reserved * dt
        led.kv_used_peak = max(led.kv_used_peak, used)
        led.kv_reserved_peak = max(led.kv_reserved_peak, reserved)

    def prefill_page_growth(self, pieces) -> int:
        """KV tokens of the pages this step's prefill pieces add to those already held."""
        return self.ps * sum(-(-(d + c) // self.ps) - -(-d // self.ps) for _, d, c in pieces)

    def prefill_done(self, i: int) -> None:
        """Request i's (re)prefill is complete: it emits a token, then finishes or decodes."""
        target = self.prefill.pop(i)[1]
        self.emitted[i] += 1
        self.ledger.prefill_emissions += 1
        if math.isnan(self.out["first_token_s"][i]):
            self.out["first_token_s"][i] = self.t
        if self.emitted[i] >= self.g[i]:
            self.out["finish_s"][i] = self.t
            self.finished += 1
            self.leave(i)
        else:
            self.start_decoding(i, target, self.s)

    # -- a span of pure decode steps ------------------------------------------
    def can_admit_now(self) -> bool:
        if self.prefill:
            return True
        if not self.waiting or len(self.running) >= self.cfg.max_batch:
            return False
        c = min(self.target(self.waiting[0]), self.cfg.token_budget - len(self.base) if self.chunked else math.inf)
        return self.fits(1, -(-c // self.ps))

    def span_length(self, line) -> int:
        """Decode steps until the next event: a completion, an arrival that could join, a full cache."""
        k = self.heap[0][0] - self.s + 1
        while self.last.get(self.heap[0][1]) != self.heap[0][0]:      # drop stale heap entries
            heapq.heappop(self.heap)
            k = self.heap[0][0] - self.s + 1
        if not self.waiting and self.nxt < len(self.a) and len(self.running) < self.cfg.max_batch:
            reach = steps_to_reach(line, self.a[self.nxt] - self.t, k)
            k = k if reach is None else max(1, reach)
        return self.decode_steps_that_fit(k)

    def decode_span(self) -> bool:
        """Advance a span of pure decode steps in closed form; False if none can run now."""
        n = len(self.base)
        line = self.pricer.decode_line(n, self.sum_base + n * self.s, self.dense)
        k = self.span_length(line)
        if k <= 0:
            return False
        total, ktotal = span_sums(line, k)
        kv0 = self.sum_base + n * self.s
        led = self.ledger
        led.steps += k
        led.busy_s += total
        led.flops += self.pricer.cost.flop_rate * (line.u0 * k + line.u1 * k * (k + 1) / 2)
        led.decode_slot_steps += n * k
        used_end, reserved_end = kv0 + n * k, self.ps * self.pages_after(k)
        led.kv_used_token_s += kv0 * total + n * ktotal
        led.kv_reserved_token_s += kv0 * total + n * ktotal + (reserved_end - used_end) * total
        led.kv_used_peak = max(led.kv_used_peak, used_end)
        led.kv_reserved_peak = max(led.kv_reserved_peak, reserved_end)
        self.t += total
        self.s += k
        self.retire()
        return True

    def run(self) -> dict:
        n = len(self.a)
        while self.finished < n:
            self.arrive()
            if not self.running and not self.waiting:
                self.t = max(self.t, self.a[self.nxt])
                continue
            if not self.fast_forward or not self.base or self.can_admit_now() or not self.decode_span():
                self.mixed_step()
        out = {k: np.array(v) for k, v in self.out.items()}
        out["release_s"] = out["finish_s"].copy()
        out["slot"] = np.array(self.slot_of, dtype=np.int64)
        return out


# ---------------------------------------------------------------------- entry point
def simulate(trace: Trace | None = None, policy: str = "continuous", *, model="llama-3-8b", gpu="h100",
             arrivals: str = "trace", rate_scale: float = 1.0, max_batch: int = 32, token_budget: int = 2048,
             kv_budget_tokens: int | None = None, page_size: int = PAGE_SIZE, padded_attention: str = "masked",
             ragged_attention: str = "varlen", fast_forward: bool = True) -> SimResult:
    """Replay ``trace`` (default: the shipped Azure conversation trace) under ``policy``.

    ``gpu``: a preset (``h100``, ``h200``, ``a100``), ``"calibrated"``, a calibration JSON
    path, or a :class:`CostModel`. ``arrivals``: ``"trace"`` (its own times ÷ ``rate_scale``)
    or ``"offline"`` (all at t = 0; static batches are consecutive groups of B). Summarise
    with :func:`packviz.serving.metrics.summary`. ``fast_forward=False`` steps one decode at
    a time instead of advancing spans in closed form: the same timeline, slower (a check).
    """
    from ..trace import azure_conv

    t0 = time.perf_counter()
    cfg = ServeConfig(policy, max_batch, token_budget, kv_budget_tokens, page_size, padded_attention, ragged_attention)
    shape = get_shape(model)
    cost = cost_model(gpu)
    served = served_trace(azure_conv() if trace is None else trace, arrivals, rate_scale)
    budget = kv_budget(shape, cost, kv_budget_tokens)
    check_fits(served, budget, page_size)
    pricer, ledger = Pricer(shape, cost), Ledger()
    if policy in ("static", "static-packed"):
        out = run_static(served, cfg, pricer, budget, ledger)
    else:
        out = IterationLevel(served, cfg, pricer, budget, ledger, fast_forward).run()
    return SimResult(served, cfg, shape.name, cost, budget, out["start_s"], out["first_token_s"], out["finish_s"],
                     out["release_s"], out["slot"], ledger, useful_flops(served, pricer), arrivals,
                     float(rate_scale), time.perf_counter() - t0)

