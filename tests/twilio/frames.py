"""Realistic Twilio Media Streams frames, shaped as in Twilio's "Media Streams - WebSocket
Messages" examples (https://www.twilio.com/docs/voice/media-streams/websocket-messages).

Each function returns a fresh dict, so a test may mutate it; ``text()`` turns one into the JSON
text of a WebSocket frame.
"""

from __future__ import annotations

import base64
import json
from typing import Any

ACCOUNT_SID = "AC3e9d1a2b4c5f60718293a4b5c6d7e8f9"
CALL_SID = "CA5c1ad4e4f5b3a2c1d0e9f8a7b6c5d4e3"
STREAM_SID = "MZ18ad3ab5a668481ce02b83e7395059f0"

# 20 ms of mu-law silence (0xFF) as Twilio sends it: 160 bytes.
SILENCE = b"\xff" * 160


def text(frame: dict[str, Any]) -> str:
    return json.dumps(frame)


def connected() -> dict[str, Any]:
    return {"event": "connected", "protocol": "Call", "version": "1.0.0"}


def start(seq: str = "1", **custom_parameters: str) -> dict[str, Any]:
    return {
        "event": "start",
        "sequenceNumber": seq,
        "start": {
            "accountSid": ACCOUNT_SID,
            "streamSid": STREAM_SID,
            "callSid": CALL_SID,
            "tracks": ["inbound"],
            "customParameters": dict(custom_parameters),
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
        "streamSid": STREAM_SID,
    }


def b64(payload: bytes) -> str:
    return base64.b64encode(payload).decode("ascii")


def media(
    seq: str = "2", chunk: str = "1", timestamp: str = "5", payload: bytes = SILENCE
) -> dict[str, Any]:
    return {
        "event": "media",
        "sequenceNumber": seq,
        "media": {
            "track": "inbound",
            "chunk": chunk,
            "timestamp": timestamp,
            "payload": b64(payload),
        },
        "streamSid": STREAM_SID,
    }


def dtmf(seq: str = "5", digit: str = "1") -> dict[str, Any]:
    return {
        "event": "dtmf",
        "streamSid": STREAM_SID,
        "sequenceNumber": seq,
        "dtmf": {"track": "inbound_track", "digit": digit},
    }


def mark(seq: str = "4", name: str = "greeting-1") -> dict[str, Any]:
    return {"event": "mark", "sequenceNumber": seq, "streamSid": STREAM_SID, "mark": {"name": name}}


def stop(seq: str = "6") -> dict[str, Any]:
    return {
        "event": "stop",
        "sequenceNumber": seq,
        "stop": {"accountSid": ACCOUNT_SID, "callSid": CALL_SID},
        "streamSid": STREAM_SID,
    }


# What we send Twilio.


def outbound_media(payload: bytes = SILENCE) -> dict[str, Any]:
    return {"event": "media", "streamSid": STREAM_SID, "media": {"payload": b64(payload)}}


def outbound_mark(name: str = "greeting-1") -> dict[str, Any]:
    return {"event": "mark", "streamSid": STREAM_SID, "mark": {"name": name}}


def clear() -> dict[str, Any]:
    return {"event": "clear", "streamSid": STREAM_SID}
