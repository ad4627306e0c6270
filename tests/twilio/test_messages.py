"""Message classes: immutability and the exact wire shape ``to_json()`` produces."""

from __future__ import annotations

import base64
import dataclasses
import json

import pytest

from gateway.twilio import (
    Clear,
    Connected,
    Dtmf,
    Mark,
    Media,
    MediaFormat,
    OutboundMark,
    OutboundMedia,
    Start,
    Stop,
    UnknownEvent,
)
from tests.twilio import frames
from tests.twilio.frames import ACCOUNT_SID, CALL_SID, SILENCE, STREAM_SID

MULAW_8K = MediaFormat(encoding="audio/x-mulaw", sample_rate=8000, channels=1)


def make_start(**custom_parameters: str) -> Start:
    return Start(
        sequence_number=1,
        stream_sid=STREAM_SID,
        account_sid=ACCOUNT_SID,
        call_sid=CALL_SID,
        tracks=("inbound",),
        custom_parameters=custom_parameters,
        media_format=MULAW_8K,
    )


# --- Wire shapes: to_json() must equal Twilio's frames field for field -----------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (Connected(protocol="Call", version="1.0.0"), frames.connected()),
        (make_start(caller="+15551234567"), frames.start(caller="+15551234567")),
        (Media(2, STREAM_SID, "inbound", 1, 5, SILENCE), frames.media()),
        (Dtmf(5, STREAM_SID, "inbound_track", "1"), frames.dtmf()),
        (Mark(4, STREAM_SID, "greeting-1"), frames.mark()),
        (Stop(6, STREAM_SID, ACCOUNT_SID, CALL_SID), frames.stop()),
        (OutboundMedia(STREAM_SID, SILENCE), frames.outbound_media()),
        (OutboundMark(STREAM_SID, "greeting-1"), frames.outbound_mark()),
        (Clear(STREAM_SID), frames.clear()),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, dict) else "",
)
def test_to_json_produces_twilio_wire_shape(message: object, expected: dict) -> None:
    assert json.loads(message.to_json()) == expected  # type: ignore[attr-defined]


def test_counters_are_written_as_strings_as_twilio_does() -> None:
    wire = json.loads(Media(7, STREAM_SID, "inbound", 3, 40, b"").to_json())
    assert wire["sequenceNumber"] == "7"
    assert wire["media"]["chunk"] == "3"
    assert wire["media"]["timestamp"] == "40"


def test_outbound_media_payload_is_plain_base64_without_newline() -> None:
    payload = bytes(range(256)) * 4  # long enough that MIME-style encoders would wrap lines
    text = OutboundMedia(STREAM_SID, payload).to_json()
    assert "\\n" not in text
    assert json.loads(text)["media"]["payload"] == base64.b64encode(payload).decode()


def test_to_json_is_compact_ascii_even_for_unicode_and_lone_surrogates() -> None:
    text = OutboundMark(STREAM_SID, "réponse-\ud800").to_json()
    assert text.isascii()
    text.encode("utf-8")  # would raise if a raw surrogate leaked into the frame
    assert json.loads(text)["mark"]["name"] == "réponse-\ud800"
    assert ", " not in text and ": " not in text


def test_unknown_event_serializes_its_raw_object() -> None:
    raw = {"event": "future", "streamSid": STREAM_SID, "future": {"x": [1, 2]}}
    assert json.loads(UnknownEvent("future", raw).to_json()) == raw


# --- Immutability --------------------------------------------------------------------------------


def test_messages_are_frozen() -> None:
    message = Media(2, STREAM_SID, "inbound", 1, 5, SILENCE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.payload = b""  # type: ignore[misc]


def test_messages_use_slots() -> None:
    assert not hasattr(Media(2, STREAM_SID, "inbound", 1, 5, SILENCE), "__dict__")


def test_start_copies_custom_parameters_and_makes_them_read_only() -> None:
    params = {"agent": "support"}
    start = make_start(**params)
    params["agent"] = "changed"
    assert start.custom_parameters["agent"] == "support"
    with pytest.raises(TypeError):
        start.custom_parameters["agent"] = "x"  # type: ignore[index]


def test_start_turns_tracks_into_a_tuple() -> None:
    tracks = ["inbound", "outbound"]
    start = dataclasses.replace(make_start(), tracks=tracks)  # type: ignore[arg-type]
    assert start.tracks == ("inbound", "outbound")


def test_start_is_hashable_and_equal_by_value() -> None:
    assert make_start(a="1") == make_start(a="1")
    assert make_start(a="1") != make_start(a="2")
    assert hash(make_start(a="1")) == hash(make_start(a="1"))


@pytest.mark.parametrize(
    ("message", "event"),
    [
        (Connected("Call", "1.0.0"), "connected"),
        (make_start(), "start"),
        (Media(2, STREAM_SID, "inbound", 1, 5, b""), "media"),
        (Dtmf(5, STREAM_SID, "inbound_track", "#"), "dtmf"),
        (Mark(4, STREAM_SID, "m"), "mark"),
        (Stop(6, STREAM_SID, ACCOUNT_SID, CALL_SID), "stop"),
        (UnknownEvent("future", {"event": "future"}), "future"),
        (OutboundMedia(STREAM_SID, b""), "media"),
        (OutboundMark(STREAM_SID, "m"), "mark"),
        (Clear(STREAM_SID), "clear"),
    ],
)
def test_every_message_exposes_its_wire_event(message: object, event: str) -> None:
    assert message.event == event  # type: ignore[attr-defined]
    assert json.loads(message.to_json())["event"] == event  # type: ignore[attr-defined]
