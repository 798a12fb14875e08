"""Notebook 06's answers as a printable one-page HTML cheat sheet: headed answers, their numbers, no code.

    python scripts/cheatsheet.py [OUT] [--notebook PATH]      (or: make cheatsheet)

OUT defaults to ``build/cheatsheet.html`` (build outputs are not committed). The sheet is made
from the notebook's **stored** outputs, as executed before commit: no kernel starts, and every
number is the one the notebook computed. nbconvert's ``lab`` HTML template, with:

- code hidden: no cell input, no prompts; cells tagged ``cheatsheet-omit`` (set-up, long tables,
  follow-ups, exercises) left out;
- a print stylesheet (after the theme's): A4 or Letter, small type in two columns, so the answers
  fit one page;
- a ``data_png`` override that writes each figure's alt text (the PNG's ``alt`` metadata,
  set by :func:`packviz.plot.with_alt`) into ``<img alt=...>``;
- no scripts at all (no require.js, MathJax or Mermaid from a CDN): the page works offline.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "06_interview_cheatsheet.ipynb"
OUT = ROOT / "build" / "cheatsheet.html"
OMIT_TAG = "cheatsheet-omit"

PRINT_CSS = """
body { max-width: 64rem; margin: 0 auto; }
.jp-Cell { padding: 0 !important; }
.jp-RenderedImage img { max-width: 100%; height: auto; }
@page { size: A4; margin: 8mm; }
@media print {
  :root { --jp-content-font-size1: 7pt; --jp-content-line-height: 1.22; --jp-code-font-size: 6.2pt;
          --jp-content-heading-margin-top: 2pt; --jp-content-heading-margin-bottom: 1pt; }
  body, .jp-Notebook { padding: 0 !important; margin: 0; max-width: none; }
  .jp-Notebook { column-count: 2; column-gap: 4mm; }
  .jp-Cell, .jp-RenderedHTMLCommon > ul > li { break-inside: avoid; }
  .jp-RenderedHTMLCommon { padding-right: 0 !important; }
  .jp-RenderedHTMLCommon h1 { font-size: 11pt; column-span: all; margin-top: 0; }
  .jp-RenderedHTMLCommon h2 { font-size: 8.4pt; }
  .jp-RenderedHTMLCommon h3 { font-size: 7.4pt; }
  .jp-RenderedHTMLCommon :is(p, ul, blockquote) { margin: 0 0 1.5pt; }
  .jp-RenderedHTMLCommon ul { padding-left: 1.1em; }
  .jp-RenderedHTMLCommon blockquote { padding: 0 0 0 0.6em; }
  .jp-RenderedHTMLCommon table { font-size: 5.8pt; column-span: all; margin: 0; }
  .jp-RenderedHTMLCommon :is(td, th) { padding: 0.5pt 2pt; line-height: 1.15; }
  .jp-RenderedImage img { max-height: 36mm; }
}
"""

TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_css -%}<style type="text/css">{{ resources.cheatsheet_css }}</style>{%- endblock html_head_css -%}
{% block data_png scoped %}
{%- set alt = output.metadata.get('image/png', {}).get('alt', '') -%}
<div class="jp-RenderedImage jp-OutputArea-output {{ extra_class }}">
<img src="data:image/png;base64,{{ output.data['image/png'] | escape_html }}" alt="{{ alt | escape_html }}">
</div>
{%- endblock data_png %}
"""


def render(notebook=NOTEBOOK) -> str:
    """The cheat sheet's HTML, from ``notebook``'s stored outputs (code hidden, ``cheatsheet-omit`` cells left out)."""
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    nb = nbformat.read(str(notebook), as_version=4)
    if not any(c.cell_type == "code" and c.get("outputs") for c in nb.cells):
        raise SystemExit(f"{notebook} has no stored outputs: execute it first (jupyter nbconvert --execute --inplace)")
    exporter = HTMLExporter(template_file="cheatsheet.html.j2", extra_loaders=[jinja2.DictLoader(
        {"cheatsheet.html.j2": TEMPLATE})], exclude_input=True, exclude_input_prompt=True,
        exclude_output_prompt=True, exclude_anchor_links=True)
    exporter.register_preprocessor(TagRemovePreprocessor(remove_cell_tags={OMIT_TAG}, enabled=True), enabled=True)
    body, _ = exporter.from_notebook_node(nb, resources={"cheatsheet_css": PRINT_CSS,
                                                        "metadata": {"name": "Padding vs packing: the cheat sheet"}})
    return body


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", nargs="?", default=str(OUT), help=f"the HTML file to write (default {OUT.relative_to(ROOT)})")
    ap.add_argument("--notebook", default=str(NOTEBOOK), help="the executed notebook to read (default: notebook 06)")
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(args.notebook), encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size / 1e3:,.0f} kB): open it in a browser and print (one A4 / Letter page)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
