import re
import typing
from pathlib import Path

import agents.realtime.events as sdk_events

from gateway.bridge.call import HANDLERS

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def sdk_event_types() -> set[str]:
    return {cls.__dataclass_fields__["type"].default for cls in typing.get_args(sdk_events.RealtimeSessionEvent)}


def test_every_sdk_session_event_has_a_handler() -> None:
    assert sdk_event_types() == set(HANDLERS)


def test_every_sdk_session_event_is_in_the_docs_table() -> None:
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", DOC.read_text(), re.M))
    assert sdk_event_types() == documented


def test_every_gateway_call_event_is_in_the_docs_table() -> None:
    """docs/events.md lists each of the gateway's own events with its type and fields."""
    import dataclasses

    from gateway.bridge import events

    rows = re.findall(r"^\| `([A-Za-z]+)` \| `([a-z_]+)` \|([^|]*)\|", DOC.read_text(), re.M)
    documented = {name: (kind, re.findall(r"`([a-z_]+)`", fields)) for name, kind, fields in rows}
    expected = {
        cls.__name__: ({f.name: f.default for f in dataclasses.fields(cls)}["type"],
                       [f.name for f in dataclasses.fields(cls) if f.name not in ("t", "type")])
        for cls in typing.get_args(events.CallEvent)
    }
    assert documented == expected
