"""`pip install .` gives a wheel that works anywhere: the trace, its licence and the recorded runs travel inside it.

The data's one home is the top-level ``data/``; ``pyproject.toml`` maps it into the wheel as ``packviz/data/``.
"""

import json
import os
import pathlib
import re
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    [whl] = out.glob("packviz-*.whl")
    return whl


def test_wheel_carries_the_data_the_library_reads(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in ("packviz/py.typed", "packviz/data/azure_llm_inference_2023_conv.csv.gz",
              "packviz/data/README.md", "packviz/data/LICENSE-CC-BY-4.0.txt"):
        assert f in names, f
    assert any(n.endswith("licenses/LICENSE") for n in names)


def test_wheel_carries_every_module_and_every_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {f.relative_to(ROOT).as_posix() for f in (ROOT / "packviz").rglob("*.py")}
    assert modules - names == set(), "a package missing from pyproject's [tool.setuptools] packages"
    data = {"packviz/" + f.relative_to(ROOT).as_posix() for f in (ROOT / "data").rglob("*")
            if f.is_file() and "__pycache__" not in f.parts}
    assert len(data) > 5 and data - names == set(), "a data file missing from pyproject's package-data"


def test_results_readme_names_every_recorded_run():
    text = (ROOT / "data" / "results" / "README.md").read_text()
    runs = [d.name for d in (ROOT / "data" / "results").iterdir() if d.is_dir()]
    assert runs and "None recorded yet" not in text
    for run in runs:
        kind = re.sub(r"^\d{4}-\d{2}-\d{2}-", "<date>-", run)
        assert f"`{run}/`" in text or f"`{kind}/`" in text, f"data/results/README.md does not describe {run}/"


def test_installed_wheel_runs_figures_outside_the_repo(wheel, tmp_path):
    target = tmp_path / "site"
    p = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "MPLBACKEND": "Agg"}
    where = subprocess.run([sys.executable, "-c", "import packviz.datafiles as d; print(d.__file__); print(d.DATA_DIR)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True)
    module, data = map(pathlib.Path, where.stdout.split())
    assert module.is_relative_to(target) and data == target / "packviz" / "data", where.stdout + where.stderr
    run = subprocess.run([sys.executable, "-m", "packviz", "figures", "--out", str(tmp_path / "figs"), "--dpi", "40"],
                         cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    files = json.loads(run.stdout)["files"]
    assert files and all(pathlib.Path(f).read_bytes()[:4] == b"\x89PNG" for f in files)
