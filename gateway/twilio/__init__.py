"""Twilio Media Streams wire protocol, sans-I/O.

- ``messages``: typed, frozen messages in both directions, each with ``to_json()``.
- ``parser``: ``parse_message`` (from Twilio) and ``parse_outbound`` (to Twilio); strict and
  total: a typed message or ``ProtocolError``, never anything else.
- ``stream``: ``MediaStream``, the per-connection state machine (order, streamSid, gaps) that
  also builds the frames we send.
- ``errors``: ``ProtocolError`` (the peer is wrong) and ``StreamStateError`` (we are).
"""

from __future__ import annotations

from gateway.twilio.errors import ProtocolError, StreamStateError
from gateway.twilio.messages import (
    DTMF_DIGITS,
    Clear,
    Connected,
    Dtmf,
    InboundMessage,
    Mark,
    Media,
    MediaFormat,
    OutboundMark,
    OutboundMedia,
    OutboundMessage,
    Start,
    Stop,
    UnknownEvent,
)
from gateway.twilio.parser import DEFAULT_MAX_SIZE, parse_message, parse_outbound
from gateway.twilio.stream import MediaStream, StreamState

__all__ = [
    "DEFAULT_MAX_SIZE",
    "DTMF_DIGITS",
    "Clear",
    "Connected",
    "Dtmf",
    "InboundMessage",
    "Mark",
    "Media",
    "MediaFormat",
    "MediaStream",
    "OutboundMark",
    "OutboundMedia",
    "OutboundMessage",
    "ProtocolError",
    "Start",
    "Stop",
    "StreamState",
    "StreamStateError",
    "UnknownEvent",
    "parse_message",
    "parse_outbound",
]
