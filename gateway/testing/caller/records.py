"""What a simulated call records, for assertions. Times are caller-clock seconds."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.audio import ULAW_BYTES_PER_MS
from gateway.twilio import Clear, OutboundMark, OutboundMedia

__all__ = ["InvalidMessage", "Received", "Utterance"]


@dataclass(frozen=True, slots=True)
class Received:
    """A valid message from the gateway, as parsed, and when it arrived."""

    time: float
    message: OutboundMedia | OutboundMark | Clear

    @property
    def event(self) -> str:
        return self.message.event


@dataclass(frozen=True, slots=True)
class InvalidMessage:
    """A frame from the gateway that Twilio would not accept, and why. Never played."""

    time: float
    data: str | bytes
    error: str


@dataclass(slots=True)
class Utterance:
    """Audio the caller says (mu-law), queued by ``TwilioCaller.say`` at ``queued_at``.

    It starts after what was queued before it, and never before ``queued_at``. ``start`` /
    ``end`` are filled in as it goes out: the caller-clock times of its first sample and of
    the instant after its last one, on the same clock as the media ``timestamp``s the gateway
    receives (8 samples a millisecond).
    """

    audio: bytes
    queued_at: float = 0.0
    start: float | None = None
    end: float | None = None

    @property
    def sent(self) -> bool:
        return self.end is not None

    @property
    def ms(self) -> float:
        return len(self.audio) / ULAW_BYTES_PER_MS
