"""No notebook prints an exercise's answer before the learner is asked for it.

For every notebook, find the cell that checks exercise X (``check("X", ...)``), and look for the
answer's printed forms in every output above it. Each exercise is also laid out the same way: a
question, the checking cell, then ``exercises.reveal("X")`` (the collapsed worked solution).
"""

import json
import re
from pathlib import Path

import pytest

from packviz import exercises

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def printed_forms(answer) -> set[str]:
    """How a notebook would print ``answer``: the forms distinctive enough to be a leak, not a coincidence.

    An answer of one significant digit (3, 0.5, 2.0) appears in every output: it is not scanned. A list
    is scanned as a whole (``[1, 2, 3]``, numpy's ``[1 2 3]``), never element by element.

    >>> sorted(printed_forms(3.9108)), printed_forms(0.5)
    (['3.9', '3.91', '391%', '391.1%'], set())
    """
    if isinstance(answer, list):
        return {"[" + sep.join(str(x) for x in answer) + "]" for sep in (", ", " ")}
    value = float(answer)
    if value == float(f"{value:.1g}"):
        return set()
    if value.is_integer():
        return {str(int(value)), f"{int(value):,}"}
    forms = {f"{value:.3g}", f"{value:.2f}", f"{value:.1%}", f"{value:.0%}"}
    if abs(value) >= 2:
        forms.add(f"{value:.1f}")
    return {f for f in forms if len(re.sub(r"\D", "", f).lstrip("0")) >= 2}


def outputs(cell) -> list[str]:
    """Every text a code cell shows: streams, text/plain, HTML, Markdown, and PNG alt text."""
    texts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            texts.append("".join(out.get("text", "")))
        for kind in ("text/plain", "text/html", "text/markdown"):
            if kind in out.get("data", {}):
                texts.append("".join(out["data"][kind]))
        texts.append(str(out.get("metadata", {}).get("image/png", {}).get("alt", "")))
    return texts


def in_ruler(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` is an integer between its two neighbours in a run (``18 19 20 21``):
    a column index, not an answer.

    >>> in_ruler("step 18 19 20 21", 11, 13), in_ruler("idle 20 of 96", 5, 7)
    (True, False)
    """
    token = text[start:end]
    if not token.isdigit():
        return False
    n = int(token)
    before = re.search(r"(\d+)\s+$", text[:start])
    after = re.match(r"\s+(\d+)", text[end:])
    return bool(before and after and int(before.group(1)) == n - 1 and int(after.group(1)) == n + 1)


def leaks(notebook: dict) -> list[str]:
    """'exercise: form in cell i' for every answer printed before its checking cell."""
    found = []
    cells = notebook["cells"]
    for name, at in exercises.check_cells(notebook).items():
        for form in printed_forms(exercises.solution(name)):
            pattern = re.compile(r"(?<![\w.,])" + re.escape(form) + r"(?![\w%]|[.,]\d)")
            for i, cell in enumerate(cells[:at]):
                if "nbval-ignore-output" in cell.get("metadata", {}).get("tags", []):
                    continue  # wall-clock timings that change every run: a match there is chance, not a leak
                for text in outputs(cell):
                    for m in pattern.finditer(text):
                        if in_ruler(text, m.start(), m.end()):
                            continue
                        found.append(f"{name} (checked in cell {at}): {form!r} printed in cell {i}: "
                                     f"...{text[max(0, m.start() - 50):m.end() + 20]!r}")
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_no_answer_is_printed_before_its_exercise(path):
    problems = leaks(json.loads(path.read_text(encoding="utf-8")))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_exercise_has_its_question_check_and_reveal(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [(i, "".join(c["source"])) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"]
    for name, at in exercises.check_cells(nb).items():
        quoted = rf"""\(\s*["']{name}["']"""
        before = [src for i, src in code if i <= at]
        after = [src for i, src in code if i > at]
        assert any(re.search(r"question" + quoted, s) for s in before), f"{name}: no question(...) cell"
        assert after and re.search(r"reveal" + quoted, after[0]), (
            f"{name}: the code cell after its check (cell {at}) must be exercises.reveal({name!r})")
        assert not any(re.search(r"solution" + quoted, s) for s in before + after[:1]), (
            f"{name}: print no solution(...) in the notebook: reveal({name!r}) shows it collapsed")


def test_every_exercise_is_checked_in_a_notebook():
    where = exercises.checked_in(NOTEBOOKS[0].parent)
    assert set(exercises.EXERCISES) <= set(where), sorted(set(exercises.EXERCISES) - set(where))


def test_no_question_or_hint_prints_its_own_answer():
    for name, ex in exercises.EXERCISES.items():
        for form in printed_forms(exercises.solution(name)):
            pattern = r"(?<![\w.,])" + re.escape(form) + r"(?![\w%]|[.,]\d)"
            assert not re.search(pattern, ex.question + " " + ex.hint), f"{name}: {form!r} in its question or hint"


def test_the_scan_finds_a_planted_leak():
    answer = exercises.solution("dense_extra_pairs")
    nb = {"cells": [{"cell_type": "code", "source": "x", "outputs": [
        {"output_type": "stream", "name": "stdout", "text": [f"the mask wastes {answer} pairs\n"]}]},
        {"cell_type": "code", "source": "print(check('dense_extra_pairs', None))", "outputs": []}]}
    assert leaks(nb) and "dense_extra_pairs" in leaks(nb)[0]
    nb["cells"][0]["outputs"][0]["text"] = [f"row {answer}0 of {answer}.5 and 1{answer}\n"]   # not the answer
    assert leaks(nb) == []
