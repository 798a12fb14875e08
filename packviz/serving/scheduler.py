"""The scheduler: which requests run in the next forward step. One scheduler, two clocks.

Pure Python (numpy for a few sums). A scheduler never knows whether its steps are priced or
executed: a driver asks it for a :class:`StepPlan`, runs the step -- the simulator prices it
with a cost model (:mod:`packviz.serving.simulator`), the engine executes it on a real Llama
(:mod:`packviz.serving.engine`) -- and hands back the seconds it took::

    sched.arrive()                  # requests with arrival_s <= sched.t join the queue
    plan = sched.plan()             # preempt, admit, choose decodes and prefill pieces
    seconds = clock(plan)           # priced or executed
    sched.commit(plan, seconds)     # the clock moves; tokens are emitted; requests finish

A request arrives with P prompt tokens and needs G generated tokens: one prefill (which
yields its first token) and G - 1 decodes. Four policies:

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

Three requests, one slot each, every step 1 s::

    static, B = 2        step:  1    2    3    4    5
      r0 (G = 3)            prefill dec  dec
      r1 (G = 1)            prefill ···  ···       <- slot held, decoding nothing
      r2 (G = 2)                            prefill dec
    continuous, B = 2
      r0                    prefill dec  dec
      r1                    prefill
      r2                            prefill dec    <- joins as soon as r1 leaves

>>> import numpy as np
>>> from packviz.trace import Trace
>>> tr = Trace(np.zeros(3), np.array([2, 3, 1]), np.array([3, 1, 2]))
>>> s = make_scheduler(tr, ServeConfig("continuous", max_batch=2), kv_budget_tokens=64)
>>> plans = []
>>> while not s.done:
...     s.arrive()
...     plans.append(s.plan())
...     s.commit(plans[-1], 1.0)
>>> [p.describe() for p in plans]
['prefill r0[0:2] r1[0:3]', 'decode r0 | prefill r2[0:1]', 'decode r0 r2']

When the KV cache is full a running request is **preempted** (the most recently admitted,
as vLLM does): its pages are freed and it returns to the head of the queue, to be
prefilled again over its prompt and the tokens it already generated (recomputation).

Between events (an arrival that can join, a completion, a full cache) the running set is
constant: :meth:`Scheduler.span` says how many pure-decode steps can follow, so the
simulator prices them in closed form and :meth:`Scheduler.commit_span` applies them at
once -- the same schedule as stepping one plan at a time (a test checks it).

Conventions: time is in seconds from the first arrival; a request's first token is ready
at the end of its prefill step (TTFT = that - arrival); it finishes when its last token is
produced (a streaming server). ``release_s`` is when its slot and KV are freed: its batch's
end under the static policies, its finish otherwise.
"""

from __future__ import annotations

import collections
import heapq
import math
from dataclasses import dataclass

import numpy as np

from ..checks import instance_of, one_of, positive_int
from ..trace import Trace
from .costs import check_attention

POLICIES = ("static", "static-packed", "continuous", "chunked")
PAGE_SIZE = 16
"""KV-cache page (block) size in tokens: vLLM's default ``block_size``."""
MAX_PAGE_SIZE = 2**16
"""The largest page size accepted (the simulator keeps a counter per token of a page)."""
MAX_BATCH = 2**20
"""The largest ``max_batch`` accepted: 1,048,576 requests in one step (vLLM's default ``max_num_seqs`` is
256 to 1,024; more is a typo). Memory does not grow with it: slots are numbered as requests take them."""
MAX_TOKEN_BUDGET = 2**40
"""The largest ``token_budget`` (about 1.1 trillion tokens per step; vLLM's defaults are 2,048 to 16,384)."""
MAX_KV_BUDGET_TOKENS = 2**62
"""The largest ``kv_budget_tokens``: every KV total stays within int64."""
MAX_REQUEST_TOKENS = 2**40
"""The most tokens one request may hold, P + G (about 1.1 trillion, 10^5 times any context window): with
:data:`MAX_BATCH` it keeps every per-step KV sum within int64."""


def integer(name: str, value, maximum: int) -> int:
    """``value`` as a positive ``int`` <= ``maximum``: ``TypeError`` for what is not a number at all (a string,
    ``None``), ``ValueError`` naming the value and the bound otherwise.

    >>> integer("max_batch", "32", MAX_BATCH)
    Traceback (most recent call last):
    ...
    TypeError: max_batch must be an integer, e.g. 32; got str '32'
    """
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Number):
        instance_of(name, value, numbers.Integral, "an integer, e.g. 32")
    return positive_int(name, value, maximum=maximum)


ENGINE_CONFIGS = {
    "orca-like": {"policy": "continuous", "max_batch": 1024},
    "vllm-v1-like": {"policy": "chunked", "max_batch": 1024, "token_budget": 8192},
}
"""Named configurations close to engines, for an H100-class GPU (≥ 70 GiB, not an A100).

``vllm-v1-like``: vLLM v1 always chunks prefill and schedules running requests (decodes, then
unfinished chunks) before waiting ones under a per-step token budget -- this suite's ``chunked``
-- and its API server defaults on such a GPU to ``max_num_batched_tokens`` 8,192 and
``max_num_seqs`` 1,024 (``vllm/engine/arg_utils.py``, ``EngineArgs.get_batch_defaults``; the
offline ``LLM`` class uses 16,384 tokens); KV in blocks of 16 with 90% of the GPU's memory, as here.
``orca-like``: iteration-level scheduling without a token budget (Orca, OSDI '22): a whole prompt
joins the step of everyone's decodes; the same running cap, so only the chunking differs."""


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

    @property
    def ragged_pricing(self) -> str:
        """How ragged steps are priced: ``ragged_attention`` for the iteration-level policies; a static
        batch's steps are padded (``padded_attention``), never dense-ragged."""
        return "varlen" if self.policy in ("static", "static-packed") else self.ragged_attention

    def __post_init__(self) -> None:
        instance_of("policy", self.policy, str, f"a policy name ({', '.join(POLICIES)})")
        one_of("policy", self.policy, POLICIES)
        integer("max_batch", self.max_batch, MAX_BATCH)
        integer("token_budget", self.token_budget, MAX_TOKEN_BUDGET)
        integer("page_size", self.page_size, MAX_PAGE_SIZE)
        if self.kv_budget_tokens is not None:
            integer("kv_budget_tokens", self.kv_budget_tokens, MAX_KV_BUDGET_TOKENS)
        check_attention(self.padded_attention, self.ragged_attention)
        if self.policy == "chunked" and self.token_budget < self.max_batch:
            raise ValueError(f"token_budget {self.token_budget} is below max_batch {self.max_batch}: every running "
                             "request decodes one token per step; raise the token budget or lower max_batch")


# ---------------------------------------------------------------------- the plan of one step
@dataclass(frozen=True)
class Piece:
    """A prefill piece: ``tokens`` tokens of request ``request``'s (re)prefill after ``done`` cached ones.

    ``pad``: pad tokens computed after them (a static padded prefill: W - P). ``last``: the
    piece completes the (re)prefill, so the step samples a token from its last real position.
    ``recomputed``: how many of its tokens recompute KV a preemption threw away.
    """

    request: int
    done: int
    tokens: int
    pad: int = 0
    last: bool = True
    recomputed: int = 0


@dataclass(frozen=True)
class StepPlan:
    """One forward step: every decode (one token each) and every prefill piece, in stream order.

    ``decodes`` (n,) and ``contexts`` (n,): the requests decoding and the KV tokens each
    reads before its new token. ``idle``: decodes of requests that already finished (a static
    slot held for the batch's longest generation); their tokens are thrown away.
    ``kv_pad``: KV tokens of prompt pads the decodes also read (a left-padded static batch).
    ``admitted`` / ``preempted``: requests that joined or were evicted before this step.
    ``finishing``: requests whose last token this step produces. ``released``: requests whose
    slot and KV are freed after this step (the finishing ones, or a whole static batch at its
    end). ``kv_used`` / ``kv_reserved``: KV tokens held by unfinished requests / reserved, after the step.
    """

    step: int
    decodes: tuple[int, ...] = ()
    contexts: tuple[int, ...] = ()
    prefills: tuple[Piece, ...] = ()
    idle: tuple[int, ...] = ()
    kv_pad: int = 0
    admitted: tuple[int, ...] = ()
    preempted: tuple[int, ...] = ()
    finishing: tuple[int, ...] = ()
    released: tuple[int, ...] = ()
    kv_used: int = 0
    kv_reserved: int = 0

    @property
    def num_tokens(self) -> int:
        """Token slots of the step's stream: one per decode, every piece's tokens and pads."""
        return len(self.decodes) + sum(p.tokens + p.pad for p in self.prefills)

    @property
    def seqused_k(self) -> tuple[int, ...]:
        """Keys each sequence of the step reads, in stream order (decodes, then pieces), its new ones
        included: context + 1 for a decode, done + tokens + pads for a piece.

        >>> StepPlan(0, decodes=(0,), contexts=(30,), prefills=(Piece(1, 12, 5),)).seqused_k
        (31, 17)
        """
        return tuple(c + 1 for c in self.contexts) + tuple(p.done + p.tokens + p.pad for p in self.prefills)

    def key(self) -> tuple:
        """What the step runs, without the KV totals: two runs made the same schedule iff their keys match."""
        return (self.decodes, self.prefills, self.idle, self.admitted, self.preempted, self.finishing, self.released)

    def describe(self) -> str:
        """One line, e.g. ``'decode r0 r2 | prefill r3[0:512]'``."""
        parts = []
        if self.decodes:
            parts.append("decode " + " ".join(f"r{i}" + ("(idle)" if i in self.idle else "") for i in self.decodes))
        if self.prefills:
            parts.append("prefill " + " ".join(f"r{p.request}[{p.done}:{p.done + p.tokens}]"
                                               + (f"+{p.pad} pad" if p.pad else "") for p in self.prefills))
        if self.preempted:
            parts.insert(0, "preempt " + " ".join(f"r{i}" for i in self.preempted))
        return " | ".join(parts)


@dataclass(frozen=True)
class Span:
    """The next ``k_max`` steps are pure decodes of the same ``n`` slots (``idle`` of them finished).

    Step j (1 .. k_max) reads ``kv_before + n (j - 1)`` KV tokens (pads included) and writes n;
    of those, ``kv_pad`` are prompt pads and ``idle_kv_before + idle (j - 1)`` belong to idle slots.
    ``until_arrival``: a request arriving meanwhile could join, so the span must stop there.
    """

    n: int
    idle: int
    kv_before: int
    k_max: int
    until_arrival: bool
    kv_pad: int = 0
    idle_kv_before: int = 0


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# ---------------------------------------------------------------------- shared bookkeeping
class Scheduler:
    """State every policy shares: the clock, the queue, per-request times. Subclasses plan the steps."""

    def __init__(self, trace: Trace, cfg: ServeConfig, budget: int):
        self.trace, self.cfg, self.budget = trace, cfg, int(budget)
        self.a = trace.arrival_s.tolist()
        self.p, self.g = trace.prompt_tokens.tolist(), trace.generated_tokens.tolist()
        n = len(self.a)
        self.t, self.s, self.nxt, self.finished = 0.0, 0, 0, 0
        self.out = {k: [math.nan] * n for k in ("start_s", "first_token_s", "finish_s", "release_s")}
        self.slot_of = [0] * n
        self.preemptions = self.recomputed_tokens = 0

    @property
    def done(self) -> bool:
        return self.finished == len(self.a)

    def arrive(self) -> None:
        """Requests that have arrived by ``self.t`` join the queue."""
        while self.nxt < len(self.a) and self.a[self.nxt] <= self.t:
            self.queue(self.nxt)
            self.nxt += 1

    def queue(self, i: int) -> None:
        raise NotImplementedError

    def next_arrival(self) -> float | None:
        return self.a[self.nxt] if self.nxt < len(self.a) else None

    def finish(self, i: int) -> None:
        self.out["finish_s"][i] = self.t
        self.finished += 1

    def results(self) -> dict:
        """Per-request arrays (N,): start_s, first_token_s, finish_s, release_s, slot."""
        out = {k: np.array(v, dtype=np.float64) for k, v in self.out.items()}
        out["slot"] = np.array(self.slot_of, dtype=np.int64)
        return out


# ---------------------------------------------------------------------- static
class StaticScheduler(Scheduler):
    """``static`` / ``static-packed``: FIFO batches of up to B, each run to its longest G."""

    def __init__(self, trace: Trace, cfg: ServeConfig, budget: int):
        super().__init__(trace, cfg, budget)
        self.packed = cfg.policy == "static-packed"
        self.head = 0                 # the first request not yet in a batch
        self.batch: list[int] = []    # its requests; empty between batches
        self.k = -1                   # decode steps the batch has run (-1: not prefilled yet)
        self.width = self.gmax = self.kv0 = self.reserved = 0

    def queue(self, i: int) -> None:   # FIFO by index: the batch takes head .. head + n - 1
        pass

    @property
    def idle(self) -> bool:
        return not self.batch and self.head >= self.nxt

    def take(self, p: np.ndarray, g: np.ndarray) -> int:
        """How many of the (B,) candidates fit the KV budget (at least 1): slots × (W + max G), or Σ (P + max G)."""
        gmax = np.maximum.accumulate(g)
        n = np.arange(1, len(p) + 1)
        need = np.cumsum(p) + n * gmax if self.packed else n * (np.maximum.accumulate(p) + gmax)
        return max(1, int((need <= self.budget).sum()))

    def form_batch(self) -> list[int]:
        i = self.head
        j = i + min(self.cfg.max_batch, self.nxt - i)
        j = i + self.take(self.trace.prompt_tokens[i:j], self.trace.generated_tokens[i:j])
        self.batch, self.head, self.k = list(range(i, j)), j, -1
        p = [self.p[r] for r in self.batch]
        n = len(p)
        self.width, self.gmax = max(p), max(self.g[r] for r in self.batch)
        self.kv0 = sum(p) if self.packed else n * self.width
        self.reserved = self.kv0 + n * self.gmax
        for slot, r in enumerate(self.batch):
            self.out["start_s"][r], self.slot_of[r] = self.t, slot
        return self.batch

    def plan(self) -> StepPlan:
        if not self.batch:
            batch = self.form_batch()
            pieces = tuple(Piece(r, 0, self.p[r], 0 if self.packed else self.width - self.p[r]) for r in batch)
            return StepPlan(self.s, prefills=pieces, admitted=tuple(batch),
                            finishing=tuple(r for r in batch if self.g[r] == 1),
                            released=tuple(batch) if self.gmax == 1 else (),
                            kv_used=sum(self.p[r] for r in batch), kv_reserved=self.reserved)
        k = self.k + 1                                        # this decode step's number, 1 ..
        alive = [r for r in self.batch if self.g[r] - 1 >= k]
        return StepPlan(self.s, decodes=tuple(self.batch), contexts=tuple(self.p[r] + k - 1 for r in self.batch),
                        idle=tuple(r for r in self.batch if self.g[r] - 1 < k),
                        kv_pad=self.kv0 - sum(self.p[r] for r in self.batch),
                        finishing=tuple(r for r in alive if self.g[r] - 1 == k),
                        released=tuple(self.batch) if k == self.gmax - 1 else (),
                        kv_used=sum(self.p[r] + k for r in alive), kv_reserved=self.reserved)

    def commit(self, plan: StepPlan, seconds: float) -> None:
        self.t += seconds
        self.s += 1
        self.k += 1
        if self.k == 0:
            for r in self.batch:
                self.out["first_token_s"][r] = self.t
        for r in plan.finishing:
            self.finish(r)
        if self.k == self.gmax - 1:                           # the batch's longest generation is done
            for r in self.batch:
                self.out["release_s"][r] = self.t
            self.batch = []

    # -- decode spans -------------------------------------------------------
    def span(self) -> Span | None:
        """From the batch's next decode step to its next completion (or its end)."""
        if not self.batch or self.k < 0:
            return None
        k = self.k + 1
        nxt = min((self.g[r] - 1 for r in self.batch if self.g[r] - 1 >= k), default=self.gmax - 1)
        n = len(self.batch)
        idle = [r for r in self.batch if self.g[r] - 1 < k]
        return Span(n, len(idle), self.kv0 + n * (k - 1), nxt - k + 1, until_arrival=False,
                    kv_pad=self.kv0 - sum(self.p[r] for r in self.batch),
                    idle_kv_before=sum(self.p[r] + k - 1 for r in idle))

    def span_kv(self, k: int, total: float, ktotal: float) -> tuple[float, float, int, int]:
        """(∫ KV used dt, ∫ KV reserved dt, used at the end, reserved) over the next k decode steps,
        each step's share weighted by its seconds: Σ t_j and Σ j·t_j are ``total`` and ``ktotal``."""
        first = self.k + 1
        alive = [r for r in self.batch if self.g[r] - 1 >= first + k - 1]
        used1 = sum(self.p[r] + first for r in alive)       # after the span's first step
        return (used1 * total + len(alive) * (ktotal - total), self.reserved * total,
                used1 + len(alive) * (k - 1), self.reserved)

    def commit_span(self, k: int, seconds: float) -> None:
        """Apply k pure decode steps that took ``seconds`` in all."""
        self.s += k - 1
        self.k += k - 1
        last = self.k + 1
        self.commit(StepPlan(self.s, finishing=tuple(r for r in self.batch if self.g[r] - 1 == last)), seconds)


# ---------------------------------------------------------------------- continuous and chunked
class IterationScheduler(Scheduler):
    """``continuous`` / ``chunked``: requests join and leave at every step, KV in pages.

    A decoding request i holds ``base[i] + s`` KV tokens at the start of step s; requests
    still prefilling hold ``prefill[i] = [done, target]``.
    """

    def __init__(self, trace: Trace, cfg: ServeConfig, budget: int):
        super().__init__(trace, cfg, budget)
        n = len(self.a)
        self.chunked = cfg.policy == "chunked"
        self.ps, self.page_limit = cfg.page_size, self.budget // cfg.page_size
        self.waiting: collections.deque = collections.deque()
        self.running: dict[int, None] = {}
        self.base: dict[int, int] = {}
        self.last: dict[int, int] = {}
        self.heap: list[tuple[int, int]] = []
        self.sum_base = 0
        self.prefill: dict[int, list[int]] = {}
        self.emitted = [0] * n
        self.free_slots: list[int] = []         # slots given back (a heap); never-used ones are numbered on demand
        self.new_slot = 0
        self.lost = [0] * n                     # the furthest a request's KV got before a preemption: recomputed
        self.residue = [0] * cfg.page_size      # decoding requests by (-base) mod page_size: exact page counts

    def queue(self, i: int) -> None:
        self.waiting.append(i)

    @property
    def idle(self) -> bool:
        return not self.running and not self.waiting

    # -- KV pages -----------------------------------------------------------
    def pages_after(self, k: int) -> int:
        """Pages held after k more pure-decode steps (decoding requests grown by k; prefills as they are).

        Σ ceil(x_i / ps) = (Σ x_i + Σ (-x_i mod ps)) / ps with x_i = base_i + s + k; the second sum
        comes from how many requests have each residue of -base_i: O(page_size), not O(requests).
        """
        ps, t = self.ps, self.s + k
        slack = sum(c * ((r - t) % ps) for r, c in enumerate(self.residue) if c)
        pages = (self.sum_base + len(self.base) * t + slack) // ps
        return pages + (sum(ceil_div(d, ps) for d, _ in self.prefill.values()) if self.prefill else 0)

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

    def preempt_last(self) -> int:
        """Preempt the most recently admitted request: back to the queue's head, to be recomputed."""
        i = next(reversed(self.running))
        if i in self.prefill:
            done = self.prefill[i][0]
        else:                                   # decoding: tokens so far = G - decode steps still to run
            done = self.base[i] + self.s
            self.emitted[i] = self.g[i] - (self.last[i] - self.s + 1)
        self.leave(i)
        self.waiting.appendleft(i)
        self.preemptions += 1
        self.recomputed_tokens += done
        self.lost[i] = max(self.lost[i], done)       # every token computed before, however often it was preempted
        return i

    def retire(self) -> None:
        """Requests whose last decode step has run finish now."""
        while self.heap and self.heap[0][0] < self.s:
            last, i = heapq.heappop(self.heap)
            if self.last.get(i) == last:            # not a stale entry of a preempted request
                self.emitted[i] = self.g[i]
                self.finish(i)
                self.out["release_s"][i] = self.t
                self.leave(i)

    # -- one step -------------------------------------------------------------
    def target(self, i: int) -> int:
        """Tokens a (re)prefill of request i computes: its prompt and the tokens it already emitted."""
        return self.p[i] + self.emitted[i]

    def plan_prefills(self) -> tuple[list[tuple[int, int, int]], list[int], list[int], int]:
        """This step's prefill pieces [(request, done before, tokens)], admitted and preempted requests,
        and the pages held after this step's decodes.

        Decodes come first: make room for their growth (preempting), then continue
        prefilling requests in admission order, then admit the queue's head while the
        running cap, the token budget (``chunked``) and the pages allow -- unless this step
        preempted (as vLLM, which admits nothing in a step that had to preempt).
        """
        preempted = []
        while self.base and not self.fits(1):
            preempted.append(self.preempt_last())
        room = self.cfg.token_budget - len(self.base) if self.chunked else math.inf
        held = self.pages_after(1)                             # admissions add no pages until their pieces
        free = self.page_limit - held
        pieces, admitted = [], []
        for i, (done, target) in self.prefill.items():
            c = min(target - done, room)
            extra = ceil_div(done + c, self.ps) - ceil_div(done, self.ps)
            if c <= 0 or extra > free:
                break
            pieces.append((i, done, c))
            room, free = room - c, free - extra
        while not preempted and self.waiting and room > 0 and len(self.running) < self.cfg.max_batch:
            i = self.waiting[0]
            c = min(self.target(i), room)
            if ceil_div(c, self.ps) > free:
                break
            self.admit(self.waiting.popleft())
            pieces.append((i, 0, c))
            admitted.append(i)
            room, free = room - c, free - ceil_div(c, self.ps)
        return pieces, admitted, preempted, held

    def admit(self, i: int) -> None:
        self.running[i] = None
        self.prefill[i] = [0, self.target(i)]
        if self.free_slots:                     # the lowest free slot, as a heap of all max_batch slots would give
            self.slot_of[i] = heapq.heappop(self.free_slots)
        else:
            self.slot_of[i], self.new_slot = self.new_slot, self.new_slot + 1
        if math.isnan(self.out["start_s"][i]):
            self.out["start_s"][i] = self.t

    def plan(self) -> StepPlan:
        """The next step: every decoding request's token plus the prefill pieces that fit."""
        raw, admitted, preempted, held = self.plan_prefills()
        pieces = tuple(Piece(i, d, c, last=d + c == self.prefill[i][1],
                             recomputed=max(0, min(d + c, self.lost[i]) - d)) for i, d, c in raw)
        decodes = tuple(self.base)
        ended = tuple(i for i in decodes if self.last[i] == self.s)
        ended += tuple(p.request for p in pieces if p.last and self.emitted[p.request] + 1 >= self.g[p.request])
        n = len(decodes)
        new_prefill = sum(p.tokens for p in pieces)
        if n + new_prefill == 0:        # cannot happen while every request fits the budget alone; a guard
            raise RuntimeError(f"scheduler stalled at t = {self.t:.6g} s with {len(self.running)} running, "
                               f"{len(self.waiting)} waiting")
        used = self.sum_base + n * (self.s + 1) + sum(d for d, _ in self.prefill.values()) + new_prefill
        growth = self.ps * sum(ceil_div(p.done + p.tokens, self.ps) - ceil_div(p.done, self.ps) for p in pieces)
        return StepPlan(self.s, decodes, tuple(self.base[i] + self.s for i in decodes), pieces,
                        admitted=tuple(admitted), preempted=tuple(preempted), finishing=ended, released=ended,
                        kv_used=used, kv_reserved=self.ps * held + growth)

    def commit(self, plan: StepPlan, seconds: float) -> None:
        self.t += seconds
        self.s += 1
        self.retire()
        for p in plan.prefills:
            self.prefill[p.request][0] = p.done + p.tokens
            if p.last:
                self.prefill_done(p.request)

    def prefill_done(self, i: int) -> None:
        """Request i's (re)prefill is complete: it emits a token, then finishes or decodes."""
        target = self.prefill.pop(i)[1]
        self.emitted[i] += 1
        if math.isnan(self.out["first_token_s"][i]):
            self.out["first_token_s"][i] = self.t
        if self.emitted[i] >= self.g[i]:
            self.finish(i)
            self.out["release_s"][i] = self.t
            self.leave(i)
        else:
            self.start_decoding(i, target, self.s)

    # -- decode spans -------------------------------------------------------
    def can_admit_now(self) -> bool:
        if self.prefill:
            return True
        if not self.waiting or len(self.running) >= self.cfg.max_batch:
            return False
        c = min(self.target(self.waiting[0]), self.cfg.token_budget - len(self.base) if self.chunked else math.inf)
        return self.fits(1, ceil_div(c, self.ps))

    def span(self) -> Span | None:
        """Pure decode steps until the next completion or a full cache; None when the next step has prefill work."""
        if not self.base or self.can_admit_now():
            return None
        while self.last.get(self.heap[0][1]) != self.heap[0][0]:      # drop stale heap entries
            heapq.heappop(self.heap)
        k = self.decode_steps_that_fit(self.heap[0][0] - self.s + 1)
        if k <= 0:
            return None
        n = len(self.base)
        joinable = not self.waiting and self.nxt < len(self.a) and len(self.running) < self.cfg.max_batch
        return Span(n, 0, self.sum_base + n * self.s, k, joinable)

    def span_kv(self, k: int, total: float, ktotal: float) -> tuple[float, float, int, int]:
        """As :meth:`StaticScheduler.span_kv`; reserved is charged as used plus the pages' slack at the end."""
        n = len(self.base)
        kv0 = self.sum_base + n * self.s
        used = kv0 * total + n * ktotal
        used_end, reserved_end = kv0 + n * k, self.ps * self.pages_after(k)
        return used, used + (reserved_end - used_end) * total, used_end, reserved_end

    def commit_span(self, k: int, seconds: float) -> None:
        self.t += seconds
        self.s += k
        self.retire()


def make_scheduler(trace: Trace, cfg: ServeConfig, kv_budget_tokens: int) -> Scheduler:
    """The scheduler of ``cfg.policy`` over ``trace``'s requests, with a KV budget in tokens."""
    instance_of("trace", trace, Trace, "a packviz.trace.Trace (read_trace(path), azure_conv())")
    instance_of("cfg", cfg, ServeConfig, "a ServeConfig, e.g. ServeConfig('continuous', max_batch=32)")
    integer("kv_budget_tokens", kv_budget_tokens, MAX_KV_BUDGET_TOKENS)
    cls = StaticScheduler if cfg.policy in ("static", "static-packed") else IterationScheduler
    return cls(trace, cfg, kv_budget_tokens)
