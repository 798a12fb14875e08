"""A recorded run says what differed from its commit (issue 20: "say what differed, or run clean")."""

from packviz.bench import measure


def test_the_caller_says_what_differed(monkeypatch):
    monkeypatch.setenv("PACKVIZ_GIT_CHANGES", " M packviz/cli.py, M README.md")
    assert measure.git_changes() == ["M packviz/cli.py", "M README.md"] and measure.git_dirty() is True
    monkeypatch.setenv("PACKVIZ_GIT_CHANGES", "")
    assert measure.git_changes() == [] and measure.git_dirty() is False


def test_without_the_variable_git_answers(monkeypatch):
    monkeypatch.delenv("PACKVIZ_GIT_CHANGES", raising=False)
    changes = measure.git_changes()
    assert changes is None or all(isinstance(c, str) and c for c in changes)
    assert measure.git_dirty() == (None if changes is None else bool(changes))
