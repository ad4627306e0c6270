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
