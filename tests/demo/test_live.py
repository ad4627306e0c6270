"""The demo's live view on a terminal: the status line fits the width, NO_COLOR is obeyed (issue 10)."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

import pytest

from gateway.demo.live import LiveView

SGR = re.compile(r"\x1b\[[0-9;]*m")  # a colour (Select Graphic Rendition) sequence
LABEL = "the caller talks over the agent while it explains the returns policy"


class _Clock:
    speed = 1.0

    def now(self) -> float:
        return 12.34

    def to_monotonic(self, t: float) -> float:
        return t


def _view(**kwargs: object) -> LiveView:
    view = LiveView(io.StringIO(), live=True)
    view._steps, view._step, view._label = 8, 3, kwargs.get("label", LABEL)
    view.call = SimpleNamespace(caller=SimpleNamespace(
        clock=_Clock(), playing=True, utterances=[SimpleNamespace(start=12.0, end=None)]))
    return view


@pytest.mark.parametrize("columns", [20, 40, 60, 80, 100, 120, 200])
def test_the_status_line_never_reaches_the_terminal_width(monkeypatch, columns) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))  # what shutil.get_terminal_size reads first
    status = _view()._status()
    assert len(status) < columns, status  # the last column left free: no wrap, ever
    if columns >= 80:  # what matters is kept on an ordinary terminal
        assert "3/8" in status and "12.3s" in status
        assert "agent ▶ speaking" in status and "caller ▶ speaking" in status
        assert status.startswith("[") and "█" in status


def test_a_wide_terminal_shows_the_whole_label_and_bar(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    status = _view()._status()
    assert status.endswith(LABEL) and "[" + "█" * 9 in status  # 3/8 of a 24-cell bar
    monkeypatch.setenv("COLUMNS", "80")
    narrow = _view()._status()
    assert narrow.endswith("…") and LABEL[:5] in narrow


def test_without_a_known_width_80_columns_are_assumed(monkeypatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr("os.get_terminal_size", lambda *a: (_ for _ in ()).throw(OSError("not a tty")))
    assert len(_view()._status()) < 80


def _draw(view: LiveView) -> str:
    view.start(8, model="local")
    view.note("agent", "speaking")
    view._task = object()  # as while the call runs: the status line is drawn
    view._draw_status()
    return view.stream.getvalue()


@pytest.mark.parametrize(("no_color", "coloured"), [(None, True), ("", True), ("1", False), ("yes", False)])
def test_no_color_turns_colour_off(monkeypatch, no_color, coloured) -> None:
    if no_color is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", no_color)
    out = _draw(_view())
    assert bool(SGR.search(out)) is coloured, repr(out)
    assert "speaking" in out and "3/8" in out
