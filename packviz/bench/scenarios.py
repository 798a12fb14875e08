"""What each scenario runs, forward by forward, and what the FLOP model says it should cost. No torch.

A scenario is a sample of prompt lengths and, for each layout a method runs, the forwards
(one model call each) that cover the sample. Two kinds:

``window`` (``trace``, ``seed``, ``uniform``) -- serving-fair: the sample is cut into windows of
B consecutive requests (arrival order), and **every method's forward processes one window**::

    window of B requests     padded / padded-masked   (B, W) rectangle, W = the window's longest
                             dense / flex             the window packed (BFD) into R rows of C
                             varlen / flash           one (1, T) stream of the window's T tokens
                             padded-sorted            (offline) the whole sample sorted by
                                                      length, then cut into batches of B

``offline`` -- training-style: the same trace sample packed **as a whole** by best-fit
decreasing into rows of C, one row per forward (requests that arrived far apart share a row;
a server cannot do this). The padded methods run the arrival batches, as in ``trace``.

The FLOP model prices each method as its kernel runs it (:data:`packviz.flops.PRICING` and
``Backend.execution``): ``padded`` as causal triangles of W per row, ``padded-masked`` and
``dense`` as full squares, ``flex`` as the BlockMask tiles of its own rows (filler included),
``varlen`` as each sequence's triangle (optionally in whole kernel tiles).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import numpy as np

from ..attention import BACKENDS
from ..flops import Flops, ideal_speedup, layout_flops, useful_flops
from ..layout import Layout, stack_layouts
from ..checks import instance_of, items, mapping, one_of
from ..packing import pack, pack_in_windows, validate_lengths, windows
from .config import SCENARIOS, BenchConfig

KINDS = {"trace": "window", "offline": "offline", "seed": "window", "uniform": "window"}


@dataclass(frozen=True)
class Scenario:
    """A sample and its layouts. ``forwards[layout]``: the row groups of ``layouts[layout]``, one per forward."""

    name: str
    kind: str  # "window" | "offline"
    description: str
    lengths: np.ndarray  # (N,) prompt lengths, clipped to the pack length
    layouts: dict  # "padded" | "sorted" | "packed" | "stream" -> Layout
    forwards: dict  # same keys -> list of row-index lists
    info: dict  # JSON-ready: counts, clipping, lengths summary


# ---------------------------------------------------------------------- samples
def scenario_lengths(name: str, cfg: BenchConfig) -> tuple[np.ndarray, str]:
    """``(raw lengths (N,), description)`` of a scenario's sample, before clipping."""
    from ..lengths import seed_scenario, uniform
    from ..trace import azure_conv

    if name in ("trace", "offline"):
        window = azure_conv().window(cfg.trace_n, seed=cfg.seed)
        raw = window.prompt_tokens
        if cfg.trace_scale != 1.0:
            raw = np.maximum(1, np.rint(raw * cfg.trace_scale)).astype(np.int64)
        how = (f"{cfg.trace_n} consecutive real requests ({window.name}) of the Azure LLM inference trace "
               f"2023 (conversation), in arrival order"
               + (f"; lengths scaled by {cfg.trace_scale:g}" if cfg.trace_scale != 1.0 else ""))
        return raw, how
    if name == "seed":
        raw = seed_scenario(cfg.seed_n, short=cfg.seed_short, long=cfg.seed_long, seed=cfg.seed)
        return raw, f"{cfg.seed_n} prompts: ~25% of ~{cfg.seed_long} tokens, the rest ~{cfg.seed_short} (shuffled)"
    if name == "uniform":
        raw = uniform(cfg.uniform_n, cfg.uniform_len, cfg.uniform_len, seed=cfg.seed)
        return raw, (f"control: {cfg.uniform_n} prompts of exactly {cfg.uniform_len} tokens (no padding to "
                     "remove: packing should gain nothing)")
    raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")


# ---------------------------------------------------------------------- layouts
def stream_layout(lengths: np.ndarray, groups: list) -> Layout:
    """One row per group of sequences, its width exactly their tokens: the 1-D streams of varlen."""
    parts = []
    for g in groups:
        g = np.asarray(list(g), dtype=np.int64)
        n = lengths[g]
        parts.append(Layout(np.zeros(len(g), dtype=np.int64), np.cumsum(n) - n, n, g, [int(n.sum())], len(lengths)))
    return stack_layouts(parts, [0] * len(parts), num_sequences=len(lengths), kind="packed", name="stream")


def window_layouts(lengths: np.ndarray, batch_size: int, pack_len: int) -> tuple[dict, dict]:
    """Layouts and forwards of a ``window`` scenario (see the module docstring)."""
    lengths = validate_lengths(lengths)
    wins = windows(len(lengths), batch_size)
    padded = pack(lengths, pack_len, "pad", batch_size=batch_size)
    sorted_ = pack(lengths, pack_len, "sorted", batch_size=batch_size)
    packed = pack_in_windows(lengths, pack_len, batch_size, "bfd")
    first_seq = packed.seg_seq[np.searchsorted(packed.seg_row, np.arange(packed.num_rows))]
    row_starts = np.searchsorted(first_seq // min(batch_size, len(lengths)), np.arange(len(wins) + 1))
    layouts = {"padded": padded, "sorted": sorted_, "packed": packed, "stream": stream_layout(lengths, wins)}
    forwards = {"padded": [list(b) for b in padded.batches()], "sorted": [list(b) for b in sorted_.batches()],
                "packed": [list(range(a, b)) for a, b in zip(row_starts[:-1], row_starts[1:])],
                "stream": [[i] for i in range(len(wins))]}
    return layouts, forwards


def offline_layouts(lengths: np.ndarray, batch_size: int, pack_len: int) -> tuple[dict, dict]:
    """Layouts and forwards of the ``offline`` scenario: whole-sample BFD rows, one per forward."""
    lengths = validate_lengths(lengths)
    layouts, forwards = window_layouts(lengths, batch_size, pack_len)
    packed = pack(lengths, pack_len, "bfd")
    groups = [packed.row_segments(r)[:, 0] for r in range(packed.num_rows)]
    layouts.update(packed=packed, stream=stream_layout(lengths, groups))
    forwards.update(packed=[[r] for r in range(packed.num_rows)], stream=[[r] for r in range(packed.num_rows)])
    return layouts, forwards


def build(name: str, cfg: BenchConfig) -> Scenario:
    """The scenario ``name`` under ``cfg``: its sample (clipped to the pack length) and layouts."""
    raw, how = scenario_lengths(name, cfg)
    lengths = np.minimum(raw, cfg.pack_len)
    kind = KINDS[name]
    make = window_layouts if kind == "window" else offline_layouts
    layouts, forwards = make(lengths, cfg.batch_size, cfg.pack_len)
    info = {"name": name, "kind": kind, "description": how, "num_sequences": int(len(lengths)),
            "real_tokens": int(lengths.sum()), "batch_size": cfg.batch_size, "pack_len": cfg.pack_len,
            "clipped_sequences": int((raw > cfg.pack_len).sum()), "clipped_tokens": int((raw - lengths).sum()),
            "lengths": {"min": int(lengths.min()), "median": float(np.median(lengths)),
                        "mean": float(lengths.mean()), "max": int(lengths.max())}}
    return Scenario(name, kind, how, lengths, layouts, forwards, info)


# ---------------------------------------------------------------------- pricing
def price(scenario: Scenario, method: str, shape, tile=None) -> dict:
    """What ``method`` processes in ``scenario`` and what the FLOP model charges for it (JSON-ready).

    Keys: ``layout``, ``execution``, ``forwards``, ``requests_per_forward``, ``real_tokens``,
    ``processed_tokens`` (slots the kernels run over, pads and filler included), ``pad_tokens``,
    ``flops_model`` (lm_head on each prompt's last token) and, with ``tile``, for the causal
    kernels (``padded``, ``padded-sorted``, ``varlen``, ``flash``) ``flops_model_tiled``:
    attention in whole ``tile`` blocks, as a tiled flash kernel computes it.
    """
    b = BACKENDS[method]
    lay = scenario.layouts[b.layout]
    fwd = scenario.forwards[b.layout]
    if b.padding_mask:
        flops = masked_padded_flops(lay, fwd, shape)
    else:
        flops = layout_flops(lay, shape, b.execution, "last")
    processed = lay.real_tokens if b.execution == "varlen" else lay.slots
    out = {"layout": b.layout, "execution": b.execution, "forwards": len(fwd),
           "requests_per_forward": lay.num_segments / len(fwd), "real_tokens": lay.real_tokens,
           "processed_tokens": int(processed), "pad_tokens": int(processed - lay.real_tokens),
           "flops_model": flops.as_dict()}
    if tile is not None and b.execution in ("varlen", "causal") and not b.padding_mask:
        out["flops_model_tiled"] = layout_flops(lay, shape, b.execution, "last", tile=tuple(tile)).as_dict()
    return out


def masked_padded_flops(layout: Layout, forwards: list, shape) -> Flops:
    """A padded layout run with its padding mask, batch by batch, as transformers runs it.

    A batch with pads gets its (B, 1, W, W) mask: the full square of every row. A batch with
    **no** pads (every row as long as the longest) has an all-ones mask, which transformers
    drops (``masking_utils`` skips a mask that masks nothing), so SDPA runs ``is_causal``: the
    triangle. The uniform control is such a case.
    """
    total = Flops(0, 0)
    full = layout.row_real_tokens() == layout.widths
    for rows in forwards:
        execution = "causal" if full[rows].all() else "masked"
        total = total + layout_flops(layout, shape, execution, "last", rows=rows)
    return total


def ideal_speedups(prices: dict) -> dict:
    """``{method: ideal speed-up over padded}`` from :func:`price` results.

    Where a price has ``flops_model_tiled`` (the causal kernels, in whole tiles) it is used,
    for ``padded`` as for the method: tiles on both sides of the ratio, or on neither.
    """
    def flops(p):
        f = p.get("flops_model_tiled") or p["flops_model"]
        return Flops(f["linear"], f["attention"])

    base = flops(prices["padded"])
    return {m: ideal_speedup(base, flops(p)) for m, p in prices.items()}


def plan(cfg: BenchConfig | None = None, shape=None) -> list[dict]:
    """What a run of ``cfg`` will measure, computed without running it: one dict per scenario.

    Each is the scenario's ``info`` plus ``useful`` (the FLOPs the prompts alone need),
    ``methods`` (:func:`price` of every method) and ``ideal_speedup`` (over ``padded``, exact
    triangles) -- the numbers a run's results repeat beside the measured ones. ``shape``: the
    model's :class:`~packviz.shapes.ModelShape` (default: ``cfg.model`` by name).
    """
    from ..shapes import get_shape

    cfg = BenchConfig() if cfg is None else instance_of("cfg", cfg, BenchConfig, "a BenchConfig (packviz.bench.config)")
    shape = get_shape(shape if shape is not None else cfg.model)
    out = []
    for name in cfg.scenarios:
        sc = build(name, cfg)
        prices = {m: price(sc, m, shape) for m in BACKENDS}
        info = dict(sc.info, model=shape.name, useful=useful_flops(sc.lengths, shape, "last").as_dict(),
                    methods=prices, ideal_speedup=ideal_speedups(prices))
        out.append(info)
    return out


def format_plan(scenarios: list[dict]) -> str:
    """:func:`plan` as a text table: per scenario and method, forwards, slots, ideal speed-up over padded."""
    lines = [f"{'scenario':<9} {'method':<14} {'forwards':>8} {'req/fwd':>8} {'slots':>9} {'util':>5} "
             f"{'ideal':>7}"]
    for s in scenarios:
        for m, p in s["methods"].items():
            util = p["real_tokens"] / p["processed_tokens"]
            lines.append(f"{s['name']:<9} {m:<14} {p['forwards']:>8,} {p['requests_per_forward']:>8.1f} "
                         f"{p['processed_tokens']:>9,} {util:>5.0%} {s['ideal_speedup'][m]:>6.2f}x")
    return "\n".join(lines)


# ---------------------------------------------------------------------- a recorded run's windows
def recorded_windows(res: dict, methods=("dense", "flex", "varlen")) -> dict:
    """The trace windows a recorded run timed, priced one by one, beside what the run recorded.

    A run's ``trace`` scenario times its windows together and records one ideal speed-up for all
    of them; here its sample is rebuilt from the run's own configuration (model, B, C, seed,
    tile) and each window priced alone (:func:`packviz.trace_numbers.window_prefill_flops`), to be
    set against the ideal over every window of the trace (:func:`packviz.trace_numbers.prefill_speedups`).
    Returns ``{"sample": the trace slice, "windows": [[start, stop], ...] (indices in the trace),
    "ideal": {method: [per window]}, "ideal_pooled": {method: Σ padded ÷ Σ method, recomputed},
    "recorded_ideal", "measured_speedup", "measured_over_ideal": {method: as recorded}}``:
    ``ideal_pooled`` equals ``recorded_ideal`` when the run was priced as the suite prices it now.
    """
    res = mapping("res", res, what="a benchmark results dict (packviz.bench.results.load_results gives one)")
    methods = [one_of("method", m, BACKENDS) for m in items("methods", methods, "a list of method names")]
    from ..trace_numbers import window_prefill_flops

    sc = next((s for s in res.get("scenarios", []) if s["name"] == "trace"), None)
    if sc is None:
        raise ValueError("the run has no 'trace' scenario; choose a run of BenchConfig(scenarios=(..., 'trace'))")
    if (res.get("config") or {}).get("checkpoint"):
        raise ValueError("the run used a checkpoint; recorded_windows rebuilds a named model shape only")
    known = {f.name for f in dataclasses.fields(BenchConfig)}
    cfg = BenchConfig(**{k: v for k, v in res["config"].items() if k in known and k not in ("tile", "scenarios")},
                      tile=tuple(res["config"]["tile"]) if res["config"].get("tile") else None)
    raw, how = scenario_lengths("trace", cfg)
    f = window_prefill_flops(np.minimum(raw, cfg.pack_len), cfg.batch_size, cfg.pack_len, cfg.model, cfg.tile, methods)
    found = re.search(r"\[(\d+):(\d+)\]", how)
    start = int(found.group(1)) if found else 0
    recorded = sc["methods"]
    return {"sample": sc["info"]["description"],
            "windows": [[start + i * cfg.batch_size, start + (i + 1) * cfg.batch_size] for i in range(len(f["padded"]))],
            "ideal": {m: (f["padded"] / f[m]).tolist() for m in methods},
            "ideal_pooled": {m: float(f["padded"].sum() / f[m].sum()) for m in methods},
            "recorded_ideal": {m: recorded.get(m, {}).get("ideal_speedup_tiled" if cfg.tile else "ideal_speedup")
                               for m in methods},
            "measured_speedup": {m: recorded.get(m, {}).get("measured_speedup") for m in methods},
            "measured_over_ideal": {m: recorded.get(m, {}).get("measured_over_ideal") for m in methods}}
