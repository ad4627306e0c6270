"""Twilio Media Streams wire protocol, sans-I/O.

- ``messages``: typed, frozen messages in both directions, each with ``to_json()``.
- ``parser``: ``parse_message`` (from Twilio) and ``parse_outbound`` (to Twilio); strict and
  total: a typed message or ``ProtocolError``, never anything else.
- ``errors``: ``ProtocolError`` (the peer is wrong).
"""

from __future__ import annotations

from gateway.twilio.errors import ProtocolError
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
    "OutboundMark",
    "OutboundMedia",
    "OutboundMessage",
    "ProtocolError",
    "Start",
    "Stop",
    "UnknownEvent",
    "parse_message",
    "parse_outbound",
]
