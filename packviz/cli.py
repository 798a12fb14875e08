"""``python -m packviz {pack,flops,figures,bench}``: parse arguments, call the library, print.

Heavy modules (matplotlib, torch, transformers) are imported inside the command that needs
them, so ``pack`` starts fast. Bad input exits with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def _cmd_pack(args) -> dict:
    from .lengths import read_lengths
    from .packing import pack

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


def _cmd_flops(args) -> dict:
    raise NotImplementedError("flops: see issue 3")


def _cmd_figures(args) -> dict:
    raise NotImplementedError("figures: see issue 3")


def _cmd_bench(args) -> dict:
    raise NotImplementedError("bench: see issue 4")


def build_parser() -> argparse.ArgumentParser:
    from .packing import OVERLONG, STRATEGIES

    p = argparse.ArgumentParser(prog="python -m packviz", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    pk = sub.add_parser("pack", help="lay lengths out by a strategy; print rows, utilisation, time")
    pk.add_argument("--lengths", required=True, help="file: one integer per line, or CSV with a ContextTokens column")
    pk.add_argument("--pack-len", type=int, required=True, help="C: pack capacity / longest allowed sequence")
    pk.add_argument("--strategy", choices=STRATEGIES, default="bfd")
    pk.add_argument("--batch-size", type=int, default=None, help="B for pad/sorted")
    pk.add_argument("--overlong", choices=OVERLONG, default="error")
    pk.add_argument("--json", action="store_true", help="print one JSON object")
    pk.add_argument("--rows", action="store_true", help="with --json: add every row's [seq_index, offset, length] segments")
    pk.set_defaults(run=_cmd_pack, show=_print_pack)

    fl = sub.add_parser("flops", help="prefill FLOPs: useful, padded, dense-packed, varlen")
    fl.add_argument("--model", default="llama-3-8b")
    fl.add_argument("--lengths", required=True)
    fl.add_argument("--batch-size", type=int, required=True)
    fl.add_argument("--pack-len", type=int, required=True)
    fl.add_argument("--strategy", default="bfd")
    fl.add_argument("--overlong", default="error")
    fl.add_argument("--lm-head", choices=("all", "last"), default="all")
    fl.add_argument("--json", action="store_true")
    fl.set_defaults(run=_cmd_flops, show=None)

    fg = sub.add_parser("figures", help="write the standard figures as PNG")
    fg.add_argument("--out", required=True)
    fg.set_defaults(run=_cmd_figures, show=None)

    be = sub.add_parser("bench", help="time padded vs packed Llama-3 forwards; write JSON + PNG")
    be.add_argument("--out", required=True)
    be.add_argument("--smoke", action="store_true", help="tiny config on CPU, under a minute")
    be.add_argument("--model", default=None)
    be.add_argument("--checkpoint", default=None, help="local checkpoint directory (safetensors)")
    be.add_argument("--deadline", type=float, default=None, help="seconds; stop cleanly after")
    be.add_argument("--repeats", type=int, default=None)
    be.add_argument("--json", action="store_true")
    be.set_defaults(run=_cmd_bench, show=None)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        out = args.run(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if out is None:
        return 0
    if getattr(args, "json", False) or args.show is None:
        print(json.dumps(out))
    else:
        args.show(out)
    return 0
