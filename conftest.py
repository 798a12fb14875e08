"""Suite-wide pytest hooks.

Notebook cells tagged ``gpu`` (cell metadata tags) need CUDA: under nbval they are skipped
when no GPU is present, so the same notebooks pass on a laptop and on a GPU box.

A skipped browser test (``tests/browser/``: no Chromium, or no playwright) is named at the end of
the run with its reason, so a green ``make test`` never hides that the end-to-end test did not run.
"""

import functools

import pytest


@functools.lru_cache(maxsize=1)
def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    for item in items:
        cell = getattr(item, "cell", None)
        if cell is None:
            continue
        if "gpu" in cell.get("metadata", {}).get("tags", []) and not _has_cuda():
            item.add_marker(pytest.mark.skip(reason="GPU-only cell and no CUDA device here"))


BROWSER_TESTS = "tests/browser/"


def browser_skips(skipped_reports) -> list[str]:
    """One line per skipped browser test module or test: what was skipped, why, where to read how to run it."""
    lines = []
    for report in skipped_reports:
        if not report.nodeid.startswith(BROWSER_TESTS):
            continue
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        line = (f"browser test SKIPPED ({report.nodeid}): {reason.removeprefix('Skipped: ')} "
                "-- see README.md, 'Browser test', to run it")
        if line not in lines:
            lines.append(line)
    return lines


def pytest_terminal_summary(terminalreporter):
    lines = browser_skips(terminalreporter.stats.get("skipped", []))
    if lines:
        terminalreporter.section("end-to-end test not run", sep="=", yellow=True, bold=True)
    for line in lines:
        terminalreporter.write_line(line, yellow=True, bold=True)
