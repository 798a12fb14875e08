"""`pip install .` gives a wheel that works anywhere: the trace and its licence travel inside it."""

import json
import os
import pathlib
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


def test_installed_wheel_runs_figures_outside_the_repo(wheel, tmp_path):
    target = tmp_path / "site"
    p = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "MPLBACKEND": "Agg"}
    where = subprocess.run([sys.executable, "-c", "import packviz; print(packviz.__file__)"], cwd=elsewhere,
                           env=env, capture_output=True, text=True)
    assert pathlib.Path(where.stdout.strip()).is_relative_to(target), where.stdout + where.stderr
    run = subprocess.run([sys.executable, "-m", "packviz", "figures", "--out", str(tmp_path / "figs"), "--dpi", "40"],
                         cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    files = json.loads(run.stdout)["files"]
    assert files and all(pathlib.Path(f).read_bytes()[:4] == b"\x89PNG" for f in files)
