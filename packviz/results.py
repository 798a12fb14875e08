"""Recorded benchmark runs: find them, load them, show them as text. No torch needed.

A run of :func:`packviz.bench.run` writes ``<out>/bench.json`` (schema ``packviz.bench/1``):
the device, library versions, git commit, configuration and every number. Runs recorded on a
GPU are kept under ``packviz/data/results/<date>-<gpu>/``; notebook 05 shows the newest::

    res = load_results(RESULTS_DIR)      # the newest run under packviz/data/results/
    print(format_run_info(res))           # device, versions, date, commit, model, ceiling
    print(format_results(res))            # per scenario and method: time, tokens/s, measured vs ideal
"""

from __future__ import annotations

import importlib.resources
import json
import pathlib

SCHEMA = "packviz.bench/1"
RESULTS_DIR = pathlib.Path(str(importlib.resources.files("packviz") / "data" / "results"))
"""Where recorded GPU runs are kept, inside the package (``packviz/packviz/data/results/<date>-<gpu>/``)."""


def _read_result(path: pathlib.Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("schema") == SCHEMA else None


def find_results(directory) -> list[pathlib.Path]:
    """Every benchmark results file (``schema`` ``packviz.bench/1``) under ``directory``, oldest first.

    Searched recursively (``*.json``); other JSON files are ignored. Ordered by the run's own
    ``started`` time (file times change with every checkout), then by path. A missing
    directory holds none.
    """
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


def format_run_info(res: dict) -> str:
    """Where and how a run was made: device, versions, date, commit, model, weights, status."""
    dev = res.get("device") or {}
    ver = res.get("versions") or {}
    model = res.get("model") or {}
    ceil = res.get("ceiling") or {}
    if dev.get("type") == "cuda":
        where = f"{dev.get('name', '?')} (sm{''.join(str(c) for c in dev.get('capability') or [])}, CUDA {dev.get('cuda')})"
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
        + (f", {_count_text(params)} parameters" if params else "")
        + (", random weights" if model.get("random_weights") else ""),
    ]
    if ceil.get("tflops"):
        lines.append(f"ceiling:  {ceil['tflops']:,.3g} TFLOP/s ({ceil.get('dtype')} {ceil.get('n')}³ matmul, measured in the run)")
    return "\n".join(lines)


def _count_text(n: int) -> str:
    """8030261248 -> '8.03 B', 143680 -> '144 k'."""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return str(n)


def _short_status(status) -> str:
    s = str(status or "not run")
    return s.split(":", 1)[0]


def format_results(res: dict) -> str:
    """A results dict as a text table: per scenario and method, time, tokens/s, measured vs ideal.

    Columns: median seconds of a pass, valid (real prompt) tokens/s, measured and ideal
    speed-up over padded, their ratio, and the useful TFLOP/s as a share of the matmul ceiling.
    Methods that did not run show why in one word (unavailable, skipped, error). Notes the run
    recorded about a method (e.g. a padded baseline that ran causal because it had no pads)
    follow the table.
    """
    head = (f"{'scenario':<9} {'method':<7} {'median s':>9} {'valid tok/s':>12} {'measured':>9} "
            f"{'ideal':>7} {'meas/ideal':>10} {'useful/ceiling':>14}")
    lines = [head]
    for s in res.get("scenarios", []):
        methods = s.get("methods") or {}
        if not methods:
            lines.append(f"{s.get('name', '?'):<9} {_short_status(s.get('status'))}")
            continue
        for m, r in methods.items():
            ideal = r.get("ideal_speedup")
            ideal_txt = f"{ideal:>6.2f}x" if ideal else f"{'':>7}"
            if r.get("median_s"):
                frac = r.get("useful_fraction_of_ceiling")
                lines.append(
                    f"{s['name']:<9} {m:<7} {r['median_s']:>9.4f} {r['valid_tokens_per_s']:>12,.0f} "
                    f"{r.get('measured_speedup', float('nan')):>8.2f}x {ideal_txt} "
                    f"{r.get('measured_over_ideal', float('nan')):>10.2f} "
                    + (f"{frac:>14.1%}" if frac is not None else f"{'':>14}"))
            else:
                lines.append(f"{s['name']:<9} {m:<7} {'(' + _short_status(r.get('status')) + ')':<32} {ideal_txt}")
    notes = [f"note ({s['name']}, {m}): {r['attention_note']}" for s in res.get("scenarios", [])
             for m, r in (s.get("methods") or {}).items() if r.get("attention_note")]
    return "\n".join(lines + notes)
