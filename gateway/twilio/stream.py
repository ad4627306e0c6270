"""``MediaStream``: the sans-I/O state machine of one Twilio Media Streams WebSocket.

Feed it every text frame Twilio sends (``receive``); it parses the frame, enforces the order
Twilio promises and hands back the typed message. Ask it for the text of what to send
(``media``, ``mark``, ``clear``). It owns no socket, clock or task, so every edge case is a plain
unit test.

Order enforced (from Twilio's "Media Streams - WebSocket Messages"):

    NEW --connected--> CONNECTED --start--> STARTED --stop--> STOPPED
     |                                        ^   (media, dtmf, mark: stay in STARTED)
     +------------------start-----------------+

- ``connected`` is optional but, if sent, comes first and once.
- ``start`` comes exactly once; a second one is a ``ProtocolError``.
- ``media``, ``dtmf``, ``mark`` and ``stop`` need a started stream and must carry its streamSid.
- Nothing may follow ``stop``.
- ``UnknownEvent`` is returned in any state except STOPPED and never changes the state, so a
  future Twilio event does not end a live call.

A rejected frame raises ``ProtocolError`` and leaves the stream exactly as it was: the caller
chooses whether to log and carry on or to close the socket.

Sending is possible only in STARTED (before it there is no streamSid to address; after ``stop``
Twilio no longer listens). Otherwise ``media``/``mark``/``clear`` raise ``StreamStateError``,
which is not a ``ProtocolError``: it reports our mistake, not the peer's. A sender racing the
receive loop should check ``state`` first.

Gaps in ``sequenceNumber`` (counted from ``start``) are not errors: Twilio drops frames under
load. ``missed_messages`` adds up the numbers skipped; ``out_of_order_messages`` counts frames
whose number is not above the highest seen (late or duplicated).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

from gateway.twilio.errors import ProtocolError, StreamStateError
from gateway.twilio.messages import (
    Clear,
    Connected,
    InboundMessage,
    OutboundMark,
    OutboundMedia,
    Start,
    Stop,
    UnknownEvent,
)
from gateway.twilio.parser import DEFAULT_MAX_SIZE, parse_message

__all__ = ["MediaStream", "StreamState"]

_NO_PARAMETERS: Mapping[str, str] = MappingProxyType({})


class StreamState(enum.Enum):
    NEW = "new"
    """Nothing received yet."""
    CONNECTED = "connected"
    """``connected`` received; waiting for ``start``."""
    STARTED = "started"
    """``start`` received: media flows both ways."""
    STOPPED = "stopped"
    """``stop`` received: the stream is over."""


class MediaStream:
    """Protocol state of one Media Streams connection (one per WebSocket)."""

    def __init__(self, *, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self.state = StreamState.NEW
        self.start_message: Start | None = None
        self.missed_messages = 0
        self.out_of_order_messages = 0
        self._max_size = max_size
        self._last_sequence = 0

    # --- What start told us ---------------------------------------------------------------------

    @property
    def stream_sid(self) -> str | None:
        return self.start_message.stream_sid if self.start_message is not None else None

    @property
    def call_sid(self) -> str | None:
        return self.start_message.call_sid if self.start_message is not None else None

    @property
    def custom_parameters(self) -> Mapping[str, str]:
        start = self.start_message
        return start.custom_parameters if start is not None else _NO_PARAMETERS

    # --- Receiving ------------------------------------------------------------------------------

    def receive(self, data: str | bytes) -> InboundMessage:
        """Parse one frame from Twilio, check it against the stream's state, and return it.

        Raises ``ProtocolError`` (state unchanged) if the frame is malformed or out of order.
        """
        message = parse_message(data, max_size=self._max_size)
        state = self.state

        if isinstance(message, UnknownEvent):
            if state is StreamState.STOPPED:
                raise ProtocolError(f"{message.event} message after stop", message.event)
            if state is StreamState.STARTED:
                self._count_unknown(message)
            return message

        if isinstance(message, Connected):
            if state is not StreamState.NEW:
                raise ProtocolError(
                    f"connected message in state {state.value}: it must come first, once",
                    "connected",
                )
            self.state = StreamState.CONNECTED
            return message

        if isinstance(message, Start):
            if state is StreamState.STARTED:
                raise ProtocolError(
                    f"second start message (stream {self.stream_sid} already started)", "start"
                )
            if state is StreamState.STOPPED:
                raise ProtocolError("start message after stop", "start")
            self.start_message = message
            self._last_sequence = message.sequence_number
            self.state = StreamState.STARTED
            return message

        # Media, Dtmf, Mark, Stop: all belong to the started stream.
        event = message.event
        start = self.start_message
        if state is not StreamState.STARTED or start is None:
            where = "after stop" if state is StreamState.STOPPED else "before start"
            raise ProtocolError(f"{event} message {where}", event)
        if message.stream_sid != start.stream_sid:
            raise ProtocolError(
                f"{event} message for stream {message.stream_sid!r},"
                f" but this stream is {start.stream_sid!r}",
                event,
            )
        self._count(message.sequence_number)
        if isinstance(message, Stop):
            self.state = StreamState.STOPPED
        return message

    def _count(self, sequence: int) -> None:
        last = self._last_sequence
        if sequence > last:
            self.missed_messages += sequence - last - 1
            self._last_sequence = sequence
        else:
            self.out_of_order_messages += 1

    def _count_unknown(self, message: UnknownEvent) -> None:
        # A future event type probably has a sequenceNumber too; counting it keeps it from
        # showing up as a gap. Not validated: an unknown event is never an error.
        value = message.raw.get("sequenceNumber")
        if type(value) is str and value.isascii() and value.isdigit() and len(value) < 20:
            self._count(int(value))
        elif type(value) is int and value >= 0:
            self._count(value)

    # --- Sending --------------------------------------------------------------------------------

    def media(self, payload: bytes) -> str:
        """JSON text of a media message carrying raw 8 kHz mu-law ``payload`` (any length)."""
        return OutboundMedia(self._sending_sid(), payload).to_json()

    def mark(self, name: str) -> str:
        """JSON text of a mark message; Twilio echoes ``name`` when the audio before it is done."""
        if not isinstance(name, str):
            raise TypeError(f"mark name must be a str, not {type(name).__name__}")
        return OutboundMark(self._sending_sid(), name).to_json()

    def clear(self) -> str:
        """JSON text of a clear message (drop buffered audio, echo pending marks)."""
        return Clear(self._sending_sid()).to_json()

    def _sending_sid(self) -> str:
        if self.state is StreamState.STARTED and self.start_message is not None:
            return self.start_message.stream_sid
        if self.state is StreamState.STOPPED:
            raise StreamStateError(
                f"stream {self.stream_sid} has stopped; nothing more can be sent"
            )
        raise StreamStateError("cannot send before Twilio's start message: no streamSid yet")
