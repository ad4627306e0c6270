"""A finished call as the store keeps it: one JSON-ready dict, built from its ``CallRecord``.

Keys (every stored call has them all):

- ``call_sid``, ``stream_sid``, ``from``, ``to``, ``direction``, ``agent``;
- ``started_at``, ``ended_at`` (Unix seconds), ``duration_s``, ``end_reason``;
- ``figures``: ``first_audio_s``, ``model_connect_s``, ``barge_ins``, ``truncations`` (replies
  cut where the caller stopped hearing them: barge-ins, and replies a model drop cut short), ``frames_in``, ``frames_out``, ``reconnects``,
  ``rollovers``, ``dropped_audio_bytes``;
- ``barge_ins``: ``[{"t", "item_id", "heard_ms", "clear_ms"}]``;
- ``tool_calls``: ``[{"t", "tool", "arguments", "output"}]`` (``output`` None if it never returned);
- ``keypresses``: ``[{"t", "digit", "collected"}]``;
- ``events``: every typed gateway event (``gateway.bridge.events``), ``{"t", "event", ...}``;
- ``transcript``: the session's history with the call-control events (``CallRecord.transcript``);
- ``recording``: the recording's path under ``GATEWAY_DATA_DIR``, or None.

Times inside a call (``t``) are seconds from the stream's start.

Redaction (``GATEWAY_REDACT_DIGITS``, on by default): keypresses that ``collect_digits`` took
are PINs and account numbers, so they are kept as ``*``, and so are the digits in that tool's
output wherever it appears (its ``tool_end`` event, its entry in ``tool_calls``, its function
call in the transcript). What the agent says aloud is its transcript and is kept as said:
instruct an agent not to read secrets back.
"""

from __future__ import annotations

from typing import Any

from gateway.bridge.events import (
    BargeIn,
    DigitPressed,
    FirstAudio,
    ModelConnected,
    ReplyResumed,
    ToolCalled,
    ToolReturned,
)
from gateway.bridge.record import DIGITS_TOOL, CallRecord, redact_digits

__all__ = ["stored_call", "summary"]

#: The keys of a stored call listed by ``history`` (everything but the long lists).
SUMMARY_KEYS = ("call_sid", "stream_sid", "from", "to", "direction", "agent", "started_at", "ended_at",
                "duration_s", "end_reason", "figures", "recording")


def stored_call(record: CallRecord, *, redact: bool = True) -> dict[str, Any]:
    """The stored form of a finished call's record (see the module's docstring)."""
    events = record.events
    collected = {i for i, e in enumerate(record.timeline) if isinstance(e, DigitPressed) and e.collected}
    if redact:
        for i, (event, row) in enumerate(zip(record.timeline, events)):
            if i in collected:
                row["digit"] = "*"
            elif isinstance(event, ToolReturned) and event.tool == DIGITS_TOOL:
                row["output"] = redact_digits(row["output"])
    transcript = [dict(item) for item in record.transcript]
    if redact:
        for item in transcript:
            if item.get("type") == "function_call" and item.get("name") == DIGITS_TOOL:
                item["output"] = redact_digits(item.get("output"))
    barge_ins = [{"t": row["t"], "item_id": row["item_id"], "heard_ms": row["heard_ms"], "clear_ms": row["clear_ms"]}
                 for event, row in zip(record.timeline, events) if isinstance(event, BargeIn)]
    tool_calls: list[dict[str, Any]] = []
    open_calls: dict[str, list[dict[str, Any]]] = {}
    for event, row in zip(record.timeline, events):
        if isinstance(event, ToolCalled):
            entry = {"t": row["t"], "tool": event.tool, "arguments": event.arguments, "output": None}
            tool_calls.append(entry)
            open_calls.setdefault(event.tool, []).append(entry)
        elif isinstance(event, ToolReturned) and open_calls.get(event.tool):
            open_calls[event.tool].pop(0)["output"] = row["output"]
    keypresses = [{"t": row["t"], "digit": row["digit"], "collected": row["collected"]}
                  for event, row in zip(record.timeline, events) if isinstance(event, DigitPressed)]
    first_audio = record.first(FirstAudio)
    connected = record.first(ModelConnected)
    ended_at = record.ended_at
    return {
        "call_sid": record.call_sid,
        "stream_sid": record.stream_sid,
        "from": record.from_,
        "to": record.to,
        "direction": record.direction,
        "agent": record.agent,
        "started_at": round(record.started_at, 3),
        "ended_at": round(ended_at, 3) if ended_at is not None else None,
        "duration_s": round(ended_at - record.started_at, 3) if ended_at is not None else None,
        # The same names as the metrics' end_reason label: caller_hung_up, agent_hung_up, ...
        "end_reason": record.end_reason.name.lower() if record.end_reason is not None else None,
        "figures": {
            "first_audio_s": first_audio.seconds if first_audio else None,
            "model_connect_s": connected.seconds if connected else None,
            "barge_ins": len(barge_ins),
            "truncations": len(barge_ins) + sum(isinstance(e, ReplyResumed) and e.what == "reply"
                                                for e in record.timeline),
            "frames_in": record.frames_in,
            "frames_out": record.frames_out,
            "reconnects": record.reconnects,
            "rollovers": record.rollovers,
            "dropped_audio_bytes": record.dropped_audio_bytes,
        },
        "barge_ins": barge_ins,
        "tool_calls": tool_calls,
        "keypresses": keypresses,
        "events": events,
        "transcript": transcript,
        "recording": record.recording,
    }


def summary(call: dict[str, Any]) -> dict[str, Any]:
    """A stored call without its long lists: what ``history`` lists."""
    return {key: call.get(key) for key in SUMMARY_KEYS}
