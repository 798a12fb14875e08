"""``python -m packviz {pack,flops,figures,bench,serve}``: parse arguments, call the library, print.

Heavy modules (matplotlib, torch, transformers) are imported inside the command that needs
them, so ``pack`` starts fast. Bad input -- a bad option as much as a bad value -- exits with
status 2 and one line on stderr, ``error: ...``, naming the value; never a traceback. A reader
that goes away (``... --json --rows | head``) ends the command quietly, with status 141 as a
Unix tool killed by SIGPIPE. ``--lengths -`` and ``--trace -`` read standard input.
Integers are ASCII digits only (``1_000`` and other scripts' digits are refused, though Python's
``int()`` takes them); ``--json`` prints strict JSON (a value that is not finite is ``null``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

from .checks import ASCII_INTEGER, ascii_int
from .model_extra import MODEL_EXTRA

EXIT_BAD_INPUT = 2
EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a tool killed by SIGPIPE
EXIT_INTERRUPTED = 128 + 2
MAX_DPI = 1200
"""The largest ``figures --dpi``: 1,200 dpi draws the widest standard figure (12 inches) 14,400 pixels wide."""


def _cmd_pack(args) -> dict:
    from .lengths import read_lengths
    from .packing import pack

    if args.rows and not args.json:
        raise ValueError("--rows adds the rows to the JSON output; add --json (or leave --rows out)")
    lengths = read_lengths(args.lengths)
    t0 = time.perf_counter()
    layout = pack(lengths, args.pack_len, args.strategy, batch_size=args.batch_size, overlong=args.overlong)
    seconds = time.perf_counter() - t0
    out = layout.summary()
    out.update(pack_len=args.pack_len, batch_size=args.batch_size, overlong=args.overlong, seconds=seconds)
    if args.rows:
        out["rows"] = layout.rows()
    return out


def _print_pack(out: dict) -> None:
    print(f"{out['strategy']}: {out['num_sequences']} sequences -> {out['num_rows']} rows "
          f"(lower bound {out['lower_bound_rows']}), utilisation {out['utilization']:.2%}, "
          f"{out['real_tokens']} real tokens in {out['slots']} slots, {out['seconds'] * 1e3:.1f} ms")


def _load_shape(model: str):
    """A model name (packviz.shapes), or a config.json (file or checkpoint directory)."""
    import pathlib

    from .shapes import get_shape, shape_from_config_file

    path = pathlib.Path(model)
    if path.is_dir() or path.suffix == ".json":
        return shape_from_config_file(path)
    return get_shape(model)


def _parse_tile(text):
    from .checks import int_pair

    if text is None:
        return None
    values = [ascii_int(v) for v in text.split(",")]
    if len(values) != 2 or None in values:
        raise ValueError(f"--tile must be BLOCK_Q,BLOCK_K (two positive integers, e.g. 128,128), got {text!r} "
                         "(ASCII digits only)")
    return int_pair("--tile", tuple(values))


def _cmd_flops(args) -> dict:
    from .checks import one_of
    from .flops import compare, compare_as_dict
    from .lengths import read_lengths
    from .packing import PACKED, OVERLONG, pad_and_pack

    shape = _load_shape(args.model)
    tile = _parse_tile(args.tile)
    one_of("--strategy (the packing side; the padded side is 'pad' with --batch-size)", args.strategy, PACKED)
    one_of("--overlong", args.overlong, OVERLONG)
    lengths = read_lengths(args.lengths)
    padded, packed = pad_and_pack(lengths, args.pack_len, args.batch_size, args.strategy, overlong=args.overlong)
    out = compare_as_dict(compare(padded, packed, shape, lm_head=args.lm_head, tile=tile))
    keep = ("num_rows", "slots", "real_tokens", "pads", "utilization", "dropped_tokens")
    out.update(
        shape=shape.as_dict(), pack_len=args.pack_len, batch_size=args.batch_size, strategy=args.strategy,
        overlong=args.overlong, tile=list(tile) if tile else None,
        layouts={"padded": {k: padded.summary()[k] for k in keep}, "packed": {k: packed.summary()[k] for k in keep}},
    )
    return out


def _cmd_figures(args) -> dict:
    import pathlib

    from . import plot
    from .checks import int_in_range

    int_in_range("--dpi", args.dpi, plot.MIN_DPI, MAX_DPI)  # checked before anything is created
    out = pathlib.Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in plot.standard_figures().items():
        plot.save(draw(), out / name, dpi=args.dpi)
        written.append(str(out / name))
    return {"out": str(out), "files": written}


def _cmd_bench(args) -> dict:
    import pathlib

    from .bench import config

    def _csv(text):
        return tuple(x.strip() for x in text.split(",") if x.strip())

    kw = {}
    for name in ("model", "checkpoint", "device", "dtype", "deadline", "repeats", "warmup", "pack_len",
                 "batch_size", "trace_n", "seed"):
        value = getattr(args, name, None)
        if value is not None:
            kw[name] = value
    if args.scenarios:
        kw["scenarios"] = _csv(args.scenarios)
    if args.methods:
        kw["methods"] = _csv(args.methods)
    if args.no_progress:
        kw["progress"] = False
    cfg = config.smoke_config(**kw) if args.smoke else config.BenchConfig(**kw)
    from .bench import results, runner

    res = runner.run(cfg, args.out)
    out = results.summary(res)
    out.update(json=str(pathlib.Path(args.out) / "bench.json"), png=res.get("png"))
    return out


def _print_bench(out: dict) -> None:
    from .bench.results import format_results, format_run_info, load_results

    res = load_results(out["json"])
    print(format_run_info(res), format_results(res), sep="\n\n")
    print(f"\nwritten: {out['json']}" + (f", {out['png']}" if out.get("png") else ""))


INTEGER = ASCII_INTEGER
"""What the command line reads as an integer: ASCII digits only (:func:`packviz.checks.ascii_int`; Python's
``int()`` also takes ``1_000`` and other scripts' digits, ``٣``; a typo should not become a number)."""
NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:inf|infinity|nan)",
                    re.ASCII | re.IGNORECASE)
"""What it reads as a number: ASCII decimal or scientific notation (``0.5``, ``2e-3``); ``inf`` and ``nan``
are read so that the option's own check can name them."""


def parse_int(text: str) -> int:
    """An option's integer, ASCII digits only; ``argparse.ArgumentTypeError`` (one line) otherwise.

    >>> parse_int("4096"), parse_int("-3")
    (4096, -3)
    """
    value = ascii_int(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r} (an integer in ASCII digits, e.g. 4096)")
    return value


def parse_float(text: str) -> float:
    """An option's number, ASCII decimal or scientific notation; ``argparse.ArgumentTypeError`` otherwise."""
    if not isinstance(text, str) or not NUMBER.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r} (a number in ASCII digits, e.g. 0.5 or 2e-3)")
    return float(text)


def _number(name: str, text, kind):
    """``text`` as ``kind`` (int or float, ASCII only: :func:`parse_int`), else a one-line ``ValueError`` naming the option."""
    if text is None:
        return None
    try:
        return parse_int(text) if kind is int else parse_float(text)
    except argparse.ArgumentTypeError:
        what, how = ("an integer", "ASCII digits, e.g. 32") if kind is int else ("a number", "e.g. 0.5 or 2e-3")
        raise ValueError(f"{name} must be {what}, got {text!r} ({how})") from None


def json_ready(obj, path: str = ""):
    """``(obj, nulls)``: ``obj`` with every float that is not finite replaced by ``None``, and the paths of those
    replaced (strict JSON has no NaN or Infinity). A library result says why a value is ``None`` itself;
    this is the guard behind it.

    >>> json_ready({"a": [1.0, float("inf")], "b": float("nan")})
    ({'a': [1.0, None], 'b': None}, ['a[1]', 'b'])
    """
    import math

    nulls: list[str] = []
    if isinstance(obj, float) and not math.isfinite(obj):
        return None, [path]
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out[k], more = json_ready(v, f"{path}.{k}" if path else str(k))
            nulls += more
        return out, nulls
    if isinstance(obj, (list, tuple)):
        out = []
        for i, v in enumerate(obj):
            item, more = json_ready(v, f"{path}[{i}]")
            out.append(item)
            nulls += more
        return out, nulls
    return obj, nulls


def print_json(out) -> None:
    """One strict JSON object (``json.loads`` with NaN and Infinity refused reads it); values that are not
    finite become ``null``, listed under ``"not_finite"``."""
    out, nulls = json_ready(out)
    if nulls and isinstance(out, dict):
        out["not_finite"] = {"fields": nulls, "why": "not a finite number (e.g. a rate with no time to divide by); "
                                                     "written as null"}
    print(json.dumps(out, allow_nan=False))


SIMULATOR_ONLY = (("gpu", "--gpu"), ("padded_attention", "--padded-attention"),
                  ("ragged_attention", "--ragged-attention"))
"""Options that price a simulated run: an executed run measures on this machine instead."""
ENGINE_ONLY = (("requests", "--requests"), ("device", "--device"), ("dtype", "--dtype"), ("seed", "--seed"))
"""Options of an executed run (``--execute``)."""


CAPACITY_ONLY = (("slo_itl_p99", "--slo-itl-p99"), ("slo_tpot_p99", "--slo-tpot-p99"))
"""SLOs other than TTFT only mean something to ``--capacity``."""


def _serve_config(args) -> dict:
    """Policy, batch cap and token budget: ``--config`` (a named engine configuration) or the flags."""
    from .serving import ENGINE_CONFIGS

    if args.config is not None:
        if args.config not in ENGINE_CONFIGS:
            raise ValueError(f"--config must be one of {', '.join(ENGINE_CONFIGS)}, got {args.config!r}")
        for key, flag in (("policy", "--policy"), ("max_batch", "--max-batch"), ("token_budget", "--token-budget")):
            if getattr(args, key) is not None:
                raise ValueError(f"--config {args.config} sets the policy, batch cap and token budget; leave {flag} out")
        return dict(ENGINE_CONFIGS[args.config])
    if args.policy is None:
        raise ValueError("give --policy (static, static-packed, continuous or chunked) or --config (a named engine)")
    return {"policy": args.policy, "max_batch": _number("--max-batch", args.max_batch or "32", int),
            "token_budget": _number("--token-budget", args.token_budget or "2048", int)}


SERVE_FLAGS = {"kv_budget_tokens": "--kv-budget", "max_batch": "--max-batch", "token_budget": "--token-budget",
               "rate_scale": "--rate-scale", "padded_attention": "--padded-attention",
               "ragged_attention": "--ragged-attention", "slo_ttft_p99_s": "--slo-ttft-p99",
               "slo_itl_p99_s": "--slo-itl-p99", "slo_tpot_p99_s": "--slo-tpot-p99"}
"""The library's names of what ``serve`` passes straight through, and the flags a user typed."""
_LIBRARY_NAME = re.compile(r"(?<![\w/.'\"-])(" + "|".join(SERVE_FLAGS) + r")(?![\w/'\"]|\.\w)")


def in_flag_terms(message: str) -> str:
    """A library message about a value ``serve`` passed through, in the command line's words: each
    :data:`SERVE_FLAGS` name (not inside a path or a quoted value) as its flag, ``arrivals='offline'`` as
    ``--arrivals offline``, a leading ``policy`` / ``arrivals`` as ``--policy`` / ``--arrivals``.

    >>> in_flag_terms("kv_budget_tokens 1 is too small; raise token_budget (see /tmp/max_batch.csv)")
    '--kv-budget 1 is too small; raise --token-budget (see /tmp/max_batch.csv)'
    >>> in_flag_terms("rate_scale is 2, but arrivals='offline' sends every request at t = 0")
    '--rate-scale is 2, but --arrivals offline sends every request at t = 0'
    """
    message = re.sub(r"\barrivals='(\w+)'", r"--arrivals \1", message)
    message = re.sub(r"^(policy|arrivals) must be", r"--\1 must be", message)
    return _LIBRARY_NAME.sub(lambda m: SERVE_FLAGS[m.group(1)], message)


def _cmd_serve(args) -> dict:
    """``serve``: a library error about a value given as a flag names the flag (:func:`in_flag_terms`)."""
    try:
        return _serve(args)
    except ValueError as e:
        raise ValueError(in_flag_terms(str(e))) from None


def _serve(args) -> dict:
    from .trace import azure_conv, read_trace

    trace = azure_conv() if args.trace is None else read_trace(args.trace)
    kw = dict(**_serve_config(args), arrivals=args.arrivals,
              rate_scale=_number("--rate-scale", args.rate_scale or "1", float),
              kv_budget_tokens=_number("--kv-budget", args.kv_budget, int))
    if args.arrivals == "offline" and args.rate_scale is not None and not args.capacity:
        raise ValueError(f"--rate-scale {args.rate_scale} scales the trace's arrival times, but --arrivals offline "
                         "sends every request at t = 0: a rate scale needs --arrivals trace (or leave --rate-scale out)")
    if not args.capacity:
        for key, flag in CAPACITY_ONLY:
            if getattr(args, key) is not None:
                raise ValueError(f"{flag} is an SLO of --capacity; add --capacity (or leave {flag} out)")
    if args.execute:
        if args.capacity:
            raise ValueError("--capacity searches rates with the simulator; it cannot be combined with --execute")
        return _cmd_execute(args, trace, kw)
    for key, flag in ENGINE_ONLY:
        if getattr(args, key) is not None:
            raise ValueError(f"{flag} is an option of an executed run; add --execute (or leave {flag} out)")
    from .serving import simulate, summary

    kw.update(model=_load_shape(args.model or "llama-3-8b"), gpu=args.gpu or "h100",
              padded_attention=args.padded_attention or "masked", ragged_attention=args.ragged_attention or "varlen")
    if args.capacity:
        return _cmd_capacity(args, trace, kw)
    return summary(simulate(trace, **kw))


def _cmd_capacity(args, trace, kw: dict) -> dict:
    """``serve --capacity``: the highest arrival rate (× the trace's own) whose run meets every SLO given."""
    from .serving import capacity

    if args.rate_scale is not None or args.arrivals != "trace":
        raise ValueError("--capacity searches the arrival rate itself; leave --rate-scale and --arrivals out")
    if trace.duration_s <= 0:
        raise ValueError(f"--capacity scales the trace's arrival rate, but every request of {trace.name} arrives at "
                         "one instant (no rate to scale); give a trace whose TIMESTAMPs differ")
    for key in ("rate_scale", "arrivals"):
        kw.pop(key)
    slo = {"slo_ttft_p99_s": _number("--slo-ttft-p99", args.slo_ttft_p99 or "5", float),
           "slo_itl_p99_s": _number("--slo-itl-p99", args.slo_itl_p99, float),
           "slo_tpot_p99_s": _number("--slo-tpot-p99", args.slo_tpot_p99, float)}
    out = capacity(trace, kw.pop("policy"), **slo, **kw)
    out.update(config=args.config, trace=trace.name, trace_requests_per_s=trace.rate_per_s, capacity=True)
    return out


def _cmd_execute(args, trace, kw: dict) -> dict:
    """``serve --execute``: the policy run by packviz's engine on a real model (random weights, or a checkpoint)."""
    for key, flag in SIMULATOR_ONLY:
        if getattr(args, key) is not None:
            raise ValueError(f"{flag} prices a simulated run; --execute measures on this machine (leave {flag} out)")
    n = _number("--requests", args.requests, int)
    n = min(16, len(trace)) if n is None else n
    if not 1 <= n <= len(trace):
        raise ValueError(f"--requests must be 1 .. {len(trace):,} (the trace's requests), got {n}")
    seed = _number("--seed", args.seed, int) or 0
    model = _build_engine_model(args.model or "tiny", args.device, args.dtype, seed)
    from .serving import run_engine, summary

    window = trace.window(n, seed=0) if n < len(trace) else trace
    _check_positions(window, model)
    policy = kw.pop("policy")
    kw = {k: v for k, v in kw.items() if v is not None}
    return summary(run_engine(model, window, policy, seed=seed, **kw))


def _check_positions(window, model) -> None:
    """Refuse, before any KV cache is allocated, a request whose KV cache alone (P + G tokens) is larger than
    the device's memory, saying the size it would need."""
    import torch

    cfg, weight = model.config, next(model.parameters())
    heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    per_token = 2 * cfg.num_hidden_layers * heads * (cfg.hidden_size // cfg.num_attention_heads) * weight.element_size()
    if weight.device.type == "cuda":
        memory = torch.cuda.get_device_properties(weight.device).total_memory
    else:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    need = [p + g for p, g in zip(window.prompt_tokens.tolist(), window.generated_tokens.tolist())]  # no int64 overflow
    i = need.index(max(need))
    if need[i] * per_token > memory:
        raise ValueError(f"request {i} of {window.name} holds P + G = {need[i]:,} tokens: its KV cache alone needs "
                         f"{need[i] * per_token / 2**30:,.1f} GiB, more than the {memory / 2**30:,.1f} GiB of "
                         f"{weight.device.type}; serve shorter requests")


def _build_engine_model(model: str, device, dtype, seed: int):
    """A ``LlamaForCausalLM``: a local checkpoint directory (safetensors), else random weights of a named shape."""
    import pathlib

    from .model import build_model, load_checkpoint
    from .serving.hf import disable_eos

    path = pathlib.Path(model)
    if path.is_dir():
        m = load_checkpoint(path, device=device, dtype=dtype)
    else:
        m = build_model(_load_shape(model), device=device, dtype=dtype, seed=seed)
    disable_eos(m)
    return m


def _print_serve(out: dict) -> None:
    from .serving.metrics import format_summary

    if out.get("capacity"):
        slo = ", ".join(f"{k.removesuffix('_p99_s').upper()} p99 <= {v:g} s" for k, v in out["slo"].items())
        got = ", ".join(f"{k.upper()} {out[f'{k}_p99_s']:.3g} s" for k in ("ttft", "itl", "tpot")
                        if out[f"{k}_p99_s"] is not None)
        print(f"{out['config'] or out['policy']}: capacity {out['requests_per_s']:,.2f} requests/s "
              f"(x{out['rate_scale']:.3g} the trace's {out['trace_requests_per_s']:.2f}), "
              f"{out['output_tokens_per_s']:,.0f} output tokens/s, under {slo}" + (f"; at it p99 {got}" if got else "")
              + (f" ({out['note']})" if out["note"] else ""))
        return
    print(format_summary(out))


def _add_pack(sub) -> None:
    from .packing import OVERLONG, STRATEGIES

    pk = sub.add_parser("pack", help="lay lengths out by a strategy; print rows, utilisation, time")
    pk.add_argument("--lengths", required=True, help="file: one integer per line, or CSV with a ContextTokens column")
    pk.add_argument("--pack-len", type=parse_int, required=True, help="C: pack capacity / longest allowed sequence")
    pk.add_argument("--strategy", choices=STRATEGIES, default="bfd")
    pk.add_argument("--batch-size", type=parse_int, default=None, help="B for pad/sorted")
    pk.add_argument("--overlong", choices=OVERLONG, default="error")
    pk.add_argument("--json", action="store_true", help="print one JSON object")
    pk.add_argument("--rows", action="store_true", help="with --json: add every row's [seq, offset, length] segments")
    pk.set_defaults(run=_cmd_pack, show=_print_pack)


def _add_flops_and_figures(sub) -> None:
    fl = sub.add_parser("flops", help="prefill FLOPs: useful, padded (causal and masked), dense, flex, varlen")
    fl.add_argument("--model", default="llama-3-8b")
    fl.add_argument("--lengths", required=True)
    fl.add_argument("--batch-size", type=parse_int, required=True)
    fl.add_argument("--pack-len", type=parse_int, required=True)
    fl.add_argument("--strategy", default="bfd")
    fl.add_argument("--overlong", default="error")
    fl.add_argument("--lm-head", choices=("all", "last"), default="all")
    fl.add_argument("--tile", default=None, help="BLOCK_Q,BLOCK_K: count causal attention in whole kernel tiles")
    fl.add_argument("--json", action="store_true")
    fl.set_defaults(run=_cmd_flops, show=None)

    fg = sub.add_parser("figures", help="write the standard figures as PNG")
    fg.add_argument("--out", required=True)
    fg.add_argument("--dpi", type=parse_int, default=150, help="resolution of the PNGs (150: sharp on slides)")
    fg.set_defaults(run=_cmd_figures, show=None)


def _add_bench(sub) -> None:
    be = sub.add_parser("bench", help="time padded vs packed Llama-3 forwards; write JSON + PNG")
    be.add_argument("--out", required=True)
    be.add_argument("--smoke", action="store_true", help="tiny config on CPU, under a minute")
    be.add_argument("--model", default=None)
    be.add_argument("--checkpoint", default=None, help="local checkpoint directory (safetensors)")
    be.add_argument("--deadline", type=parse_float, default=None, help="seconds; stop cleanly after")
    be.add_argument("--repeats", type=parse_int, default=None)
    be.add_argument("--warmup", type=parse_int, default=None, help="untimed warm-up passes per method (default 1)")
    be.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    be.add_argument("--dtype", default=None, help="bfloat16, float16, float32 (default: bf16 on cuda, fp32 on cpu)")
    be.add_argument("--pack-len", type=parse_int, default=None, help="C: pack length and longest prompt (default 8192)")
    be.add_argument("--batch-size", type=parse_int, default=None, help="B of the padded baseline (default 32)")
    be.add_argument("--scenarios", default=None, help="comma-separated: trace,offline,seed,uniform (default all)")
    be.add_argument("--methods", default=None,
                    help="comma-separated: padded,padded-masked,padded-sorted,dense,flex,varlen,flash "
                         "(default: every available one; padded always runs)")
    be.add_argument("--trace-n", type=parse_int, default=None,
                    help="consecutive real requests of the trace (default 64: two windows of B = 32)")
    be.add_argument("--seed", type=parse_int, default=None)
    be.add_argument("--no-progress", action="store_true", help="no progress bar")
    be.add_argument("--json", action="store_true")
    be.set_defaults(run=_cmd_bench, show=_print_bench)


def _add_serve(sub) -> None:
    sv = sub.add_parser("serve", help="replay a request trace under a serving policy: simulated (numpy only), "
                                      "or executed on a real model with --execute")
    sv.add_argument("--trace", default=None,
                    help="CSV in the Azure format (TIMESTAMP, ContextTokens, GeneratedTokens); TIMESTAMP in ISO 8601 "
                         "with or without a zone, or epoch seconds (--json says which was read: timestamps); a "
                         "request holds at most 2**40 tokens; default: the shipped conversation trace")
    sv.add_argument("--policy", default=None, help="static, static-packed, continuous or chunked")
    sv.add_argument("--config", default=None,
                    help="a named engine configuration instead of --policy: vllm-v1-like (chunked, 8,192 tokens "
                         "and 1,024 requests per step: vLLM's defaults on an H100-class GPU) or orca-like")
    sv.add_argument("--arrivals", default="trace", help="trace (its own times) or offline (all at t = 0)")
    sv.add_argument("--rate-scale", default=None, help="with trace arrivals: 2 = twice as fast (default 1; 1e-6 .. 1e6)")
    sv.add_argument("--max-batch", default=None,
                    help="B of the static policies, the running cap of the others (default 32; 1 .. 1,048,576)")
    sv.add_argument("--token-budget", default=None,
                    help="chunked: tokens per step (max_num_batched_tokens; default 2048; at most 2**40)")
    sv.add_argument("--capacity", action="store_true",
                    help="find the highest arrival rate whose run meets the SLOs (p99 TTFT, and ITL/TPOT if given)")
    sv.add_argument("--slo-ttft-p99", default=None, help="with --capacity: seconds (default 5)")
    sv.add_argument("--slo-itl-p99", default=None, help="with --capacity: seconds between two tokens (e.g. 0.1)")
    sv.add_argument("--slo-tpot-p99", default=None, help="with --capacity: seconds per output token (e.g. 0.1)")
    sv.add_argument("--kv-budget", default=None,
                    help="KV-cache capacity in tokens, at most 2**62 (default: 90%% of the GPU's memory minus the "
                         "weights; with --execute: enough that nothing is preempted)")
    sv.add_argument("--model", default=None,
                    help="a model name or a config.json (default llama-3-8b); with --execute also a local "
                         "checkpoint directory (default tiny, random weights)")
    sv.add_argument("--gpu", default=None, help="h100 (default), h200, a100, calibrated, or a calibration JSON file")
    sv.add_argument("--padded-attention", default=None,
                    help="static prefill attention: masked (default; W² per row, HF generate) or causal (W(W+1)/2)")
    sv.add_argument("--ragged-attention", default=None,
                    help="continuous/chunked attention: varlen (default; per sequence) or dense (Σq × Σk, paged|sdpa)")
    sv.add_argument("--execute", action="store_true",
                    help="run the policy on a real Llama with packviz's engine and measure it (seconds on a CPU "
                         "with the tiny default; --model llama-3-8b on a GPU)")
    sv.add_argument("--requests", default=None,
                    help="with --execute: serve this many consecutive trace requests (default 16, or all of a shorter trace)")
    sv.add_argument("--device", default=None, help="with --execute: cuda or cpu (default: cuda if available)")
    sv.add_argument("--dtype", default=None, help="with --execute: bfloat16, float32 (default: bf16 on cuda, fp32 on cpu)")
    sv.add_argument("--seed", default=None, help="with --execute: seed of the random weights and prompt ids (default 0)")
    sv.add_argument("--json", action="store_true", help="print one JSON object")
    sv.set_defaults(run=_cmd_serve, show=_print_serve)


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line too (argparse prints its usage first)."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m packviz", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    from . import cli_replay  # replay: a trace against a real server (its own module; httpx imported when run)

    for add in (_add_pack, _add_flops_and_figures, _add_bench, _add_serve, cli_replay.add_parser):
        add(sub)
    return p


def main(argv=None) -> int:
    """Run one command; the exit status: 0, 2 (bad input), 141 (closed pipe), 130 (Ctrl-C), 1 (a bug)."""
    args = build_parser().parse_args(argv)
    try:
        out = args.run(args)
        if out is not None:
            if getattr(args, "json", False) or args.show is None:
                print_json(out)
            else:
                args.show(out)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except (ValueError, OSError) as e:  # OSError: a path that cannot be read or written (not a directory, ...)
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MemoryError:
        print("error: out of memory; try smaller inputs", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 -- a bug: still one line, the traceback on request
        if isinstance(e, ModuleNotFoundError) and e.name in MODEL_EXTRA:  # the light install, not a bug
            print(f"error: python -m packviz {args.command} needs {e.name}, which is not installed: "
                  "pip install 'packviz[model]'", file=sys.stderr)
            return EXIT_BAD_INPUT
        if os.environ.get("PACKVIZ_TRACEBACK"):
            raise
        print(f"error: internal error ({type(e).__name__}: {_one_line(e)}); please report it, "
              "with the traceback PACKVIZ_TRACEBACK=1 shows", file=sys.stderr)
        return 1
    return 0


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).splitlines()) or type(e).__name__


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that Python's flush at exit does not report the closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real file behind stdout (a test's capture)
        pass
