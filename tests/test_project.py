"""The project's own files agree with each other: pyproject, environment.yml, Makefile, README, CI."""

import ast
import pathlib
import re
import sys
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
    assert wanted == {"model", "lab", "test", "replay"} and wanted <= set(extras)
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
    assert names == {"numpy", "matplotlib", "tqdm"}  # the light core; torch and transformers: the model extra
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {re.split(r"[<>=!~ ]", d)[0] for d in extras["model"]} == {"torch", "transformers"}
    assert not any("==" in d for extra in extras.values() for d in extra)
    assert {"jupyterlab", "ipywidgets"} <= {re.split(r"[<>=!~ ]", d)[0] for d in extras["lab"]}
    assert {"pytest", "nbval", "hypothesis"} <= {re.split(r"[<>=!~ ]", d)[0] for d in extras["test"]}


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci/run").read_text()
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^test:", make, flags=re.M) and re.search(r"^lab:", make, flags=re.M)
    # the torch pin the Makefile installs first satisfies the library's range
    assert '".[model,lab,test,replay]"' in make  # make lab / make test install everything, model and replay included
    assert "make test-server" in (ROOT / ".ci/run").read_text()  # the replay against a real server, outside make test
    pin = re.search(r"TORCH_SPEC \?= torch==(\S+)", make).group(1)
    [torch_dep] = [d for d in PYPROJECT["project"]["optional-dependencies"]["model"] if d.startswith("torch")]
    lo = torch_dep.split(">=")[1]
    assert tuple(map(int, pin.split("."))) >= tuple(map(int, lo.split(".")))


NUMPY_ONLY = ("torch", "transformers", "matplotlib", "ipywidgets")
LAYERS = [
    # module, packages it must never import (design: the core is numpy only; a GPU run needs no display stack)
    ("packviz.checks", ("torch", "transformers", "matplotlib", "ipywidgets")),
    ("packviz.datafiles", ("torch", "transformers", "matplotlib", "ipywidgets")),
    ("packviz.model_extra", ("torch", "transformers", "matplotlib", "ipywidgets", "numpy")),
    ("packviz.shapes", ("torch", "transformers", "matplotlib", "ipywidgets")),
    ("packviz.trace", ("torch", "transformers", "matplotlib", "ipywidgets")),
    ("packviz.steps", ("torch", "transformers", "matplotlib", "ipywidgets")),
    ("packviz.trace_numbers", ("torch", "transformers", "matplotlib", "ipywidgets")),
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
    ("packviz.serving.scheduler", ("torch", "transformers", "matplotlib", "ipywidgets")),
    ("packviz.serving.timeline", ("torch", "transformers", "matplotlib", "ipywidgets")),
    ("packviz.serving.simulator", ("torch", "transformers", "matplotlib", "ipywidgets")),
    ("packviz.serving.metrics", ("torch", "transformers", "matplotlib", "ipywidgets")),
    ("packviz.serving.sweep", ("torch", "transformers", "matplotlib", "ipywidgets")),
    ("packviz.serving.calibration", ("torch", "transformers", "matplotlib", "ipywidgets")),
    # a replay against a server: numpy only, and httpx only when it sends (the `replay` extra)
    ("packviz.serving.replay", ("torch", "transformers", "matplotlib", "ipywidgets", "httpx")),
    ("packviz.cli_replay", ("torch", "transformers", "matplotlib", "ipywidgets", "httpx")),
    ("packviz.model", ("packviz.plot", "packviz.widgets", "matplotlib", "ipywidgets")),
    ("packviz.attention", ("packviz.plot", "packviz.widgets", "matplotlib", "ipywidgets")),
    ("packviz.bench.runner", ("packviz.widgets", "matplotlib.pyplot", "ipywidgets")),
    ("packviz.training", ("packviz.plot", "packviz.widgets", "matplotlib", "ipywidgets")),
    ("packviz.serving.hf", ("packviz.plot", "packviz.widgets", "matplotlib", "ipywidgets")),
    ("packviz.serving.stepcost", ("packviz.plot", "packviz.widgets", "matplotlib", "ipywidgets")),
    # the engine reads a model's weights but never imports transformers (nor a display stack)
    ("packviz.serving.engine", ("transformers", "packviz.plot", "packviz.widgets", "matplotlib", "ipywidgets")),
    ("packviz.serving.engine.llama", ("transformers", "packviz.plot", "packviz.widgets", "matplotlib", "ipywidgets")),
    ("packviz.serving.engine.attention", ("transformers", "packviz.plot", "packviz.widgets", "matplotlib",
                                          "ipywidgets")),
    ("packviz.serving.engine.kv", ("transformers", "packviz.plot", "packviz.widgets", "matplotlib", "ipywidgets")),
    ("packviz.serving.engine.runner", ("transformers", "packviz.plot", "packviz.widgets", "matplotlib", "ipywidgets")),
    ("packviz.serving.engine.run", ("transformers", "packviz.plot", "packviz.widgets", "matplotlib", "ipywidgets")),
    ("packviz.flopcount", ("packviz.plot", "packviz.widgets", "matplotlib", "ipywidgets")),
    ("packviz.bench", ("torch", "transformers", "matplotlib", "ipywidgets")),
    ("packviz.bench.measure", ("packviz.widgets", "matplotlib", "ipywidgets")),
    ("packviz.colors", ("matplotlib.pyplot", "torch", "transformers", "ipywidgets")),
    ("packviz.plot", ("matplotlib.pyplot", "torch", "transformers", "ipywidgets")),
    ("packviz.plot_serving", ("matplotlib.pyplot", "torch", "transformers", "ipywidgets")),
    ("packviz.plot_replay", ("matplotlib.pyplot", "torch", "transformers", "ipywidgets", "httpx")),
    ("packviz.widgets", ("matplotlib.pyplot", "torch", "transformers")),
    ("packviz.player", ("matplotlib.pyplot", "torch", "transformers")),
]
CORE = [m for m, banned in LAYERS if banned == NUMPY_ONLY and m != "packviz.cli"
        and (ROOT / (m.replace(".", "/") + ".py")).is_file() and not m.startswith("packviz.bench")]
"""The numpy core: its docstring examples run as doctests in ``make test`` and ``make unit``."""


def test_layers_import_only_what_the_design_allows():
    import subprocess
    import sys

    for module, banned in LAYERS:
        code = (f"import sys, {module}; bad = [m for m in {banned!r} if m in sys.modules]; "
                f"assert not bad, 'imports ' + ', '.join(bad)")
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert p.returncode == 0, f"{module}: {p.stderr.strip().splitlines()[-1]}"


def test_every_module_has_a_layer():
    modules = {".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
               for f in (ROOT / "packviz").rglob("*.py") if f.name != "__main__.py"}
    assert modules - {m for m, _ in LAYERS} == {"packviz"}  # the package itself holds only its version


def test_make_test_and_unit_run_the_doctests_of_the_numpy_core():
    make = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    doctested = set(re.search(r"^DOCTESTED\s*:=\s*(.*)$", make, flags=re.M).group(1).split())
    assert doctested == {m.replace(".", "/") + ".py" for m in CORE}
    for target in ("test", "unit"):
        recipe = re.search(rf"^{target}:.*\n\t(.*)$", make, flags=re.M).group(1)
        assert "--doctest-modules $(DOCTESTED) tests" in recipe, target
    for module in CORE:
        assert ">>>" in (ROOT / (module.replace(".", "/") + ".py")).read_text(), f"{module} has no doctest"


# ---------------------------------------------------------------------- code rules
SOURCES = sorted([*(ROOT / "packviz").rglob("*.py"), *(ROOT / "tests").rglob("*.py"), *(ROOT / "scripts").glob("*.py"),
                  ROOT / "conftest.py"])


def _private(name: str) -> bool:
    """``_foo``, but not ``__dunder__`` nor IPython's ``_repr_png_``-style protocol names."""
    return name.startswith("_") and not name.endswith("_")


def _module_name(path: pathlib.Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _attr_call(node) -> bool:
    """``setattr(x, "name", ...)``, ``object.__setattr__``, ``getattr``, ``monkeypatch.setattr`` ... with a literal name."""
    func = getattr(node, "func", None)
    name = getattr(func, "attr", None) or getattr(func, "id", None) or ""
    return (isinstance(node, ast.Call) and name.strip("_") in ("setattr", "getattr", "hasattr", "delattr")
            and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str))


def _private_definitions() -> dict:
    """``{module: private names it defines}``: functions, classes, assignments, attributes it sets."""
    out = {}
    for f in (ROOT / "packviz").rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    names.add(getattr(t, "id", None) or getattr(t, "attr", None))
            elif _attr_call(node):
                names.add(node.args[1].value)  # object.__setattr__(self, "_name", ...)
        out[_module_name(f)] = {n for n in names if n and _private(n)}
    return out


def private_uses_across_modules() -> list[str]:
    """Where a file imports or reads a private name that another packviz module defines."""
    defined = _private_definitions()
    anywhere = set().union(*defined.values())
    found = []
    for f in SOURCES:
        own = defined.get(_module_name(f), set())
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("packviz")):
                found += [f"{f.relative_to(ROOT)}:{node.lineno} imports {a.name}" for a in node.names if _private(a.name)]
            elif isinstance(node, ast.Attribute) and node.attr in anywhere - own:
                found.append(f"{f.relative_to(ROOT)}:{node.lineno} uses .{node.attr}")
            elif _attr_call(node) and node.args[1].value in anywhere - own:
                found.append(f"{f.relative_to(ROOT)}:{node.lineno} names {node.args[1].value!r}")  # setattr(m, "_x", ...)
    return sorted(found, key=lambda x: (x.split(":")[0], int(x.split(":")[1].split()[0])))


def test_no_private_names_across_modules():
    assert private_uses_across_modules() == []


def test_the_private_name_check_catches_a_use(tmp_path, monkeypatch):
    bad = tmp_path / "test_bad.py"
    bad.write_text("from packviz.packing import _next_fit\nimport packviz.plot as P\nP._new_ax(None, (1, 1))\n"
                   "layout.check_row(0)\nmonkeypatch.setattr(P, '_new_ax', None)\n")
    monkeypatch.setattr(sys.modules[__name__], "SOURCES", [bad])
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "_private_definitions",
                        lambda: {"packviz.packing": {"_next_fit"}, "packviz.plot": {"_new_ax"}})
    assert private_uses_across_modules() == ["test_bad.py:1 imports _next_fit", "test_bad.py:3 uses ._new_ax",
                                             "test_bad.py:5 names '_new_ax'"]


MAX_FUNCTION_LINES = 60


def test_no_function_in_the_package_is_longer_than_60_lines():
    long = []
    for f in (ROOT / "packviz").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{f.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert long == []
