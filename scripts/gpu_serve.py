"""The GPU engine run: ceilings, packviz's engine timed step by step, real requests served, the simulator checked.

Run by ``scripts/gpu_serve.sh`` (one device call; the timeline is in its header). ``--smoke``
runs every step on CPU with the tiny preset in seconds. Steps, in order; each one's record
lands in ``engine.json`` (schema :data:`SCHEMA`) as soon as it ends, so a time-out loses
only the step it was in:

1. ceilings -- ``nvidia-smi`` (clocks, power, temperature), the bf16 8192³ matmul rate
   (burst, and held for a second), a 4 GiB device-to-device copy (the bandwidth every
   roofline divides by), a batch-1 GEMV through a 4096 × 14336 weight
2. model    -- Llama-3-8B with random bf16 weights, built on the GPU
3. grid     -- single steps on the engine (decode at batch 1 … 256 × context 512 and 2,048,
   what fits; a few prefill, padded and mixed steps): wall and kernel time, each beside its
   roofline; written as ``calibration.json``, the simulator's cost model is fitted to it
4. serve    -- 128 real trace requests, all at t = 0, served by the engine under static
   (B = 32), continuous (B = 32) and chunked (8,192 tokens per step, 128 running); beside each,
   the simulator's prediction from the fitted costs and from the H100 preset, and the
   engine's own step times replayed through the simulator (the same schedule?)
5. prefill  -- controls for the prefill benchmark's windows: transformers' padded forward with
   pad id 0 and with random pad ids, the equal-length control, and the engine's varlen step
6. windows  -- padded vs the engine's varlen on windows spread over the trace's ideal speed-up

``--deadline`` (seconds from the start): no step starts after it, and steps 5-6 only start
what their estimate lets end before it. Then the targets of the engine issue are printed,
each measured value beside its target.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time
import traceback

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import gpu_measure as gm  # noqa: E402
from packviz.serving.calibration import ENGINE_RUN_SCHEMA as SCHEMA  # noqa: E402  (packviz.engine-run/1)

GIB = 2 ** 30
POLICIES = {"static": {"max_batch": 32, "padded_attention": "causal"}, "continuous": {"max_batch": 32},
            "chunked": {"max_batch": 128, "token_budget": 8192}}
SETTINGS = {
    "full": dict(
        model="llama-3-8b", device="cuda", dtype="bfloat16",
        ceilings=dict(matmul_n=8192, hold_s=1.5, chunk=20, copy_bytes=4 * GIB, copy_repeats=5,
                      gemv=((14336, 4096), (4096, 14336))),
        grid=dict(decode_batches=(1, 2, 4, 8, 16, 32, 64, 128, 256), decode_contexts=(512, 2048),
                  prefill_tokens=(128, 512, 1024, 2048, 4096, 8192), prefill_batches=((4, 2048), (16, 1024)),
                  padded=((8, 1024), (8, 4096)), mixed=((32, 1024, 1024), (64, 1024, 4096), (128, 1024, 8064)),
                  max_cached_tokens=262144, memory_margin_bytes=8 * GIB,
                  repeats={"decode": (2, 10), "other": (1, 3)}),
        targets=dict(b1=(1, 512), b64=(64, 2048)),
        serve=dict(requests=128, window_seed=0, scale=1, policies=POLICIES, preset="h100", safety=1.3, setup_s=8.0,
                   output_caps=(None, 512, 384, 256, 192, 128, 96, 64, 32)),
        prefill=dict(trace_n=64, batch=32, seed=0, scale=1.0, clip=8192, uniform=(32, 2048), warmup=1, repeats=2,
                     percentiles=(10, 90, 50, 30, 70, 20, 80, 40, 60), max_window_tokens=131072)),
    "smoke": dict(
        model="tiny", device="cpu", dtype="float32",
        ceilings=dict(matmul_n=256, hold_s=0.2, chunk=5, copy_bytes=64 * 2 ** 20, copy_repeats=3,
                      gemv=((1792, 512), (512, 1792))),
        grid=dict(decode_batches=(1, 2, 4, 8), decode_contexts=(32, 128), prefill_tokens=(16, 64, 256),
                  prefill_batches=((4, 64),), padded=((4, 128),), mixed=((4, 64, 32), (8, 128, 256)),
                  max_cached_tokens=4096, memory_margin_bytes=0, repeats={"decode": (1, 3), "other": (1, 2)}),
        targets=dict(b1=(1, 32), b64=(8, 128)),
        serve=dict(requests=32, window_seed=0, scale=16, preset="h100", safety=1.3, setup_s=0.5,
                   policies={"static": {"max_batch": 8, "padded_attention": "causal"}, "continuous": {"max_batch": 8},
                             "chunked": {"max_batch": 32, "token_budget": 512}},
                   output_caps=(None, 8, 4)),
        prefill=dict(trace_n=8, batch=4, seed=0, scale=1 / 16, clip=256, uniform=(4, 64), warmup=1, repeats=2,
                     percentiles=(10, 90, 50), max_window_tokens=4096)),
}
"""The two configurations. The smoke run scales everything down (lengths ÷ 16, batches ÷ 4) so that the
tiny model on CPU runs every step in seconds; its numbers check the plumbing, not a GPU."""


# ---------------------------------------------------------------------- bookkeeping
def write_json(path: pathlib.Path, data: dict) -> None:
    """Atomic rewrite (a time-out never leaves half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=json_default))
    os.replace(tmp, path)


def json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def safely(fn, *args):
    """``fn(*args)``, or ``{"error": ...}`` (a description that fails must not stop the run)."""
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001
        return {"error": gm.error_text(e)}


class Clock:
    """Seconds since the start; ``open()``: a new step may start; ``allows(s)``: s more seconds end in time."""

    def __init__(self, deadline_s: float, limit_s: float):
        self.t0, self.deadline_s, self.limit_s = time.perf_counter(), deadline_s, limit_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def open(self) -> bool:
        return self.elapsed() < self.deadline_s

    def allows(self, seconds: float) -> bool:
        return self.elapsed() + seconds <= self.deadline_s


class Run:
    """What the steps share: settings, clock, output folder, the result dict (``save()`` writes it), the model."""

    def __init__(self, args, cfg: dict):
        self.cfg, self.out = cfg, pathlib.Path(args.out)
        self.clock = Clock(args.deadline, args.limit)
        self.out.mkdir(parents=True, exist_ok=True)
        self.model = self.shape = self.calibration = None
        self.engine_kw: dict = {}          # {"cuda_graphs": False} once graphs failed in the grid
        from packviz.bench.measure import device_info, git_changes, git_commit, versions

        self.res = {"schema": SCHEMA, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "status": "running", "mode": "smoke" if args.smoke else "full", "git_commit": git_commit(),
                    "git_changes": git_changes(),
                    "device": safely(device_info, self.device), "versions": safely(versions),
                    "deadline_s": args.deadline, "limit_s": args.limit, "settings": cfg, "steps": {}}
        self.rates = measured_rates({}, self)   # the preset's until the ceilings are measured

    def log(self, msg: str) -> None:
        print(f"[{self.clock.elapsed():6.1f} s] {msg}", flush=True)

    def save(self) -> None:
        write_json(self.out / "engine.json", self.res)

    @property
    def device(self):
        import torch

        return torch.device(self.cfg["device"])

    @property
    def dtype(self):
        import torch

        return getattr(torch, self.cfg["dtype"])


# ---------------------------------------------------------------------- step 1: environment and ceilings
def step_ceilings(run: Run) -> dict:
    """GPU state now, then the matmul, copy and GEMV ceilings (each in its own try: one failure keeps the rest)."""
    from packviz.bench.measure import nvidia_smi

    c, dev, dt = run.cfg["ceilings"], run.device, run.dtype
    rec = run.res["steps"]["ceilings"] = {"nvidia_smi": {"start": nvidia_smi(), "start_report": gm.smi_report()}}
    if dev.type != "cuda":
        rec["note"] = "no CUDA: CPU measurements at scaled-down sizes (the smoke run), not GPU ceilings"
    jobs = (("matmul", lambda: gm.matmul_rates(dev, dt, c["matmul_n"], c["hold_s"], c["chunk"])),
            ("copy", lambda: gm.copy_rate(dev, c["copy_bytes"], c["copy_repeats"])),
            ("gemv", lambda: [gm.gemv_rate(dev, dt, r, k) for r, k in c["gemv"]]))
    for key, job in jobs:
        try:
            rec[key] = job()
        except Exception as e:  # noqa: BLE001 -- recorded; the rooflines then fall back to the preset's rates
            rec[key] = {"status": "error: " + gm.error_text(e)}
            gm.free_memory()
        if key == "matmul":
            rec["nvidia_smi"]["after_matmul"] = nvidia_smi()
        run.save()
    run.rates = measured_rates(rec, run)
    run.log(format_ceilings(rec))
    return rec


def measured_rates(rec: dict, run: Run) -> dict:
    """The copy rate and held matmul rate the rooflines use; the preset's measured ones where a measurement failed."""
    from packviz.serving.costs import copy_rate, matmul_rate

    key = run.cfg["serve"]["preset"]
    copy, mm = rec.get("copy", {}), rec.get("matmul", {})
    return {"bytes_per_s": copy.get("bytes_per_s") or copy_rate(key)[0],
            "flops_per_s": mm.get("sustained_flops_per_s") or matmul_rate(key)[0],
            "source": "measured in this run" if "bytes_per_s" in copy else
            f"{key} preset (copy not measured here: {copy_rate(key)[1]})"}


# ---------------------------------------------------------------------- step 2: the model
def step_model(run: Run) -> dict:
    """Llama-3-8B (or the tiny preset) with random weights, EOS disabled, on the run's device."""
    import torch

    from packviz.model import RANDOM_WEIGHTS_NOTE, build_model
    from packviz.serving.hf import disable_eos
    from packviz.shapes import get_shape

    t = time.perf_counter()
    if run.device.type == "cpu":
        torch.set_num_threads(1)          # a tiny model gains nothing from threads
    run.model = build_model(run.cfg["model"], device=run.device, dtype=run.dtype, seed=0)
    disable_eos(run.model)
    run.shape = get_shape(run.cfg["model"])
    rec = {"name": run.cfg["model"], "dtype": run.cfg["dtype"], "random_weights": True,
           "weights_note": RANDOM_WEIGHTS_NOTE, "parameters": int(sum(p.numel() for p in run.model.parameters())),
           "build_s": time.perf_counter() - t}
    if run.device.type == "cuda":
        torch.cuda.synchronize()
        rec.update(allocated_bytes=int(torch.cuda.memory_allocated()), free_bytes=int(torch.cuda.mem_get_info()[0]))
    run.log(f"built {rec['name']} ({rec['parameters']:,} parameters, random weights) in {rec['build_s']:.1f} s")
    return rec


# ---------------------------------------------------------------------- step 3: the grid and calibration.json
def pricer_for(run: Run):
    """A Pricer of the run's model at its dtype's width (bytes per parameter)."""
    from packviz.serving.costs import Pricer, preset_cost_model

    elt = run.model.dtype.itemsize
    return Pricer(run.shape, preset_cost_model(run.cfg["serve"]["preset"]), bytes_per_param=elt)


def step_grid(run: Run) -> dict:
    """Single steps timed on the engine, each beside its roofline; ``calibration.json`` after every point."""
    import torch

    from packviz.serving.calibration import CALIBRATION_SCHEMA

    g, elt = run.cfg["grid"], run.model.dtype.itemsize
    free = int(torch.cuda.mem_get_info()[0]) if run.device.type == "cuda" else None
    points, skipped = gm.grid_points(g, run.shape.kv_bytes_per_token(elt), free)
    engine, facts = gm.make_engine(run.model, points, run.log)
    run.log(f"engine: attention {facts['attention']} ({facts['attention_why']}); CUDA graphs: {facts['cuda_graphs_why']}")
    cal = {"schema": CALIBRATION_SCHEMA, "engine": "packviz", "model": run.cfg["model"], "dtype": run.cfg["dtype"],
           "device": run.res.get("device"), "versions": run.res.get("versions"), "started": run.res["started"],
           "git_commit": run.res.get("git_commit"), "random_weights": True, "attention": facts["attention"],
           "cuda_graphs": facts["cuda_graphs"], "points": []}
    path = run.out / "calibration.json"

    def on_point(timed):
        cal["points"] = timed
        write_json(path, cal)

    timed, failed = gm.time_points(engine, points, g["repeats"], run.clock, on_point, run.log)
    graph_errors = [f for f in failed if f["kind"] == "decode" and f["status"].startswith("error")]
    if run.device.type == "cuda" and (not facts["cuda_graphs"] or graph_errors):
        run.engine_kw = {"cuda_graphs": False}
        facts["serve_cuda_graphs"] = "off: " + ("decode points failed" if graph_errors else "not built in the grid")
    del engine
    gm.free_memory()
    cal["fit"], cal["fit_device"] = fits(cal)
    write_json(path, cal)
    run.calibration = path if cal["fit"] else None
    pricer = pricer_for(run)
    embed = 0 if run.shape.tied_embeddings else run.shape.vocab * run.shape.hidden * elt
    rows = [{**p, "roofline": gm.roofline(p, pricer, run.rates, embed)} for p in timed]
    rec = {"engine": facts, "points": rows, "not_timed": failed + skipped, "fit": cal["fit"],
           "fit_device": cal["fit_device"], "rates": run.rates, "roofline_note": gm.ROOFLINE_NOTE}
    run.log("decode grid and calibration points:\n" + format_grid(rows))
    return rec


def fits(cal: dict) -> tuple:
    """The roofline fitted to the points' wall time and to their kernel time (None where it cannot be)."""
    from packviz.serving.calibration import device_fit, fit_calibration

    try:
        wall = fit_calibration(cal)
    except ValueError:
        return None, None
    return wall, device_fit(cal)


# ---------------------------------------------------------------------- step 4: end to end
def cost_models(run: Run) -> dict:
    """{label: CostModel}: the fit to this run's grid (wall costs) where there is one, and the preset."""
    from packviz.serving import preset_cost_model
    from packviz.serving.calibration import calibrated_cost_model

    costs = {}
    if run.calibration is not None:
        costs["calibrated"] = calibrated_cost_model(str(run.calibration), costs="wall")
    costs["preset"] = preset_cost_model(run.cfg["serve"]["preset"])
    return costs


def step_serve(run: Run) -> dict:
    """The trace window served by the engine under each policy, each beside the simulator's predictions."""
    s = dict(run.cfg["serve"])
    costs = cost_models(run)
    if "calibrated" not in costs:
        s["safety"] *= 2                  # planning on the preset: leave more room
    plan_cost = costs.get("calibrated", costs["preset"])
    budget = run.clock.deadline_s - run.clock.elapsed() - 5
    cap, trace, planned, why = gm.choose_output_cap(s, plan_cost, run.cfg["model"], budget)
    rec = run.res["steps"]["serve"] = {
        "requests": {"trace": trace.name, "count": len(trace), "arrivals": "all at t = 0",
                     "prompt_tokens": trace.prompt_tokens.tolist(), "output_tokens": trace.generated_tokens.tolist(),
                     "scale": s["scale"], "output_cap": cap, "output_cap_why": why},
        "planned_makespan_s": planned, "costs": {k: c.as_dict() for k, c in costs.items()}, "policies": {}}
    run.log(f"serving {len(trace)} requests ({trace.name}): {why}")
    slower = 1.0                          # measured ÷ planned so far: later policies are judged by it too
    for name, kw in s["policies"].items():
        p = rec["policies"][name] = serve_one(run, trace, name, kw, costs, planned[name] * s["safety"] * slower)
        if p.get("status") == "ok":
            slower = max(slower, p["summary"]["makespan_s"] / planned[name])
        run.save()
        run.log(format_policy(name, p))
    return rec


def serve_one(run: Run, trace, name: str, kw: dict, costs: dict, need_s: float) -> dict:
    """One policy: skipped when the deadline has passed or the limit is too near, else served and predicted.
    A run that fails with CUDA graphs (not for memory) is tried once more without them."""
    left = lambda: run.clock.limit_s - run.clock.elapsed() - 20  # noqa: E731
    if not run.clock.open():
        return {"status": "skipped: deadline"}
    if need_s > left():
        return {"status": f"skipped: predicted {need_s:.0f} s, {left():.0f} s left before the limit"}
    est = gm.memory_estimate(trace, name, kw, run.shape, run.model.dtype.itemsize)
    est.update(weights_bytes=run.res["steps"]["model"].get("allocated_bytes"),
               device_bytes=(run.res.get("device") or {}).get("memory_bytes"))
    rec = attempt(run, trace, name, kw, costs, run.engine_kw)
    retry = (rec["status"].startswith("error") and "OutOfMemory" not in rec["status"]
             and run.device.type == "cuda" and run.engine_kw.get("cuda_graphs") is not False)
    if retry and need_s <= left():
        first = rec["status"]
        run.log(f"{name} failed ({first}); once more without CUDA graphs")
        rec = {**attempt(run, trace, name, kw, costs, {"cuda_graphs": False}), "with_cuda_graphs": first}
    rec["memory_estimate"] = est
    return rec


def attempt(run: Run, trace, name: str, kw: dict, costs: dict, engine_kw: dict) -> dict:
    """Serve once (:func:`gpu_measure.serve_policy`), then predict; each failure recorded, memory freed after."""
    result = None
    try:
        result, rec = gm.serve_policy(run.model, trace, name, kw, engine_kw)
    except Exception as e:  # noqa: BLE001 -- recorded (e.g. out of memory); the next policy still runs
        traceback.print_exc()
        rec = {"status": "error: " + gm.error_text(e)}
    if result is not None:
        try:
            rec["predicted"] = gm.predict_policy(trace, name, kw, result, run.cfg["model"], costs)
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            rec["predicted"] = {"status": "error: " + gm.error_text(e)}
    del result
    gm.free_memory()
    return rec


# ---------------------------------------------------------------------- steps 5 and 6: prefill controls
def window_seconds_guess(run: Run, pricer, lengths, pads: int) -> float:
    """A generous guess of one window's timing: every pass of ``pads`` padded forwards and the varlen step at
    half the held matmul rate (the last prefill benchmark ran padded at about 75% of it)."""
    from packviz.serving.costs import padded_prefill_work, varlen_prefill_work

    p = run.cfg["prefill"]
    flops = pads * pricer.flops(padded_prefill_work(lengths, "causal")) + pricer.flops(varlen_prefill_work(lengths))
    return (p["warmup"] + p["repeats"]) * flops / (0.5 * run.rates["flops_per_s"]) + 1.0


def time_window(run: Run, engine, pricer, name: str, lengths, pads) -> dict:
    """One window: transformers' padded forward with each pad kind in ``pads`` and the engine's varlen step."""
    p = run.cfg["prefill"]
    row = {"window": name, "requests": len(lengths), "tokens": int(np.sum(lengths)), "longest": int(np.max(lengths))}
    if row["tokens"] > p["max_window_tokens"]:
        return {**row, "status": f"skipped: {row['tokens']:,} tokens exceed {p['max_window_tokens']:,}"}
    if not run.clock.allows(window_seconds_guess(run, pricer, lengths, len(pads))):
        return {**row, "status": "skipped: would not end before the deadline"}
    secs, raw = {}, {}
    jobs = [(f"padded-pad-{pad}", lambda pad=pad, i=i: gm.padded_seconds(
        run.model, lengths, pad, p["warmup"] if i == 0 else 0, p["repeats"])) for i, pad in enumerate(pads)]
    jobs.append(("varlen-engine", lambda: gm.varlen_seconds(engine, lengths, p["warmup"], p["repeats"])))
    for variant, job in jobs:
        try:
            raw[variant] = job()
            secs[variant] = raw[variant]["seconds"]
        except Exception as e:  # noqa: BLE001 -- recorded; the other variants still run
            raw[variant] = {"status": "error: " + gm.error_text(e)}
            gm.free_memory()
    status = "ok" if len(secs) == len(jobs) else f"error: {len(jobs) - len(secs)} of {len(jobs)} variants failed"
    return {**row, "status": status, **gm.flop_rates(pricer, lengths, secs), "runs": raw}


def time_windows(run: Run, key: str, windows: list, pads_of) -> dict:
    """Every window timed (``pads_of(name)``: the pad kinds it runs), the record saved after each."""
    p, pricer = run.cfg["prefill"], pricer_for(run)
    fit = [int(np.sum(w[1])) for w in windows if np.sum(w[1]) <= p["max_window_tokens"]]
    engine = gm.prefill_engine(run.model, max(fit or [1]))
    rec = run.res["steps"][key] = {"attention": engine.path, "rows": []}
    for name, lengths, *extra in windows:
        row = time_window(run, engine, pricer, name, lengths, pads_of(name))
        if extra:
            row["ideal_speedup_of_window"] = extra[0]
        rec["rows"].append(row)
        run.save()
        run.log(format_window(row))
    del engine
    gm.free_memory()
    return rec


def step_prefill(run: Run) -> dict:
    """The prefill benchmark's trace windows, padded with pad id 0 and random ids, and the equal-length control."""
    p = run.cfg["prefill"]
    wins = gm.prompt_windows(p["trace_n"], p["batch"], p["seed"], p["scale"], p["clip"])
    n, width = p["uniform"]
    wins.append((f"uniform control: {n} prompts of {width}", np.full(n, width)))
    return time_windows(run, "prefill", wins,
                        lambda name: ("zero",) if name.startswith("uniform") else ("zero", "random"))


def step_windows(run: Run) -> dict:
    """Padded (pad id 0) vs the engine's varlen on windows at percentiles of the trace's ideal speed-up."""
    p = run.cfg["prefill"]
    wins = gm.spread_windows(p["batch"], p["percentiles"], pricer_for(run), p["scale"], p["clip"])
    return time_windows(run, "windows", wins, lambda name: ("zero",))


# ---------------------------------------------------------------------- targets
def target(text: str, value, op: str, goal: float) -> dict:
    met = None if value is None else (value >= goal if op == ">=" else value <= goal)
    return {"target": text, "measured": value, "op": op, "goal": goal,
            "ratio": None if value is None else value / goal, "met": met}


def decode_point(res: dict, batch: int, context: int) -> dict | None:
    pts = (res["steps"].get("grid") or {}).get("points") or []
    return next((p for p in pts if p["kind"] == "decode" and p["batch"] == batch and p["context"] == context), None)


def targets(res: dict, cfg: dict) -> list[dict]:
    """The engine issue's performance targets, each with its measured value (None: not measured in this run)."""
    rows = []
    for key, goal in (("b1", 0.70), ("b64", 0.50)):
        b, c = cfg["targets"][key]
        p = decode_point(res, b, c)
        rows.append(target(f"decode B={b} ctx {c}: share of the bandwidth roofline (wall)",
                           p and p["roofline"]["share_wall"], ">=", goal))
    pts = (res["steps"].get("grid") or {}).get("points") or []
    host = [p["roofline"]["host_s"] * 1e3 for p in pts if p.get("graphed") and p["roofline"]["host_s"] is not None]
    rows.append(target("host ms per graphed decode step (wall - kernel, grid median)",
                       float(np.median(host)) if host else None, "<=", 0.5))
    pol = (res["steps"].get("serve") or {}).get("policies") or {}
    tok = {n: p["summary"]["output_tokens_per_s"] for n, p in pol.items() if p.get("status") == "ok"}
    ratio = lambda a, b: tok[a] / tok[b] if a in tok and b in tok else None  # noqa: E731
    rows.append(target("continuous / static output tokens/s", ratio("continuous", "static"), ">=", 3.0))
    rows.append(target("chunked / continuous output tokens/s", ratio("chunked", "continuous"), ">=", 1.0))
    for name in cfg["serve"]["policies"]:
        pred = ((pol.get(name) or {}).get("predicted") or {}).get("calibrated")
        rows.append(target(f"{name}: simulator (fitted to the grid) |predicted / measured makespan - 1|",
                           None if pred is None else abs(pred["predicted_over_measured"] - 1), "<=", 0.15))
    return rows


# ---------------------------------------------------------------------- printing
def fmt(v, spec: str = ".3g") -> str:
    return "-" if v is None else format(v, spec)


def si(v: float, unit: str) -> str:
    """``v`` with an SI prefix: ``si(6.9e14, "FLOP/s")`` -> ``'690 TFLOP/s'`` (CPU smoke rates stay readable)."""
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:,.3g} {prefix}{unit}"
    return f"{v:.3g} {unit}"


def format_ceilings(rec: dict) -> str:
    mm, cp, gv = rec.get("matmul", {}), rec.get("copy", {}), rec.get("gemv", [])
    lines = [f"ceilings{' (' + rec['note'] + ')' if rec.get('note') else ''}:"]
    for when in ("start", "after_matmul", "end"):
        smi = rec["nvidia_smi"].get(when)
        if smi and "error" in smi:
            lines.append(f"  nvidia-smi {when}: {smi['error']}")
        elif smi:
            lines.append(f"  {when:<13} {smi.get('name')}, driver {smi.get('driver_version')}, SM {smi.get('clocks.sm')} "
                         f"MHz (max {smi.get('clocks.max.sm')}), memory {smi.get('clocks.mem')} MHz, "
                         f"{smi.get('power.draw')} W of {smi.get('power.limit')} W, {smi.get('temperature.gpu')} C")
    if "burst_flops_per_s" in mm:
        lines.append(f"  matmul {mm['dtype']} {mm['n']}³: burst {si(mm['burst_flops_per_s'], 'FLOP/s')}, held "
                     f"{si(mm['sustained_flops_per_s'], 'FLOP/s')} over {mm['held_s']:.1f} s")
    if "bytes_per_s" in cp:
        lines.append(f"  copy {cp['bytes'] / GIB:.3g} GiB: {si(cp['bytes_per_s'], 'B/s')} read + written")
    for g in gv if isinstance(gv, list) else []:
        lines.append(f"  GEMV batch 1 through {g['weight'][0]} x {g['weight'][1]} {g['dtype']}: "
                     f"{g['seconds'] * 1e6:.1f} us, {si(g['bytes_per_s'], 'B/s')} of weights")
    lines += [f"  {k}: {v['status']}" for k, v in rec.items() if isinstance(v, dict) and "status" in v]
    return "\n".join(lines)


def format_grid(rows: list) -> str:
    head = (f"{'kind':<15}{'batch':>6}{'tokens':>7}{'ctx':>6}{'wall ms':>10}{'kernel ms':>10}{'host ms':>9}"
            f"{'roofline ms':>12}{'share wall':>11}{'share kern':>11}  graphed")
    out = [head]
    for p in rows:
        r = p["roofline"]
        ms = lambda v: fmt(None if v is None else v * 1e3, ".3f")  # noqa: E731
        out.append(f"{p['kind']:<15}{p['batch']:>6}{p['tokens']:>7}{p['context']:>6}{ms(p['seconds']):>10}"
                   f"{ms(p['gpu_seconds']):>10}{ms(r['host_s']):>9}{ms(r['roofline_s']):>12}"
                   f"{fmt(r['share_wall'], '.1%'):>11}{fmt(r['share_kernel'], '.1%'):>11}  {p['graphed']}")
    return "\n".join(out)


def format_policy(name: str, rec: dict) -> str:
    if rec.get("status") != "ok":
        return f"{name}: {rec.get('status')}"
    s, e = rec["summary"], rec["summary"]["engine"]
    host = rec.get("host_ms_graphed_p50")
    return (f"{name}: {s['output_tokens_per_s']:,.0f} output tok/s, makespan {s['makespan_s']:.2f} s, "
            f"{s['steps']} steps "
            f"({e['steps_graphed']} graphed{'' if host is None else f', host {host:.2f} ms per graphed step'}), "
            f"attention {e['attention']}, every request its G tokens: {rec['outputs_full']}")


def format_serve(rec: dict) -> str:
    """The measured runs side by side (``format_table``), then each beside the simulator's predictions."""
    from packviz.serving.metrics import format_table

    pol = {n: p for n, p in rec["policies"].items() if p.get("status") == "ok"}
    req = rec["requests"]
    lines = [f"end to end: {req['count']} requests of {req['trace']}, {sum(req['prompt_tokens']):,} prompt and "
             f"{sum(req['output_tokens']):,} output tokens, all at t = 0; output cap: {req['output_cap']} "
             f"({req['output_cap_why']})"]
    lines += [f"{n}: {p['status']}" for n, p in rec["policies"].items() if p.get("status") != "ok"]
    if pol:
        lines += [format_table([p["summary"] for p in pol.values()], seconds=False), format_predictions(pol)]
    return "\n".join(lines)


def format_predictions(pol: dict) -> str:
    """Per policy: measured, the simulator with the grid's fitted costs, with the preset; pred ÷ meas of the
    makespan; and whether replaying the engine's step times gives its schedule."""
    head = (f"{'policy':<12}{'clock':<12}{'out tok/s':>10}{'makespan s':>11}{'TTFT p50':>9}{'TTFT p99':>9}"
            f"{'TPOT p50 ms':>12}{'pred/meas':>10}")
    lines = [head]
    for n, p in pol.items():
        pr = p["predicted"]
        rows = [("measured", {**p["summary"], "predicted_over_measured": None})]
        rows += [(k, pr[k]) for k in ("calibrated", "preset") if k in pr]
        for label, x in rows:
            lines.append(f"{n:<12}{label:<12}{x['output_tokens_per_s']:>10,.0f}{x['makespan_s']:>11.3f}"
                         f"{fmt(x['ttft_s']['p50'], '.3f'):>9}{fmt(x['ttft_s']['p99'], '.3f'):>9}"
                         f"{fmt(x['tpot_s']['p50'] and x['tpot_s']['p50'] * 1e3, '.2f'):>12}"
                         f"{fmt(x['predicted_over_measured'], '.2f'):>10}")
        if "replay" in pr:
            lines.append(f"{n:<12}{'replayed':<12}{'':>10}{pr['replay']['makespan_s']:>11.3f}  the engine's step times "
                         f"through the simulator: same schedule {pr['replay']['same_schedule']}")
    return "\n".join(lines)


def format_window(row: dict) -> str:
    if row.get("status") != "ok":
        return f"{row['window']}: {row.get('status')}"
    parts = [f"{v:<18} {x['seconds'] * 1e3:>10,.1f} ms  {si(x['processed_flops_per_s'], 'FLOP/s')} processed, "
             f"{si(x['useful_flops_per_s'], 'FLOP/s')} useful" for v, x in row["variants"].items()]
    errs = [f"{v}: {x['status']}" for v, x in row["runs"].items() if "status" in x]
    return (f"{row['window']} ({row['requests']} prompts, {row['tokens']:,} tokens, longest {row['longest']:,}, "
            f"ideal speed-up {row['ideal_speedup']:.2f}):\n  " + "\n  ".join(parts + errs))


def format_targets(rows: list) -> str:
    out = ["targets (engine issue): measured, target, measured / target"]
    for t in rows:
        verdict = "not measured" if t["met"] is None else ("MET" if t["met"] else "MISSED")
        out.append(f"target  {t['target']:<80} {fmt(t['measured']):>8} {t['op']} {t['goal']:<5g} "
                   f"ratio {fmt(t['ratio'], '.2f'):>5}  {verdict}")
    return "\n".join(out)


def format_report(res: dict) -> str:
    """Every step's figures, then the targets: what the run prints at its end."""
    st = res["steps"]
    parts = [f"== packviz engine run ({res['mode']}), {res['started']}, commit {str(res.get('git_commit'))[:12]}, "
             f"status {res['status']}; steps: " + ", ".join(f"{k} {v.get('status')}" for k, v in st.items())]
    if "ceilings" in st:
        parts.append(format_ceilings(st["ceilings"]))
    if (st.get("grid") or {}).get("points"):
        g = st["grid"]["engine"]
        parts.append(f"engine: attention {g['attention']} ({g['attention_why']}); CUDA graphs: {g['cuda_graphs_why']}"
                     f"{'; serving: ' + g['serve_cuda_graphs'] if 'serve_cuda_graphs' in g else ''}\n"
                     f"{g['kv_layout']}\n" + format_grid(st["grid"]["points"]))
    if (st.get("serve") or {}).get("policies"):
        parts.append(format_serve(st["serve"]))
    for key in ("prefill", "windows"):
        parts += [format_window(r) for r in (st.get(key) or {}).get("rows", [])]
    parts.append(format_targets(res.get("targets") or []))
    return "\n\n".join(parts)


# ---------------------------------------------------------------------- the run
STEPS = (("ceilings", step_ceilings, False), ("model", step_model, False), ("grid", step_grid, True),
         ("serve", step_serve, True), ("prefill", step_prefill, True), ("windows", step_windows, True))
"""(name, function, needs the model), in the order they run."""


def run_step(run: Run, name: str, fn, needs_model: bool) -> None:
    """One step: skipped after the deadline or without a model; its record (status, seconds) saved when it ends."""
    t = run.clock.elapsed()
    if not run.clock.open():
        rec = {"status": "skipped: deadline"}
    elif needs_model and run.model is None:
        rec = {"status": "skipped: no model (the model step failed)"}
    else:
        run.log(f"step {name} ...")
        try:
            rec = fn(run)
            rec.setdefault("status", "ok")
        except KeyboardInterrupt:
            run.res["steps"].setdefault(name, {})["status"] = "interrupted"
            raise
        except Exception as e:  # noqa: BLE001 -- recorded; later steps still run
            rec = {**run.res["steps"].get(name, {}), "status": "error: " + gm.error_text(e)}
            traceback.print_exc()
        gm.free_memory()                   # what the step held is given back before the next one measures
    rec["seconds"] = run.clock.elapsed() - t
    run.res["steps"][name] = rec
    run.save()


def finish(run: Run) -> int:
    """The GPU state at the end, the targets, the final status and JSON, the report printed."""
    from packviz.bench.measure import nvidia_smi

    if "ceilings" in run.res["steps"]:
        run.res["steps"]["ceilings"]["nvidia_smi"].update(end=nvidia_smi(), end_report=gm.smi_report())
    run.res["targets"] = targets(run.res, run.cfg)
    states = [str(s.get("status")) for s in run.res["steps"].values()]
    if run.res["status"] == "running":
        run.res["status"] = ("error" if any(s.startswith(("error", "interrupted")) for s in states) else
                             "deadline" if any("deadline" in s for s in states) else "complete")
    run.res["finished_after_s"] = run.clock.elapsed()
    run.save()
    print(format_report(run.res), flush=True)
    return 0 if run.res["status"] in ("complete", "deadline") else 1


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for engine.json and calibration.json")
    ap.add_argument("--smoke", action="store_true", help="tiny preset on CPU, every step, in seconds")
    ap.add_argument("--deadline", type=float, default=300.0, help="seconds from the start; no step starts after it")
    ap.add_argument("--limit", type=float, default=380.0, help="the hard limit the caller enforces (seconds)")
    ap.add_argument("--steps", default=",".join(s[0] for s in STEPS),
                    help="comma-separated steps to run (default: all)")
    ap.add_argument("--model", help="another model preset (e.g. tiny: a full-size dry run of the plumbing on CPU)")
    ap.add_argument("--device", help="another device (cpu: fp32)")
    return ap.parse_args(argv)


def settings(args) -> dict:
    """The configuration of ``args`` (smoke or full), with ``--model`` / ``--device`` applied."""
    cfg = dict(SETTINGS["smoke" if args.smoke else "full"])
    if args.model:
        cfg["model"] = args.model
    if args.device:
        cfg.update(device=args.device, dtype="float32" if args.device == "cpu" else "bfloat16")
    return cfg


def main(argv=None) -> int:
    args = parse_args(argv)
    run = Run(args, settings(args))
    wanted = set(args.steps.split(","))
    run.save()
    try:
        for name, fn, needs_model in STEPS:
            if name in wanted:
                run_step(run, name, fn, needs_model)
    except KeyboardInterrupt:              # `timeout --signal=INT`: keep what was measured
        run.res["status"] = "interrupted"
    return finish(run)


if __name__ == "__main__":
    raise SystemExit(main())
