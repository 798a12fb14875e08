"""A step player: a slider (and Play) over the steps of several runs of the same requests.

Each frame is :func:`packviz.plot_serving.step_frame` (which requests run, their prefill pieces and
decodes, the KV pages each holds and frees), drawn from the scheduler's own step plans. The player
is thin: the drawing is the pure function; the widget only picks the step::

    ┌ StepPlayer ─────────────────────────────────────────────┐
    │ [▶ Play] [step ────●──────────]                          │  .packviz-play, .packviz-step
    │ ┌ static ──────┐ ┌ continuous ──┐ ┌ chunked ──────┐      │  .packviz-figure (Image)
    └─────────────────────────────────────────────────────────┘

Frames are PNG bytes in an ``Image`` widget (no ``Output`` capture, as in :mod:`packviz.widgets`), so
setting ``player.step.value`` in plain Python redraws exactly as the slider does. Displayed, the player
carries a static strip of frames (:func:`packviz.plot_serving.step_strip`) as ``image/png`` beside the
widget view, and its alt text as ``text/plain``: a reader without a live kernel (GitHub, an HTML or PDF
export) sees the strip.
"""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np

from .checks import positive_int
from .plot import to_png, with_alt
from .plot_serving import step_frame, step_strip
from .serving import timeline

STRIP_FRAMES = 4
"""Frames in the static strip when no steps are named."""


def strip_steps(runs, frames: int = STRIP_FRAMES) -> list[int]:
    """``frames`` steps spread evenly from the first to the last step of the longest run.

    >>> strip_steps({"a": [None] * 43}, 4)
    [0, 14, 28, 42]
    """
    last = max(len(p) for p in runs.values()) - 1
    return sorted({int(round(x)) for x in np.linspace(0, last, positive_int("frames", frames))})


def describe_step(runs, step: int) -> str:
    """One line per run: what its plan does in ``step`` (``StepPlan.describe``), or that it is done."""
    return "; ".join(f"{label}: {plans[step].describe()}" if step < len(plans) else f"{label}: done"
                     for label, plans in runs.items())


class StepPlayer(widgets.VBox):
    """Play and a step slider over ``runs`` (``{label: plans}``), one frame per step.

    ``steps_shown``: the steps of the static strip (default :func:`strip_steps`). ``alt``: the strip's
    alt text (default: what it shows). ``player.image.value`` holds the current frame's PNG bytes;
    ``player.caption.value`` says what each run's plan does in that step.
    """

    def __init__(self, runs, page_size: int = 16, steps_shown=None, alt: str | None = None,
                 frame_size=(7, 6.4), interval_ms: int = 900):
        self.runs = dict(runs)
        if not self.runs or not all(self.runs.values()):
            raise ValueError("StepPlayer needs {label: plans} with at least one plan per run: "
                             "simulate(..., fast_forward=False).plans keeps them")
        self.page_size, self.frame_size = positive_int("page_size", page_size), frame_size
        self.n = max(timeline.num_requests(p) for p in self.runs.values())
        self.max_pages = max(int(timeline.pages_held(p, self.page_size, self.n).max(initial=1))
                             for p in self.runs.values())
        self.steps_shown = strip_steps(self.runs) if steps_shown is None else [int(s) for s in steps_shown]
        last = max(len(p) for p in self.runs.values()) - 1
        self.play = _tag(widgets.Play(min=0, max=last, step=1, interval=interval_ms, description="play"), "play")
        self.step = _tag(widgets.IntSlider(min=0, max=last, description="step", continuous_update=False), "step")
        widgets.link((self.play, "value"), (self.step, "value"))
        self.image = _tag(widgets.Image(format="png", layout=widgets.Layout(max_width="100%")), "figure")
        self.caption = _tag(widgets.HTML(), "caption")
        self.alt = alt or (f"Step player over {', '.join(self.runs)} on the same {self.n} requests; the static "
                           f"strip shows steps {', '.join(map(str, self.steps_shown))}: for each run, the requests "
                           "as rows, a bar of the KV pages each holds, and what each does in that step.")
        super().__init__([widgets.HBox([self.play, self.step]), self.caption, self.image])
        self.step.observe(lambda change: self.show(change["new"]), names="value")
        self.show(0)

    def frame(self, step: int):
        """The figure of one step (a :class:`~packviz.plot.PackvizFigure`), on the player's shared scale."""
        axes = step_frame(self.runs, step, page_size=self.page_size, n=self.n, max_pages=self.max_pages,
                          figsize=self.frame_size)
        return axes[0].figure

    def strip(self):
        """The static strip of frames at :attr:`steps_shown`, with the player's alt text."""
        return with_alt(step_strip(self.runs, self.steps_shown, page_size=self.page_size, n=self.n), self.alt)

    def show(self, step: int) -> None:
        """Draw ``step`` into the image and the caption (what the slider and Play call)."""
        import html

        self.image.value = to_png(self.frame(step))
        self.caption.value = f"<code>step {step}</code>: {html.escape(describe_step(self.runs, step))}"

    def _repr_mimebundle_(self, include=None, exclude=None, **kwargs):
        bundle = super()._repr_mimebundle_(include=include, exclude=exclude, **kwargs) or {}
        data, meta = bundle if isinstance(bundle, tuple) else (bundle, {})
        data = {**data, "image/png": to_png(self.strip()), "text/plain": f"[step player] {self.alt}"}
        return data, {**meta, "image/png": {"alt": self.alt}}


def _tag(widget, name: str):
    widget.add_class(f"packviz-{name}")
    return widget
