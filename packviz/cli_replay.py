"""``python -m packviz replay``: a trace replayed against an OpenAI-compatible server, beside the simulator's prediction.

Parses, calls :func:`packviz.serving.replay.replay` and :func:`packviz.serving.simulate` for the same
requests, prints a human table (``--json``: one object). Errors are ``ValueError`` lines, printed by
:func:`packviz.cli.main` with exit status 2. Ctrl-C stops sending and still prints (and writes
``--out``) what was measured.
"""

from __future__ import annotations

import json
import pathlib
import platform
import shlex
import subprocess
import sys
import time


def add_parser(sub) -> None:
    rp = sub.add_parser("replay", help="replay a trace against an OpenAI-compatible server (vLLM, SGLang, TGI, "
                                       "transformers serve); measure TTFT, ITL, throughput beside the prediction")
    rp.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8000 (with or without /v1)")
    rp.add_argument("--model", required=True, help="the model name the server serves (GET /v1/models lists them)")
    rp.add_argument("--trace", default=None, help="CSV in the Azure format; default: the shipped conversation trace")
    rp.add_argument("--requests", type=int, default=100, help="consecutive trace requests to send (default 100)")
    rp.add_argument("--seed", type=int, default=0, help="where the window of requests starts, and the prompts' words")
    rp.add_argument("--arrivals", default="trace", help="trace (open loop at its own times) or offline (all at t = 0)")
    rp.add_argument("--rate-scale", type=float, default=1.0, help="with trace arrivals: 2 = twice as fast")
    rp.add_argument("--concurrency", type=int, default=None, help="at most K requests in flight (a closed loop)")
    rp.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for a request's next chunk")
    rp.add_argument("--predict", default="vllm-v1-like",
                    help="the simulated server to compare with: a named config (vllm-v1-like, orca-like), a policy "
                         "(continuous, chunked, static, static-packed), or none")
    rp.add_argument("--predict-model", default="llama-3-8b", help="the model shape the prediction prices")
    rp.add_argument("--gpu", default="h100", help="the GPU the prediction prices (h100, h200, a100, calibrated)")
    rp.add_argument("--out", default=None, help="write the replay (every event, the summary) to this JSON file")
    rp.add_argument("--label", default="", help="with --out: what this run was (stored in the file)")
    rp.add_argument("--no-progress", action="store_true", help="no progress bar")
    rp.add_argument("--json", action="store_true", help="print one JSON object")
    rp.set_defaults(run=run, show=show)


def requests_of(args):
    """The requests to send: ``--requests`` consecutive ones of ``--trace`` (or the shipped trace)."""
    from .trace import azure_conv, read_trace

    trace = azure_conv() if args.trace is None else read_trace(args.trace)
    if not 1 <= args.requests <= len(trace):
        raise ValueError(f"--requests must be 1 .. {len(trace):,} (the trace's requests), got {args.requests}")
    return trace.window(args.requests, seed=args.seed) if args.requests < len(trace) else trace


def prediction(args, trace) -> dict | None:
    """The simulator's summary for the same requests, arrivals and rate (``--concurrency`` K: a max batch of K)."""
    from .serving import ENGINE_CONFIGS, POLICIES, simulate, summary
    from .serving.replay import goodput

    if args.predict == "none":
        return None
    if args.predict in ENGINE_CONFIGS:
        kw = dict(ENGINE_CONFIGS[args.predict])
    elif args.predict in POLICIES:
        kw = {"policy": args.predict}
    else:
        raise ValueError(f"--predict must be one of {', '.join([*ENGINE_CONFIGS, *POLICIES, 'none'])}, "
                         f"got {args.predict!r}")
    if args.concurrency:
        kw["max_batch"] = min(args.concurrency, kw.get("max_batch", args.concurrency))
    sim = simulate(trace, model=args.predict_model, gpu=args.gpu, arrivals=args.arrivals,
                   rate_scale=args.rate_scale, **kw)
    out = summary(sim)
    out.update(goodput=goodput(sim), predicted=f"{args.predict}, {out['model']} on {args.gpu}")
    return out


def provenance(args, argv=None) -> dict:
    """What a recorded replay says about itself: label, command, date, packviz commit, versions."""
    from importlib.metadata import PackageNotFoundError, version

    root = pathlib.Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    versions = {"python": platform.python_version()}
    for name in ("packviz", "httpx", "numpy"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return {"label": args.label, "command": "python -m packviz " + shlex.join(sys.argv[1:] if argv is None else argv),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "packviz_commit": commit, "versions": versions}


def run(args) -> dict:
    from .serving.replay import replay, replay_summary, to_json

    if args.out and pathlib.Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a directory; give a file name, e.g. {args.out}/replay.json")
    trace = requests_of(args)
    predicted = prediction(args, trace)                  # before sending: a bad option costs no server time
    result = replay(args.url, args.model, trace, arrivals=args.arrivals, rate_scale=args.rate_scale,
                    concurrency=args.concurrency, timeout_s=args.timeout, seed=args.seed,
                    progress=not args.no_progress)
    out = replay_summary(result)
    out["prediction"] = predicted
    if args.out:
        record = to_json(result, **provenance(args), prediction=predicted)
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
        out["written"] = args.out
    return out


def show(out: dict) -> None:
    from .serving.metrics import format_table
    from .serving.replay import format_replay

    print(format_replay(out))
    pred = out.get("prediction")
    if pred:
        rows = [{**pred, "policy": "predicted"}, {**out, "policy": "measured"}]
        print(f"\nprediction: {pred['predicted']} (simulated, the same requests and arrivals)")
        print(format_table(rows, seconds=False))
        print(f"goodput:    predicted {pred['goodput']['requests_per_s'] or 0:,.2f} requests/s, "
              f"measured {out['goodput']['requests_per_s'] or 0:,.2f}")
    if out.get("written"):
        print(f"\nwritten: {out['written']}")
