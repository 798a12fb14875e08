"""The step player: a slider over the scheduler's own plans, driven in plain Python."""

import pytest

pytest.importorskip("ipywidgets")

from packviz.exercises import serving_window  # noqa: E402
from packviz.player import StepPlayer, describe_step, strip_steps  # noqa: E402
from packviz.serving import simulate  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs():
    w = serving_window()
    return {p: simulate(w, p, model="tiny", arrivals="offline", max_batch=3, token_budget=24,
                        fast_forward=False).plans for p in ("static", "continuous", "chunked")}


def test_the_slider_and_play_redraw_the_frame_of_that_step(runs):
    player = StepPlayer(runs)
    assert player.step.max == player.play.max == max(len(p) for p in runs.values()) - 1
    first = bytes(player.image.value)
    assert first.startswith(PNG)
    player.step.value = 5
    assert bytes(player.image.value).startswith(PNG) and bytes(player.image.value) != first
    for label, plans in runs.items():
        assert f"{label}: {plans[5].describe()}" in player.caption.value.replace("&gt;", ">")
    player.play.value = 30                                      # Play moves the slider with it
    assert player.step.value == 30 and "continuous: done" in player.caption.value     # 25 steps


def test_a_frame_shows_the_requests_the_plan_runs(runs):
    player = StepPlayer(runs)
    plan = runs["chunked"][12]
    fig = player.frame(12)
    gids = [p.get_gid() for p in fig.axes[2].patches if p.get_gid()]
    running = {int(g.split(":")[1][1:]) for g in gids if g.split(":")[2] in ("decode", "prefill")}
    assert all(g.startswith("chunked:") for g in gids)
    assert running == set(plan.decodes) | {x.request for x in plan.prefills}


def test_its_display_carries_the_static_strip_and_alt_text(runs):
    player = StepPlayer(runs, steps_shown=[0, 6, 20])
    data, meta = player._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data          # JupyterLab: the live player
    assert data["image/png"].startswith(PNG)                           # everyone else: the strip
    assert data["text/plain"].startswith("[step player]") and "steps 0, 6, 20" in data["text/plain"]
    assert meta["image/png"]["alt"] == player.alt
    assert len(player.strip().axes) == 3 * 3


def test_steps_and_bad_input():
    runs = {"a": [None] * 10, "b": [None] * 43}
    assert strip_steps(runs, 4) == [0, 14, 28, 42] and strip_steps(runs, 1) == [0]
    with pytest.raises(ValueError, match="frames"):
        strip_steps(runs, 0)
    with pytest.raises(ValueError, match="at least one plan per run"):
        StepPlayer({"static": []})
    assert describe_step({"x": []}, 0) == "x: done"
