"""The README's figures are the ones ``scripts/readme_numbers.py`` regenerates (all but the timings)."""

import importlib.util
import json
import pathlib
import re
import subprocess
import sys

import pytest

from packviz.bench import results

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("readme_numbers", ROOT / "scripts" / "readme_numbers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def readme():
    return " ".join((ROOT / "README.md").read_text().split())  # the prose re-wrapped: compare words, not lines


@pytest.fixture(scope="module")
def run():
    return results.load_results(results.RESULTS_DIR)


def flat(text: str) -> str:
    return " ".join(text.split())


def test_the_prefill_table_and_its_conditions_are_the_recorded_run(script, readme, run):
    assert flat(script.prefill_table(run)) in readme
    assert flat(script.ceiling_and_control(run)) in readme
    for line in script.run_conditions(run):
        assert flat(line) in readme, line


def test_the_headline_comes_with_the_ideal_over_the_whole_trace(script, readme, run):
    assert flat(script.spread_table(run)) in readme
    assert flat(script.headline(run)) in readme
    # the numbers the issue quoted, recomputed: varlen's ideal over the 605 windows and the two measured ones
    assert "| varlen | 2.58 / 3.52 / 4.80 | 2.37, 4.03 | 0.92 |" in script.spread_table(run)


def test_trace_facts(script, readme):
    f = script.trace_facts()
    assert f"{f['requests']} prompts, {f['tokens']} tokens" in readme
    assert f"{f['windows']} windows, all {f['requests']} requests but the last {f['left_out']}" in readme
    assert f"{f['packed_in_windows']} utilised in windows of 32" in readme
    assert f"({f['attention_crossover']} tokens for Llama-3-8B)" in readme
    assert f"over all {f['windows']} windows" in readme


def test_the_packing_tables_but_their_seconds(script):
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Packing the real trace\n.*?```\n(.*?)```", text, flags=re.S).group(1)

    def without_seconds(table: str) -> list[str]:
        rows = [line.split() for line in table.splitlines() if line.strip()]
        return [" ".join(r[:-1] if r[0] in ("pad", "sorted", "next-fit", "ffd", "bfd") else r) for r in rows]

    assert without_seconds(block) == without_seconds(script.packing_tables())


def test_the_script_runs_and_prints_json():
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_numbers.py"), "--json", "--no-timing"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert {"run", "run_conditions", "prefill_table", "spread_table", "headline", "trace"} <= set(out)
    assert "packing_tables" not in out and out["run"].startswith("packviz/data/results/")


def test_the_readme_quotes_no_test_count():
    text = (ROOT / "README.md").read_text()
    assert not re.search(r"\d+ (tests )?passed", text) and not re.search(r"\d+ skipped", text)
