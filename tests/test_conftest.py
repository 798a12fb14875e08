"""The suite-wide hooks in the repository's ``conftest.py``: a skipped browser test is said out loud."""

import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run_pytest_with_the_project_conftest(tmp_path, browser_test: str) -> subprocess.CompletedProcess:
    """pytest on a tiny tree: the project's conftest.py, one passing unit test and ``browser_test``."""
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "tests" / "browser").mkdir(parents=True)
    (tmp_path / "tests" / "test_unit.py").write_text("def test_ok():\n    assert True\n")
    (tmp_path / "tests" / "browser" / "test_lab.py").write_text(browser_test)
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}  # the hook alone: no nbval, hypothesis, ...
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                           str(tmp_path / "tests")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_a_skipped_browser_test_is_named_in_the_summary_with_its_reason(tmp_path):
    p = run_pytest_with_the_project_conftest(
        tmp_path, 'import pytest\npytest.skip("/usr/bin/chromium not found (apt install chromium)", '
                  'allow_module_level=True)\n')
    assert p.returncode == 0, p.stdout[-2000:]
    [line] = [ln for ln in p.stdout.splitlines() if ln.startswith("browser test SKIPPED")]
    assert "tests/browser/test_lab.py" in line and "/usr/bin/chromium not found (apt install chromium)" in line
    assert "README.md, 'Browser test'" in line
    assert "1 passed, 1 skipped" in p.stdout


def test_a_browser_test_that_ran_adds_no_line(tmp_path):
    p = run_pytest_with_the_project_conftest(tmp_path, "def test_lab():\n    assert True\n")
    assert p.returncode == 0 and "2 passed" in p.stdout, p.stdout[-2000:]
    assert "browser test SKIPPED" not in p.stdout and "end-to-end test not run" not in p.stdout


def test_the_readme_says_how_to_get_the_browser_test_to_run():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Browser test", 1)[1].split("\n#", 1)[0]
    assert "chromium" in section and "playwright" in section
