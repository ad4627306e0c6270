"""docs/events.md's table of the JavaScript SDK's session event names: every Python name it
gives is one the installed Agents SDK really has (issue 10, item 9)."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import agents.realtime.events as sdk_events
import agents.realtime.model_events as sdk_model_events

DOC = Path(__file__).resolve().parent.parent / "docs" / "events.md"
SECTION = "## The JavaScript SDK's event names, in Python"

#: JS RealtimeSession event -> the Python session event it corresponds to.
EXPECTED = {
    "audio_start": "audio",
    "audio_stopped": "audio_end",
    "tool_approval_requested": "tool_approval_required",
    "transport_event": "raw_model_event",
}


def _session_event_types() -> dict[str, type]:
    return {cls.__dataclass_fields__["type"].default: cls for cls in typing.get_args(sdk_events.RealtimeSessionEvent)}


def _model_event_types() -> dict[str, type]:
    return {cls.__dataclass_fields__["type"].default: cls for cls in typing.get_args(sdk_model_events.RealtimeModelEvent)}


def _rows() -> list[list[str]]:
    text = DOC.read_text()
    assert SECTION in text
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[2:]]  # no header


def test_the_table_maps_each_js_event_to_its_python_event() -> None:
    mapping = {}
    for js, python, gateway in _rows():
        (js_name,) = re.findall(r"session\.on\('([a-z_]+)'\)", js)
        first = re.search(r"`([a-z_]+)` \(`Realtime", python) or re.search(r"the first `([a-z_]+)`", python)
        assert first, python
        mapping[js_name] = first.group(1)
        assert gateway
    assert mapping == EXPECTED


def test_every_python_name_in_the_table_is_in_the_sdk() -> None:
    session_types, model_types = _session_event_types(), _model_event_types()
    classes = {cls.__name__ for cls in (*session_types.values(), *model_types.values())}
    for js, python, _ in _rows():
        # Backticked event types followed by their class, e.g. `audio_end` (`RealtimeAudioEnd`
        for event_type, class_name in re.findall(r"`([a-z_]+)` \(`(Realtime\w+)`", python):
            assert class_name in classes, class_name
            known = session_types.get(event_type) or model_types.get(event_type)
            assert known is not None and known.__name__ == class_name, (event_type, class_name)
        for class_name in re.findall(r"`(Realtime\w+)`", python):
            assert class_name in classes, class_name
    # What the Python session lacks by the JS names: the reason for the table.
    assert not set(EXPECTED) & set(session_types)
    assert set(EXPECTED.values()) <= set(session_types)


def test_the_sdk_methods_named_exist() -> None:
    from agents.realtime import RealtimeSession

    for _, python, _ in _rows():
        for method in re.findall(r"`session\.(\w+)\(", python):
            assert callable(getattr(RealtimeSession, method, None)), method
