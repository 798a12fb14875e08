"""The benchmark driver: setup → ceiling → preflight → phase 1 → phase 2 → ceiling → done.

One linear :func:`run` over small functions. What it guarantees, so that one GPU call cannot
be wasted:

* **results after every step**: ``<out>/bench.json`` is rewritten atomically after each step,
  and every exit path (success, deadline, error, Ctrl-C, a ``timeout`` signal) writes a final
  ``status`` and the error;
* **a preflight**: every method runs once at a tiny shape before anything is timed; a method
  that fails there -- or later -- is recorded with its error and skipped from then on (never
  retried per scenario);
* **a baseline**: if SDPA refuses ``padded`` (odd lengths, a backend rejecting the shape), it is
  retried once under an explicit SDPA backend list (:data:`SDPA_FALLBACK`), recorded as
  ``fallback``;
* **two phases**: methods that compile (flex) run after every other method of every
  scenario, so a slow compile can only cost its own numbers;
* **a deadline**: no step starts that the time left cannot hold (the FLOP model scales the
  ``padded`` time into a guess for every other method).

**Weights are random** unless a checkpoint is given; the speed of a forward does not depend
on weight values (:data:`packviz.model.RANDOM_WEIGHTS_NOTE`).
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import pathlib
import sys
import time
from dataclasses import dataclass, field

from ..model_extra import require_model_extra

require_model_extra("packviz.bench.runner")  # before torch: without it, one line naming packviz[model]
import torch

from .. import attention, model as M
from ..checks import instance_of, items, one_of
from ..flops import useful_flops
from . import measure, results, scenarios
from .config import BenchConfig

SDPA_FALLBACK = ("EFFICIENT_ATTENTION", "MATH")
"""SDPA backends ``padded`` is retried under, once, when SDPA refuses its preferred kernel."""

FLEX_COMPILE_ALLOWANCE_S = 90.0
"""Seconds set aside for FlexAttention's first compile on a GPU when judging the deadline."""


@dataclass
class Context:
    """What every step needs: the model, where it runs, the clock, and what has failed so far."""

    cfg: BenchConfig
    model: object
    shape: object
    device: torch.device
    dtype: torch.dtype
    t0: float
    log: object
    save: object
    weights_bytes: int = 0
    failed: dict = field(default_factory=dict)  # method -> its error: skipped from then on
    fallback: dict = field(default_factory=dict)  # method -> explicit SDPA backends it runs under
    compiled: set = field(default_factory=set)  # compiled methods that have compiled once

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def remaining(self) -> float:
        return float("inf") if self.cfg.deadline is None else self.cfg.deadline - (time.monotonic() - self.t0)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------- setup
def setup(cfg: BenchConfig, run: results.Run, log, save) -> Context:
    """Check what can be checked without a model (one line per problem), then build the model."""
    from ..shapes import get_shape

    device, dtype = M.resolve_device_dtype(cfg.device, cfg.dtype)
    if cfg.cpu_threads and device.type == "cpu":
        torch.set_num_threads(cfg.cpu_threads)  # run() puts the old count back
    if not cfg.checkpoint:
        get_shape(cfg.model)  # an unknown name fails here, before anything is built or printed
    t = time.monotonic()
    if cfg.checkpoint:
        model = M.load_checkpoint(cfg.checkpoint, dtype=dtype, device=device)
        run.weights, name = f"loaded from the local checkpoint {cfg.checkpoint} (safetensors)", \
            pathlib.Path(cfg.checkpoint).name
    else:
        model = M.build_model(cfg.model, dtype=dtype, device=device, seed=cfg.seed)
        run.weights, name = M.RANDOM_WEIGHTS_NOTE, cfg.model
    from ..shapes import shape_from_config

    shape = shape_from_config(model.config, name=name)
    if cfg.pack_len > shape.max_position:
        raise ValueError(f"pack_len {cfg.pack_len} exceeds the model's max_position_embeddings {shape.max_position}")
    ctx = Context(cfg, model, shape, device, dtype, time.monotonic(), log, save)
    run.model = {"name": name, "shape": shape.as_dict(), "total_params": shape.total_params(),
                 "dtype": str(dtype).replace("torch.", ""), "build_s": time.monotonic() - t,
                 "random_weights": not cfg.checkpoint}
    if ctx.cuda:
        torch.cuda.synchronize()
        ctx.weights_bytes = run.model["allocated_bytes"] = int(torch.cuda.memory_allocated(device))
    log(f"model {name} ({run.model['dtype']}, {shape.total_params() / 1e9:.2f} B params) "
        f"built in {run.model['build_s']:.1f} s")
    return ctx


def describe_environment(ctx: Context, run: results.Run) -> None:
    """Device, versions, SDPA settings, git, nvidia-smi and which methods run here, into ``run``."""
    run.device = measure.device_info(ctx.device)
    run.versions = measure.versions()
    run.sdpa = measure.sdpa_settings()
    run.git_commit, run.git_changes = measure.git_commit(), measure.git_changes()
    run.git_dirty = None if run.git_changes is None else bool(run.git_changes)
    run.nvidia_smi["start"] = measure.nvidia_smi()
    run.availability = attention.availability(ctx.device, ctx.cfg.cpu_varlen_reference)
    ctx.log("attention methods on " + ctx.device.type + ":\n" + attention.format_availability(run.availability))


def selected_methods(ctx: Context, run: results.Run) -> dict:
    """``{method: None (runs) or why not}`` for every method of the run, in the order they run."""
    ok = {r["method"]: r for r in run.availability}
    wanted = list(ctx.cfg.methods) if ctx.cfg.methods is not None else list(attention.METHODS)
    wanted = list(dict.fromkeys(["padded"] + wanted))  # the baseline always runs
    out = {}
    for m in sorted(wanted, key=lambda m: (m in attention.COMPILED, attention.METHODS.index(m))):
        if not ok[m]["available"]:
            out[m] = "unavailable: " + ok[m]["reason"]
        elif m in attention.COMPILED and ctx.cfg.methods is None and not ctx.cuda:
            out[m] = ("skipped: FlexAttention compiles for 10-40 s on CPU and is slower than SDPA there; "
                      "ask for it with methods including 'flex'")
        else:
            out[m] = None
    return out


# ---------------------------------------------------------------------- batches and forwards
def _varlen_kernel(ctx: Context):
    return attention.varlen_reference if (ctx.cfg.cpu_varlen_reference and not ctx.cuda) else None


def make_batch(ctx: Context, method: str, groups: list) -> dict:
    """The batch of one forward of ``method``: ``groups`` are lists of token-id tensors (one list per row)."""
    layout = attention.BACKENDS[method].layout
    if layout in ("padded", "sorted"):
        return M.padded_batch([s for g in groups for s in g], device=ctx.device)
    if layout == "packed":
        return M.packed_rows_batch(groups, pad_to=ctx.cfg.pack_len, device=ctx.device)
    b = M.packed_batch([s for g in groups for s in g], device=ctx.device)
    b["keep"] = M.last_token_index(b)
    return b


def forward(ctx: Context, method: str, batch: dict) -> torch.Tensor:
    """Last-token logits ``(N, vocab)`` of one forward of ``method`` (under its SDPA fallback, if any)."""
    backend = attention.BACKENDS[method]
    with sdpa_backends(ctx.fallback.get(method)):
        if backend.layout in ("padded", "sorted"):
            return M.padded_forward(ctx.model, batch, mask=backend.padding_mask)
        if backend.layout == "packed":
            return M.rows_forward(ctx.model, batch)
        return M.packed_forward(ctx.model, batch, keep=batch["keep"])


def sdpa_backends(names):
    """``torch.nn.attention.sdpa_kernel`` restricted to ``names`` (``None``: no restriction)."""
    if names is None or (isinstance(names, (list, tuple)) and not names):
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    known = [n for n in SDPBackend.__members__ if n != "ERROR"]
    names = [one_of("SDPA backend", n, known) for n in items("names", names, "a list of SDPA backend names")]
    return sdpa_kernel([getattr(SDPBackend, n) for n in names])


def kernel_of(ctx: Context, method: str, batch: dict) -> str:
    """Which attention kernel ``method`` runs, found by running one forward and watching."""
    backend = attention.BACKENDS[method]
    if backend.attn_implementation == attention.VARLEN_NAME:
        ref = _varlen_kernel(ctx) is not None
        return "varlen_reference (CPU loop stand-in)" if ref else "varlen_attn (torch.nn.attention.varlen)"
    if method == "flex":
        return "flex_attention (torch.compile: " + ("triton)" if ctx.cuda else "inductor C++)")
    if method == "flash":
        return "flash_attn_varlen_func (flash-attn)"
    with measure.SdpaRecorder() as rec:
        forward(ctx, method, batch)
    return rec.summary() or "SDPA not called"


# ---------------------------------------------------------------------- checks
def check_sequences(ctx: Context, lengths, seed: int) -> list:
    """Short random sequences for a correctness check: the first ``check_sequences`` prompts, cut."""
    gen = torch.Generator().manual_seed(seed)
    n = [int(min(x, ctx.cfg.check_tokens)) for x in lengths[: ctx.cfg.check_sequences]]
    return [torch.randint(0, ctx.shape.vocab, (k,), generator=gen) for k in n]


def check(ctx: Context, method: str, seqs: list) -> dict:
    """``method``'s last-token logits of ``seqs`` against each sequence run alone (plain causal SDPA)."""
    dev = [s.to(ctx.device) for s in seqs]
    attention.set_backend(ctx.model, "padded")
    ref = M.per_sequence_logits(ctx.model, dev, last_token_only=True)
    attention.set_backend(ctx.model, method, _varlen_kernel(ctx))
    layout = attention.BACKENDS[method].layout
    groups = [dev] if layout in ("packed", "stream") else [[s] for s in dev]
    got = forward(ctx, method, make_batch(ctx, method, groups))
    diff, scale = M.max_abs_diff(got, ref), float(ref.float().abs().max())
    return {"sequences": len(dev), "tokens": int(sum(len(s) for s in dev)), "max_abs_diff": diff,
            "reference_max_abs": scale, "max_rel_diff": diff / scale if scale else None,
            "top1_agreement": float((got.argmax(-1) == ref.argmax(-1)).float().mean()),
            "reference": "each sequence alone, plain causal SDPA, same dtype"}


def with_fallback(ctx: Context, method: str, step):
    """``step()``; if SDPA refuses ``padded``'s kernel, retry once under :data:`SDPA_FALLBACK`.

    Only the baseline gets a second chance: a run without ``padded`` is useless. The fallback
    stays on for the rest of the run and is recorded by the caller (``ctx.fallback``).
    """
    try:
        return step()
    except Exception:  # noqa: BLE001 -- SDPA's refusals are RuntimeErrors of many kinds
        if method != "padded" or method in ctx.fallback:
            raise
        ctx.fallback[method] = SDPA_FALLBACK
        ctx.log(f"{method}: the preferred SDPA kernel failed; retrying under {', '.join(SDPA_FALLBACK)}")
        return step()


def preflight(ctx: Context, run: results.Run, methods: list) -> None:
    """Run each of ``methods`` once on tiny sequences: kernel, correctness, or the error that skips it."""
    seqs = check_sequences(ctx, [5, 17, 9], seed=ctx.cfg.seed + 7)
    for m in methods:
        rec = run.preflight[m] = {"status": "running"}
        try:
            rec["check"] = with_fallback(ctx, m, lambda m=m: check(ctx, m, seqs))
            batch = make_batch(ctx, m, [[s.to(ctx.device)] for s in seqs] if attention.BACKENDS[m].layout
                               in ("padded", "sorted") else [[s.to(ctx.device) for s in seqs]])
            rec["kernel"] = kernel_of(ctx, m, batch)
            rec["fallback"] = list(ctx.fallback.get(m) or []) or None
            rec["status"] = "ok"
        except Exception as e:  # noqa: BLE001 -- one failing method must not end the run
            rec["status"] = ctx.failed[m] = f"error: {type(e).__name__}: {str(e)[:400]}"
            run.errors.append({"step": "preflight", "method": m, "error": rec["status"]})
            _release(ctx)
        if m in attention.COMPILED and rec["status"] == "ok":
            ctx.compiled.add(m)
        ctx.log(f"preflight {m}: {rec['status']}" + (f", kernel {rec.get('kernel')}" if rec.get("kernel") else ""))
        ctx.save()


def _release(ctx: Context) -> None:
    """Give back what a failed step held (after its traceback is gone, so its tensors are free)."""
    gc.collect()
    if ctx.cuda:
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------- one method in one scenario
def forward_groups(sc: scenarios.Scenario, method: str, tokens: list) -> list:
    """For each forward of ``method`` in ``sc``: its rows, each the list of its sequences' token tensors."""
    layout = attention.BACKENDS[method].layout
    lay = sc.layouts[layout]
    return [[[tokens[s][:n] for s, _, n in lay.row_segments(r).tolist()] for r in rows]
            for rows in sc.forwards[layout]]


def one_pass(ctx: Context, method: str, batches: list) -> float:
    """Seconds to run every forward of a pass (CUDA events on a GPU)."""
    with measure.Timer(ctx.device) as t:
        for b in batches:
            forward(ctx, method, b)
    return t.seconds


def guess_seconds(ctx: Context, sr: results.Scenario, m: results.Method) -> float | None:
    """Seconds ``m`` may need (warm-up + repeats): ``padded``'s pass scaled by the FLOP model, x2,
    plus the compile allowance for a compiled method's first use on a GPU. ``None`` before padded ran."""
    base = sr.methods.get("padded")
    t = base and (base.median_s or (base.warmup_s or [None])[-1])
    if not t or m.method == "padded":
        return None
    passes = ctx.cfg.warmup + ctx.cfg.repeats
    guess = 2 * passes * t * m.flops_model["total"] / base.flops_model["total"]
    compiling = m.method in attention.COMPILED and m.method not in ctx.compiled and ctx.cuda
    return guess + (FLEX_COMPILE_ALLOWANCE_S if compiling else 0.0)


def time_method(ctx: Context, sc: scenarios.Scenario, sr: results.Scenario, m: results.Method, tokens) -> None:
    """Warm-up (the kernel recorded on the first forward), correctness check, timed passes."""
    cfg = ctx.cfg
    attention.set_backend(ctx.model, m.method, _varlen_kernel(ctx))
    batches = [make_batch(ctx, m.method, g) for g in forward_groups(sc, m.method, tokens)]
    if ctx.cuda:
        _release(ctx)
        torch.cuda.reset_peak_memory_stats(ctx.device)
    m.kernel = kernel_of(ctx, m.method, batches[0])  # the first forward: compiles flex if it must
    if m.method in attention.COMPILED:
        ctx.compiled.add(m.method)
    # a compiled method's first pass over new shapes includes its (re)compile: one more warm-up pass,
    # so that the deadline is judged by a real pass
    for _ in range(max(cfg.warmup, 2) if m.method in attention.COMPILED else cfg.warmup):
        m.warmup_s.append(one_pass(ctx, m.method, batches))
    m.check = check(ctx, m.method, check_sequences(ctx, sc.lengths, cfg.seed + 1))
    attention.set_backend(ctx.model, m.method, _varlen_kernel(ctx))
    estimate = (m.warmup_s or [None])[-1]
    for i in range(cfg.repeats):
        if estimate is not None and ctx.remaining() < 1.2 * estimate:
            m.status = f"partial: deadline after {i} of {cfg.repeats} repeats" if i else "skipped: deadline"
            break
        m.times_s.append(estimate := one_pass(ctx, m.method, batches))
        ctx.save()
    else:
        m.status = "complete"
    m.fallback = ", ".join(ctx.fallback[m.method]) if m.method in ctx.fallback else None
    m.peak_memory_bytes = int(torch.cuda.max_memory_allocated(ctx.device)) if ctx.cuda else None


def batch_sets(sc: scenarios.Scenario, layout: str) -> list:
    """The set of requests each forward of ``layout`` holds (their order inside a batch does not matter)."""
    lay = sc.layouts[layout]
    return [frozenset(s for r in rows for s in lay.row_segments(r)[:, 0].tolist()) for rows in sc.forwards[layout]]


def skip_reason(ctx: Context, sc: scenarios.Scenario, sr: results.Scenario, m: results.Method) -> str | None:
    """Why ``m`` does not run in this scenario now, or ``None``."""
    if m.method in ctx.failed:
        return f"skipped: failed earlier ({ctx.failed[m.method]})"
    if m.method == "padded-sorted" and batch_sets(sc, "sorted") == batch_sets(sc, "padded"):
        return "skipped: sorting changes no batch here (every forward holds the same requests as padded)"
    guess = guess_seconds(ctx, sr, m)
    if ctx.remaining() <= 0 or (guess is not None and ctx.remaining() < guess):
        return f"skipped: deadline ({ctx.remaining():.0f} s left" + (f", about {guess:.0f} s needed)" if guess else ")")
    return None


def run_method(ctx: Context, sc: scenarios.Scenario, sr: results.Scenario, m: results.Method, tokens) -> None:
    """One method in one scenario, every outcome recorded in ``m`` (errors too: the run goes on)."""
    if m.status != "pending":  # unavailable, or shared with another scenario
        return
    why = skip_reason(ctx, sc, sr, m)
    if why is not None:
        m.status = why
    else:
        try:
            with_fallback(ctx, m.method, lambda: time_method(ctx, sc, sr, m, tokens))
        except Exception as e:  # noqa: BLE001 -- one failing method must not end the run
            m.status = m.error = ctx.failed[m.method] = f"error: {type(e).__name__}: {str(e)[:400]}"
        if m.error:
            _release(ctx)
    ctx.log(method_line(sr.name, m, ctx))


def method_line(scenario: str, m: results.Method, ctx: Context) -> str:
    """One log line per method: what happened, how long, against padded."""
    parts = [f"{scenario}/{m.method}: {m.status}", f"elapsed {time.monotonic() - ctx.t0:.0f} s"]
    if m.kernel:
        parts.append(m.kernel)
    if m.median_s:
        parts.append(f"median {m.median_s:.3f} s")
    if m.measured_speedup:
        parts.append(f"{m.measured_speedup:.2f}x padded (ideal {m.ideal_speedup_tiled or m.ideal_speedup:.2f}x)")
    if m.check:
        parts.append(f"check max|dlogit| {m.check['max_abs_diff']:.3g}")
    if m.peak_memory_bytes:
        parts.append(f"peak {m.peak_memory_bytes / 2**30:.1f} GiB")
    return ", ".join(parts)


# ---------------------------------------------------------------------- scenarios
def scenario_result(ctx: Context, sc: scenarios.Scenario, chosen: dict) -> results.Scenario:
    """A scenario's result, every method priced by the FLOP model before anything runs."""
    prices = {m: scenarios.price(sc, m, ctx.shape, ctx.cfg.tile) for m in chosen}
    ideal = scenarios.ideal_speedups({m: {"flops_model": p["flops_model"]} for m, p in prices.items()})
    tiled = scenarios.ideal_speedups(prices) if ctx.cfg.tile else {}
    sr = results.Scenario(sc.name, sc.kind, sc.description, sc.info,
                          useful_flops(sc.lengths, ctx.shape, "last").as_dict())
    for m, why in chosen.items():
        b = attention.BACKENDS[m]
        p = prices[m]
        sr.methods[m] = results.Method(
            m, b.description, "offline" if b.offline or (sc.kind == "offline" and b.layout in ("packed", "stream"))
            else "online", b.layout, b.execution, b.attn_implementation, status=why or "pending",
            forwards=p["forwards"], requests_per_forward=p["requests_per_forward"], real_tokens=p["real_tokens"],
            processed_tokens=p["processed_tokens"], pad_tokens=p["pad_tokens"], flops_model=p["flops_model"],
            flops_model_tiled=p.get("flops_model_tiled"), ideal_speedup=ideal[m],
            ideal_speedup_tiled=tiled.get(m))
    return sr


def share_baselines(sr: results.Scenario, done: list) -> None:
    """The ``offline`` scenario runs the ``trace`` sample's padded batches: copy those timings, do not re-run."""
    trace = next((d for d in done if d.name == "trace"), None)
    if sr.kind != "offline" or trace is None:
        return
    for name, m in sr.methods.items():
        src = trace.methods.get(name)
        if src is not None and m.layout in ("padded", "sorted") and m.status == "pending":
            for k in ("status", "error", "kernel", "fallback", "warmup_s", "times_s", "peak_memory_bytes", "check"):
                setattr(m, k, getattr(src, k))
            m.shared_from = "trace (the same sample's identical padded forwards, timed once)"


def run_phase(ctx: Context, plans: list, srs: list, compiled: bool) -> None:
    """Every method of every scenario whose compiling-ness is ``compiled``."""
    for sc, sr in zip(plans, srs):
        gen = torch.Generator().manual_seed(ctx.cfg.seed + 1)
        tokens = [torch.randint(0, ctx.shape.vocab, (int(n),), generator=gen) for n in sc.lengths]
        share_baselines(sr, srs)
        for m in sr.methods.values():
            if (m.method in attention.COMPILED) == compiled:
                run_method(ctx, sc, sr, m, tokens)
                ctx.save()
        attention.set_backend(ctx.model, "padded")
        sr.status = "measured"


def ceiling(ctx: Context) -> dict:
    """The matmul ceiling now: bf16 on a GPU, the run's dtype on CPU."""
    dtype = torch.bfloat16 if ctx.cuda else ctx.dtype
    c = measure.matmul_ceiling(ctx.device, dtype, ctx.cfg.ceiling_n, ctx.cfg.ceiling_seconds)
    ctx.log(f"matmul ceiling: {c['tflops']:.1f} TFLOP/s ({c['dtype']}, n={c['n']}, "
            f"{c['iters_per_group']} products per measurement)")
    return c


# ---------------------------------------------------------------------- the run
def finish(run: results.Run, out: pathlib.Path, png: bool) -> None:
    """Numbers that need the whole run: the lower ceiling, fractions, speed-ups, targets, errors, figure."""
    run.ceiling_tflops = results.lower_ceiling(run)
    for sr in run.scenarios:
        for m in sr.methods.values():
            results.fill_timings(m, sr.useful_flops["total"], run.ceiling_tflops)
        base = sr.methods.get("padded")
        results.derive(sr, base.median_s if base else None)
    run.errors += [{"scenario": sr.name, "method": m.method, "error": m.error}
                   for sr in run.scenarios for m in sr.methods.values() if m.error]
    res = run.to_json()
    run.targets = results.targets(res)
    run.finished = _now()
    if png and any(m.median_s for sr in run.scenarios for m in sr.methods.values()):
        try:
            from .. import plot

            plot.save(plot.bench_figure(res)[0], out / "bench.png", dpi=110)
            run.png = str(out / "bench.png")
        except Exception as e:  # noqa: BLE001 -- a figure must not lose the numbers
            run.errors.append({"step": "png", "error": f"{type(e).__name__}: {e}"})


def measure_all(ctx: Context, run: results.Run) -> None:
    """Ceiling, preflight, the two phases, the ceiling again."""
    describe_environment(ctx, run)
    ctx.save()
    run.ceiling_start = ceiling(ctx)
    ctx.save()
    chosen = selected_methods(ctx, run)
    plans = [scenarios.build(name, ctx.cfg) for name in ctx.cfg.scenarios]
    run.scenarios = [scenario_result(ctx, sc, chosen) for sc in plans]
    ready = [m for m, why in chosen.items() if why is None]
    preflight(ctx, run, [m for m in ready if m not in attention.COMPILED])
    run_phase(ctx, plans, run.scenarios, compiled=False)
    preflight(ctx, run, [m for m in ready if m in attention.COMPILED and ctx.remaining() > 0])
    run_phase(ctx, plans, run.scenarios, compiled=True)
    run.ceiling_end = ceiling(ctx) if ctx.remaining() > 3 * ctx.cfg.ceiling_seconds + 1 else None
    run.nvidia_smi["end"] = measure.nvidia_smi()
    statuses = [m.status for sr in run.scenarios for m in sr.methods.values()]
    run.status = "deadline" if any("deadline" in s for s in statuses) else "complete"


def run(cfg: BenchConfig | None = None, out_dir="bench-results", log=None) -> dict:
    """Run the benchmark; returns the results (also in ``<out_dir>/bench.json``, rewritten after every step)."""
    cfg = BenchConfig() if cfg is None else instance_of("cfg", cfg, BenchConfig, "a BenchConfig (packviz.bench.config)")
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    out = pathlib.Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {str(out)!r} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    record = results.Run(config=cfg.as_dict(), started=_now())
    t0 = time.monotonic()

    def save():
        record.elapsed_s, record.updated = time.monotonic() - t0, _now()
        results.write_json(out / "bench.json", record)

    threads = torch.get_num_threads()
    try:
        save()
        ctx = setup(cfg, record, log, save)
        ctx.t0 = t0
        measure_all(ctx, record)
    except BaseException as e:
        record.status = f"failed: {type(e).__name__}: {e}"
        record.errors.append({"step": "run", "error": record.status})
        raise
    finally:
        torch.set_num_threads(threads)
        finish(record, out, cfg.png)
        save()
    return record.to_json()
