"""What happened in a call, on one time axis, as data: the input of the demo's ``timeline.png``.

Every time is in seconds from the start of the call (the simulated caller's clock: ``start``
sent is 0). The demo fills a ``CallTimeline`` from what the caller simulator, the gateway and
the local Realtime server recorded; ``render_png`` draws it (see ``gateway.demo.chart``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

#: What a marker stands for; each kind has its own colour and glyph in the picture.
MarkerKind = Literal[
    "mark",  # a Twilio mark echoed after its audio played
    "mark_cleared",  # a mark echoed by a clear (its audio was never heard)
    "clear",  # the gateway told Twilio to drop the agent audio (barge-in)
    "speech_started",  # the model's VAD heard the caller begin to speak
    "truncate",  # where the model's reply was cut: what the caller had heard of it
    "tool_start",  # a function tool began (label: name and arguments)
    "tool_end",  # it returned (label: its output)
    "dtmf",  # the caller pressed a key (label: the digit)
    "handoff",  # another agent took over
    "hangup",  # the call ended (label: who/why)
    "error",  # something went wrong (label: what)
]


@dataclass(frozen=True)
class Span:
    """A stretch of speech (or of audio that was cut): ``start`` to ``end`` seconds."""

    start: float
    end: float
    label: str = ""  # what was said (a transcript), may be empty


@dataclass(frozen=True)
class Marker:
    """One moment worth seeing."""

    t: float
    kind: MarkerKind
    label: str = ""


@dataclass
class CallTimeline:
    """One call, ready to draw."""

    duration: float  # seconds: the x axis runs from 0 to this
    #: PCM16 mono 8 kHz from time 0: what the caller said (silence between utterances).
    caller_audio: bytes = b""
    #: PCM16 mono 8 kHz from time 0: the agent's audio as the caller heard it.
    agent_audio: bytes = b""
    caller_speech: list[Span] = field(default_factory=list)  # the caller's utterances
    agent_speech: list[Span] = field(default_factory=list)  # agent audio heard, per reply
    #: Agent audio that was sent but never heard (dropped by a clear at a barge-in): where it
    #: would have played.
    cut_audio: list[Span] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    title: str = ""
    #: Lines of text printed under the chart (the demo's summary figures).
    summary: list[str] = field(default_factory=list)


def short(value: Any, n: int) -> str:
    """``value`` as one line of text of at most ``n`` characters (cut with an ellipsis)."""
    text = " ".join(str("" if value is None else value).split())
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def tool_arguments(arguments: Any) -> str:
    """A tool call's JSON arguments as a marker label: ``name='value', ...``."""
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
    except ValueError:
        return short(arguments, 40)
    if isinstance(parsed, dict):
        return ", ".join(f"{k}={v!r}" for k, v in parsed.items() if v is not None)
    return short(parsed, 40) if parsed is not None else ""
