"""parse_message / parse_outbound on realistic frames and on every way a frame can be wrong.

Every error test checks that the ProtocolError names the problem (the field path, or what is
wrong with the frame), because that text is what ends up in the call's log.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from gateway.twilio import (
    DEFAULT_MAX_SIZE,
    Clear,
    Connected,
    Dtmf,
    Mark,
    Media,
    MediaFormat,
    OutboundMark,
    OutboundMedia,
    ProtocolError,
    Start,
    Stop,
    UnknownEvent,
    parse_message,
    parse_outbound,
)
from tests.twilio import frames
from tests.twilio.frames import ACCOUNT_SID, CALL_SID, SILENCE, STREAM_SID


def rejects(
    data: Any, *fragments: str, parse: Callable[..., object] = parse_message, **kwargs: Any
) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse(data, **kwargs)
    for fragment in fragments:
        assert fragment in str(info.value)
    return info.value


# --- Valid frames from Twilio ---------------------------------------------------------------------


def test_connected() -> None:
    expected = Connected(protocol="Call", version="1.0.0")
    assert parse_message(frames.text(frames.connected())) == expected


def test_connected_tolerates_missing_informational_fields() -> None:
    assert parse_message('{"event":"connected"}') == Connected(protocol="", version="")


def test_start() -> None:
    message = parse_message(frames.text(frames.start(agent="billing", caller="+15551234567")))
    assert message == Start(
        sequence_number=1,
        stream_sid=STREAM_SID,
        account_sid=ACCOUNT_SID,
        call_sid=CALL_SID,
        tracks=("inbound",),
        custom_parameters={"agent": "billing", "caller": "+15551234567"},
        media_format=MediaFormat("audio/x-mulaw", 8000, 1),
    )


def test_start_with_stream_sid_only_at_top_level() -> None:
    frame = frames.start()
    del frame["start"]["streamSid"]
    assert parse_message(frames.text(frame)).stream_sid == STREAM_SID  # type: ignore[union-attr]


def test_start_with_stream_sid_only_inside_start() -> None:
    frame = frames.start()
    del frame["streamSid"]
    assert parse_message(frames.text(frame)).stream_sid == STREAM_SID  # type: ignore[union-attr]


def test_start_without_custom_parameters_has_empty_mapping() -> None:
    frame = frames.start()
    del frame["start"]["customParameters"]
    message = parse_message(frames.text(frame))
    assert isinstance(message, Start)
    assert dict(message.custom_parameters) == {}


def test_media() -> None:
    payload = bytes(range(160))
    frame = frames.media(seq="3", chunk="2", timestamp="25", payload=payload)
    assert parse_message(frames.text(frame)) == Media(
        sequence_number=3,
        stream_sid=STREAM_SID,
        track="inbound",
        chunk=2,
        timestamp=25,
        payload=payload,
    )


def test_media_accepts_integer_counters() -> None:
    frame = frames.media()
    frame["sequenceNumber"], frame["media"]["chunk"], frame["media"]["timestamp"] = 9, 8, 140
    message = parse_message(frames.text(frame))
    assert isinstance(message, Media)
    assert (message.sequence_number, message.chunk, message.timestamp) == (9, 8, 140)


def test_media_empty_payload() -> None:
    message = parse_message(frames.text(frames.media(payload=b"")))
    assert isinstance(message, Media) and message.payload == b""


@pytest.mark.parametrize("digit", list("0123456789*#ABCD"))
def test_dtmf(digit: str) -> None:
    expected = Dtmf(5, STREAM_SID, "inbound_track", digit)
    assert parse_message(frames.text(frames.dtmf(digit=digit))) == expected


def test_mark() -> None:
    expected = Mark(4, STREAM_SID, "turn-3:audio-17")
    assert parse_message(frames.text(frames.mark(name="turn-3:audio-17"))) == expected


def test_stop() -> None:
    assert parse_message(frames.text(frames.stop())) == Stop(6, STREAM_SID, ACCOUNT_SID, CALL_SID)


def test_unknown_event_is_returned_not_raised() -> None:
    raw = {"event": "transcription", "sequenceNumber": "9", "streamSid": STREAM_SID, "text": "hi"}
    assert parse_message(json.dumps(raw)) == UnknownEvent("transcription", raw)


def test_unknown_fields_are_ignored() -> None:
    frame = frames.media()
    frame["extra"] = {"anything": [1, 2]}
    frame["media"]["newField"] = None
    assert isinstance(parse_message(frames.text(frame)), Media)


@pytest.mark.parametrize(
    "convert", [str.encode, lambda s: bytearray(s.encode()), lambda s: memoryview(s.encode())]
)
def test_bytes_input(convert: Callable[[str], Any]) -> None:
    assert parse_message(convert(frames.text(frames.mark()))) == Mark(4, STREAM_SID, "greeting-1")


def test_non_ascii_utf8_bytes() -> None:
    text = json.dumps(frames.mark(name="café ☎"), ensure_ascii=False)
    message = parse_message(text.encode("utf-8"))
    assert isinstance(message, Mark) and message.name == "café ☎"


# --- Valid frames we send (read by the caller simulator) ------------------------------------------


def test_outbound_media() -> None:
    expected = OutboundMedia(STREAM_SID, SILENCE)
    assert parse_outbound(frames.text(frames.outbound_media())) == expected


def test_outbound_mark() -> None:
    expected = OutboundMark(STREAM_SID, "end")
    assert parse_outbound(frames.text(frames.outbound_mark(name="end"))) == expected


def test_outbound_clear() -> None:
    assert parse_outbound(frames.text(frames.clear())) == Clear(STREAM_SID)


def test_outbound_unknown_event() -> None:
    raw = {"event": "dance", "streamSid": STREAM_SID}
    assert parse_outbound(json.dumps(raw)) == UnknownEvent("dance", raw)


def test_outbound_parser_does_not_accept_twilio_only_events() -> None:
    # "stop" is something only Twilio sends; for the outbound parser it is just unknown.
    assert isinstance(parse_outbound(frames.text(frames.stop())), UnknownEvent)


# --- Framing errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ("", "not valid JSON"),
        ("{", "not valid JSON"),
        ("not json", "not valid JSON"),
        ('{"event":"media"', "not valid JSON"),
        ("\ufeff{}", "not valid JSON"),
        ("[]", "not a JSON object (got an array)"),
        ('"media"', "not a JSON object (got a string)"),
        ("42", "not a JSON object (got a number)"),
        ("null", "not a JSON object (got null)"),
        ("{}", "missing field event"),
        ('{"event":5}', "event must be a string, not a number"),
        ('{"event":null}', "event must be a string, not null"),
        (b"\xff\xfe{}", "not valid UTF-8"),
        (b'{"event":"mark","x":"\xc3"}', "not valid UTF-8"),
        ("[" * 100_000, "message too large"),
        ("[" * 60_000, "nested too deeply"),
        ('{"event":"media","n":' + "9" * 5000 + "}", "not valid JSON"),
    ],
)
def test_framing_errors(data: str | bytes, fragment: str) -> None:
    error = rejects(data, fragment)
    assert error.event is None


@pytest.mark.parametrize("data", [None, 42, 1.5, ["{}"], {"event": "media"}])
def test_wrong_input_type(data: Any) -> None:
    rejects(data, "must be str or bytes")


def test_non_contiguous_buffer() -> None:
    rejects(memoryview(b'{"event":"mark"}')[::2], "not a readable byte buffer")


def test_size_limit_is_checked_for_str_and_bytes() -> None:
    text = frames.text(frames.media())
    rejects(text, "message too large", f"limit is {len(text) - 1}", max_size=len(text) - 1)
    rejects(text.encode(), "message too large", "bytes", max_size=len(text) - 1)
    assert isinstance(parse_message(text, max_size=len(text)), Media)


def test_default_size_limit_is_generous() -> None:
    frame = frames.mark(name="x" * (DEFAULT_MAX_SIZE - 200))
    assert isinstance(parse_message(frames.text(frame)), Mark)
    frame = frames.mark(name="x" * DEFAULT_MAX_SIZE)
    rejects(frames.text(frame), "message too large")


# --- Field errors: every required field, missing or mistyped ------------------------------------
# (frame factory, path of a required field). Each one missing must say "missing field <path>",
# each one replaced by a value of the wrong JSON type must name <path> and say "must be".

REQUIRED = [
    (frames.start, "sequenceNumber"),
    (frames.start, "start"),
    (frames.start, "start.accountSid"),
    (frames.start, "start.callSid"),
    (frames.start, "start.tracks"),
    (frames.start, "start.mediaFormat"),
    (frames.start, "start.mediaFormat.encoding"),
    (frames.start, "start.mediaFormat.sampleRate"),
    (frames.start, "start.mediaFormat.channels"),
    (frames.media, "sequenceNumber"),
    (frames.media, "streamSid"),
    (frames.media, "media"),
    (frames.media, "media.track"),
    (frames.media, "media.chunk"),
    (frames.media, "media.timestamp"),
    (frames.media, "media.payload"),
    (frames.dtmf, "sequenceNumber"),
    (frames.dtmf, "streamSid"),
    (frames.dtmf, "dtmf"),
    (frames.dtmf, "dtmf.track"),
    (frames.dtmf, "dtmf.digit"),
    (frames.mark, "sequenceNumber"),
    (frames.mark, "streamSid"),
    (frames.mark, "mark"),
    (frames.mark, "mark.name"),
    (frames.stop, "sequenceNumber"),
    (frames.stop, "streamSid"),
    (frames.stop, "stop"),
    (frames.stop, "stop.accountSid"),
    (frames.stop, "stop.callSid"),
]

REQUIRED_OUTBOUND = [
    (frames.outbound_media, "streamSid"),
    (frames.outbound_media, "media"),
    (frames.outbound_media, "media.payload"),
    (frames.outbound_mark, "streamSid"),
    (frames.outbound_mark, "mark"),
    (frames.outbound_mark, "mark.name"),
    (frames.clear, "streamSid"),
]


def parent_and_key(frame: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    *parents, key = path.split(".")
    for name in parents:
        frame = frame[name]
    return frame, key


def wrong_value(value: object) -> object:
    """A JSON value of a type the field cannot have."""
    return 12.5 if isinstance(value, (str, dict, list)) else [value]


def ids(case: tuple[Callable[..., dict[str, Any]], str]) -> str:
    return f"{case[0].__name__}:{case[1]}"


@pytest.mark.parametrize("case", REQUIRED + REQUIRED_OUTBOUND, ids=ids)
def test_missing_required_field(case: tuple[Callable[..., dict[str, Any]], str]) -> None:
    factory, path = case
    frame = factory()
    parent, key = parent_and_key(frame, path)
    del parent[key]
    parse = parse_outbound if case in REQUIRED_OUTBOUND else parse_message
    error = rejects(frames.text(frame), f"missing field {path}", parse=parse)
    assert error.event == frame["event"]
    assert str(error).startswith(f"{frame['event']} message: ")


@pytest.mark.parametrize("case", REQUIRED + REQUIRED_OUTBOUND, ids=ids)
def test_mistyped_required_field(case: tuple[Callable[..., dict[str, Any]], str]) -> None:
    factory, path = case
    frame = factory()
    parent, key = parent_and_key(frame, path)
    parent[key] = wrong_value(parent[key])
    parse = parse_outbound if case in REQUIRED_OUTBOUND else parse_message
    error = rejects(frames.text(frame), f"{path} must be", parse=parse)
    assert error.event == frame["event"]


@pytest.mark.parametrize("case", REQUIRED + REQUIRED_OUTBOUND, ids=ids)
def test_null_required_field(case: tuple[Callable[..., dict[str, Any]], str]) -> None:
    factory, path = case
    frame = factory()
    parent, key = parent_and_key(frame, path)
    parent[key] = None
    parse = parse_outbound if case in REQUIRED_OUTBOUND else parse_message
    rejects(frames.text(frame), f"{path} must be", "not null", parse=parse)


# --- Field errors: values of the right JSON type that are still wrong -----------------------------


@pytest.mark.parametrize(
    "bad", ["-1", "+1", " 1", "1 ", "1.0", "1e3", "0x10", "1_000", "", "²", "١٢", "one"]
)
def test_sequence_number_must_be_a_plain_decimal_string(bad: str) -> None:
    expected = "sequenceNumber must be a non-negative decimal integer"
    rejects(frames.text(frames.media(seq=bad)), expected, repr(bad))


@pytest.mark.parametrize("bad", [-1, 1.0, 2.5, True, False])
def test_sequence_number_must_be_a_non_negative_integer(bad: object) -> None:
    frame = frames.mark()
    frame["sequenceNumber"] = bad
    rejects(frames.text(frame), "sequenceNumber must be a non-negative integer")


def test_huge_decimal_string_is_a_protocol_error() -> None:
    expected = "media.chunk must be a non-negative decimal integer"
    rejects(frames.text(frames.media(chunk="7" * 5000)), expected)


@pytest.mark.parametrize("field", ["chunk", "timestamp"])
def test_media_counters_are_checked(field: str) -> None:
    frame = frames.media()
    frame["media"][field] = "-20"
    rejects(frames.text(frame), f"media.{field} must be a non-negative decimal integer")


@pytest.mark.parametrize(
    "bad",
    [
        "not base64!",
        "AAA",  # missing padding
        "AA==AA==",  # data after padding
        "AAAA\n",  # whitespace is not tolerated
        " AAAA",
        "AA=A",
        "=AAA",
        "AAAA====",  # padding after a complete group (accepted by binascii before 3.13)
        "AAAA=",
        "AAAA==",
        "====",
        "A===",
        "é===",  # non-ASCII
    ],
)
def test_media_payload_must_be_strict_base64(bad: str) -> None:
    frame = frames.media()
    frame["media"]["payload"] = bad
    error = rejects(frames.text(frame), "media.payload is not valid base64")
    assert error.event == "media"


def test_outbound_media_payload_must_be_strict_base64() -> None:
    frame = frames.outbound_media()
    frame["media"]["payload"] += "!"
    rejects(frames.text(frame), "media.payload is not valid base64", parse=parse_outbound)


@pytest.mark.parametrize("bad", ["", "10", "a", "E", "**", "5 ", "\u0665", "w"])
def test_dtmf_digit_must_be_a_single_dtmf_key(bad: str) -> None:
    expected = "dtmf.digit must be one of 0-9 * # A-D"
    error = rejects(frames.text(frames.dtmf(digit=bad)), expected, repr(bad))
    assert error.event == "dtmf"


def test_start_stream_sids_must_agree() -> None:
    frame = frames.start()
    frame["start"]["streamSid"] = "MZ" + "0" * 32
    rejects(frames.text(frame), "streamSid", "does not match start.streamSid")


def test_start_without_any_stream_sid() -> None:
    frame = frames.start()
    del frame["streamSid"], frame["start"]["streamSid"]
    rejects(frames.text(frame), "missing field start.streamSid")


@pytest.mark.parametrize("where", ["top", "start"])
def test_start_stream_sid_must_be_a_string(where: str) -> None:
    frame = frames.start()
    (frame if where == "top" else frame["start"])["streamSid"] = 7
    rejects(frames.text(frame), "streamSid must be a string")


def test_start_tracks_must_be_strings() -> None:
    frame = frames.start()
    frame["start"]["tracks"] = ["inbound", 2]
    rejects(frames.text(frame), "start.tracks must contain only strings")


def test_start_custom_parameters_must_be_an_object() -> None:
    frame = frames.start()
    frame["start"]["customParameters"] = [["a", "b"]]
    rejects(frames.text(frame), "start.customParameters must be a JSON object")


def test_start_custom_parameter_values_must_be_strings() -> None:
    frame = frames.start()
    frame["start"]["customParameters"] = {"agent": "support", "retries": 3}
    rejects(frames.text(frame), "start.customParameters['retries'] must be a string, not a number")


def test_start_media_format_numbers_must_be_integers() -> None:
    frame = frames.start()
    frame["start"]["mediaFormat"]["sampleRate"] = 8000.0
    rejects(frames.text(frame), "start.mediaFormat.sampleRate must be")


def test_connected_fields_if_present_must_be_strings() -> None:
    rejects('{"event":"connected","protocol":"Call","version":1}', "version must be a string")


def test_error_previews_of_long_values_are_truncated() -> None:
    error = rejects(frames.text(frames.dtmf(digit="9" * 10_000)), "dtmf.digit")
    assert len(str(error)) < 200


def test_b64_payload_roundtrip_sanity() -> None:
    # A payload with every byte value survives the wire encoding exactly.
    payload = bytes(range(256))
    frame = frames.media(payload=payload)
    assert frame["media"]["payload"] == base64.b64encode(payload).decode()
    assert parse_message(frames.text(frame)).payload == payload  # type: ignore[union-attr]
