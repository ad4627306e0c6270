"""What is kept of a call: ``CallRecord``, built from the call's events."""

from __future__ import annotations

import collections
import dataclasses
import re
import time
from typing import Any, TypeVar

from gateway.bridge.ending import EndReason
from gateway.bridge.events import (
    CALL_CONTROL,
    AgentChosen,
    CallEnded,
    CallEvent,
    CallStarted,
    HandedOff,
)


E = TypeVar("E")

#: The gateway's tool whose keypresses and output are secrets (PINs): redacted where kept.
DIGITS_TOOL = "collect_digits"

_DIGITS = re.compile(r"[0-9]")


def redact_digits(text: Any) -> Any:
    """``text`` with every digit as ``*`` (other values as they are): a PIN in a tool's output
    or a log line (``GATEWAY_REDACT_DIGITS``)."""
    return _DIGITS.sub("*", text) if isinstance(text, str) else text


@dataclasses.dataclass
class CallRecord:
    """What is kept of a call: who, when, how it ended, what was said, what happened.

    Built from the call's events (``add``): ``timeline`` holds them as emitted, ``events`` as
    plain dicts (JSON-ready); ``transcript`` is the session's history, with the call-control
    events where they happened."""

    call_sid: str = ""
    stream_sid: str = ""
    from_: str = ""
    to: str = ""
    direction: str = "inbound"
    agent: str = ""
    started_at: float = dataclasses.field(default_factory=time.time)
    ended_at: float | None = None
    end_reason: EndReason | None = None
    #: The session's history (history_added / history_updated), as plain dicts.
    transcript: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: Every gateway event of the call, in order.
    timeline: list[CallEvent] = dataclasses.field(default_factory=list)
    #: Session event counts by type.
    counts: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    frames_in: int = 0  # caller frames received
    frames_out: int = 0  # agent frames sent
    buffered_frames: int = 0  # caller frames buffered while the model connected, then sent
    buffered_dropped: int = 0  # caller frames dropped from a full pre-connect buffer
    stale_echoes: int = 0  # mark echoes after a clear (cleared, not played)
    dropped_audio_bytes: int = 0  # model audio of interrupted items, never sent
    rollovers: int = 0  # moves to a fresh model session (session lifetime limit)
    reconnects: int = 0  # new model sessions after the connection failed mid-call
    #: The call's recording (``GATEWAY_RECORD``): its path under ``GATEWAY_DATA_DIR``, once written.
    recording: str | None = None

    @property
    def events(self) -> list[dict[str, Any]]:
        """The timeline as dicts: ``{"t", "event", **fields}``."""
        return [event.as_dict() for event in self.timeline]

    def first(self, kind: type[E]) -> E | None:
        """The first event of ``kind`` in the timeline (e.g. ``CallStarted``), if any."""
        return next((e for e in self.timeline if isinstance(e, kind)), None)

    def last(self, kind: type[E]) -> E | None:
        """The last event of ``kind`` in the timeline (e.g. ``CallEnded``), if any."""
        return next((e for e in reversed(self.timeline) if isinstance(e, kind)), None)

    def add(self, event: CallEvent) -> None:
        self.timeline.append(event)
        if isinstance(event, CallStarted):
            self.call_sid, self.stream_sid = event.call_sid, event.stream_sid
            self.from_, self.to, self.direction = event.from_, event.to, event.direction
        elif isinstance(event, (AgentChosen, HandedOff)):
            self.agent = event.agent if isinstance(event, AgentChosen) else event.to_agent
        elif isinstance(event, CallEnded):
            self.end_reason = event.reason
            self.ended_at = self.started_at + event.t
        elif isinstance(event, CALL_CONTROL):
            fields = event.as_dict()
            del fields["t"]
            self.transcript.append({"type": "call_event", **fields})


def transcript_item(item: Any) -> dict[str, Any]:
    """A session history item (``agents.realtime.items``) as plain data: role, status, text
    (transcripts joined), and a function call's name, arguments and output."""
    data = item.model_dump(mode="json") if hasattr(item, "model_dump") else dict(item)
    text_parts = []
    for part in data.get("content", []) or []:
        text = part.get("transcript") or part.get("text")
        if text:
            text_parts.append(text)
    out = {"item_id": data.get("item_id"), "type": data.get("type"), "role": data.get("role"), "status": data.get("status")}
    if text_parts:
        out["text"] = " ".join(text_parts)
    if data.get("type") == "function_call":
        out.update(name=data.get("name"), arguments=data.get("arguments"), output=data.get("output"))
    return out
