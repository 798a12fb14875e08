"""The GPU serving run: calibrate the simulator's step costs, then serve real trace requests with two engines.

Run by ``scripts/gpu_serve.sh`` (one device call); ``--smoke`` runs every step on CPU with
the tiny preset in well under a minute. Steps, in order (each one's status lands in
``serve.json``, rewritten after every step, so a timeout keeps what was measured):

1. build   -- Llama-3-8B, bf16, random weights built on the GPU (``packviz.model.build_model``)
2. preflight -- each engine once on 2 tiny requests; an engine that fails is recorded with
   its error and skipped in step 4 (never retried)
3. calibration -- prefill, padded prefill and decode forwards timed (``packviz.stepcost``);
   written as ``calibration.json`` with the roofline fitted to it
4. serve   -- a contiguous window of real trace requests (prompts as recorded, outputs capped),
   all arriving at t = 0: static padded ``generate`` in batches of B, then transformers'
   continuous batching (same cap on running requests), eager and then with CUDA graphs
   (``continuous-graphs``); measured output tokens/s beside the simulator's prediction for
   the same requests with the calibrated costs (``static`` with masked padded prefill;
   ``chunked`` with dense Σq × Σk attention, as ``paged|sdpa`` runs it). The eager engines
   are predicted with costs fitted to the steps' wall time; ``continuous-graphs`` with costs
   fitted to the kernels' own time (``gpu_seconds``): what the GPU works when no host gap
   separates the steps.

``--deadline`` (seconds from the start): no step or calibration point starts after it.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import time
import traceback

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SETTINGS = {
    "full": dict(model="llama-3-8b", device="cuda", requests=96, output_cap=128, batch_size=16, token_budget=2048,
                 page_size=256, window_seed=0, repeats=3, prefill_tokens=(128, 512, 1024, 2048, 4096, 8192),
                 prefill_batches=((4, 2048), (16, 1024)), padded=((8, 1024), (8, 4096)),
                 decode_batches=(1, 8, 32, 64, 128), decode_contexts=(512, 2048, 4096), max_cached_tokens=262144,
                 prompt_scale=1),
    "smoke": dict(model="tiny", device="cpu", requests=8, output_cap=8, batch_size=4, token_budget=64,
                  page_size=16, window_seed=0, repeats=2, prefill_tokens=(16, 64, 128), prefill_batches=((4, 32),),
                  padded=((4, 64),), decode_batches=(1, 4), decode_contexts=(16, 64), max_cached_tokens=4096,
                  prompt_scale=16),
}
"""The two configurations. ``prompt_scale``: prompts divided by it (1 = as recorded; the
smoke run uses 1/16 so the tiny model on CPU finishes in seconds)."""


# ---------------------------------------------------------------------- bookkeeping
def git_commit() -> str | None:
    """``PACKVIZ_GIT_COMMIT`` if set (the device copy has no .git), else ``git rev-parse HEAD``."""
    if os.environ.get("PACKVIZ_GIT_COMMIT"):
        return os.environ["PACKVIZ_GIT_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device) -> dict:
    import numpy
    import torch
    import transformers

    dev = {"type": torch.device(device).type}
    if dev["type"] == "cuda":
        p = torch.cuda.get_device_properties(0)
        dev.update(name=p.name, memory_bytes=int(p.total_memory), capability=list(torch.cuda.get_device_capability(0)),
                   cuda=torch.version.cuda)
    else:
        dev.update(name=platform.processor() or platform.machine(), threads=torch.get_num_threads())
    return {"device": dev, "versions": {"python": platform.python_version(), "torch": torch.__version__,
                                        "transformers": transformers.__version__, "numpy": numpy.__version__}}


def write_json(path: pathlib.Path, data: dict) -> None:
    """Atomic rewrite (a timeout never leaves half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".splitlines()[0][:300]


class Clock:
    """Seconds since the start; ``open()`` says whether a new step may still start."""

    def __init__(self, deadline_s: float):
        self.t0, self.deadline_s = time.perf_counter(), deadline_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def open(self) -> bool:
        return self.elapsed() < self.deadline_s


# ---------------------------------------------------------------------- steps
def build(cfg: dict):
    import torch

    from packviz.engines import disable_eos
    from packviz.model import build_model

    if cfg["device"] == "cpu":
        torch.set_num_threads(1)
    model = build_model(cfg["model"], device=cfg["device"], seed=0)
    disable_eos(model)
    return model


def preflight(model, cfg: dict) -> dict:
    """Each engine once on 2 tiny requests: ``{engine: "ok" | error}`` for :data:`ENGINES`."""
    from packviz.engines import continuous_generate, request_ids, static_generate

    prompts, g = request_ids([16, 24], model.config.vocab_size, seed=1), [3, 2]
    status = {}

    def cb(graphs):
        return lambda: continuous_generate(model, prompts, g, max_batch=2, token_budget=64, num_blocks=16,
                                           page_size=cfg["page_size"], use_cuda_graph=graphs, timeout_s=120)

    for name, run in (("static", lambda: static_generate(model, prompts, g, batch_size=2)),
                      ("continuous", cb(None)), ("continuous-graphs", cb(True))):
        try:
            out = run()
            status[name] = "ok" if [len(x) for x in out["outputs"]] == g else f"error: wrong lengths {out['outputs']}"
        except Exception as e:  # noqa: BLE001 -- recorded, the engine is skipped
            status[name] = "error: " + error_text(e)
        log(f"preflight {name}: {status[name]}")
    return status


def calibrate(model, cfg: dict, clock: Clock, on_point) -> list[dict]:
    """Time every calibration point while the deadline allows; ``on_point(points)`` after each."""
    from packviz.stepcost import grid, measure

    points = []
    todo = grid(cfg["prefill_tokens"], cfg["decode_batches"], cfg["decode_contexts"], cfg["max_cached_tokens"],
                padded=cfg["padded"], prefill_batches=cfg["prefill_batches"])
    for p in todo:
        if not clock.open():
            log(f"calibration: deadline, {len(points)} of {len(todo)} points")
            break
        try:
            points.append(measure(model, p, repeats=cfg["repeats"]))
            log(f"calibration {p['kind']} b={p['batch']} n={p['tokens']} c={p['context']}: "
                f"{points[-1]['seconds'] * 1e3:.2f} ms")
        except Exception as e:  # noqa: BLE001 -- e.g. out of memory at the largest point: keep the rest
            log(f"calibration point {p} failed: {error_text(e)}")
        on_point(points)
    return points


def num_blocks(p, g, cfg: dict) -> int:
    """KV pages for transformers' continuous batching: the cap's worth of the longest requests, plus 25%."""
    need = cfg["batch_size"] * (int(p.max()) + int(g.max())) * 1.25
    return int(-(-need // cfg["page_size"])) + 1


def run_engine(name: str, model, prompts, g, cfg: dict, clock: Clock, limit_s: float) -> dict:
    import torch

    from packviz.engines import continuous_generate, static_generate

    cuda = model.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    if name == "static":
        out = static_generate(model, prompts, g, cfg["batch_size"])
        extra = {k: out[k] for k in ("prefill_pad_tokens", "decode_slot_steps", "forward_calls")}
    else:
        out = continuous_generate(model, prompts, g, max_batch=cfg["batch_size"], token_budget=cfg["token_budget"],
                                  num_blocks=num_blocks(prompts_len(prompts), g, cfg), page_size=cfg["page_size"],
                                  use_cuda_graph=True if name == "continuous-graphs" else None,
                                  timeout_s=max(30.0, limit_s - clock.elapsed() - 20))
        extra = {"config": out["config"]}
    done = [len(x) for x in out["outputs"]] == [int(x) for x in g]
    tokens = int(sum(len(x) for x in out["outputs"]))
    if cuda:
        extra["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated())
    return {"status": "ok" if done else "error: wrong output lengths", "seconds": out["seconds"],
            "output_tokens": tokens, "output_tokens_per_s": tokens / out["seconds"], **extra}


def prompts_len(prompts):
    import numpy as np

    return np.array([len(x) for x in prompts])


def predict(calibration_path, res: dict) -> dict:
    """The simulator's output tokens/s for the same requests, offline, with the calibrated costs
    (:func:`packviz.serving.calibration.predict_serve`)."""
    from packviz.serving.calibration import predict_serve

    keep = ("policy", "output_tokens_per_s", "makespan_s", "steps", "prefill_pad_tokens", "decode_slot_steps",
            "gpu_busy_fraction", "useful_flop_fraction", "ragged_attention", "padded_attention")
    return {k: {x: v[x] for x in keep} for k, v in predict_serve(res, calibration_path).items()}


ENGINES = ("static", "continuous", "continuous-graphs")
"""The engines served, in order: a naive server, transformers' continuous batching eager, and with CUDA graphs."""


def compare(engines: dict, predicted: dict) -> dict | None:
    """static ÷ continuous output tokens/s, measured vs predicted (the GPU issue's target: within 20%)."""
    s, c = engines.get("static", {}), engines.get("continuous", {})
    if not (s.get("status") == "ok" and c.get("status") == "ok" and predicted):
        return None
    measured = s["output_tokens_per_s"] / c["output_tokens_per_s"]
    pred = predicted["static"]["output_tokens_per_s"] / predicted["continuous"]["output_tokens_per_s"]
    out = {"measured_ratio": measured, "predicted_ratio": pred, "predicted_over_measured": pred / measured,
           "within_20_percent": abs(pred / measured - 1) <= 0.2}
    for name, m in engines.items():
        if m.get("status") == "ok" and name in predicted:
            out[f"{name}_predicted_over_measured"] = predicted[name]["output_tokens_per_s"] / m["output_tokens_per_s"]
    return out


# ---------------------------------------------------------------------- the run
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="directory for calibration.json and serve.json")
    ap.add_argument("--smoke", action="store_true", help="tiny preset on CPU, every step, well under a minute")
    ap.add_argument("--deadline", type=float, default=330.0, help="seconds from the start; no new step after")
    ap.add_argument("--limit", type=float, default=420.0, help="the hard limit the caller enforces (seconds)")
    ap.add_argument("--requests", type=int, default=None, help="trace requests served (default 96; smoke 8)")
    ap.add_argument("--output-cap", type=int, default=None, help="outputs capped at this many tokens (default 128)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    clock = Clock(args.deadline)
    cfg = dict(SETTINGS["smoke" if args.smoke else "full"])
    cfg.update({k: v for k, v in (("requests", args.requests), ("output_cap", args.output_cap)) if v is not None})
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from packviz.serving.calibration import CALIBRATION_SCHEMA, SERVE_SCHEMA, device_fit, fit_calibration

    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    res = {"schema": SERVE_SCHEMA, "started": started, "status": "running", "git_commit": git_commit(),
           "settings": {k: v for k, v in cfg.items()}, "steps": {}, "engines": {}, "predicted": None,
           "comparison": None, "model": {"name": cfg["model"], "random_weights": True}}
    res.update(environment(cfg["device"]))
    save = lambda: write_json(out / "serve.json", res)  # noqa: E731
    save()
    try:
        t = clock.elapsed()
        model = build(cfg)
        res["model"]["dtype"] = str(model.dtype).replace("torch.", "")
        res["steps"]["build"] = {"status": "ok", "seconds": clock.elapsed() - t}
        log(f"built {cfg['model']} in {clock.elapsed() - t:.1f} s")
        save()
        res["steps"]["preflight"] = preflight(model, cfg)
        save()
        cal = {"schema": CALIBRATION_SCHEMA, "started": started, "git_commit": res["git_commit"],
               "model": cfg["model"], "dtype": res["model"]["dtype"], "device": res["device"],
               "versions": res["versions"], "points": []}

        def on_point(points):
            cal["points"] = points
            write_json(out / "calibration.json", cal)

        if clock.open():
            points = calibrate(model, cfg, clock, on_point)
            cal["fit"] = fit_calibration(cal) if len(points) >= 3 else None
            cal["fit_device"] = device_fit(cal)
            write_json(out / "calibration.json", cal)
            res["steps"]["calibration"] = {"status": "ok" if cal["fit"] else "too few points", "points": len(points),
                                           "fit": cal["fit"], "fit_device": cal["fit_device"]}
            log(f"calibration fit: {cal['fit']}")
            save()
        serve(model, cfg, clock, args.limit, res, out, save)
        res["status"] = "complete" if clock.open() else "deadline"
    except KeyboardInterrupt:                   # `timeout --signal=INT`: keep what was measured
        res["status"] = "interrupted"
    except Exception as e:  # noqa: BLE001 -- recorded; the JSON keeps what was measured
        res["status"] = "error: " + error_text(e)
        traceback.print_exc()
    res["finished_after_s"] = clock.elapsed()
    save()
    log(f"status {res['status']}; comparison {res['comparison']}")
    return 0 if res["status"] in ("complete", "deadline") else 1


def serve(model, cfg: dict, clock: Clock, limit_s: float, res: dict, out: pathlib.Path, save) -> None:
    """Step 4: both engines on the window, then the simulator's prediction and the comparison."""
    from packviz.engines import request_ids
    from packviz.serving.calibration import served_requests

    served = served_requests({"settings": cfg})  # the window, prompts ÷ prompt_scale, outputs capped
    p, g = served.prompt_tokens, served.generated_tokens
    prompts = request_ids(p, model.config.vocab_size, seed=cfg["window_seed"])
    res["window"] = {"trace": served.name, "requests": len(p), "prompt_tokens": int(p.sum()),
                     "output_tokens": int(g.sum()), "output_cap": cfg["output_cap"],
                     "prompt_scale": cfg["prompt_scale"], "prompt_max": int(p.max())}
    for name in ENGINES:
        if not str(res["steps"].get("preflight", {}).get(name, "")).startswith("ok"):
            res["engines"][name] = {"status": "skipped: preflight failed"}
        elif not clock.open():
            res["engines"][name] = {"status": "skipped: deadline"}
        else:
            log(f"serving {len(p)} requests with {name} ...")
            try:
                res["engines"][name] = run_engine(name, model, prompts, g, cfg, clock, limit_s)
            except Exception as e:  # noqa: BLE001
                res["engines"][name] = {"status": "error: " + error_text(e)}
            log(f"{name}: {res['engines'][name]}")
        save()
    cal_path = out / "calibration.json"
    if (res["steps"].get("calibration") or {}).get("fit"):
        res["predicted"] = predict(cal_path, res)
        res["comparison"] = compare(res["engines"], res["predicted"])
        save()


if __name__ == "__main__":
    raise SystemExit(main())
