"""The engine's clock: every plan of the scheduler executed on the model, timed by the wall clock.

torch only. :func:`run_engine` drives the *same* scheduler as the simulator
(:func:`packviz.serving.simulator.replay`), with :meth:`Engine.execute` as its clock: each
step's regions are allocated or freed, its stream built (:mod:`.runner`), the model run
(eagerly, or replayed from a CUDA graph for a decode-only step), one token sampled per
emitting sequence, and the seconds since the previous step ended returned -- scheduling,
input building, the forward and the sampled tokens' trip to the host included.

Idle time is skipped, not waited: when no request is running and the next has not arrived,
the clock jumps to its arrival (as the simulator's does). So an engine run with trace
arrivals takes as long as its busy steps, and its timeline is the sum of measured steps.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ...shapes import shape_from_config
from ...trace import Trace, request_ids
from ..calibration import gpu_key
from ..costs import CostModel, Pricer, preset_cost_model
from ..scheduler import Piece, ServeConfig, StepPlan, make_scheduler
from ..simulator import EngineResult, Ledger, check_fits, replay, served_trace, useful_flops
from .attention import FUNCTIONS, choose_path
from .kv import KVCache
from .llama import Llama
from .runner import DecodeGraphs, sample, step_arrays, to_device

STATIC = ("static", "static-packed")


# ---------------------------------------------------------------------- sizes
def longest_region(trace: Trace, cfg: ServeConfig) -> int:
    """The most KV tokens one region can hold: max (P + G), or max P + max G under the static policies."""
    p, g = trace.prompt_tokens, trace.generated_tokens
    return int(p.max() + g.max()) if cfg.policy in STATIC else int((p + g).max())


def kv_capacity(trace: Trace, cfg: ServeConfig) -> int:
    """Physical tokens that hold every region the schedule can have at once.

    ``continuous`` / ``chunked``: at most B run together, each holding P + G: the B largest.
    Static: a batch is a run of at most B consecutive requests reserving n (W + max G), or
    Σ P + n max G packed; the largest over every start.

    >>> t = Trace(np.zeros(3), np.array([4, 9, 2]), np.array([3, 1, 5]))
    >>> kv_capacity(t, ServeConfig("continuous", max_batch=2)), kv_capacity(t, ServeConfig("static", max_batch=2))
    (17, 28)
    """
    p, g, b = trace.prompt_tokens, trace.generated_tokens, min(cfg.max_batch, len(trace))
    if cfg.policy not in STATIC:
        return int(np.sort(p + g)[-b:].sum())
    best = 0
    for i in range(len(p)):
        pw, gw = p[i:i + b], g[i:i + b]
        need = pw.sum() + len(pw) * gw.max() if cfg.policy == "static-packed" else len(pw) * (pw.max() + gw.max())
        best = max(best, int(need))
    return best


def default_kv_budget(trace: Trace, cfg: ServeConfig) -> int:
    """The scheduler's KV budget when none is given: enough that nothing is ever preempted
    (the B largest requests in whole pages; for static, the capacity in whole pages)."""
    ps = cfg.page_size
    pages = -(-(trace.prompt_tokens + trace.generated_tokens) // ps) * ps
    if cfg.policy in STATIC:
        return -(-kv_capacity(trace, cfg) // ps) * ps
    return int(np.sort(pages)[-min(cfg.max_batch, len(trace)):].sum())


def device_cost(device) -> CostModel:
    """The device's datasheet peak (for the useful-FLOP share): a GPU preset by name, else none (0)."""
    if device.type == "cuda":
        key = gpu_key({"device": {"name": torch.cuda.get_device_name(device)}})
        if key:
            return preset_cost_model(key)
    return CostModel(str(device), 0.0, 0.0, 0.0, 0.0, 0.0, f"{device}: no datasheet peak (useful-FLOP share not given)")


# ---------------------------------------------------------------------- the engine
class Engine:
    """A Llama, its KV cache, its attention path and (on a GPU) its decode graphs: :meth:`execute` is the clock.

    ``capacity``: KV tokens of the physical cache; ``max_batch``: the most decodes in a step (the
    largest CUDA-graph bucket); ``longest``: the most keys one sequence reads (fixed in the graphs);
    ``region_tokens(plan, r)``: the region to allocate when request r is admitted; ``seqs``: every
    request's tokens so far (prompt, then what it generated), indexed by request.
    """

    def __init__(self, model, capacity: int, max_batch: int, longest: int, region_tokens, seqs, *,
                 cuda_graphs=None, debug: bool = False):
        self.llama = Llama(model)
        self.region_tokens, self.seqs, self.debug = region_tokens, seqs, debug
        self.device, self.dtype = self.llama.device, self.llama.dtype
        self.cache = KVCache(len(self.llama.layers), capacity, self.llama.kv_heads, self.llama.head_dim,
                             self.dtype, self.device)
        self.path, self.path_why = choose_path(self.device, self.dtype, self.probe)
        self.attend = FUNCTIONS[self.path]
        self.graphs, self.graphs_why = self.capture(cuda_graphs, max_batch, longest)
        self.gpu_seconds: list = []
        self.graphed: list = []
        self.regions_log: list = []          # per step: {request: (start, length)} of the regions in use
        self.mark = time.perf_counter()

    def capture(self, cuda_graphs, max_batch: int, longest: int):
        """``(DecodeGraphs or None, why)``. Asked for (True) it must work; by default (None) it is tried on a
        GPU with a FlashAttention path, and a capture that fails leaves the run eager, with the reason."""
        can = self.device.type == "cuda" and self.path != "reference"
        if cuda_graphs and not can:
            raise ValueError("cuda_graphs=True needs a CUDA device and a FlashAttention path; "
                             f"this run has {self.device} and {self.path}")
        if not (cuda_graphs or (cuda_graphs is None and can)):
            return None, "off" if cuda_graphs is False else f"eager: {self.device}, attention {self.path}"
        try:
            graphs = DecodeGraphs(self.llama, self.cache, self.attend, max_batch, longest)
        except Exception as e:  # noqa: BLE001 -- an engine without graphs still serves
            if cuda_graphs:
                raise
            return None, f"capture failed ({type(e).__name__}: {str(e).splitlines()[0][:160]}): eager"
        return graphs, f"decode steps from CUDA graphs, buckets {graphs.buckets}"

    def probe(self, path: str) -> float:
        """Relative difference of ``path`` from the reference on a small random mixed step (2 decodes,
        a chunk after a cached prefix, a fresh prompt) over a scratch cache."""
        gen = torch.Generator(device=self.device).manual_seed(0)
        cache = KVCache(1, 512, self.llama.kv_heads, self.llama.head_dim, self.dtype, self.device)
        cache.kv.normal_(generator=gen)
        starts = {r: cache.allocate(r, 128) for r in range(4)}
        plan = StepPlan(0, decodes=(0, 1), contexts=(37, 100), prefills=(Piece(2, 20, 13), Piece(3, 0, 17)))
        arrays = step_arrays(plan, [[1] * 128] * 4, starts, cache.spare)
        step = to_device(arrays, self.device)
        q = torch.randn((len(arrays["input_ids"]), self.llama.heads, self.llama.head_dim), generator=gen,
                        device=self.device, dtype=self.dtype)
        ref = FUNCTIONS["reference"](q, cache.k[0], cache.v[0], step).float()
        got = FUNCTIONS[path](q, cache.k[0], cache.v[0], step).float()
        return float((got - ref).abs().max() / ref.abs().max())

    def begin(self, plan) -> dict:
        """Free the preempted requests' regions, allocate the admitted ones', lay the step out (numpy)."""
        for r in plan.preempted:
            self.cache.free(r)
        for r in plan.admitted:
            self.cache.allocate(r, self.region_tokens(plan, r))
        self.regions_log.append(dict(self.cache.regions))
        running = {*plan.decodes, *(p.request for p in plan.prefills)}
        arrays = step_arrays(plan, self.seqs, {r: self.cache.start(r) for r in running}, self.cache.spare)
        if self.debug:
            host = arrays["host"]
            self.cache.check_reads(host.requests, host.k_starts, host.seqused_k)
        return arrays

    def logits(self, arrays: dict) -> torch.Tensor:
        """The eager forward of a laid-out step: logits (R, vocab) of its emitting rows."""
        return self.llama.forward(to_device(arrays, self.device), self.cache, self.attend)

    def end(self, plan, arrays: dict, tokens: torch.Tensor) -> None:
        """Append each sampled token to its request (idle decodes' are dropped); free the released regions."""
        for r, tok in zip(arrays["host"].emit_to, tokens.tolist()):      # .tolist() waits for the GPU
            if r is not None:
                self.seqs[r].append(tok)
        for r in plan.released:
            self.cache.free(r)

    def execute(self, plan, work=None) -> float:
        """Run one plan (the scheduler's clock): the seconds since the previous step ended."""
        arrays = self.begin(plan)
        events = [torch.cuda.Event(enable_timing=True) for _ in range(2)] if self.device.type == "cuda" else None
        if events:
            events[0].record()
        graphed = self.graphs is not None and not plan.prefills
        tokens = self.graphs.replay(arrays) if graphed else sample(self.logits(arrays))
        if events:
            events[1].record()
        self.end(plan, arrays, tokens)
        self.gpu_seconds.append(events[0].elapsed_time(events[1]) / 1e3 if events else None)
        self.graphed.append(graphed)
        now = time.perf_counter()
        seconds, self.mark = now - self.mark, now
        return seconds

    def layout(self, reserves: str) -> str:
        """The physical KV layout in words, with what each region reserves."""
        dtype = str(self.dtype).removeprefix("torch.")
        return (f"one contiguous region per running request in a {tuple(self.cache.kv.shape)} {dtype} "
                f"tensor ({self.cache.nbytes / 2**20:,.1f} MiB, {self.cache.capacity:,} tokens + 1 spare); "
                f"reserves {reserves} at admission; read in place ({self.path})")


def region_sizer(trace: Trace, cfg: ServeConfig):
    """``region_tokens(plan, r)`` of a serving run: P + G, or the static slot's W + max G (P + max G
    packed), and the words for what it reserves."""
    p, g = trace.prompt_tokens, trace.generated_tokens

    def region_tokens(plan, r: int) -> int:
        if cfg.policy not in STATIC:
            return int(p[r] + g[r])
        width = max(x.tokens + x.pad for x in plan.prefills) if cfg.policy == "static" else p[r]
        return int(width + max(g[a] for a in plan.admitted))
    reserves = {"static": "W + max G per slot", "static-packed": "P + max G per slot"}.get(cfg.policy,
                                                                                         "P + G per request")
    return region_tokens, reserves


# ---------------------------------------------------------------------- entry point
def check_model(model) -> None:
    inner = getattr(model, "model", None)
    if not hasattr(model, "lm_head") or not hasattr(inner, "layers") or not hasattr(inner, "embed_tokens"):
        raise TypeError(f"run_engine needs a transformers LlamaForCausalLM, got {type(model).__name__}")


def run_engine(model, trace: Trace, policy: str = "continuous", seed: int = 0, *, arrivals: str = "trace",
               rate_scale: float = 1.0, cuda_graphs: bool | None = None, debug: bool = False,
               **serve_config) -> EngineResult:
    """Serve ``trace``'s requests under ``policy`` on ``model`` (a ``LlamaForCausalLM``), step by step.

    Prompts are random token ids drawn from ``seed`` with each request's prompt length; each
    request generates exactly its G tokens (greedy, EOS ignored). ``serve_config``: the
    keywords of :class:`~packviz.serving.scheduler.ServeConfig` (``max_batch``,
    ``token_budget``, ``kv_budget_tokens``, ``page_size``); ``kv_budget_tokens=None``: enough
    that nothing is preempted. ``cuda_graphs``: replay decode-only steps from CUDA graphs
    (default: on a GPU with the FlashAttention path). ``debug``: check every step reads only
    its own requests' K/V. Returns an :class:`EngineResult` that
    :func:`~packviz.serving.metrics.summary` takes like a simulated run.
    """
    check_model(model)
    if not isinstance(trace, Trace):
        raise TypeError(f"trace must be a packviz.trace.Trace, got {type(trace).__name__}")
    t0 = time.perf_counter()
    served = served_trace(trace, arrivals, rate_scale)
    cfg = ServeConfig(policy, **serve_config)
    budget = cfg.kv_budget_tokens or default_kv_budget(served, cfg)
    check_fits(served, budget, cfg.page_size)
    sizer, reserves = region_sizer(served, cfg)
    engine = Engine(model, kv_capacity(served, cfg), cfg.max_batch, longest_region(served, cfg), sizer,
                    request_ids(served.prompt_tokens, model.config.vocab_size, seed), cuda_graphs=cuda_graphs,
                    debug=debug)
    pricer, ledger = Pricer(shape_from_config(model.config), device_cost(engine.device)), Ledger()
    sched = make_scheduler(served, cfg, budget)
    plans, step_seconds = [], []
    engine.mark = time.perf_counter()
    def clock(plan, work):             # wall seconds, and the device time CUDA events saw (None on a CPU)
        return engine.execute(plan), engine.gpu_seconds[-1]
    replay(sched, clock, ledger, pricer, cfg, plans=plans, step_seconds=step_seconds)
    if engine.cache.regions:
        raise RuntimeError(f"KV regions still held after the run: {sorted(engine.cache.regions)}")
    out = sched.results()
    p = served.prompt_tokens.tolist()
    return EngineResult(
        served, cfg, pricer.shape.name, pricer.cost, budget, out["start_s"], out["first_token_s"], out["finish_s"],
        out["release_s"], out["slot"], ledger, useful_flops(served, pricer), arrivals, float(rate_scale),
        time.perf_counter() - t0, plans, step_seconds, "executed",
        prompts=[s[:n] for s, n in zip(engine.seqs, p)], outputs=[s[n:] for s, n in zip(engine.seqs, p)],
        gpu_seconds=engine.gpu_seconds, graphed=engine.graphed, kv_regions=engine.regions_log, attention=engine.path,
        attention_why=engine.path_why, cuda_graphs=engine.graphs_why, kv_layout=engine.layout(reserves), kv_capacity_tokens=engine.cache.capacity,
        kv_compactions=engine.cache.compactions, device=str(engine.device), dtype=str(engine.dtype).removeprefix("torch."))
