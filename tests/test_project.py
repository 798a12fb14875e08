"""The project's own files agree with each other: pyproject, environment.yml, Makefile, README, CI."""

import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _env_yml():
    text = (ROOT / "environment.yml").read_text()
    deps = re.findall(r"^  - (\S.*)$", text, flags=re.M)
    pip = re.findall(r"^      - (\S.*)$", text, flags=re.M)
    return text, deps, pip


def test_environment_yml_installs_the_project_with_its_extras():
    text, deps, pip = _env_yml()
    assert "conda-forge" in text
    assert "pip" in deps and any(d.startswith("python") for d in deps)
    extras = PYPROJECT["project"]["optional-dependencies"]
    [install] = [p for p in pip if p.startswith("-e .") or p.startswith(".[")]
    wanted = set(re.search(r"\[(.*)\]", install).group(1).split(","))
    assert wanted == {"lab", "test"} and wanted <= set(extras)
    # the GPU-only extra exists in pyproject and environment.yml names it
    assert any(d.startswith("flash-attn") for d in extras["gpu"])
    assert "flash-attn" in text and '".[gpu]"' in text


def test_python_version_agrees():
    _, deps, _ = _env_yml()
    [py] = [d for d in deps if d.startswith("python")]
    assert py.replace("python", "") == PYPROJECT["project"]["requires-python"]


def test_no_exact_pins_in_the_library_and_core_packages_present():
    deps = PYPROJECT["project"]["dependencies"]
    assert not any("==" in d for d in deps)
    names = {re.split(r"[<>=!~ ]", d)[0] for d in deps}
    assert {"numpy", "matplotlib", "torch", "transformers"} <= names
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {"jupyterlab", "ipywidgets"} <= {re.split(r"[<>=!~ ]", d)[0] for d in extras["lab"]}
    assert {"pytest", "nbval", "hypothesis"} <= {re.split(r"[<>=!~ ]", d)[0] for d in extras["test"]}


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci/run").read_text()
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^test:", make, flags=re.M) and re.search(r"^lab:", make, flags=re.M)
    # the torch pin the Makefile installs first satisfies the library's range
    pin = re.search(r"TORCH_SPEC \?= torch==(\S+)", make).group(1)
    [torch_dep] = [d for d in PYPROJECT["project"]["dependencies"] if d.startswith("torch")]
    lo = torch_dep.split(">=")[1]
    assert tuple(map(int, pin.split("."))) >= tuple(map(int, lo.split(".")))


LAYERS = [
    # module, packages it must never import (design: the core is numpy only; a GPU run needs no display stack)
    ("packviz.checks", ("torch", "transformers", "matplotlib", "ipywidgets")),
    ("packviz.shapes", ("torch", "transformers", "matplotlib", "ipywidgets")),
    ("packviz.trace", ("torch", "transformers", "matplotlib", "ipywidgets")),
    ("packviz.steps", ("torch", "transformers", "matplotlib", "ipywidgets")),
    ("packviz.lengths", ("torch", "transformers", "matplotlib", "ipywidgets")),
    ("packviz.layout", ("torch", "transformers", "matplotlib", "ipywidgets")),
    ("packviz.packing", ("torch", "transformers", "matplotlib", "ipywidgets")),
    ("packviz.flops", ("torch", "transformers", "matplotlib", "ipywidgets")),
    ("packviz.exercises", ("torch", "transformers", "matplotlib", "ipywidgets")),
    ("packviz.bench.config", ("torch", "transformers", "matplotlib", "ipywidgets")),
    ("packviz.bench.scenarios", ("torch", "transformers", "matplotlib", "ipywidgets")),
    ("packviz.bench.results", ("torch", "transformers", "matplotlib", "ipywidgets")),
    ("packviz.cli", ("torch", "transformers", "matplotlib", "ipywidgets")),
    ("packviz.serving", ("torch", "transformers", "matplotlib", "ipywidgets")),
    ("packviz.serving.costs", ("torch", "transformers", "matplotlib", "ipywidgets")),
    ("packviz.serving.policies", ("torch", "transformers", "matplotlib", "ipywidgets")),
    ("packviz.serving.metrics", ("torch", "transformers", "matplotlib", "ipywidgets")),
    ("packviz.serving.sweep", ("torch", "transformers", "matplotlib", "ipywidgets")),
    ("packviz.serving.calibration", ("torch", "transformers", "matplotlib", "ipywidgets")),
    ("packviz.model", ("packviz.plot", "packviz.widgets", "matplotlib", "ipywidgets")),
    ("packviz.attention", ("packviz.plot", "packviz.widgets", "matplotlib", "ipywidgets")),
    ("packviz.bench.runner", ("packviz.widgets", "matplotlib.pyplot", "ipywidgets")),
    ("packviz.training", ("packviz.plot", "packviz.widgets", "matplotlib", "ipywidgets")),
    ("packviz.engines", ("packviz.plot", "packviz.widgets", "matplotlib", "ipywidgets", "packviz.serving")),
    ("packviz.stepcost", ("packviz.plot", "packviz.widgets", "matplotlib", "ipywidgets")),
    ("packviz.plot", ("matplotlib.pyplot", "torch", "transformers")),
    ("packviz.plot_serving", ("matplotlib.pyplot", "torch", "transformers")),
]


def test_layers_import_only_what_the_design_allows():
    import subprocess
    import sys

    for module, banned in LAYERS:
        code = (f"import sys, {module}; bad = [m for m in {banned!r} if m in sys.modules]; "
                f"assert not bad, 'imports ' + ', '.join(bad)")
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert p.returncode == 0, f"{module}: {p.stderr.strip().splitlines()[-1]}"
