"""Why a call ends (``EndReason``), and the WebSocket close code each ending gives the Media
Stream."""

from __future__ import annotations

import enum


class EndReason(str, enum.Enum):
    CALLER_HUNG_UP = "caller hung up (stop)"
    AGENT_HUNG_UP = "agent hung up"
    TRANSFERRED = "transferred to a person"
    TWILIO_DISCONNECTED = "Twilio socket closed"
    MODEL_ENDED = "model ended the session"
    MODEL_FAILED = "model connection failed"
    PROTOCOL_ERROR = "malformed Twilio message"
    BINARY_FRAME = "binary frame (Media Streams is JSON text)"
    RATE_LIMITED = "message rate limit exceeded"
    TOO_BIG = "message too big"
    REFUSED = "refused before start"
    INTERNAL_ERROR = "internal error"
    CANCELLED = "cancelled"


#: WebSocket close codes we use towards Twilio (RFC 6455 section 7.4.1).
CLOSE_NORMAL = 1000
CLOSE_UNSUPPORTED = 1003  # a binary frame: Media Streams messages are JSON text
CLOSE_PROTOCOL = 1007  # a frame that is not a valid Media Streams message
CLOSE_POLICY = 1008  # refused: no valid call token, no start in time, too many messages
CLOSE_TOO_BIG = 1009  # (sent by uvicorn itself, over ``ws_max_size``)
CLOSE_INTERNAL = 1011  # the model side failed

_CLOSE_CODES = {
    EndReason.PROTOCOL_ERROR: CLOSE_PROTOCOL,
    EndReason.REFUSED: CLOSE_POLICY,
    EndReason.RATE_LIMITED: CLOSE_POLICY,
    EndReason.BINARY_FRAME: CLOSE_UNSUPPORTED,
    EndReason.MODEL_FAILED: CLOSE_INTERNAL,
}


def close_code(reason: EndReason | None) -> int:
    """The close code for a stream the gateway ends. A model failure is 1011, so Twilio runs
    the TwiML after ``<Connect>`` (the fallback); a hang-up or transfer is a normal close."""
    return _CLOSE_CODES.get(reason, CLOSE_NORMAL) if reason is not None else CLOSE_NORMAL
