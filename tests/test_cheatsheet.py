"""``scripts/cheatsheet.py``: notebook 06's answers as one printable HTML page, with no code in it."""

from __future__ import annotations

import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "cheatsheet.py"
NOTEBOOK = ROOT / "notebooks" / "06_interview_cheatsheet.ipynb"
OMIT = "cheatsheet-omit"


class Page(HTMLParser):
    """Headings (level, text), images (their attributes), script tags and every text node of a page."""

    def __init__(self):
        super().__init__()
        self.headings, self.images, self.scripts, self.text, self.classes = [], [], 0, [], set()
        self._heading = None

    def handle_starttag(self, tag, attrs):
        self.classes.update((dict(attrs).get("class") or "").split())
        if tag in ("h1", "h2", "h3", "h4"):
            self._heading = (int(tag[1]), [])
        elif tag == "img":
            self.images.append(dict(attrs))
        elif tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag):
        if self._heading and tag == f"h{self._heading[0]}":
            self.headings.append((self._heading[0], "".join(self._heading[1]).strip()))
            self._heading = None

    def handle_data(self, data):
        self.text.append(data)
        if self._heading:
            self._heading[1].append(data)


def _cells(kept: bool):
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    return [c for c in cells if (OMIT not in c.get("metadata", {}).get("tags", [])) == kept]


def _markdown_headings(cells, level: int | None = None) -> list[str]:
    """The text of every heading (of ``level``, or any) in the markdown cells of ``cells``."""
    return [line.lstrip("#").strip() for c in cells if c["cell_type"] == "markdown"
            for line in "".join(c["source"]).splitlines()
            if line.startswith("#") and (level is None or len(line) - len(line.lstrip("#")) == level)]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("cheatsheet") / "sheet" / "cheatsheet.html"
    p = subprocess.run([sys.executable, str(SCRIPT), str(out)], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert str(out) in p.stdout
    html = out.read_text(encoding="utf-8")
    page = Page()
    page.feed(html)
    return html, page


def test_every_answer_heading_is_on_the_sheet(built):
    _, page = built
    answers = _markdown_headings(_cells(kept=True), level=3)
    assert [a.split(" ")[0] for a in answers] == [str(i) for i in range(1, 8)], answers  # "## The answer": 1..7
    shown = [text for level, text in page.headings]
    for heading in _markdown_headings(_cells(kept=True)):
        assert heading.replace("`", "") in shown, (heading, shown)
    assert [level for level, text in page.headings if text in answers] == [3] * len(answers)
    for heading in _markdown_headings(_cells(kept=False)):  # follow-ups, exercises, summary: left out
        assert heading.replace("`", "") not in shown, heading


def test_no_code_and_no_script_on_the_sheet(built):
    _, page = built
    text = "".join(page.text)
    assert page.scripts == 0
    assert not page.classes & {"jp-InputArea-editor", "jp-CodeMirrorEditor", "jp-InputPrompt", "jp-OutputPrompt", "highlight"}
    assert "jp-OutputArea-output" in page.classes  # outputs are there, inputs are not
    for cell in _cells(kept=True) + _cells(kept=False):
        if cell["cell_type"] != "code":
            continue
        for line in "".join(cell["source"]).splitlines():
            line = line.strip()
            if len(line) > 25 and not line.startswith("#"):  # a line of code long enough to be its own
                assert line not in text, line
    assert "def facts" not in text and "import " not in text


def test_the_answers_carry_their_computed_numbers_and_figures_their_alt_text(built):
    _, page = built
    text = " ".join("".join(page.text).split())
    kept = _cells(kept=True)
    bullets = ["".join(o["data"]["text/markdown"]).strip() for c in kept for o in c.get("outputs", [])
               if "text/markdown" in o.get("data", {})]
    bullets = [b for b in bullets if b.startswith("- ")]  # the numbers of each answer (facts(...))
    assert len(bullets) == 7
    for out in bullets:  # the first bullet of each answer, rendered (its ** and ` marks gone)
        first = " ".join(out.split("\n")[0][2:].replace("**", "").replace("`", "").split())[:60]
        assert first in text, first
    alts = [o["metadata"]["image/png"]["alt"] for c in kept for o in c.get("outputs", [])
            if "image/png" in o.get("data", {})]
    assert alts and [img.get("alt") for img in page.images] == alts
    assert all(img["src"].startswith("data:image/png;base64,") for img in page.images)


def test_a_notebook_without_outputs_is_refused_with_the_fix(tmp_path):
    nb = json.loads(NOTEBOOK.read_text())
    for c in nb["cells"]:
        if c["cell_type"] == "code":
            c["outputs"], c["execution_count"] = [], None
    bare = tmp_path / "bare.ipynb"
    bare.write_text(json.dumps(nb))
    p = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "x.html"), "--notebook", str(bare)],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode != 0 and not (tmp_path / "x.html").exists()
    assert "has no stored outputs: execute it first" in p.stderr
