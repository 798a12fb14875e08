"""Measuring functions of the GPU engine run; ``scripts/gpu_serve.py`` drives them top to bottom.

Each function measures one thing and returns JSON-ready values; none writes a file or
decides what runs next. Four groups, in the order the run uses them:

* ceilings -- the bf16 matmul rate (burst and held), a device-to-device copy (the bandwidth
  every roofline below divides by), a batch-1 GEMV through one 8B-sized weight, ``nvidia-smi``;
* the decode grid -- single steps timed on packviz's engine (:mod:`packviz.serving.stepcost`),
  each beside its roofline (weights + KV bytes ÷ the measured copy rate);
* end to end -- real trace requests served by the engine, and the simulator's prediction of
  the same requests under the same configuration;
* prefill controls -- transformers' padded forward (pad id 0 or random pad ids) against the
  engine's varlen step (one FlashAttention call per layer, K/V not repeated).

Works on a CPU too (the smoke run): the same calls, CUDA events replaced by the wall clock.
"""

from __future__ import annotations

import gc
import re
import shutil
import subprocess
import time

import numpy as np
import torch
import torch.nn.functional as F

from packviz.bench.measure import Timer

ROOFLINE_NOTE = ("bytes a step must move: every weight except the embedding table (a step reads only its "
                 "rows), plus the KV read and written; ÷ the measured copy rate (bytes read + written per s)")


def free_memory() -> None:
    """Drop what Python no longer holds and hand cached CUDA blocks back (between steps, after a failure)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def timed(device, fn, iters: int = 1) -> float:
    """Seconds of ``iters`` calls of ``fn``: CUDA events (synchronised at both ends) on a GPU, else the wall clock."""
    with Timer(device) as t:
        for _ in range(iters):
            fn()
    return t.seconds


# ---------------------------------------------------------------------- ceilings
def smi_report() -> str | None:
    """``nvidia-smi -q -d CLOCK,POWER,TEMPERATURE,PERFORMANCE`` (clocks, power, throttle reasons), or None."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        p = subprocess.run([exe, "-q", "-d", "CLOCK,POWER,TEMPERATURE,PERFORMANCE"], capture_output=True,
                           text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as e:
        return f"nvidia-smi -q failed: {type(e).__name__}: {e}"
    return (p.stdout if p.returncode == 0 else p.stderr or p.stdout).strip()


def matmul_rates(device, dtype, n: int, hold_s: float, chunk: int) -> dict:
    """The (n, n) @ (n, n) rate, FLOP/s: ``burst`` is the first chunk of ``chunk`` products after a warm-up,
    ``sustained`` the chunks of the last second of a loop held ``hold_s`` (clocks fall once power caps them)."""
    g = torch.Generator(device=device).manual_seed(0)
    a, b = (torch.randn(n, n, device=device, dtype=dtype, generator=g) for _ in range(2))
    c = torch.empty(n, n, device=device, dtype=dtype)

    def mm():
        torch.matmul(a, b, out=c)

    timed(device, mm, 3)                                   # warm-up: kernel choice
    chunks = []
    while sum(chunks) < hold_s:
        chunks.append(timed(device, mm, chunk))
    starts = np.cumsum([0.0] + chunks[:-1])
    late = [s for s, t0 in zip(chunks, starts) if t0 >= sum(chunks) - 1.0] or chunks
    flop = 2.0 * n ** 3 * chunk
    del a, b, c
    return {"n": n, "dtype": str(dtype).removeprefix("torch."), "products_per_chunk": chunk,
            "held_s": float(sum(chunks)), "chunk_flops_per_s": [flop / s for s in chunks],
            "burst_flops_per_s": flop / chunks[0], "sustained_flops_per_s": flop * len(late) / sum(late)}


def copy_rate(device, nbytes: int, repeats: int) -> dict:
    """A device-to-device copy of ``nbytes``: ``bytes_per_s`` counts what it reads and writes (2 × nbytes per copy),
    the rate the rooflines divide a step's traffic by."""
    src = torch.empty(nbytes // 2, dtype=torch.bfloat16, device=device).normal_()
    dst = torch.empty_like(src)
    timed(device, lambda: dst.copy_(src))                  # warm-up
    secs = [timed(device, lambda: dst.copy_(src)) for _ in range(repeats)]
    del src, dst
    s = float(np.median(secs))
    return {"bytes": int(nbytes), "seconds": secs, "bytes_per_s": 2 * nbytes / s, "copied_bytes_per_s": nbytes / s,
            "note": "bytes_per_s = (read + written) / median seconds"}


def gemv_rate(device, dtype, rows: int, cols: int, copies: int = 4, iters: int = 50, groups: int = 5) -> dict:
    """Batch-1 ``F.linear(x (1, cols), W (rows, cols))``, rotating over ``copies`` weights (more than L2 holds):
    the weight bytes streamed per second."""
    g = torch.Generator(device=device).manual_seed(0)
    ws = [torch.randn(rows, cols, device=device, dtype=dtype, generator=g) for _ in range(copies)]
    x = torch.randn(1, cols, device=device, dtype=dtype, generator=g)

    def run():
        for w in ws:
            F.linear(x, w)

    timed(device, run, 3)
    per = float(np.median([timed(device, run, iters) for _ in range(groups)])) / (iters * copies)
    nbytes = rows * cols * ws[0].element_size()
    del ws
    return {"weight": [rows, cols], "dtype": str(dtype).removeprefix("torch."), "seconds": per,
            "weight_bytes": nbytes, "bytes_per_s": nbytes / per}


# ---------------------------------------------------------------------- the decode grid
def grid_points(cfg: dict, kv_bytes: int, free_bytes: int | None) -> tuple[list, list]:
    """Calibration points, decodes first (the targets need them), and the decode points whose KV does not fit
    (batch × (context + 1) × KV bytes per token over what is free less a margin for activations and graphs)."""
    from packviz.serving.stepcost import grid

    allow = cfg["max_cached_tokens"]
    if free_bytes is not None:
        allow = min(allow, int((free_bytes - cfg["memory_margin_bytes"]) // kv_bytes))
    points = grid(cfg["prefill_tokens"], cfg["decode_batches"], cfg["decode_contexts"], allow,
                  padded=cfg["padded"], prefill_batches=cfg["prefill_batches"], mixed=cfg["mixed"])
    order = {"decode": 0, "mixed": 1, "prefill": 2, "padded_prefill": 3}
    points.sort(key=lambda p: order[p["kind"]])
    skipped = [{"kind": "decode", "batch": b, "context": c, "kv_bytes": b * (c + 1) * kv_bytes,
                "status": f"skipped: {b * (c + 1) * kv_bytes / 2**30:.1f} GiB of KV does not fit "
                          f"(at most {allow:,} cached tokens)"}
               for b in cfg["decode_batches"] for c in cfg["decode_contexts"] if b * c > allow]
    return points, skipped


def make_engine(model, points, log) -> tuple[object, dict]:
    """The grid's engine (:func:`packviz.serving.stepcost.engine_for`): CUDA graphs where the device allows;
    if building it with graphs fails, once more without them (the error recorded)."""
    from packviz.serving.stepcost import engine_for

    facts = {}
    try:
        engine = engine_for(model, points)
    except Exception as e:  # noqa: BLE001 -- e.g. a graph capture that fails on this torch: go on eager
        if model.device.type != "cuda":
            raise
        facts["graphs_error"] = error_text(e)
        log(f"engine with CUDA graphs failed ({facts['graphs_error']}); eager instead")
        free_memory()
        engine = engine_for(model, points, cuda_graphs=False)
    graphs = engine.graphs
    facts.update(attention=engine.path, attention_why=engine.path_why, cuda_graphs=graphs is not None,
                 cuda_graphs_why=getattr(engine, "graphs_why", None),
                 graph_buckets=list(graphs.buckets) if graphs else [], kv_capacity_tokens=engine.cache.capacity,
                 kv_layout=engine.layout("each point's regions: context + 1 tokens per decode, the row per prefill"))
    return engine, facts


def roofline(point: dict, pricer, rates: dict, embed_bytes: float) -> dict:
    """A timed point beside its roofline: bytes ÷ the copy rate and FLOPs ÷ the held matmul rate, the larger
    (see :data:`ROOFLINE_NOTE`); ``share_*`` = roofline ÷ measured (1 would be the roofline itself)."""
    from packviz.serving.calibration import point_work

    work = point_work(point, "causal")
    nbytes = pricer.bytes(work) - embed_bytes
    flops = pricer.flops(work)
    bw = nbytes / rates["bytes_per_s"]
    compute = flops / rates["flops_per_s"] if rates.get("flops_per_s") else 0.0
    best = max(bw, compute)
    gpu = point.get("gpu_seconds")
    return {"bytes": nbytes, "flops": flops, "bandwidth_s": bw, "compute_s": compute, "roofline_s": best,
            "bound": "memory" if bw >= compute else "compute", "share_wall": best / point["seconds"],
            "share_kernel": best / gpu if gpu else None,
            "host_s": point["seconds"] - gpu if gpu is not None else None}


def time_points(engine, points, repeats: dict, clock, on_point, log) -> tuple[list, list]:
    """Every point timed on ``engine`` (:func:`packviz.serving.stepcost.time_step`) while the deadline allows;
    a point that fails is recorded with its error and the rest go on. ``on_point(timed)`` after each."""
    from packviz.serving.stepcost import time_step

    timed_points, failed = [], []
    for p in points:
        if not clock.open():
            failed.append({**p, "status": "skipped: deadline"})
            continue
        warmup, reps = repeats["decode" if p["kind"] == "decode" else "other"]
        try:
            timed_points.append(time_step(engine, p, repeats=reps, warmup=warmup))
        except Exception as e:  # noqa: BLE001 -- e.g. out of memory at one point: keep the others
            failed.append({**p, "status": "error: " + error_text(e)})
            log(f"point {p}: {failed[-1]['status']}")
            free_memory()
            continue
        on_point(timed_points)
    return timed_points, failed


# ---------------------------------------------------------------------- end to end
def served_requests(n: int, seed: int, scale: int, output_cap: int | None = None):
    """``n`` consecutive real requests of the Azure conversation trace (a window drawn by ``seed``), all at
    t = 0, prompts and outputs ÷ ``scale`` (rounded up; 1 = as recorded), outputs capped at ``output_cap``."""
    from packviz.trace import Trace, azure_conv

    w = azure_conv().window(n, seed=seed)
    p, g = -(-w.prompt_tokens // scale), -(-w.generated_tokens // scale)
    if output_cap is not None:
        g = np.minimum(g, output_cap)
    how = "" if scale == 1 else f", lengths ÷ {scale}"
    how += "" if output_cap is None else f", outputs capped at {output_cap}"
    return Trace(np.zeros(len(p)), p, g, name=f"{w.name}{how}")


def sim_kwargs(kw: dict, model_name: str, result=None) -> dict:
    """The simulator's keywords for a policy's engine configuration ``kw`` (and the KV budget the run used)."""
    out = dict(kw, model=model_name, arrivals="offline")
    if result is not None:
        out.update(kv_budget_tokens=result.kv_budget_tokens, page_size=result.config.page_size)
    return out


def predicted_makespan(trace, policies: dict, cost, model_name: str) -> dict:
    """{policy: simulated makespan (s)} of ``trace`` under each policy's configuration, priced by ``cost``."""
    from packviz.serving import simulate, summary

    return {name: summary(simulate(trace, name, gpu=cost, **sim_kwargs(kw, model_name)))["makespan_s"]
            for name, kw in policies.items()}


def choose_output_cap(cfg: dict, cost, model_name: str, budget_s: float) -> tuple:
    """The first cap of ``cfg["output_caps"]`` (None: outputs as recorded) whose predicted serving time -- the
    policies' simulated makespans × ``cfg["safety"]`` plus set-up per run -- fits ``budget_s``.
    ``(cap, trace, predicted, why)``; the last cap if none fits."""
    for cap in cfg["output_caps"]:
        trace = served_requests(cfg["requests"], cfg["window_seed"], cfg["scale"], cap)
        pred = predicted_makespan(trace, cfg["policies"], cost, model_name)
        need = sum(pred.values()) * cfg["safety"] + cfg["setup_s"] * len(pred)
        if need <= budget_s:
            break
    why = (f"predicted {need:.0f} s (simulated makespans × {cfg['safety']} + {cfg['setup_s']} s set-up per run, "
           f"{cost.name} costs) {'fits' if need <= budget_s else 'exceeds'} the {budget_s:.0f} s left")
    return cap, trace, pred, why


def memory_estimate(trace, name: str, kw: dict, shape, elt: int) -> dict:
    """Bytes a run needs beyond the weights: its KV cache (what the engine reserves) and the activations of its
    largest step (≈ 4·intermediate + 2·hidden values per token at the MLP's peak: gate/up, silu(gate), their
    product, the residual stream and its norm)."""
    from packviz.serving import simulate
    from packviz.serving.engine.run import kv_capacity
    from packviz.serving.scheduler import ServeConfig

    served = simulate(trace, name, gpu="h100", fast_forward=False, **sim_kwargs(kw, shape.name))
    tokens = max(p.num_tokens for p in served.plans)
    kv = kv_capacity(trace, ServeConfig(name, **kw))
    act = tokens * (4 * shape.intermediate + 2 * shape.hidden) * elt
    return {"kv_tokens": kv, "kv_bytes": kv * shape.kv_bytes_per_token(elt), "largest_step_tokens": tokens,
            "activation_bytes": act, "total_bytes": kv * shape.kv_bytes_per_token(elt) + act}


def step_records(result) -> dict:
    """Per step of an engine run: wall and kernel seconds, graphed or not, decodes, prefill tokens, KV read."""
    plans = result.plans
    return {"seconds": [float(s) for s in result.step_seconds], "gpu_seconds": list(result.gpu_seconds),
            "graphed": [bool(x) for x in result.graphed], "decodes": [len(p.decodes) for p in plans],
            "prefill_tokens": [sum(x.tokens + x.pad for x in p.prefills) for p in plans],
            "kv_read": [sum(p.contexts) + sum(x.done for x in p.prefills) for p in plans]}


def serve_policy(model, trace, name: str, kw: dict, engine_kw: dict) -> tuple[object, dict]:
    """One policy on the engine (``engine_kw``: e.g. ``cuda_graphs=False``): (EngineResult, its record) -- the
    summary, the steps, whether every request got its full G tokens, the host time of graphed steps, peak memory."""
    from packviz.serving import run_engine, summary

    cuda = model.device.type == "cuda"
    free_memory()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    r = run_engine(model, trace, name, seed=0, arrivals="offline", **kw, **engine_kw)
    seconds = time.perf_counter() - t
    got = [len(o) for o in r.outputs]
    full = got == trace.generated_tokens.tolist()
    host = [w - g for w, g, gr in zip(r.step_seconds, r.gpu_seconds, r.graphed) if gr and g is not None]
    rec = {"status": "ok" if full else "error: outputs are not every request's G tokens", "config": kw,
           "engine_options": engine_kw,
           "summary": summary(r), "outputs_full": full, "output_lengths": got, "run_seconds": seconds,
           "setup_seconds": seconds - float(np.sum(r.step_seconds)), "steps": step_records(r),
           "host_ms_graphed_p50": float(np.median(host)) * 1e3 if host else None,
           "peak_memory_bytes": int(torch.cuda.max_memory_allocated()) if cuda else None}
    return r, rec


def predict_policy(trace, name: str, kw: dict, result, model_name: str, costs: dict) -> dict:
    """The simulator on the same requests and configuration: each cost model's makespan and output tokens/s
    beside the measured ones, and the engine's own step times replayed (``clock=``): the same schedule?"""
    from packviz.serving import simulate, summary

    measured = summary(result)
    common = sim_kwargs(kw, model_name, result)
    out = {}
    for label, cost in costs.items():
        s = summary(simulate(trace, name, gpu=cost, **common))
        out[label] = {"cost": cost.name, "makespan_s": s["makespan_s"], "output_tokens_per_s": s["output_tokens_per_s"],
                      "ttft_s": s["ttft_s"], "tpot_s": s["tpot_s"], "steps": s["steps"],
                      "predicted_over_measured": s["makespan_s"] / measured["makespan_s"]}
    replay = simulate(trace, name, gpu=next(iter(costs.values())), clock=result.step_seconds, **common)
    out["replay"] = {"makespan_s": summary(replay)["makespan_s"], "measured_makespan_s": measured["makespan_s"],
                     "same_schedule": [p.key() for p in replay.plans] == [p.key() for p in result.plans]}
    return out


# ---------------------------------------------------------------------- prefill controls
def prompt_windows(n: int, batch: int, seed: int, scale: float, clip: int) -> list:
    """The prefill benchmark's trace sample (``n`` consecutive requests drawn by ``seed``, lengths × ``scale``,
    clipped at ``clip``) cut into windows of ``batch``: ``[(name, lengths)]``."""
    from packviz.trace import azure_conv

    w = azure_conv().window(n, seed=seed)
    lengths = np.minimum(np.maximum(1, np.rint(w.prompt_tokens * scale)).astype(np.int64), clip)
    trace, start = re.fullmatch(r"(.*)\[(\d+):\d+\]", w.name).groups()
    start = int(start)
    return [(f"{trace}[{start + i}:{start + min(i + batch, n)}]", lengths[i:i + batch]) for i in range(0, n, batch)]


def spread_windows(batch: int, percentiles, pricer, scale: float, clip: int) -> list:
    """Windows of ``batch`` consecutive requests spread over the trace's ideal padded ÷ varlen FLOP ratio: the
    window nearest each percentile. ``[(name, lengths, ideal)]``."""
    from packviz.serving.costs import padded_prefill_work, varlen_prefill_work
    from packviz.trace import azure_conv

    p = np.minimum(np.maximum(1, np.rint(azure_conv().prompt_tokens * scale)).astype(np.int64), clip)
    starts = np.arange(0, len(p) - batch + 1, batch)
    ideal = np.array([pricer.flops(padded_prefill_work(p[s:s + batch], "causal"))
                      / pricer.flops(varlen_prefill_work(p[s:s + batch])) for s in starts])
    out = []
    for q in percentiles:
        i = int(np.argmin(np.abs(ideal - np.percentile(ideal, q))))
        s = int(starts[i])
        out.append((f"azure-conv-2023[{s}:{s + batch}] (p{q:g})", p[s:s + batch], float(ideal[i])))
    return out


def padded_seconds(model, lengths, pad: str, warmup: int, repeats: int, seed: int = 0) -> dict:
    """transformers' padded forward of one window (right-padded, no mask: SDPA ``is_causal`` with native GQA,
    the prefill benchmark's ``padded``), pads with id 0 (``pad="zero"``) or random ids (``"random"``)."""
    from packviz.model import padded_batch, padded_forward
    from packviz.trace import request_ids

    vocab = model.config.vocab_size
    batch = padded_batch(request_ids(lengths, vocab, seed), device=model.device)
    if pad == "random":
        g = torch.Generator(device=model.device).manual_seed(seed + 1)
        noise = torch.randint(1, vocab, batch["input_ids"].shape, generator=g, device=model.device)
        batch["input_ids"] = torch.where(batch["attention_mask"].bool(), batch["input_ids"], noise)
    run = lambda: padded_forward(model, batch, mask=False)  # noqa: E731
    for _ in range(warmup):
        timed(model.device, run)
    secs = [timed(model.device, run) for _ in range(repeats)]
    return {"seconds": float(np.median(secs)), "runs": secs, "tokens": int(batch["input_ids"].numel())}


def varlen_seconds(engine, lengths, warmup: int, repeats: int, seed: int = 0) -> dict:
    """The engine's prefill step over one window: every prompt a piece of one ragged stream, one attention call
    per layer (the engine's path; K/V heads not repeated), the last token of each sampled."""
    from packviz.serving.scheduler import Piece, StepPlan
    from packviz.serving.stepcost import time_plan

    plan = StepPlan(0, prefills=tuple(Piece(r, 0, int(n)) for r, n in enumerate(lengths)))
    t = time_plan(engine, plan, {r: int(n) for r, n in enumerate(lengths)}, repeats, warmup, seed)
    return {"seconds": t["seconds"], "runs": t["runs"], "tokens": int(np.sum(lengths)),
            "gpu_seconds": t["gpu_seconds"], "attention": engine.path}


def prefill_engine(model, capacity: int):
    """An eager engine whose cache holds ``capacity`` tokens (one prefill window at a time)."""
    from packviz.serving.stepcost import engine_for

    return engine_for(model, [{"kind": "prefill", "batch": 1, "tokens": int(capacity), "context": 0}],
                      cuda_graphs=False)


def flop_rates(pricer, lengths, seconds: dict) -> dict:
    """Processed and useful FLOP/s of a window's variants: padded pays the causal triangle of every padded row
    (pads included), varlen each prompt's own; useful is varlen's count whatever ran."""
    from packviz.serving.costs import padded_prefill_work, varlen_prefill_work

    padded = pricer.flops(padded_prefill_work(lengths, "causal"))
    useful = pricer.flops(varlen_prefill_work(lengths))
    out = {}
    for variant, s in seconds.items():
        done = useful if variant.startswith("varlen") else padded
        out[variant] = {"seconds": s, "processed_flops_per_s": done / s, "useful_flops_per_s": useful / s}
    return {"processed_flops": {"padded": padded, "varlen": useful}, "ideal_speedup": padded / useful,
            "variants": out}


def error_text(e: BaseException) -> str:
    """An exception as one line (type and the first line of its message, at most 300 characters)."""
    return f"{type(e).__name__}: {e}".splitlines()[0][:300]
