"""The benchmark's results: the JSON schema, derived metrics, and reading recorded runs. No torch.

The schema is the three dataclasses below (their field names are the JSON keys, schema
:data:`SCHEMA`): a :class:`Run` holds :class:`Scenario` s, each holding one :class:`Method`
per attention method. The runner fills them; :func:`fill_timings` and :func:`derive` compute
every number that follows from the times. Recorded GPU runs live in the
top-level ``data/results/<date>-<gpu>/`` (in a wheel, ``packviz/data/results/``); notebook 05 shows the newest::

    res = load_results(RESULTS_DIR)      # the newest run under data/results/
    print(format_run_info(res))           # device, versions, date, commit, model, ceiling
    print(format_results(res))            # per scenario and method: time, tokens/s, measured vs ideal
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from dataclasses import dataclass, field

from .. import datafiles
from ..checks import instance_of, mapping
from .measure import stats

SCHEMA = "packviz.bench/2"
RESULTS_DIR = datafiles.RESULTS_DIR
"""Where recorded GPU runs are kept: top-level ``data/results/<date>-<gpu>/`` (in a wheel, ``packviz/data/results/``)."""


# ---------------------------------------------------------------------- the schema
@dataclass
class Method:
    """One attention method in one scenario: what it processed, what the FLOP model says, what it took."""

    method: str
    description: str
    label: str  # "online" (a server could run it) | "offline" (needs the whole sample: sorting, whole-sample packing)
    layout: str
    execution: str  # how the FLOP model prices it (packviz.flops)
    attn_implementation: str
    status: str = "pending"  # complete | partial: ... | skipped: ... | unavailable: ... | error: ...
    error: str | None = None
    kernel: str | None = None  # the attention kernel that ran (SDPA's choice, varlen_attn, flex, ...)
    fallback: str | None = None  # set when the preferred kernel was refused and an explicit one ran
    shared_from: str | None = None  # timings of another scenario's identical forwards
    forwards: int = 0
    requests_per_forward: float = 0.0
    real_tokens: int = 0
    processed_tokens: int = 0  # slots the kernels ran over (pads and filler included)
    pad_tokens: int = 0
    flops_model: dict = field(default_factory=dict)
    flops_model_tiled: dict | None = None
    ideal_speedup: float | None = None  # over padded, exact triangles
    ideal_speedup_tiled: float | None = None  # over padded, varlen in whole kernel tiles
    warmup_s: list = field(default_factory=list)
    times_s: list = field(default_factory=list)
    median_s: float | None = None
    min_s: float | None = None
    max_s: float | None = None
    q1_s: float | None = None
    q3_s: float | None = None
    iqr_s: float | None = None
    valid_tokens_per_s: float | None = None
    processed_tokens_per_s: float | None = None
    useful_tflops_per_s: float | None = None
    model_tflops_per_s: float | None = None
    useful_fraction_of_ceiling: float | None = None
    measured_speedup: float | None = None
    measured_over_ideal: float | None = None
    peak_memory_bytes: int | None = None
    check: dict | None = None


@dataclass
class Scenario:
    """A scenario's sample and the methods run on it."""

    name: str
    kind: str  # "window" (serving-fair) | "offline" (training-style)
    description: str
    info: dict
    useful_flops: dict
    status: str = "pending"
    methods: dict = field(default_factory=dict)  # method -> Method


@dataclass
class Run:
    """A whole run: where, with what, the ceiling, the preflight and every scenario."""

    config: dict
    status: str = "running"
    schema: str = SCHEMA
    started: str | None = None
    updated: str | None = None
    finished: str | None = None
    elapsed_s: float = 0.0
    device: dict | None = None
    nvidia_smi: dict = field(default_factory=dict)  # "start" / "end" snapshots
    versions: dict | None = None
    sdpa: dict | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    git_changes: list | None = None     # what differed from the commit (git status lines), when known
    weights: str | None = None
    model: dict | None = None
    availability: list = field(default_factory=list)
    ceiling_start: dict | None = None
    ceiling_end: dict | None = None
    ceiling_tflops: float | None = None  # the lower of the two: every fraction uses it
    preflight: dict = field(default_factory=dict)  # method -> {"status", "kernel", "check", ...}
    scenarios: list = field(default_factory=list)  # Scenario
    targets: dict | None = None
    png: str | None = None
    errors: list = field(default_factory=list)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def write_json(path, run: Run) -> None:
    """Write ``run`` to ``path`` atomically (a reader never sees half a file)."""
    path = pathlib.Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(run.to_json(), indent=1, default=_json_default))
    os.replace(tmp, path)


def _json_default(o):
    if hasattr(o, "item"):  # numpy scalars
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


# ---------------------------------------------------------------------- derived numbers
def fill_timings(m: Method, useful_total: int, ceiling_tflops: float | None) -> None:
    """Everything that follows from ``m.times_s``: statistics, tokens/s, TFLOP/s, share of the ceiling."""
    for k, v in stats(m.times_s).items():
        setattr(m, k, v)
    med = m.median_s
    if not med:
        return
    m.valid_tokens_per_s = m.real_tokens / med
    m.processed_tokens_per_s = m.processed_tokens / med
    m.useful_tflops_per_s = useful_total / med / 1e12
    m.model_tflops_per_s = m.flops_model["total"] / med / 1e12
    m.useful_fraction_of_ceiling = m.useful_tflops_per_s / ceiling_tflops if ceiling_tflops else None


def derive(sc: Scenario, baseline_s: float | None) -> None:
    """Measured speed-ups over ``padded`` (its median ``baseline_s``) and their ratio to the ideal."""
    for m in sc.methods.values():
        if baseline_s and m.median_s:
            m.measured_speedup = baseline_s / m.median_s
            ideal = m.ideal_speedup_tiled or m.ideal_speedup
            m.measured_over_ideal = m.measured_speedup / ideal if ideal else None


def lower_ceiling(run: Run) -> float | None:
    """The lower of the start and end matmul ceilings (clocks may have dropped during the run)."""
    rates = [c["tflops"] for c in (run.ceiling_start, run.ceiling_end) if c and c.get("tflops")]
    return min(rates) if rates else None


def targets(res: dict) -> dict:
    """The GPU issue's targets on the ``trace`` scenario, reported (never asserted)."""
    res = mapping("res", res, what="a benchmark results dict (load_results gives one)")
    sc = next((s for s in res.get("scenarios", []) if s["name"] == "trace"), None)
    out = {"scenario": "trace", "note": "targets are reported, not tested"}
    if sc is None:
        return out
    v, d = sc["methods"].get("varlen", {}), sc["methods"].get("dense", {})
    ratio, frac = v.get("measured_over_ideal"), v.get("useful_fraction_of_ceiling")
    out.update(varlen_measured_over_ideal=ratio,
               varlen_reaches_0_9_of_ideal=None if ratio is None else ratio >= 0.9,
               varlen_beats_dense=None if not (v.get("median_s") and d.get("median_s"))
               else v["median_s"] < d["median_s"],
               varlen_useful_fraction_of_ceiling=frac,
               varlen_reaches_0_6_of_ceiling=None if frac is None else frac >= 0.6)
    return out


def sanity(res: dict) -> list[str]:
    """What would make a GPU run a bug rather than a result: a speed-up above its ideal, useful
    work above the ceiling, ``padded`` slower than ``padded-masked``. Empty when none.

    Not applied to a CPU run: a toy model's times are Python and launch overhead, not FLOPs.
    """
    res = mapping("res", res, what="a benchmark results dict (load_results gives one)")
    if (res.get("device") or {}).get("type") != "cuda":
        return []
    out = []
    for s in res.get("scenarios", []):
        ms = s.get("methods", {})
        for name, m in ms.items():
            ideal = m.get("ideal_speedup_tiled") or m.get("ideal_speedup")
            if m.get("measured_speedup") and ideal and m["measured_speedup"] > 1.05 * ideal:
                out.append(f"{s['name']}/{name}: measured {m['measured_speedup']:.2f}x above the ideal {ideal:.2f}x")
            if (m.get("useful_fraction_of_ceiling") or 0) > 1:
                out.append(f"{s['name']}/{name}: useful work {m['useful_fraction_of_ceiling']:.0%} of the ceiling")
        p, pm = ms.get("padded", {}).get("median_s"), ms.get("padded-masked", {}).get("median_s")
        if p and pm and p > 1.05 * pm:
            out.append(f"{s['name']}: padded ({p:.3f} s) slower than padded-masked ({pm:.3f} s)")
    return out


# ---------------------------------------------------------------------- recorded runs
def _read_result(path: pathlib.Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("schema") == SCHEMA else None


def find_results(directory) -> list[pathlib.Path]:
    """Every benchmark results file (schema :data:`SCHEMA`) under ``directory``, oldest first.

    Searched recursively (``*.json``); other JSON files are ignored. Ordered by the run's own
    ``started`` time (file times change with every checkout), then by path. A missing
    directory holds none.
    """
    instance_of("directory", directory, (str, os.PathLike), "a directory path")
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.rglob("*.json")):
        data = _read_result(path)
        if data is not None:
            found.append((str(data.get("started") or ""), str(path), path))
    return [p for *_, p in sorted(found)]


def latest_result(directory) -> pathlib.Path | None:
    """The newest results file under ``directory`` (:func:`find_results`), or ``None``."""
    found = find_results(directory)
    return found[-1] if found else None


def load_results(path) -> dict:
    """A recorded run: ``path`` is a results JSON file, or a directory (its :func:`latest_result`).

    Raises ``FileNotFoundError`` when there is none, ``ValueError`` for a JSON file that is
    not a packviz benchmark result.
    """
    instance_of("path", path, (str, os.PathLike), "a results file or directory path")
    path = pathlib.Path(path)
    if path.is_dir():
        found = latest_result(path)
        if found is None:
            raise FileNotFoundError(f"no benchmark results (schema {SCHEMA}) under {path}")
        path = found
    if not path.is_file():
        raise FileNotFoundError(f"no such results file: {path}")
    data = _read_result(path)
    if data is None:
        raise ValueError(f"{path} is not a packviz benchmark result (schema {SCHEMA})")
    data["path"] = str(path)
    return data


# ---------------------------------------------------------------------- text
def format_run_info(res: dict) -> str:
    """Where and how a run was made: device, versions, date, commit, model, weights, ceiling, status."""
    res = mapping("res", res, what="a benchmark results dict (load_results gives one)")
    dev, ver, model = res.get("device") or {}, res.get("versions") or {}, res.get("model") or {}
    if dev.get("type") == "cuda":
        smi = (res.get("nvidia_smi") or {}).get("start") or {}
        driver = f", driver {smi['driver_version']}" if smi.get("driver_version") else ""
        where = f"{dev.get('name', '?')} (sm{''.join(str(c) for c in dev.get('capability') or [])}, CUDA {dev.get('cuda')}{driver})"
    else:
        where = f"{dev.get('name', '?')} ({dev.get('type', '?')}, {dev.get('threads', '?')} thread(s))"
    commit = res.get("git_commit") or "unknown"
    dirty = " + uncommitted changes" if res.get("git_dirty") else ""
    params = model.get("total_params")
    lines = [
        f"device:   {where}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in ver.items() if v),
        f"date:     {res.get('started', '?')} (status: {res.get('status', '?')})",
        f"commit:   {commit[:12]}{dirty}",
        f"model:    {model.get('name', '?')}, {model.get('dtype', '?')}"
        + (f", {count_text(params)} parameters" if params else "")
        + (", random weights" if model.get("random_weights") else ""),
    ]
    c0, c1 = res.get("ceiling_start") or {}, res.get("ceiling_end") or {}
    if res.get("ceiling_tflops"):
        both = ", ".join(f"{k} {c['tflops']:,.3g}" for k, c in (("start", c0), ("end", c1)) if c.get("tflops"))
        lines.append(f"ceiling:  {res['ceiling_tflops']:,.3g} TFLOP/s ({c0.get('dtype')} {c0.get('n')}³ matmul; "
                     f"{both}: the lower is used)")
    return "\n".join(lines)


def count_text(n: int) -> str:
    """8030261248 -> '8.03 B', 143680 -> '144 k'."""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return str(n)


def _short_status(status) -> str:
    return str(status or "not run").split(":", 1)[0]


def not_timed(res: dict) -> dict:
    """``{(method, why): [scenario, ...]}``: every method a run did not time, grouped by its reason.

    ``why`` is the status without its detail in parentheses ("unavailable: flash-attn is not
    installed"); methods whose timings a scenario shares from another one are not listed (they
    were timed). What a figure of the run names beside its bars, so no method vanishes silently.

    >>> not_timed({"scenarios": [{"name": "trace", "methods": {
    ...     "padded": {"median_s": 1.0},
    ...     "flash": {"status": "unavailable: flash-attn is not installed (pip install flash-attn)"},
    ...     "flex": {"status": "skipped: deadline (12 s left)"}}}]})
    {('flash', 'unavailable: flash-attn is not installed'): ['trace'], ('flex', 'skipped: deadline'): ['trace']}
    """
    res = mapping("res", res, what="a benchmark results dict (load_results gives one)")
    out: dict = {}
    for s in res.get("scenarios", []):
        for name, m in (s.get("methods") or {}).items():
            if m.get("median_s") or m.get("shared_from"):
                continue
            why = str(m.get("status") or "not run").split(" (", 1)[0].split("; ", 1)[0].strip()
            out.setdefault((name, why), []).append(s["name"])
    return out


def _method_line(scenario: str, name: str, m: dict) -> str:
    ideal = m.get("ideal_speedup_tiled") or m.get("ideal_speedup")
    ideal_txt = f"{ideal:>6.2f}x" if ideal else f"{'':>7}"
    head = f"{scenario:<9} {name + (' *' if m.get('label') == 'offline' else ''):<16}"
    if not m.get("median_s"):
        return f"{head} {'(' + _short_status(m.get('status')) + ')':<33} {ideal_txt}"
    frac = m.get("useful_fraction_of_ceiling")
    return (f"{head} {m['median_s']:>9.4f} {m['valid_tokens_per_s']:>12,.0f} "
            f"{m.get('measured_speedup') or float('nan'):>8.2f}x {ideal_txt} "
            f"{m.get('measured_over_ideal') or float('nan'):>10.2f} "
            + (f"{frac:>14.1%}" if frac is not None else f"{'':>14}"))


def format_results(res: dict) -> str:
    """A results dict as a text table: per scenario and method, time, tokens/s, measured vs ideal.

    Columns: median seconds of a pass, valid (real prompt) tokens/s, measured and ideal
    speed-up over ``padded``, their ratio, and the useful TFLOP/s as a share of the matmul
    ceiling. ``*`` marks offline methods. Methods that did not run show why in one word; the
    kernel each method ran and any notes follow the table.
    """
    res = mapping("res", res, what="a benchmark results dict (load_results gives one)")
    head = (f"{'scenario':<9} {'method':<16} {'median s':>9} {'valid tok/s':>12} {'measured':>9} "
            f"{'ideal':>7} {'meas/ideal':>10} {'useful/ceiling':>14}")
    lines = [head]
    kernels = {}
    for s in res.get("scenarios", []):
        for name, m in (s.get("methods") or {}).items():
            lines.append(_method_line(s["name"], name, m))
            if m.get("kernel"):
                kernels.setdefault(name, m["kernel"] + (f" [fallback: {m['fallback']}]" if m.get("fallback") else ""))
    lines.append("* offline: needs the whole sample before it starts (a server cannot)")
    if (res.get("device") or {}).get("type") != "cuda":
        lines.append("CPU run: times measure Python and kernel-launch overhead of a toy model, not FLOPs; "
                     "speed-ups here mean nothing about a GPU")
    lines += [f"kernel   {k:<14} {v}" for k, v in kernels.items()]
    lines += [f"WARNING  {w}" for w in sanity(res)]
    return "\n".join(lines)


def summary(res: dict) -> dict:
    """The headline numbers of a results dict (what ``bench --json`` prints)."""
    res = mapping("res", res, what="a benchmark results dict (load_results gives one)")
    out = {"status": res.get("status"), "device": (res.get("device") or {}).get("name"),
           "model": (res.get("model") or {}).get("name"), "elapsed_s": round(res.get("elapsed_s", 0.0), 1),
           "ceiling_tflops": res.get("ceiling_tflops"), "scenarios": {}}
    keep = ("status", "kernel", "median_s", "valid_tokens_per_s", "measured_speedup", "ideal_speedup",
            "ideal_speedup_tiled", "useful_fraction_of_ceiling", "requests_per_forward")
    for s in res.get("scenarios", []):
        out["scenarios"][s["name"]] = {m: {k: r.get(k) for k in keep} for m, r in s.get("methods", {}).items()}
    out["targets"] = res.get("targets")
    out["sanity"] = sanity(res)
    return out
