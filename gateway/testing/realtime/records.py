"""What a connection records, for assertions. Times are ``time.monotonic()`` seconds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.testing.realtime.script import Trigger, Turn

__all__ = [
    "FunctionCallOutput",
    "ReceivedEvent",
    "ResponseRecord",
    "SentEvent",
    "Truncation",
    "UserMessage",
    "UserTurn",
]


@dataclass(frozen=True)
class ReceivedEvent:
    """A client event as received (parsed JSON), valid or not."""

    type: str
    time: float
    data: dict[str, Any]


@dataclass(frozen=True)
class SentEvent:
    """A server event as sent."""

    type: str
    time: float
    data: dict[str, Any]


@dataclass(frozen=True)
class Truncation:
    """A ``conversation.item.truncate``: the client says the caller heard ``audio_end_ms`` of
    the item's audio."""

    item_id: str
    content_index: int
    audio_end_ms: int
    time: float


@dataclass(frozen=True)
class FunctionCallOutput:
    call_id: str
    output: str
    time: float


@dataclass(frozen=True)
class UserMessage:
    """A user text message (``conversation.item.create`` of a user ``input_text`` message)."""

    item_id: str
    text: str
    time: float


@dataclass
class UserTurn:
    """A caller speech turn: found by the VAD, committed by the client, or injected by a test.
    ``audio_*_ms`` are on the connection's audio clock."""

    item_id: str
    source: Literal["vad", "commit", "injected"]
    audio_start_ms: int
    started_at: float
    audio_end_ms: int | None = None
    stopped_at: float | None = None
    transcript: str | None = None


@dataclass
class ResponseRecord:
    """One response, from ``response.created`` to ``response.done``."""

    id: str
    trigger: Trigger
    created_at: float
    turn: Turn | None = None
    """The scripted turn played (None until it is chosen, or if cancelled first)."""
    status: Literal["in_progress", "completed", "cancelled", "failed"] = "in_progress"
    reason: str | None = None
    """For a cancelled response: ``"turn_detected"`` or ``"client_cancelled"``."""
    done_at: float | None = None
    item_ids: list[str] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    """Every audio byte sent, in the output format of the response."""
    audio_ms: float = 0.0
    """Duration of the audio sent."""
    transcript: str = ""
    """The transcript sent (cut short if cancelled)."""
    first_delta_at: float | None = None
    last_delta_at: float | None = None

    @property
    def done(self) -> bool:
        return self.status != "in_progress"
