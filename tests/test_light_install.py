"""`pip install packviz` without extras: numpy, matplotlib and tqdm only, and the light commands work.

The wheel is built from this checkout and installed into a fresh venv (no system site-packages, no
PYTHONPATH, run from a folder outside the repository), its three dependencies from the package index
(pip's cache makes a rerun fast). A command that needs torch stops with one line naming the extra.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
LIGHT_CORE = {"numpy", "matplotlib", "tqdm"}


@pytest.fixture(scope="module")
def light(tmp_path_factory):
    """(python of a fresh venv holding the wheel without extras, a folder outside the repo, its environment)."""
    tmp = tmp_path_factory.mktemp("light")
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "wheel"), str(ROOT)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    [wheel] = (tmp / "wheel").glob("packviz-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True, timeout=300)
    python = tmp / "venv" / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(MPLBACKEND="Agg", OMP_NUM_THREADS="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    p = subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], capture_output=True, text=True,
                       env=env, timeout=900)
    assert p.returncode == 0, "installing the wheel's light core from the package index failed: " + p.stderr[-2000:]
    work = tmp / "elsewhere"
    work.mkdir()
    (work / "lengths.txt").write_text("5\n17\n3\n9\n30\n12\n")
    return python, work, env


def packviz(light, *args):
    python, work, env = light
    return subprocess.run([str(python), "-m", "packviz", *args], cwd=work, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_light_install_has_no_torch_and_asks_only_for_the_core(light):
    python, work, env = light
    code = ("import importlib.metadata as m, importlib.util as u, json, re, packviz; print(json.dumps({"
            "'torch': bool(u.find_spec('torch')), 'transformers': bool(u.find_spec('transformers')), "
            "'file': packviz.__file__, 'requires': [re.split('[<>=!~ ;]', r)[0] for r in m.requires('packviz') "
            "if 'extra ==' not in r]}))")
    p = subprocess.run([str(python), "-c", code], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    got = json.loads(p.stdout)
    assert got["torch"] is False and got["transformers"] is False
    assert set(got["requires"]) == LIGHT_CORE
    assert pathlib.Path(got["file"]).is_relative_to(python.parent.parent)  # the venv's copy, not the checkout


def test_pack_and_flops_run(light):
    p = packviz(light, "pack", "--lengths", "lengths.txt", "--pack-len", "32")
    assert p.returncode == 0, p.stderr
    assert "6 sequences -> 3 rows" in p.stdout
    p = packviz(light, "flops", "--lengths", "lengths.txt", "--batch-size", "2", "--pack-len", "32", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["waste_fraction"]["varlen"] == 0.0


def test_figures_run(light):
    _, work, _ = light
    p = packviz(light, "figures", "--out", "figs", "--dpi", "40")
    assert p.returncode == 0, p.stderr
    files = json.loads(p.stdout)["files"]
    assert len(files) >= 4 and all((work / f).read_bytes()[:4] == b"\x89PNG" for f in files)


def test_the_serving_simulator_runs_on_the_shipped_trace_and_recorded_calibration(light):
    python, _, _ = light
    p = packviz(light, "serve", "--policy", "continuous", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert (out["trace"], out["completed"], out["clock"]) == ("azure-conv-2023", 19366, "priced")
    p = packviz(light, "serve", "--policy", "static", "--gpu", "calibrated", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["gpu"]["name"] == "calibrated" and out["completed"] == 19366
    venv = python.parent.parent.as_posix()
    assert f"{venv}/" in out["gpu"]["note"] and "/packviz/data/results/" in out["gpu"]["note"]  # the wheel's copy


@pytest.mark.parametrize("args", [("bench", "--smoke", "--out", "b"),
                                  ("serve", "--policy", "static", "--execute", "--requests", "2")])
def test_a_torch_command_names_the_extra_to_install(light, args):
    p = packviz(light, *args)
    assert p.returncode == 2, p.stdout + p.stderr
    [line] = p.stderr.strip().splitlines()
    assert line == (f"error: python -m packviz {args[0]} needs torch, which is not installed: "
                    "pip install 'packviz[model]'")
