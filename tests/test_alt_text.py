"""Alt text on figures: what a reader without the image gets (text/plain) and the PNG's metadata."""

import pytest
from IPython.core.formatters import DisplayFormatter

from packviz import plot


def _line():
    return plot.lines([1, 2, 3], {"a": [1, 2, 3]})


def test_alt_text_travels_as_plain_text_and_png_metadata():
    fig = plot.with_alt(_line(), "  A line\n rising from 1 to 3. ")
    data, meta = DisplayFormatter().format(fig)
    assert data["image/png"].startswith(b"\x89PNG")
    assert data["text/plain"] == "[figure] A line rising from 1 to 3."
    assert meta == {"image/png": {"alt": "A line rising from 1 to 3."}}


def test_a_figure_without_alt_text_displays_as_before():
    data, meta = DisplayFormatter().format(_line().figure)
    assert data["image/png"].startswith(b"\x89PNG") and "alt" not in str(meta)


@pytest.mark.parametrize("alt", ["", "   ", None, 3])
def test_empty_alt_text_is_refused(alt):
    with pytest.raises(ValueError, match="alt text must be a non-empty string"):
        plot.with_alt(_line(), alt)


def test_a_foreign_figure_is_refused():
    from matplotlib.figure import Figure

    with pytest.raises(TypeError, match="with_alt needs a figure made by packviz.*got Figure"):
        plot.with_alt(Figure(), "x")
