"""``python -m packviz replay``: a trace replayed against an OpenAI-compatible server, beside the simulator's prediction.

Parses, calls :func:`packviz.serving.replay.replay` and :func:`packviz.serving.simulate` for the same
requests, prints a human table (``--json``: one object). Errors are ``ValueError`` lines, printed by
:func:`packviz.cli.main` with exit status 2; every option is checked, and ``--out`` tried for writing,
before the first request is sent. Ctrl-C stops sending, still prints (and writes ``--out``) what was
measured, and exits with status 130. An ``--out`` that cannot be written at the end: the summary is
printed, then the error (status 2).
"""

from __future__ import annotations

import json
import math
import pathlib
import platform
import shlex
import subprocess
import sys
import time


def add_parser(sub) -> None:
    from .cli import parse_float, parse_int  # ASCII digits only (loaded already: cli imports this module to register)
    from .serving.replay import MAX_CONCURRENCY, MAX_TIMEOUT_S

    rp = sub.add_parser("replay", help="replay a trace against an OpenAI-compatible server (vLLM, SGLang, TGI, "
                                       "transformers serve); measure TTFT, ITL, throughput beside the prediction")
    rp.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8000 (with or without /v1)")
    rp.add_argument("--model", required=True, help="the model name the server serves (GET /v1/models lists them)")
    rp.add_argument("--trace", default=None, help="CSV in the Azure format; default: the shipped conversation trace")
    rp.add_argument("--requests", type=parse_int, default=100, help="consecutive trace requests to send (default 100)")
    rp.add_argument("--seed", type=parse_int, default=0,
                    help="where the window of requests starts, and the prompts' words (an integer >= 0)")
    rp.add_argument("--arrivals", default="trace", choices=("trace", "offline"),
                    help="trace (open loop at its own times) or offline (all at t = 0)")
    rp.add_argument("--rate-scale", type=parse_float, default=1.0,
                    help="with trace arrivals: 2 = twice as fast (not with offline, which sends all at t = 0)")
    rp.add_argument("--concurrency", type=parse_int, default=None,
                    help=f"at most K requests in flight (a closed loop), 1 to {MAX_CONCURRENCY:,}")
    rp.add_argument("--timeout", type=parse_float, default=300.0,
                    help=f"seconds to wait for a request's next chunk, > 0 and at most {MAX_TIMEOUT_S:,.0f} "
                         "(default 300)")
    rp.add_argument("--predict", default="vllm-v1-like",
                    help="the simulated server to compare with: a named config (vllm-v1-like, orca-like), a policy "
                         "(continuous, chunked, static, static-packed), or none")
    rp.add_argument("--predict-model", default="llama-3-8b", help="the model shape the prediction prices")
    rp.add_argument("--gpu", default="h100", help="the GPU the prediction prices (h100, h200, a100, calibrated)")
    rp.add_argument("--out", default=None, help="write the replay (every event, the summary) to this JSON file "
                                                "(checked for writing before the first request)")
    rp.add_argument("--label", default="", help="with --out: what this run was (stored in the file)")
    rp.add_argument("--no-progress", action="store_true", help="no progress bar")
    rp.add_argument("--json", action="store_true", help="print one JSON object")
    rp.set_defaults(run=run, show=show)


def check_options(args) -> None:
    """Every option that needs no server, checked before anything is sent: one ``ValueError`` line naming it."""
    from .checks import nonnegative_int, positive_int
    from .serving.replay import MAX_CONCURRENCY, MAX_TIMEOUT_S, base_url
    from .serving.simulator import RATE_SCALES

    base_url(args.url)
    if not args.model.strip():
        raise ValueError("--model must be the name of a model the server serves (GET /v1/models lists them), got ''")
    nonnegative_int("--seed", args.seed)
    if not (math.isfinite(args.timeout) and 0 < args.timeout <= MAX_TIMEOUT_S):
        raise ValueError(f"--timeout must be a number of seconds > 0 and at most {MAX_TIMEOUT_S:,.0f} "
                         f"(e.g. 300), got {args.timeout:g}")
    if not (math.isfinite(args.rate_scale) and RATE_SCALES[0] <= args.rate_scale <= RATE_SCALES[1]):
        raise ValueError(f"--rate-scale must be a number from {RATE_SCALES[0]:g} to {RATE_SCALES[1]:g} "
                         f"(2 = twice as fast), got {args.rate_scale:g}")
    if args.arrivals == "offline" and args.rate_scale != 1.0:
        raise ValueError(f"--rate-scale {args.rate_scale:g} means nothing with --arrivals offline, which sends every "
                         "request at t = 0; drop --rate-scale or use --arrivals trace")
    if args.concurrency is not None:
        positive_int("--concurrency", args.concurrency, MAX_CONCURRENCY)


def writable(text: str) -> pathlib.Path:
    """``--out`` as a path, tried for writing now (its folder made), so a bad one costs no server time."""
    path = pathlib.Path(text)
    if path.is_dir():
        raise ValueError(f"--out {text} is a directory; give a file name, e.g. {text}/replay.json")
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a"):
            pass
    except (OSError, ValueError) as e:                 # ValueError: a NUL in the name
        why = getattr(e, "strerror", None) or " ".join(str(e).split())
        raise ValueError(f"--out {text} cannot be written ({why}); give a file in a writable folder, "
                         "e.g. --out replay.json") from None
    if not existed:
        path.unlink(missing_ok=True)
    return path


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


def run(args) -> dict | None:
    from .serving.replay import replay, replay_summary

    check_options(args)
    path = writable(args.out) if args.out else None
    trace = requests_of(args)
    predicted = prediction(args, trace)                  # before sending: a bad option costs no server time
    try:
        result = replay(args.url, args.model, trace, arrivals=args.arrivals, rate_scale=args.rate_scale,
                        concurrency=args.concurrency, timeout_s=args.timeout, seed=args.seed,
                        progress=not args.no_progress)
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C) before any request received a token: nothing to print or write", file=sys.stderr)
        raise
    out = replay_summary(result)
    out["prediction"] = predicted
    failed = write_record(args, path, result, predicted, out) if path else None
    if not (result.interrupted or failed):
        return out
    emit(args, out)                                      # the measurements first, whatever went wrong
    sys.stdout.flush()
    if result.interrupted:
        if failed:
            print(f"error: {failed}", file=sys.stderr)
        raise KeyboardInterrupt                          # status 130, as for any command stopped by Ctrl-C
    raise ValueError(failed)


def write_record(args, path: pathlib.Path, result, predicted, out: dict) -> str | None:
    """Write the replay to ``path`` (``out["written"]``); a line saying why not (``out["not_written"]``) if it fails."""
    from .cli import json_ready
    from .serving.replay import to_json

    record, _ = json_ready(to_json(result, **provenance(args), prediction=predicted))  # strict JSON: NaN -> null
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1, allow_nan=False) + "\n")
    except OSError as e:
        out["not_written"] = (f"--out {args.out} could not be written ({e.strerror or e}); "
                              "the summary printed is all that is kept of this replay")
        return out["not_written"]
    out["written"] = args.out
    return None


def emit(args, out: dict) -> None:
    """Print ``out`` as the command would: the table, or (``--json``) one strict JSON object."""
    from .cli import print_json

    if not args.json:
        show(out)
        return
    print_json(out)


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
