"""The light core (no torch): importing a torch feature says which extra installs it, in one line."""

import subprocess
import sys

import pytest

from packviz.model_extra import missing_model_packages, require_model_extra

TORCH_MODULES = ["packviz.model", "packviz.training", "packviz.flopcount", "packviz.bench.runner",
                 "packviz.serving.hf", "packviz.serving.stepcost", "packviz.serving.engine"]


@pytest.mark.parametrize("module", TORCH_MODULES)
def test_a_torch_module_without_torch_names_the_extra(module):
    # sys.modules["torch"] = None is how Python spells "not installed" for one process
    code = f"import sys; sys.modules['torch'] = None\nimport {module}"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: ") and "needs torch, which is not installed" in last
    assert "pip install 'packviz[model]'" in last


def test_the_guard_reports_the_missing_package_by_name():
    assert missing_model_packages(("torch", "surely-not-a-package-xyz")) == ["surely-not-a-package-xyz"]
    with pytest.raises(ModuleNotFoundError, match=r"bench needs surely-not-a-package-xyz, .*packviz\[model\]") as e:
        require_model_extra("bench", ("surely-not-a-package-xyz",))
    assert e.value.name == "surely-not-a-package-xyz"  # the CLI's check keys on it
    require_model_extra("bench")  # torch is installed here: no error


def test_the_light_commands_run_without_torch(tmp_path):
    """pack, flops and the simulated serve import nothing that needs torch (the guard is not on their path)."""
    lengths = tmp_path / "lengths.txt"
    lengths.write_text("100\n3000\n50\n")
    code = ("import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None\n"
            "from packviz.cli import main\n"
            f"assert main(['pack', '--lengths', {str(lengths)!r}, '--pack-len', '4096']) == 0\n"
            f"assert main(['flops', '--lengths', {str(lengths)!r}, '--batch-size', '2', '--pack-len', '4096']) == 0\n"
            "assert main(['serve', '--policy', 'continuous']) == 0\n"
            "assert main(['bench', '--smoke', '--out', '/nonexistent-never-written']) == 2\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "error: python -m packviz bench needs torch, which is not installed: pip install 'packviz[model]'" in p.stderr


def test_the_widgets_without_ipywidgets_name_the_lab_extra():
    code = "import sys; sys.modules['ipywidgets'] = None\nimport packviz.widgets"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1
    last = p.stderr.strip().splitlines()[-1]
    assert last == ("ModuleNotFoundError: packviz.widgets needs ipywidgets, which is not installed: "
                    "pip install 'packviz[lab]' (or make install, which installs everything)")


def test_the_extra_guard_is_one_function_for_every_extra():
    from packviz.model_extra import require_extra

    with pytest.raises(ModuleNotFoundError, match=r"^x needs surely_not_xyz, .*pip install 'packviz\[lab\]'") as e:
        require_extra("x", ("surely_not_xyz",), "lab")
    assert e.value.name == "surely_not_xyz"
    require_extra("x", ("numpy",), "lab")  # installed: no error
