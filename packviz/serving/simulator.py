"""The simulator: the scheduler's steps priced by a cost model instead of executed.

numpy only. :func:`simulate` replays a request trace under a policy of
:mod:`packviz.serving.scheduler`; every step's seconds come from
:class:`~packviz.serving.costs.Pricer` (a roofline with GPU presets or a fitted calibration)
or, to replay an engine run, from that run's recorded step times (``clock=``). The engine
(:mod:`packviz.serving.engine`) drives the *same* scheduler through :func:`replay` with a
clock that executes each plan on a real Llama and reads the wall clock.

Between two scheduling events a decode step's work grows by a constant each step (every
context +1), so a span of pure-decode steps costs a closed-form sum
(:func:`~packviz.serving.costs.span_sums`) -- that is what lets the simulator replay 19,366
requests in about a second. ``fast_forward=False`` steps one plan at a time instead: the
same schedule, slower (a test checks they agree).

>>> import numpy as np
>>> from packviz.trace import Trace
>>> tr = Trace(np.zeros(3), np.array([2, 3, 1]), np.array([3, 1, 2]))
>>> r = simulate(tr, "static", model="tiny", gpu=CostModel("unit", 1e30, 1e30, 1.0, 1.0, 1e12),
...              max_batch=2, kv_budget_tokens=64, fast_forward=False)
>>> [p.describe() for p in r.plans]
['prefill r0[0:2]+1 pad r1[0:3]', 'decode r0 r1(idle)', 'decode r0 r1(idle)', 'prefill r2[0:1]', 'decode r2']
>>> r.finish_s.tolist()
[3.0, 1.0, 5.0]
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..checks import flag, instance_of, items, one_of, positive_float
from ..shapes import get_shape
from ..trace import Trace
from .calibration import cost_model
from .costs import (MEMORY_UTILIZATION, CostModel, Pricer, Waste, Work, plan_live_kv, plan_waste, plan_work,
                    span_sums, steps_to_reach)
from .scheduler import (MAX_KV_BUDGET_TOKENS, MAX_REQUEST_TOKENS, PAGE_SIZE, POLICIES, Scheduler, ServeConfig,
                        StepPlan, integer, make_scheduler)

ARRIVALS = ("trace", "offline")
RATE_SCALES = (1e-6, 1e6)
"""The smallest and largest ``rate_scale``: a million times slower or faster than recorded (beyond, a
trace's minutes become millennia or microseconds: a typo, not a load)."""
MAX_STEPS_ONE_BY_ONE = 10**6
"""The most steps a run may have to take one plan at a time, refused up front (about a minute of
simulation): a chunked prefill's chunks (at least Σ P / ``token_budget``), or every step when
``fast_forward=False`` or a recorded ``clock`` keeps each plan (at least the longest G). Pure decode
spans have no such bound: they are priced in closed form, whatever their length."""


WASTES = ("padding", "idle_slots", "recompute", "dense_attention")
"""Work no request needed, by cause: prompt pads (and the masked squares of a padded batch), decode
slots of finished requests, prefill recomputing KV a preemption threw away, the masked-out pairs of a
dense Σq × Σk ragged step."""


@dataclass
class Ledger:
    """Totals of a run, charged step by step (every count over all steps).

    ``busy_s``: time some kernel runs (what ``nvidia-smi`` reports as utilization): a priced step's
    roofline time, an engine step's CUDA-event time; ``None`` when a clock does not say (a CPU, a
    recorded clock). ``host_s``: per-step overhead between kernels (priced clocks). ``waste_flops``:
    FLOPs no request needed, by cause (:data:`WASTES`). ``live_bytes``: bytes that had to move
    (weights once per step and live requests' KV): the MBU numerator. ``itl_steps`` / ``itl_spans``:
    each decode step's seconds and how many requests it gave a token (inter-token latency samples).
    """

    steps: int = 0
    busy_s: float | None = 0.0
    host_s: float = 0.0
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
    waste_flops: dict = field(default_factory=lambda: dict.fromkeys(WASTES, 0.0))
    live_bytes: float = 0.0
    itl_steps: list = field(default_factory=list)      # (seconds, requests given a token)
    itl_spans: list = field(default_factory=list)      # (Line, steps, requests given a token each step)

    def add_busy(self, seconds: float | None) -> None:
        self.busy_s = None if self.busy_s is None or seconds is None else self.busy_s + seconds

    def charge(self, plan: StepPlan, work: Work, pricer: Pricer, waste: Waste, seconds: float,
               busy: float | None) -> None:
        """One step: its plan, its work and waste, the seconds it took and how many of them kernels ran."""
        n = len(plan.decodes)
        self.steps += 1
        self.add_busy(busy)
        self.host_s += seconds - busy if busy is not None else 0.0
        self.flops += pricer.flops(work)
        for key, value in pricer.waste_flops(waste).items():
            self.waste_flops[key] += value
        self.live_bytes += pricer.live_bytes(plan_live_kv(plan))
        self.prefill_tokens += work.tokens - n
        self.prefill_pad_tokens += sum(p.pad for p in plan.prefills)
        self.decode_slot_steps += n
        self.decode_idle_slot_steps += len(plan.idle)
        self.prefill_emissions += sum(p.last for p in plan.prefills)
        self.kv_used_token_s += plan.kv_used * seconds
        self.kv_reserved_token_s += plan.kv_reserved * seconds
        self.kv_used_peak = max(self.kv_used_peak, plan.kv_used)
        self.kv_reserved_peak = max(self.kv_reserved_peak, plan.kv_reserved)
        if n > len(plan.idle):
            self.itl_steps.append((seconds, n - len(plan.idle)))

    def itl_samples(self) -> tuple[np.ndarray, np.ndarray]:
        """(values, weights): every decode step's seconds, weighted by the requests it gave a token --
        the inter-token gaps of the run (a span's steps expanded from its closed form)."""
        steps = np.array(self.itl_steps, dtype=np.float64).reshape(-1, 2)
        if not self.itl_spans:
            return steps[:, 0], steps[:, 1]
        spans = np.array([(*line, k, count) for line, k, count in self.itl_spans], dtype=np.float64)
        u0, u1, v0, v1, o, k, count = spans.T
        k = k.astype(np.int64)
        row = np.repeat(np.arange(len(k)), k)                          # the span of each expanded step
        j = np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k) + 1     # its number within the span, 1 ..
        values = np.maximum(u0[row] + u1[row] * j, v0[row] + v1[row] * j) + o[row]
        return np.concatenate([steps[:, 0], values]), np.concatenate([steps[:, 1], count[row]])


@dataclass(frozen=True, eq=False)
class SimResult:
    """One replay. Per-request arrays have shape (N,), in the trace's order.

    ``trace`` holds the arrivals as served (after ``rate_scale`` or ``offline``). ``plans``
    and ``step_seconds``: every step's plan and seconds when the run stepped one plan at a
    time (``fast_forward=False``, or an engine run); empty otherwise.
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
    plans: list = field(default_factory=list)
    step_seconds: list = field(default_factory=list)
    clock: str = "priced"       # "priced" (the cost model), "recorded" (given step times) or "executed"


@dataclass(frozen=True, eq=False)
class EngineResult(SimResult):
    """A run executed by :func:`packviz.serving.engine.run_engine`: a :class:`SimResult` whose clock is
    the wall clock (``clock="executed"``), plus what only an execution has.

    ``prompts`` / ``outputs``: per request in trace order, the prompt's token ids and the tokens
    generated. ``gpu_seconds``: per step, the device time between CUDA events around the forward
    (``None`` on a CPU). ``graphed``: per step, whether it was replayed from a CUDA graph.
    ``attention``: the attention path that ran (and ``attention_why`` it was chosen); ``cuda_graphs``:
    whether decode steps were replayed from CUDA graphs (and why not);
    ``kv_layout``: the physical KV layout and what it reserves; ``kv_regions``: per step, the
    regions in use ``{request: (start, length)}`` (rows of the cache).
    """

    prompts: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    gpu_seconds: list = field(default_factory=list)
    graphed: list = field(default_factory=list)
    kv_regions: list = field(default_factory=list)
    attention: str = ""
    attention_why: str = ""
    cuda_graphs: str = ""
    kv_layout: str = ""
    kv_capacity_tokens: int = 0
    kv_compactions: int = 0
    device: str = ""
    dtype: str = ""


# ---------------------------------------------------------------------- set-up
def served_trace(trace: Trace, arrivals: str = "trace", rate_scale: float = 1.0) -> Trace:
    """The requests with the arrivals a run uses: the trace's own times ÷ ``rate_scale``, or all at 0."""
    instance_of("trace", trace, Trace, "a packviz.trace.Trace (read_trace(path), azure_conv())")
    one_of("arrivals", arrivals, ARRIVALS)
    rate_scale = positive_float("rate_scale", rate_scale)
    if not RATE_SCALES[0] <= rate_scale <= RATE_SCALES[1]:
        raise ValueError(f"rate_scale is {rate_scale:g}, outside {RATE_SCALES[0]:g} .. {RATE_SCALES[1]:g} "
                         "(a million times slower or faster than recorded); for every request at once, use arrivals='offline' instead")
    if arrivals == "offline" and rate_scale != 1.0:
        raise ValueError(f"rate_scale is {rate_scale:g}, but arrivals='offline' sends every request at t = 0 (no rate "
                         "to scale): a rate scale needs arrivals='trace'; leave one of them out")
    if arrivals == "offline":
        return Trace(np.zeros(len(trace)), trace.prompt_tokens, trace.generated_tokens, name=f"{trace.name} offline",
                     timestamps=trace.timestamps)
    return trace if rate_scale == 1.0 else trace.scaled(rate_scale)


def kv_budget(shape, cost: CostModel, kv_budget_tokens: int | None = None) -> int:
    """KV-cache capacity in tokens: given, or (90% of GPU memory - weights) / KV bytes per token.

    >>> from packviz.serving.costs import preset_cost_model
    >>> kv_budget("llama-3-8b", preset_cost_model("h100"))     # (72 GB - 16.06 GB) / 128 KiB
    426784
    """
    shape = get_shape(shape)
    if kv_budget_tokens is not None:
        return integer("kv_budget_tokens", kv_budget_tokens, MAX_KV_BUDGET_TOKENS)
    free = cost.memory_bytes * MEMORY_UTILIZATION - shape.weight_bytes()
    if free < shape.kv_bytes_per_token():
        raise ValueError(f"{shape.name} ({shape.weight_bytes() / 1e9:.1f} GB of weights) leaves no room for a KV "
                         f"cache on {cost.name} ({cost.memory_bytes / 1e9:.0f} GB); choose a larger GPU")
    return int(free // shape.kv_bytes_per_token())


def check_fits(trace: Trace, budget: int, page_size: int) -> None:
    """``ValueError`` naming the first request whose P + G tokens (in whole pages) exceed the KV budget
    (or :data:`~packviz.serving.scheduler.MAX_REQUEST_TOKENS`)."""
    big = np.flatnonzero(trace.prompt_tokens > MAX_REQUEST_TOKENS - trace.generated_tokens)   # P + G, no overflow
    if big.size:
        i = int(big[0])
        raise ValueError(f"request {i} holds P {trace.prompt_tokens[i]:,} + G {trace.generated_tokens[i]:,} tokens, "
                         f"above the largest request the simulator takes, {MAX_REQUEST_TOKENS:,} (2**40) tokens")
    need = -(-(trace.prompt_tokens + trace.generated_tokens) // page_size) * page_size
    bad = np.flatnonzero(need > budget)
    if bad.size:
        i = int(bad[0])
        p, g = int(trace.prompt_tokens[i]), int(trace.generated_tokens[i])
        raise ValueError(f"kv_budget_tokens {budget:,} is too small for request {i}: P {p:,} + G {g:,} = {p + g:,} "
                         f"tokens, {need[i]:,} in whole pages of {page_size:,}; give at least {need.max():,} "
                         "(the longest request, in whole pages)")


def check_steps(trace: Trace, cfg: ServeConfig, stepwise: bool) -> None:
    """``ValueError`` up front when a run would take more than :data:`MAX_STEPS_ONE_BY_ONE` steps one plan
    at a time: saying how many at least, and the way out."""
    bound = MAX_STEPS_ONE_BY_ONE
    if stepwise and int(trace.generated_tokens.max()) > bound:
        i = int(np.argmax(trace.generated_tokens))
        raise ValueError(f"fast_forward=False (or a recorded clock) steps one plan at a time and keeps each: request {i} "
                         f"alone needs G = {trace.generated_tokens[i]:,} steps, more than {bound:,}; use fast_forward=True")
    if cfg.policy == "chunked":
        prompt = sum(trace.prompt_tokens.tolist())                       # exact: Python integers
        steps = -(-prompt // cfg.token_budget)
        if steps > bound:
            raise ValueError(f"chunked prefill of {prompt:,} prompt tokens in chunks of token_budget {cfg.token_budget:,} "
                             f"takes at least {steps:,} steps one at a time, more than {bound:,}: raise token_budget "
                             f"to at least {-(-prompt // bound):,} or serve fewer or shorter prompts")


def useful_flops(trace: Trace, pricer: Pricer) -> float:
    """FLOPs the requests need, whatever the policy: each prompt's own tokens and causal triangle,
    one lm_head row per generated token, each decode's attention over its own context."""
    p = trace.prompt_tokens.astype(np.float64)
    d = trace.generated_tokens.astype(np.float64) - 1          # decode steps
    tokens = p.sum() + d.sum()
    pairs = (p * (p + 1) / 2).sum() + (d * p + d * (d + 1) / 2).sum()
    return tokens * pricer.linear + (d + 1).sum() * pricer.lm_head + pairs * pricer.attn


# ---------------------------------------------------------------------- the driver: one scheduler, any clock
def replay(sched: Scheduler, clock, ledger: Ledger, pricer: Pricer, cfg: ServeConfig, fast_forward: bool = False,
           plans: list | None = None, step_seconds: list | None = None) -> None:
    """Run ``sched`` to the end. ``clock(plan, work)`` prices or executes one step and returns its
    seconds, or ``(seconds, busy)``: how many of them kernels ran (``None``: unknown).

    ``fast_forward``: advance spans of pure-decode steps in closed form (a priced clock only).
    ``plans`` / ``step_seconds``: lists that collect every step's plan and seconds.
    """
    ragged = cfg.ragged_pricing
    while not sched.done:
        sched.arrive()
        if sched.idle:                                  # nothing to run: the server waits for the next arrival
            sched.t = max(sched.t, sched.next_arrival())
            continue
        span = sched.span() if fast_forward else None
        if span is not None:
            advance_span(sched, span, ledger, pricer, ragged == "dense")
            continue
        plan = sched.plan()
        work = plan_work(plan, cfg.padded_attention, ragged)
        out = clock(plan, work)
        seconds, busy = (float(out), None) if not isinstance(out, tuple) else (float(out[0]), out[1])
        ledger.charge(plan, work, pricer, plan_waste(plan, cfg.padded_attention, ragged), seconds, busy)
        if plans is not None:
            plans.append(plan)
            step_seconds.append(seconds)
        sched.commit(plan, seconds)
    ledger.preemptions, ledger.recomputed_tokens = sched.preemptions, sched.recomputed_tokens


def priced_clock(pricer: Pricer):
    """The simulator's clock: a step's roofline time plus its overhead; busy is the roofline part."""
    def clock(plan, work):
        decode = not plan.prefills
        seconds = pricer.seconds(work, decode)
        return seconds, seconds - pricer.cost.overhead(decode)
    return clock


def advance_span(sched: Scheduler, span, ledger: Ledger, pricer: Pricer, dense: bool) -> None:
    """Price and apply a span of pure-decode steps in closed form, stopping where an arrival could join."""
    line = pricer.decode_line(span.n, span.kv_before, dense)
    k = span.k_max
    if span.until_arrival:
        reach = steps_to_reach(line, sched.next_arrival() - sched.t, k)
        k = k if reach is None else max(1, reach)
    total, ktotal = span_sums(line, k)
    used_s, reserved_s, used_end, reserved_end = sched.span_kv(k, total, ktotal)
    charge_span(ledger, pricer, span, line, k, total, dense)
    ledger.kv_used_token_s += used_s
    ledger.kv_reserved_token_s += reserved_s
    ledger.kv_used_peak = max(ledger.kv_used_peak, used_end)
    ledger.kv_reserved_peak = max(ledger.kv_reserved_peak, reserved_end)
    sched.commit_span(k, total)


def charge_span(ledger: Ledger, pricer: Pricer, span, line, k: int, total: float, dense: bool) -> None:
    """A span's steps, FLOPs, waste, live bytes and inter-token samples, in closed form.

    Step j (1 .. k) of n slots (``idle`` of them finished) reads ``kv_before + n (j - 1)`` KV tokens,
    ``kv_pad`` of them pads and ``idle_kv_before + idle (j - 1)`` idle slots'.
    """
    n, idle = span.n, span.idle
    tri = k * (k + 1) / 2                               # Σ j over the span
    ledger.steps += k
    ledger.add_busy(total - k * line.overhead)
    ledger.host_s += k * line.overhead
    ledger.flops += pricer.cost.flop_rate * (line.u0 * k + line.u1 * tri)
    dense_pairs = (n - 1) * (k * span.kv_before + n * tri) if dense else 0
    waste = Waste(pad_pairs=span.kv_pad * k, idle_tokens=idle * k, idle_pairs=k * span.idle_kv_before + idle * tri,
                  dense_pairs=dense_pairs)
    for key, value in pricer.waste_flops(waste).items():
        ledger.waste_flops[key] += value
    live = k * (span.kv_before - span.kv_pad - span.idle_kv_before) + (n - idle) * tri
    ledger.live_bytes += pricer.live_bytes(live, steps=k)
    ledger.decode_slot_steps += n * k
    ledger.decode_idle_slot_steps += idle * k
    if n > idle:
        ledger.itl_spans.append((line, k, n - idle))


def recorded_clock(step_seconds):
    """A clock that returns the given seconds, step after step: replay an engine run's timeline."""
    it = iter([float(x) for x in step_seconds])

    def clock(plan, work):
        try:
            return next(it)
        except StopIteration:
            raise ValueError(f"the recorded clock has {len(step_seconds)} steps; the schedule needs more") from None
    return clock


# ---------------------------------------------------------------------- entry point
def simulate(trace: Trace | None = None, policy: str = "continuous", *, model="llama-3-8b", gpu="h100",
             arrivals: str = "trace", rate_scale: float = 1.0, max_batch: int = 32, token_budget: int = 2048,
             kv_budget_tokens: int | None = None, page_size: int = PAGE_SIZE, padded_attention: str = "masked",
             ragged_attention: str = "varlen", fast_forward: bool = True, clock=None) -> SimResult:
    """Replay ``trace`` (default: the shipped Azure conversation trace) under ``policy``.

    ``gpu``: a preset (``h100``, ``h200``, ``a100``), ``"calibrated"``, a calibration JSON
    path, or a :class:`CostModel`. ``arrivals``: ``"trace"`` (its own times ÷ ``rate_scale``)
    or ``"offline"`` (all at t = 0; static batches are consecutive groups of B). Summarise
    with :func:`packviz.serving.metrics.summary`. ``fast_forward=False`` steps one plan at a
    time (``result.plans`` holds them). ``clock``: a sequence of step seconds to use instead
    of the cost model (an engine run's, to replay its timeline; implies stepping one plan at a time).
    """
    from ..trace import azure_conv

    t0 = time.perf_counter()
    instance_of("policy", policy, str, f"a policy name ({', '.join(POLICIES)})")
    cfg = ServeConfig(policy, max_batch, token_budget, kv_budget_tokens, page_size, padded_attention, ragged_attention)
    fast_forward = flag("fast_forward", fast_forward)
    if clock is not None:
        clock = [positive_float(f"clock[{i}]", x) for i, x in enumerate(items("clock", clock, "a list of step seconds"))]
    shape = get_shape(model)
    cost = cost_model(gpu)
    served = served_trace(azure_conv() if trace is None else trace, arrivals, rate_scale)
    budget = kv_budget(shape, cost, kv_budget_tokens)
    check_fits(served, budget, page_size)
    check_steps(served, cfg, clock is not None or not fast_forward)
    pricer, ledger = Pricer(shape, cost), Ledger()
    sched = make_scheduler(served, cfg, budget)
    stepwise = clock is not None or not fast_forward
    plans, step_seconds = ([], []) if stepwise else (None, None)
    tick = recorded_clock(clock) if clock is not None else priced_clock(pricer)
    replay(sched, tick, ledger, pricer, cfg, fast_forward=not stepwise, plans=plans, step_seconds=step_seconds)
    out = sched.results()
    return SimResult(served, cfg, shape.name, cost, budget, out["start_s"], out["first_token_s"], out["finish_s"],
                     out["release_s"], out["slot"], ledger, useful_flops(served, pricer), arrivals,
                     float(rate_scale), time.perf_counter() - t0, plans or [], step_seconds or [],
                     "recorded" if clock is not None else "priced")
