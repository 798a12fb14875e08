"""Step costs fitted to timed steps, and the recorded GPU runs. numpy and json only.

``scripts/gpu_serve.sh`` times single steps of Llama-3-8B on packviz's engine
(:mod:`packviz.serving.stepcost`) and writes ``calibration.json`` (schema
:data:`CALIBRATION_SCHEMA`, ``"engine": "packviz"``): one point per step kind and size,

    {"kind": "prefill", "batch": b, "tokens": n, "context": 0, "seconds": t}   b rows of n new tokens
    {"kind": "padded_prefill", ...}                          b rows of width n, half of them half padded
    {"kind": "decode",  "batch": b, "tokens": 1, "context": c, "seconds": t}   b rows, one token over c cached
    {"kind": "mixed",   "batch": b, "tokens": n, "context": c, "seconds": t}   b decodes and one n-token prefill

each with ``gpu_seconds`` (CUDA events around the forward) where a GPU ran it; the run's
figures go to ``engine.json`` (:data:`ENGINE_RUN_SCHEMA`). Older files without ``"engine"``
timed transformers' forward (a ``DynamicCache``), and ``serve.json`` (:data:`SERVE_SCHEMA`)
holds transformers' engines beside the simulator's prediction: kept as the host-bound
comparison. Recorded runs live under ``data/results/<date>-<gpu>/``;
:func:`latest_recorded` finds the newest of a schema (by the run's own ``started`` time).

:func:`fit_roofline` fits the roofline's numbers to the points -- achievable FLOP/s,
achievable bytes/s, a per-step overhead and one for decode-only steps (graphed on a GPU) --
by least squares on *relative* error, each point charged to the bound (compute or memory) it
falls under, iterated until that assignment is stable. Each point is priced as the plan it
ran (:func:`point_plan`, :func:`~packviz.serving.costs.plan_work`): a padded prefill as the
causal triangle per row on packviz's engine (right padding, no mask), as the masked W²
square on transformers' (``generate`` builds the mask).
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from .. import datafiles
from ..checks import finite_floats, is_integer, show
from ..shapes import get_shape
from .costs import GPUS, CostModel, Pricer, Work, plan_work, preset_cost_model
from .scheduler import Piece, StepPlan

CALIBRATION_SCHEMA = "packviz.serve-calibration/1"
SERVE_SCHEMA = "packviz.serve/1"
"""Recorded runs of transformers' engines (``generate`` and continuous batching): the host-bound comparison."""
ENGINE_RUN_SCHEMA = "packviz.engine-run/1"
"""Recorded runs of packviz's engine (``scripts/gpu_serve.sh``: ceilings, step grid, serving, prefill controls)."""
RESULTS_DIR = datafiles.RESULTS_DIR
"""Recorded GPU runs (top-level ``data/results/<date>-<gpu>/``; in a wheel, ``packviz/data/results/``)."""


# ---------------------------------------------------------------------- recorded runs
def _read(path: pathlib.Path, schema: str) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("schema") == schema else None


def find_recorded(schema: str, directory=None) -> list[pathlib.Path]:
    """Files of ``schema`` under ``directory`` (default :data:`RESULTS_DIR`), oldest first by ``started``."""
    directory = pathlib.Path(RESULTS_DIR if directory is None else directory)
    if not directory.is_dir():
        return []
    found = [(str(d.get("started") or ""), str(p), p) for p in sorted(directory.rglob("*.json"))
             if (d := _read(p, schema)) is not None]
    return [p for *_, p in sorted(found)]


def latest_recorded(schema: str, directory=None) -> dict | None:
    """The newest recorded run of ``schema`` (its dict, with ``"path"`` added), or ``None``."""
    found = find_recorded(schema, directory)
    if not found:
        return None
    data = _read(found[-1], schema)
    data["path"] = str(found[-1])
    return data


def load_calibration(path=None) -> dict:
    """A calibration: the file at ``path``, or the newest recorded one; ``ValueError`` naming the way out."""
    if path is None:
        data = latest_recorded(CALIBRATION_SCHEMA)
        if data is None:
            raise ValueError(f"no recorded GPU calibration (schema {CALIBRATION_SCHEMA}) under {RESULTS_DIR}; "
                             "run scripts/gpu_serve.sh on a GPU, or choose --gpu h100, h200 or a100")
        return data
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"calibration file not found: {path}")
    data = read_json(path, f"a packviz calibration (schema {CALIBRATION_SCHEMA})")
    if not isinstance(data, dict) or data.get("schema") != CALIBRATION_SCHEMA:
        raise ValueError(f"{path} is not a packviz calibration (schema {CALIBRATION_SCHEMA})")
    data["path"] = str(path)
    return check_calibration(data)


def read_json(path: pathlib.Path, what: str):
    """The JSON value in the file at ``path``; ``ValueError`` naming the file, and the line and column the
    parser stopped at, when it is not UTF-8 or not JSON (``what``: what the file should have been)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start}); expected {what}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); "
                         f"expected {what}") from None


MAX_POINT_BATCH = 2**16
"""The largest ``batch`` of a calibration point (65,536 rows; a recorded grid goes up to 256)."""
MAX_POINT_TOKENS = 2**40
"""The largest ``tokens`` or ``context`` of a calibration point."""
MIN_STEP_S, MAX_STEP_S = 1e-6, 1e3
"""The range of a point's ``seconds`` and ``gpu_seconds``: one forward step takes more than a microsecond
(a kernel launch) and less than a quarter of an hour; beyond, the number is a typo or another unit."""


def check_calibration(cal: dict) -> dict:
    """``cal`` if every field a fit reads is usable, else ``ValueError`` naming the file and the field.

    ``engine`` and ``model``: strings (a model :func:`~packviz.shapes.get_shape` knows); ``device``: an
    object with a string ``name`` and a positive ``memory_bytes`` (both optional); ``points``: a list of
    at least 3 objects, each checked by :func:`check_point`.

    >>> check_calibration({"path": "c.json", "device": "H100", "points": []})
    Traceback (most recent call last):
    ...
    ValueError: c.json: device is 'H100'; expected an object such as {"name": "NVIDIA H100 80GB HBM3"}
    """
    where = cal.get("path", "calibration")
    for key in ("engine", "model"):
        if key in cal and not isinstance(cal[key], str):
            raise ValueError(f"{where}: {key} is {show(cal[key])}; expected a string")
    if "model" in cal:
        try:
            get_shape(cal["model"])
        except ValueError as e:
            raise ValueError(f"{where}: model: {e}") from None
    device = cal.get("device")
    if device is not None:
        if not isinstance(device, dict):
            raise ValueError(f'{where}: device is {show(device)}; expected an object such as '
                             '{"name": "NVIDIA H100 80GB HBM3"}')
        if "name" in device and not isinstance(device["name"], str):
            raise ValueError(f"{where}: device.name is {show(device['name'])}; expected a string")
        if device.get("memory_bytes") is not None:
            number(f"{where}: device.memory_bytes", device["memory_bytes"], "bytes")
    points = cal.get("points")
    if not isinstance(points, list) or len(points) < 3:
        raise ValueError(f"{where}: points is {show(points)}; expected a list of at least 3 timed steps, e.g. "
                         '[{"kind": "decode", "batch": 8, "tokens": 1, "context": 1024, "seconds": 0.012}, ...]')
    for i, point in enumerate(points):
        check_point(point, f"{where}: points[{i}]")
    return cal


def number(where: str, value, unit: str) -> float:
    """``value`` as a finite float > 0, else ``ValueError`` naming ``where`` (the file and the field)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{where} is {show(value)}; expected a finite number > 0 ({unit})")
    return float(value)


def check_point(point, where: str = "calibration point") -> dict:
    """One calibration point: ``kind`` (:data:`KINDS`), ``batch`` (1 .. :data:`MAX_POINT_BATCH`), ``tokens``
    (>= 1) and ``context`` (>= 0, optional) integers, ``seconds`` and the optional ``gpu_seconds`` numbers
    from :data:`MIN_STEP_S` to :data:`MAX_STEP_S`; else ``ValueError`` naming ``where`` and the field.

    >>> check_point({"kind": "decode", "batch": 8, "tokens": 1, "seconds": 1e-300}, "c.json: points[3]")
    Traceback (most recent call last):
    ...
    ValueError: c.json: points[3].seconds is 1e-300; expected seconds of one forward step, between 1e-06 and 1000
    """
    if not isinstance(point, dict):
        raise ValueError(f"{where} is {show(point)}; expected an object with kind, batch, tokens and seconds")
    if point.get("kind") not in KINDS:
        raise ValueError(f"{where}.kind is {show(point.get('kind'))}; expected one of {', '.join(KINDS)}")
    for key, low, high, need in (("batch", 1, MAX_POINT_BATCH, True), ("tokens", 1, MAX_POINT_TOKENS, True),
                                 ("context", 0, MAX_POINT_TOKENS, False)):
        if key not in point and not need:
            continue
        if key not in point:
            raise ValueError(f"{where} has no {key!r}; every point needs kind, batch, tokens and seconds")
        v = point[key]
        if not is_integer(v) or not low <= v <= high:
            raise ValueError(f"{where}.{key} is {show(v)}; expected an integer from {low} to {high:,}")
    for key in ("seconds", "gpu_seconds"):
        v = point.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                              or not MIN_STEP_S <= v <= MAX_STEP_S):
            raise ValueError(f"{where}.{key} is {show(v)}; expected seconds of one forward step, between "
                             f"{MIN_STEP_S:g} and {MAX_STEP_S:g}")
    return point


# ---------------------------------------------------------------------- fitting
KINDS = ("prefill", "padded_prefill", "decode", "mixed")
"""Calibration point kinds (module docstring); ``mixed``: ``batch`` decodes over ``context`` beside one
prefill of ``tokens`` new tokens, the step chunked prefill runs."""


def point_plan(point: dict) -> StepPlan:
    """The step a calibration point times, as a scheduler plan (requests numbered from 0).

    >>> point_plan({"kind": "padded_prefill", "batch": 2, "tokens": 5}).describe()
    'prefill r0[0:2]+3 pad r1[0:5]'
    >>> point_plan({"kind": "mixed", "batch": 2, "tokens": 4, "context": 9}).describe()
    'decode r0 r1 | prefill r2[0:4]'
    """
    kind = check_point(point)["kind"]
    b, n, c = int(point["batch"]), int(point["tokens"]), int(point.get("context", 0))
    if kind == "prefill":
        return StepPlan(0, prefills=tuple(Piece(r, 0, n) for r in range(b)))
    if kind == "padded_prefill":             # the first half of the rows hold n // 2 real tokens, padded to n
        return StepPlan(0, prefills=tuple(Piece(r, 0, n // 2 if r < b // 2 else n, n - n // 2 if r < b // 2 else 0)
                                          for r in range(b)))
    decodes = StepPlan(0, decodes=tuple(range(b)), contexts=(c,) * b)
    if kind == "decode":
        return decodes
    return StepPlan(0, decodes=decodes.decodes, contexts=decodes.contexts, prefills=(Piece(b, 0, n),))


def padded_pricing(cal: dict) -> str:
    """How a calibration's padded prefills ran: causal (packviz's engine pads on the right, no mask)
    or masked (transformers' ``generate`` builds a (B, 1, W, W) mask)."""
    return "causal" if cal.get("engine") == "packviz" else "masked"


def point_work(point: dict, padded_attention: str = "masked") -> Work:
    """The :class:`Work` of one calibration point: :func:`plan_work` of :func:`point_plan`."""
    return plan_work(point_plan(point), padded_attention)


def fit_roofline(flops, nbytes, seconds, start: CostModel, decode=None, iterations: int = 20) -> dict:
    """Fit ``seconds ≈ max(flops / R, bytes / BW) + o`` to (M,) arrays; ``start`` gives the first assignment.

    ``decode``: (M,) bool, the decode-only points; when both kinds are present each gets its own
    overhead (``decode_overhead_s`` and ``overhead_s``: graphed decode steps pay far less host time
    than eager ones). Returns ``{"flop_rate", "byte_rate", "overhead_s", "decode_overhead_s",
    "rel_rms", "rel_max", "compute_bound", "points", "notes"}``. A rate no point is bound by
    cannot be fitted: it keeps ``start``'s value (said in ``notes``); negative overheads are refitted as 0.
    """
    f, b, t = fit_inputs(flops, nbytes, seconds)
    dec = np.zeros(len(t), dtype=bool) if decode is None else np.asarray(decode, dtype=bool)
    groups = [g for g in (~dec, dec) if g.any()]
    compute = f / start.flop_rate >= b / start.byte_rate
    x = np.array([start.overhead_s] * len(groups) + [1 / start.flop_rate, 1 / start.byte_rate])
    for _ in range(iterations):
        x = fit_once(f, b, t, compute, x, groups)
        new = f * x[-2] >= b * x[-1]
        if (new == compute).all():
            break
        compute = new
    overhead = sum(o * g for o, g in zip(x, groups))
    rel = (np.maximum(f * x[-2], b * x[-1]) + overhead) / t - 1
    notes = [f"{name} taken from {start.name}: no point is {bound}-bound"
             for name, bound, cls in (("flop_rate", "compute", compute), ("byte_rate", "memory", ~compute))
             if not cls.any()]
    return {"flop_rate": float(1 / x[-2]), "byte_rate": float(1 / x[-1]), "overhead_s": float(x[0]),
            "decode_overhead_s": float(x[len(groups) - 1]), "rel_rms": float(np.sqrt(np.mean(rel ** 2))),
            "rel_max": float(np.abs(rel).max()), "compute_bound": int(compute.sum()), "points": len(t),
            "notes": notes}


def fit_inputs(flops, nbytes, seconds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`fit_roofline`'s (M,) arrays as float64, checked before any solve: finite, one length, FLOPs
    and bytes >= 0, seconds > 0 and not so small that FLOPs per second overflow; else one ``ValueError``.

    >>> fit_inputs([1e12], [1e9], [1e-300])
    Traceback (most recent call last):
    ...
    ValueError: seconds as small as 1e-300 make FLOPs per second overflow; give each step's time in seconds
    """
    f, b, t = (finite_floats(name, x, what) for name, x, what in
               (("flops", flops, "FLOP counts"), ("nbytes", nbytes, "byte counts"), ("seconds", seconds, "seconds")))
    if not (f.ndim == b.ndim == t.ndim == 1 and len(f) == len(b) == len(t) >= 1):
        raise ValueError(f"flops, nbytes and seconds must be 1-D of one length (M >= 1), got shapes "
                         f"{f.shape}, {b.shape}, {t.shape}")
    if (f < 0).any() or (b < 0).any() or (t <= 0).any():
        raise ValueError("flops and nbytes must be >= 0 and seconds > 0")
    with np.errstate(all="ignore"):
        per_s = np.concatenate([f / t, b / t, 1 / t])
    if not np.isfinite(per_s).all():
        raise ValueError(f"seconds as small as {t.min():g} make FLOPs per second overflow; "
                         "give each step's time in seconds")
    return f, b, t


def fit_once(f, b, t, compute, prev, groups) -> np.ndarray:
    """One least-squares solve of x = [o_1 .. o_k, 1/R, 1/BW] (an overhead per group of points) for a
    fixed compute/memory assignment.

    Relative error (rows divided by t). Unknowns no point informs keep ``prev``; if an overhead
    comes out negative, the fit is redone through the origin (every o = 0).
    """
    k = len(groups)
    cols = [g.astype(np.float64) for g in groups] + [np.where(compute, f, 0.0), np.where(compute, 0.0, b)]
    rates = [i for i in (k, k + 1) if cols[i].any()]
    x = prev.copy()
    for unknowns in (list(range(k)) + rates, rates):
        x = prev.copy()
        x[:k] = np.where([i in unknowns for i in range(k)], x[:k], 0.0)
        with np.errstate(all="ignore"):
            rhs = t - sum(x[i] * cols[i] for i in range(k + 2) if i not in unknowns)
            a, y = np.column_stack([cols[i] for i in unknowns]) / t[:, None], rhs / t
        if not (np.isfinite(a).all() and np.isfinite(y).all()):   # LAPACK would print to the C stdout
            raise ValueError("the roofline's least-squares system is not finite: the step times span too "
                             "many orders of magnitude to fit")
        try:
            x[unknowns] = np.linalg.lstsq(a, y, rcond=None)[0]
        except np.linalg.LinAlgError as e:
            raise ValueError(f"the roofline's least-squares fit failed ({e}): the step times fit no roofline") from None
        if (x[:k] >= 0).all() and (x[k:] > 0).all():
            return x
    x[:k] = np.maximum(x[:k], 0.0)
    x[k:] = np.where(x[k:] > 0, x[k:], prev[k:])
    return x


def fit_calibration(cal: dict, time_key: str = "seconds") -> dict:
    """:func:`fit_roofline` of a calibration's points for its model (``cal["model"]``), decode points
    with an overhead of their own.

    ``time_key="seconds"``: the wall time of each step (what a server waits); ``"gpu_seconds"``:
    the kernels' own time (what the GPU works), where every point has one.
    """
    where = cal.get("path", "calibration")
    points = check_calibration(cal)["points"]
    missing = next((i for i, p in enumerate(points) if p.get(time_key) is None), None)
    if missing is not None:
        raise ValueError(f"{where}: points[{missing}] has no {time_key!r}; not every point has {time_key!r}")
    pricer = Pricer(get_shape(cal.get("model", "llama-3-8b")), preset_cost_model(gpu_key(cal) or "h100"))
    work = [point_work(p, padded_pricing(cal)) for p in points]
    try:
        fit = fit_roofline([pricer.flops(w) for w in work], [pricer.bytes(w) for w in work],
                           [float(p[time_key]) for p in points], pricer.cost, [p["kind"] == "decode" for p in points])
    except ValueError as e:
        raise ValueError(f"{where}: the points' {time_key}: {e}") from None
    check_fit(fit, where, time_key)
    return fit


FITTED = (("overhead_s", "overhead", "s"), ("decode_overhead_s", "decode overhead", "s"),
          ("flop_rate", "FLOP rate", "FLOP/s"), ("byte_rate", "byte rate", "B/s"))
"""The coefficients of a fitted roofline :func:`check_fit` checks: key, name, unit."""
MAX_FIT_RATES = {"flop_rate": 10 * max(g.peak_flops for g in GPUS.values()),
                 "byte_rate": 10 * max(g.peak_bytes_per_s for g in GPUS.values())}
"""Fitted rates above ten times the fastest preset's datasheet peak: no GPU's step times fit them."""


def check_fit(fit: dict, where: str, time_key: str = "seconds") -> dict:
    """``fit`` (:func:`fit_roofline`'s) if every coefficient is finite, the overheads >= 0 and the rates > 0
    and plausible (:data:`MAX_FIT_RATES`); else one ``ValueError`` naming ``where`` (the file).

    >>> check_fit({"overhead_s": -0.186, "decode_overhead_s": 0.0, "flop_rate": 1e14, "byte_rate": 1e12}, "c.json")
    Traceback (most recent call last):
    ...
    ValueError: c.json: the fitted roofline has a negative overhead (-0.186 s): the points do not look like one GPU's step times; check their seconds
    """
    why = f"the points do not look like one GPU's step times; check their {time_key}"
    for key, name, unit in FITTED:
        v = float(fit[key])
        if not np.isfinite(v) or v < 0 or (unit != "s" and v == 0):
            what = "a non-finite" if not np.isfinite(v) else "a negative" if v < 0 else "a zero"
            raise ValueError(f"{where}: the fitted roofline has {what} {name} ({v:.3g} {unit}): {why}")
        if v > MAX_FIT_RATES.get(key, np.inf):
            raise ValueError(f"{where}: the fitted roofline has a {name} of {v:.3g} {unit}, more than ten times any "
                             f"GPU's peak ({MAX_FIT_RATES[key]:.3g}): the points' {time_key} are too short for the "
                             f"steps they time; check their {time_key}")
    return fit


def device_fit(cal: dict) -> dict | None:
    """The roofline fitted to the kernels' own time (:func:`fit_calibration` on ``gpu_seconds``), or ``None``
    when the points have none (a CPU run, a profiler that could not run)."""
    points = cal.get("points") or []
    if len(points) < 3 or any(p.get("gpu_seconds") is None for p in points):
        return None
    return fit_calibration(cal, "gpu_seconds")


def gpu_key(cal: dict) -> str | None:
    """The preset matching the recorded device name, or None.

    >>> gpu_key({"device": {"name": "NVIDIA H100 80GB HBM3"}}), gpu_key({"device": {"name": "Tesla T4"}})
    ('h100', None)
    """
    device = cal.get("device") if isinstance(cal, dict) else None
    name = str(device.get("name", "") if isinstance(device, dict) else "").lower()
    return next((k for k in GPUS if k in name), None)


def cost_model(gpu="h100", overhead_s: float | None = None) -> CostModel:
    """A :class:`CostModel` from a preset name, ``"calibrated"``, a calibration JSON path, or a CostModel.

    ``"calibrated"``: costs fitted to the newest calibration recorded under
    ``data/results/`` (:func:`calibrated_cost_model`); an error names the way out when
    none is recorded. Never chosen automatically: a preset gives the same numbers everywhere.

    >>> cost_model("h100").name, cost_model(cost_model("a100")).name
    ('h100', 'a100')
    """
    if isinstance(gpu, CostModel):
        return gpu
    text = str(gpu).strip()
    if text.lower() == "calibrated" or text.endswith(".json"):
        return calibrated_cost_model(None if text.lower() == "calibrated" else text)
    return preset_cost_model(text, overhead_s)


COSTS = ("auto", "split", "wall", "device")
"""How a calibration becomes step costs (:func:`calibrated_cost_model`)."""


def host_gap(cal: dict, decode: bool = True) -> float | None:
    """The host's time per step: the median, over decode points (``decode=False``: the other points),
    of wall time minus the kernels' time.

    An eager engine (transformers' ``generate``, its continuous batching without CUDA graphs)
    runs Python and launches every kernel between two steps; a small decode step waits for the
    host, not the GPU. ``None`` when no such point has a kernel time.
    """
    gaps = [p["seconds"] - p["gpu_seconds"] for p in cal.get("points") or []
            if (p.get("kind") == "decode") == decode and p.get("gpu_seconds") is not None]
    return float(np.median(gaps)) if gaps else None


def calibrated_cost_model(path=None, costs: str = "auto") -> CostModel:
    """A :class:`CostModel` fitted to a calibration (``path``, or the newest recorded one).

    ``costs`` (one of :data:`COSTS`):

    * ``"split"``: the rates fitted to the kernels' own time (``gpu_seconds``: the roofline of
      the GPU's work) plus, as the per-step overhead, the host's time per step (:func:`host_gap`);
    * ``"wall"``: the roofline and overhead fitted to the steps' wall time in one go (the only
      choice when the points have no kernel times);
    * ``"device"``: the kernels' roofline with no host overhead: what an engine whose steps
      follow each other without host gaps (e.g. replayed from CUDA graphs) would wait;
    * ``"auto"``: ``"split"`` when the points have kernel times, else ``"wall"``.

    Peak FLOP/s (for the useful-FLOP share) and memory come from the matching preset, or from
    the recorded device when none matches.
    """
    from ..checks import one_of

    cal = load_calibration(path)
    costs = one_of("costs", costs, COSTS)
    if costs == "auto":
        costs = "split" if device_fit(cal) is not None else "wall"
    fit = fit_calibration(cal, "seconds" if costs == "wall" else "gpu_seconds")
    if costs == "split":             # the host's gaps, measured; a kind without points takes the other's
        gaps = host_gap(cal, decode=False), host_gap(cal, decode=True)
        overhead, decode = (gaps[0] if gaps[0] is not None else gaps[1]), (gaps[1] if gaps[1] is not None else gaps[0])
        if min(overhead, decode) < 0:
            raise ValueError(f"{cal['path']}: the host's time per step (seconds - gpu_seconds, the median) is negative "
                             f"({min(overhead, decode):.3g} s): the steps' wall time is below their kernels' time, so the "
                             "points do not look like one GPU's step times; check their seconds and gpu_seconds")
    else:
        overhead, decode = fit["overhead_s"], fit["decode_overhead_s"]
    key = gpu_key(cal)
    device = cal.get("device") or {}
    peak = GPUS[key].peak_flops if key else fit["flop_rate"]
    memory = float(device.get("memory_bytes") or (GPUS[key].memory_bytes if key else GPUS["h100"].memory_bytes))
    note = (f"{costs} costs from {cal['path']} ({cal.get('engine', 'transformers')} engine, {device.get('name', '?')}, "
            f"{fit['points']} points; roofline relative RMS error {fit['rel_rms']:.1%}; overhead "
            f"{overhead * 1e3:.2f} ms per step, {decode * 1e3:.2f} ms per decode step)")
    name = "calibrated" if costs in ("wall", "split") else "calibrated-device"
    return CostModel(name, fit["flop_rate"], fit["byte_rate"], overhead, peak, memory, note, decode,
                     GPUS[key].peak_bytes_per_s if key else 0.0)


SERVED_AS = {"static": ("static", {"padded_attention": "masked"}),
             "continuous": ("chunked", {"ragged_attention": "dense"}),
             "continuous-graphs": ("chunked", {"ragged_attention": "dense"})}
"""How the simulator replays each engine of ``scripts/gpu_serve.py``: static ``generate`` pads
prompts under its (B, 1, W, W) mask; transformers' continuous batching (``paged|sdpa``, no
flash-attn) runs each step's ragged tokens with dense Σq × Σk attention under a token budget."""


def served_requests(res: dict):
    """The requests a recorded ``serve.json`` served: its trace window, prompts ÷ ``prompt_scale``,
    outputs capped, all arriving at t = 0 (a :class:`~packviz.trace.Trace` of N requests)."""
    from ..trace import Trace, azure_conv

    cfg = res["settings"]
    w = azure_conv().window(int(cfg["requests"]), seed=cfg["window_seed"])
    p = -(-w.prompt_tokens // int(cfg["prompt_scale"]))
    g = np.minimum(w.generated_tokens, int(cfg["output_cap"]))
    return Trace(np.zeros(len(p)), p, g, name=f"{w.name} (outputs capped at {cfg['output_cap']})")


def predict_serve(res: dict, calibration, costs: str = "auto") -> dict:
    """The simulator's replay of a recorded serving run's engines, with costs from ``calibration``.

    ``res``: a ``serve.json`` (its settings and, for the page size, its engines' config).
    ``costs``: :func:`calibrated_cost_model`'s choice for the eager engines; the CUDA-graph
    engine is always priced ``"device"`` (no host gap between steps). Returns ``{engine:
    summary}`` for every engine in :data:`SERVED_AS` (the CUDA-graph one only when the
    calibration has kernel times).
    """
    from .metrics import summary
    from .simulator import simulate

    cfg, served = res["settings"], served_requests(res)
    cb = ((res.get("engines") or {}).get("continuous") or {}).get("config") or {}
    page = int(cb.get("page_size") or cb.get("block_size") or cfg["page_size"])
    cal = load_calibration(calibration)
    out = {}
    for engine, (policy, kw) in SERVED_AS.items():
        graphs = engine == "continuous-graphs"
        if graphs and device_fit(cal) is None:
            continue
        cost = calibrated_cost_model(calibration, "device" if graphs else costs)
        extra = {"token_budget": cfg["token_budget"], "page_size": page} if policy == "chunked" else {}
        out[engine] = summary(simulate(served, policy, model=cfg["model"], gpu=cost, arrivals="offline",
                                       max_batch=cfg["batch_size"], kv_budget_tokens=10 ** 9, **kw, **extra))
    return out


def format_serve_result(res: dict) -> str:
    """A recorded ``serve.json`` as text: where it ran, each engine measured beside the simulator's prediction."""
    dev, ver, win = res.get("device") or {}, res.get("versions") or {}, res.get("window") or {}
    fit = (res.get("steps") or {}).get("calibration", {}).get("fit") or {}
    lines = [f"device:   {dev.get('name', '?')}; " + ", ".join(f"{k} {v}" for k, v in ver.items()),
             f"run:      {res.get('started', '?')}, commit {str(res.get('git_commit') or 'unknown')[:12]}, "
             f"status {res.get('status', '?')}",
             f"requests: {win.get('requests', '?')} from {win.get('trace', '?')}, {win.get('prompt_tokens', 0):,} prompt "
             f"tokens, outputs capped at {win.get('output_cap', '?')} ({win.get('output_tokens', 0):,} tokens), "
             "all at t = 0"]
    if fit:
        lines.append(f"fitted:   {fit['flop_rate'] / 1e12:,.0f} TFLOP/s, {fit['byte_rate'] / 1e12:.2f} TB/s, "
                     f"{fit['overhead_s'] * 1e3:.1f} ms per step ({fit['points']} points, "
                     f"relative RMS error {fit['rel_rms']:.1%})")
    lines.append(f"{'engine':<17} {'status':<10} {'seconds':>8} {'measured tok/s':>15} {'predicted tok/s':>16} "
                 f"{'pred/meas':>10}")
    pred = res.get("predicted") or {}
    for name, e in (res.get("engines") or {}).items():
        p = (pred.get(name) or {}).get("output_tokens_per_s")
        ok = e.get("status") == "ok"
        lines.append(f"{name:<17} {str(e.get('status', '?')).split(':')[0]:<10} "
                     + (f"{e['seconds']:>8.1f} {e['output_tokens_per_s']:>15,.0f} " if ok else f"{'':>8} {'':>15} ")
                     + (f"{p:>16,.0f}" if p else f"{'':>16}")
                     + (f" {p / e['output_tokens_per_s']:>9.2f}x" if ok and p else ""))
    cmp = res.get("comparison")
    if cmp:
        lines.append(f"static / continuous: measured {cmp['measured_ratio']:.2f}, predicted {cmp['predicted_ratio']:.2f} "
                     f"(predicted/measured {cmp['predicted_over_measured']:.2f}: "
                     f"{'within' if cmp['within_20_percent'] else 'outside'} 20%)")
    return "\n".join(lines)
