"""Property-based tests: round trips for every message type, and totality of the parsers.

Totality means: whatever a parser is given, it returns a typed message or raises
ProtocolError. Any other exception (KeyError, TypeError, UnicodeDecodeError, RecursionError...)
escaping would kill a live call, so these tests feed it garbage of every kind.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.twilio import (
    DTMF_DIGITS,
    Clear,
    Connected,
    Dtmf,
    Mark,
    Media,
    MediaFormat,
    MediaStream,
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

# Bounded so the whole tests/twilio suite stays well under 20 s.
ROUND_TRIP = settings(max_examples=150, deadline=None)
GARBAGE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

INBOUND_TYPES = (Connected, Start, Media, Dtmf, Mark, Stop, UnknownEvent)
OUTBOUND_TYPES = (OutboundMedia, OutboundMark, Clear, UnknownEvent)
KNOWN_EVENTS = {"connected", "start", "media", "dtmf", "mark", "stop", "clear"}

# Any code point, lone surrogates included: they can arrive as "\ud800" escapes in JSON.
any_text = st.text(st.characters(), max_size=30)
counter = st.integers(min_value=0, max_value=2**64)
payload = st.binary(max_size=400)

connected = st.builds(Connected, protocol=any_text, version=any_text)
starts = st.builds(
    Start,
    sequence_number=counter,
    stream_sid=any_text,
    account_sid=any_text,
    call_sid=any_text,
    tracks=st.lists(any_text, max_size=3).map(tuple),
    custom_parameters=st.dictionaries(any_text, any_text, max_size=5),
    media_format=st.builds(MediaFormat, encoding=any_text, sample_rate=counter, channels=counter),
)
medias = st.builds(
    Media,
    sequence_number=counter,
    stream_sid=any_text,
    track=any_text,
    chunk=counter,
    timestamp=counter,
    payload=payload,
)
dtmfs = st.builds(
    Dtmf,
    sequence_number=counter,
    stream_sid=any_text,
    track=any_text,
    digit=st.sampled_from(sorted(DTMF_DIGITS)),
)
marks = st.builds(Mark, sequence_number=counter, stream_sid=any_text, name=any_text)
stops = st.builds(
    Stop, sequence_number=counter, stream_sid=any_text, account_sid=any_text, call_sid=any_text
)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def unknown_events(draw: st.DrawFn) -> UnknownEvent:
    event = draw(any_text.filter(lambda e: e not in KNOWN_EVENTS))
    raw = draw(st.dictionaries(any_text, json_values, max_size=4))
    return UnknownEvent(event, {**raw, "event": event})



inbound_messages = st.one_of(connected, starts, medias, dtmfs, marks, stops, unknown_events())
outbound_messages = st.one_of(
    st.builds(OutboundMedia, stream_sid=any_text, payload=payload),
    st.builds(OutboundMark, stream_sid=any_text, name=any_text),
    st.builds(Clear, stream_sid=any_text),
)


# --- Round trips --------------------------------------------------------------------------------


@ROUND_TRIP
@given(inbound_messages)
def test_inbound_round_trip(message: Any) -> None:
    text = message.to_json()
    assert parse_message(text) == message
    assert parse_message(text.encode("utf-8")) == message


@ROUND_TRIP
@given(outbound_messages)
def test_outbound_round_trip(message: Any) -> None:
    text = message.to_json()
    assert parse_outbound(text) == message
    assert parse_outbound(text.encode("utf-8")) == message


@ROUND_TRIP
@given(inbound_messages)
def test_reserialising_a_parsed_frame_is_stable(message: Any) -> None:
    text = message.to_json()
    assert parse_message(text).to_json() == text


# --- Totality -------------------------------------------------------------------------------------


def outcome(parse: Any, data: Any, types: tuple[type, ...]) -> object:
    """Run `parse`; only a message of `types` or a ProtocolError is acceptable."""
    try:
        message = parse(data)
    except ProtocolError as error:
        assert str(error)  # every error says something
        return error
    assert isinstance(message, types)
    return message


@GARBAGE
@given(st.text(st.characters(), max_size=200) | st.binary(max_size=200))
def test_arbitrary_text_or_bytes(data: str | bytes) -> None:
    outcome(parse_message, data, INBOUND_TYPES)
    outcome(parse_outbound, data, OUTBOUND_TYPES)


@GARBAGE
@given(json_values)
def test_arbitrary_json_values(value: Any) -> None:
    text = json.dumps(value)
    result = outcome(parse_message, text, INBOUND_TYPES)
    if not isinstance(value, dict):
        assert isinstance(result, ProtocolError) and "not a JSON object" in str(result)
    outcome(parse_outbound, text, OUTBOUND_TYPES)


VALID_FRAMES = [
    frames.connected, frames.start, frames.media, frames.dtmf, frames.mark, frames.stop,
    frames.outbound_media, frames.outbound_mark, frames.clear,
]


def slots(node: Any, found: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key-or-index) pair inside a JSON value, depth first."""
    if isinstance(node, dict):
        items: Any = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return found
    for key, child in items:
        found.append((node, key))
        slots(child, found)
    return found


@st.composite
def mutated_frames(draw: st.DrawFn) -> dict[str, Any]:
    """A valid frame with the right event, then a few fields deleted or replaced by junk."""
    frame = draw(st.sampled_from(VALID_FRAMES))()
    for _ in range(draw(st.integers(1, 3))):
        places = slots(frame, [])
        if not places:
            break
        container, key = draw(st.sampled_from(places))
        if key == "event" and draw(st.booleans()):
            continue  # mostly keep the event, so the field checks of that event get exercised
        if isinstance(container, dict) and draw(st.booleans()):
            del container[key]
        else:
            container[key] = draw(json_values)
    return frame


@GARBAGE
@given(mutated_frames())
def test_mutated_frames(frame: dict[str, Any]) -> None:
    text = json.dumps(frame)
    outcome(parse_message, text, INBOUND_TYPES)
    outcome(parse_outbound, text, OUTBOUND_TYPES)


@GARBAGE
@given(st.lists(mutated_frames() | st.sampled_from(VALID_FRAMES).map(lambda f: f()), max_size=8))
def test_media_stream_only_ever_raises_protocol_error(frame_list: list[dict[str, Any]]) -> None:
    stream = MediaStream()
    for frame in frame_list:
        state_before = stream.state
        result = outcome(stream.receive, json.dumps(frame), INBOUND_TYPES)
        if isinstance(result, ProtocolError):
            assert stream.state is state_before  # a rejected frame changes nothing
    assert stream.missed_messages >= 0


@ROUND_TRIP
@given(any_text, payload)
def test_outbound_media_text_is_exactly_the_json_encoders(stream_sid: str, audio: bytes) -> None:
    # OutboundMedia.to_json builds its text from a cached head (the hot path); it must be the
    # very text the compact, ASCII-escaping encoder writes for the same message.
    expected = json.dumps({"event": "media", "streamSid": stream_sid,
                           "media": {"payload": base64.b64encode(audio).decode()}}, separators=(",", ":"))
    assert OutboundMedia(stream_sid, audio).to_json() == expected
