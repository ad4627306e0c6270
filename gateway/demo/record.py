"""What the demo records while a call runs: every session event as it happens (the gateway's
``on_event`` hook), in a form that fits on a line of JSON."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SessionEvent", "Recorder", "describe"]

_MAX_TEXT = 300


@dataclass(frozen=True)
class SessionEvent:
    """One session event: ``time.monotonic()`` when the gateway got it, and its fields."""

    at: float
    type: str
    fields: dict[str, Any]


@dataclass
class Recorder:
    """The ``on_event`` hook of the demo's gateway: keeps every session event, and tells
    ``listener`` (the live view) about each as it arrives."""

    listener: Callable[[SessionEvent], None] | None = None
    events: list[SessionEvent] = field(default_factory=list)
    clock: Callable[[], float] = time.monotonic

    def __call__(self, call: Any, event: Any) -> None:
        recorded = SessionEvent(self.clock(), event.type, describe(event))
        self.events.append(recorded)
        if self.listener is not None:
            self.listener(recorded)

    def of(self, type_: str) -> list[SessionEvent]:
        return [e for e in self.events if e.type == type_]


def describe(event: Any) -> dict[str, Any]:
    """The fields of an ``agents.realtime`` session event worth keeping (no audio bytes)."""
    kind = event.type
    out: dict[str, Any] = {}
    agent = getattr(event, "agent", None)
    if agent is not None and kind not in ("audio", "raw_model_event"):
        out["agent"] = agent.name
    if kind == "audio":
        out.update(item_id=event.item_id, content_index=event.content_index, bytes=len(event.audio.data))
    elif kind in ("audio_end", "audio_interrupted"):
        out.update(item_id=event.item_id, content_index=event.content_index)
    elif kind in ("tool_start", "tool_end", "tool_approval_required"):
        out.update(tool=event.tool.name, arguments=_text(getattr(event, "arguments", None)))
        if kind == "tool_end":
            out["output"] = _text(event.output)
    elif kind == "handoff":
        out.update(from_agent=event.from_agent.name, to_agent=event.to_agent.name)
    elif kind == "error":
        out["error"] = _text(event.error)
    elif kind == "guardrail_tripped":
        out["message"] = _text(getattr(event, "message", ""))
    elif kind == "history_added":
        out.update(_item(event.item))
    elif kind == "history_updated":
        out["items"] = len(event.history)
    elif kind == "raw_model_event":
        data = event.data
        out["model_event"] = getattr(data, "type", type(data).__name__)
        inner = getattr(data, "data", None)
        if isinstance(inner, dict) and "type" in inner:
            out["server_event"] = inner["type"]
    return out


def _item(item: Any) -> dict[str, Any]:
    data = item.model_dump(mode="json") if hasattr(item, "model_dump") else {}
    out: dict[str, Any] = {"item_id": data.get("item_id"), "item_type": data.get("type")}
    if data.get("role"):
        out["role"] = data["role"]
    texts = [p.get("transcript") or p.get("text") for p in data.get("content") or []]
    text = " ".join(t for t in texts if t)
    if text:
        out["text"] = _text(text)
    return out


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"
