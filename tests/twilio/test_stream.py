"""MediaStream: the order of a Media Streams connection, read like the script of a call."""

from __future__ import annotations

import json

import pytest

from gateway.twilio import (
    Connected,
    Dtmf,
    Mark,
    Media,
    MediaStream,
    ProtocolError,
    Start,
    Stop,
    StreamState,
    StreamStateError,
    UnknownEvent,
)
from tests.twilio import frames
from tests.twilio.frames import CALL_SID, SILENCE, STREAM_SID

OTHER_SID = "MZ" + "f" * 32
SENDS = [lambda s: s.media(SILENCE), lambda s: s.mark("m"), lambda s: s.clear()]


def started(**custom_parameters: str) -> MediaStream:
    stream = MediaStream()
    stream.receive(frames.text(frames.connected()))
    stream.receive(frames.text(frames.start(**custom_parameters)))
    return stream


def rejects(stream: MediaStream, frame: dict, *fragments: str) -> ProtocolError:
    state = stream.state
    with pytest.raises(ProtocolError) as info:
        stream.receive(frames.text(frame))
    for fragment in fragments:
        assert fragment in str(info.value)
    assert stream.state is state, "a rejected frame must not change the state"
    return info.value


# --- Happy path ---------------------------------------------------------------------------------


def test_a_whole_call() -> None:
    stream = MediaStream()
    assert stream.state is StreamState.NEW
    assert stream.stream_sid is None and stream.call_sid is None
    assert dict(stream.custom_parameters) == {}

    # Twilio connects and describes the stream.
    assert isinstance(stream.receive(frames.text(frames.connected())), Connected)
    assert stream.state is StreamState.CONNECTED
    start = stream.receive(frames.text(frames.start(agent="support")))
    assert isinstance(start, Start)
    assert stream.state is StreamState.STARTED
    assert stream.start_message is start
    assert stream.stream_sid == STREAM_SID
    assert stream.call_sid == CALL_SID
    assert dict(stream.custom_parameters) == {"agent": "support"}

    # The agent greets the caller and marks the end of the greeting.
    assert json.loads(stream.media(SILENCE)) == frames.outbound_media()
    assert json.loads(stream.mark("greeting-1")) == frames.outbound_mark("greeting-1")

    # Caller audio flows, the greeting finishes playing, the caller presses 1.
    assert isinstance(stream.receive(frames.text(frames.media(seq="2"))), Media)
    next_frame = frames.media(seq="3", chunk="2", timestamp="25")
    assert isinstance(stream.receive(frames.text(next_frame)), Media)
    assert stream.receive(frames.text(frames.mark(seq="4"))) == Mark(4, STREAM_SID, "greeting-1")
    assert isinstance(stream.receive(frames.text(frames.dtmf(seq="5", digit="1"))), Dtmf)

    # The caller interrupts: the agent clears what Twilio still has buffered.
    assert json.loads(stream.clear()) == frames.clear()

    # The caller hangs up.
    assert isinstance(stream.receive(frames.text(frames.stop(seq="6"))), Stop)
    assert stream.state is StreamState.STOPPED
    assert stream.missed_messages == 0
    assert stream.stream_sid == STREAM_SID  # still known, for the last log lines


def test_connected_is_optional() -> None:
    stream = MediaStream()
    stream.receive(frames.text(frames.start()))
    assert stream.state is StreamState.STARTED


def test_bytes_frames_are_accepted() -> None:
    stream = MediaStream()
    stream.receive(frames.text(frames.start()).encode())
    assert isinstance(stream.receive(frames.text(frames.media()).encode()), Media)


# --- Order violations ---------------------------------------------------------------------------


@pytest.mark.parametrize("frame", [frames.media, frames.dtmf, frames.mark, frames.stop])
def test_stream_messages_before_start(frame) -> None:  # type: ignore[no-untyped-def]
    stream = MediaStream()
    stream.receive(frames.text(frames.connected()))
    error = rejects(stream, frame(), f"{frame()['event']} message before start")
    assert error.event == frame()["event"]


def test_media_before_anything() -> None:
    rejects(MediaStream(), frames.media(), "media message before start")


def test_second_start() -> None:
    stream = started()
    error = rejects(stream, frames.start(seq="7"), "second start message", STREAM_SID)
    assert error.event == "start"
    assert stream.start_message is not None and stream.start_message.sequence_number == 1


def test_second_start_for_another_stream_does_not_replace_the_first() -> None:
    stream = started()
    other = frames.start()
    other["streamSid"] = other["start"]["streamSid"] = OTHER_SID
    rejects(stream, other, "second start message")
    assert stream.stream_sid == STREAM_SID


def test_connected_after_start() -> None:
    rejects(started(), frames.connected(), "connected message in state started")


def test_second_connected() -> None:
    stream = MediaStream()
    stream.receive(frames.text(frames.connected()))
    rejects(stream, frames.connected(), "connected message in state connected")


@pytest.mark.parametrize("frame", [frames.media, frames.dtmf, frames.mark, frames.stop])
def test_stream_sid_mismatch(frame) -> None:  # type: ignore[no-untyped-def]
    stream = started()
    wrong = frame()
    wrong["streamSid"] = OTHER_SID
    event = wrong["event"]
    rejects(
        stream, wrong, f"{event} message for stream {OTHER_SID!r}", f"this stream is {STREAM_SID!r}"
    )


def test_stop_for_another_stream_does_not_stop_this_one() -> None:
    stream = started()
    wrong = frames.stop()
    wrong["streamSid"] = OTHER_SID
    rejects(stream, wrong, "stop message for stream")
    assert stream.state is StreamState.STARTED
    assert isinstance(stream.receive(frames.text(frames.media(seq="3"))), Media)


@pytest.mark.parametrize(
    "frame", [frames.media, frames.dtmf, frames.mark, frames.stop, frames.start, frames.connected]
)
def test_nothing_after_stop(frame) -> None:  # type: ignore[no-untyped-def]
    stream = started()
    stream.receive(frames.text(frames.stop()))
    error = rejects(stream, frame(), "stop" if frame is not frames.connected else "state stopped")
    assert error.event == frame()["event"]


def test_unknown_event_after_stop() -> None:
    stream = started()
    stream.receive(frames.text(frames.stop()))
    rejects(stream, {"event": "future", "streamSid": STREAM_SID}, "future message after stop")


def test_malformed_frame_leaves_the_stream_usable() -> None:
    stream = started()
    bad = frames.media(seq="2")
    bad["media"]["payload"] = "%%%"
    rejects(stream, bad, "media.payload is not valid base64")
    assert isinstance(stream.receive(frames.text(frames.media(seq="3"))), Media)
    assert stream.missed_messages == 1  # the rejected frame never counted as received


# --- Unknown events -----------------------------------------------------------------------------


@pytest.mark.parametrize("before_start", [True, False])
def test_unknown_event_passes_through_without_changing_state(before_start: bool) -> None:
    stream = MediaStream() if before_start else started()
    state = stream.state
    message = stream.receive(json.dumps({"event": "transcription", "text": "hello"}))
    assert message == UnknownEvent("transcription", {"event": "transcription", "text": "hello"})
    assert stream.state is state


def test_unknown_event_sequence_numbers_do_not_look_like_gaps() -> None:
    stream = started()  # start is sequenceNumber 1
    stream.receive(json.dumps({"event": "future", "sequenceNumber": "2", "streamSid": STREAM_SID}))
    stream.receive(json.dumps({"event": "future", "sequenceNumber": 3}))
    # A malformed number on an unknown event is ignored, not an error.
    stream.receive(json.dumps({"event": "future", "sequenceNumber": "junk"}))
    stream.receive(frames.text(frames.media(seq="4")))
    assert stream.missed_messages == 0


# --- Sequence gaps ------------------------------------------------------------------------------


def test_sequence_gaps_are_counted_not_raised() -> None:
    stream = started()  # sequenceNumber 1
    stream.receive(frames.text(frames.media(seq="2")))
    stream.receive(frames.text(frames.media(seq="5")))  # 3 and 4 lost
    assert stream.missed_messages == 2
    stream.receive(frames.text(frames.mark(seq="6")))
    stream.receive(frames.text(frames.dtmf(seq="10")))  # 7, 8, 9 lost
    assert stream.missed_messages == 5
    stream.receive(frames.text(frames.stop(seq="11")))
    assert stream.missed_messages == 5
    assert stream.out_of_order_messages == 0


def test_late_and_duplicate_sequence_numbers() -> None:
    stream = started()
    stream.receive(frames.text(frames.media(seq="2")))
    stream.receive(frames.text(frames.media(seq="2")))  # duplicate
    stream.receive(frames.text(frames.media(seq="1")))  # late
    assert stream.out_of_order_messages == 2
    assert stream.missed_messages == 0
    stream.receive(frames.text(frames.media(seq="3")))
    assert stream.missed_messages == 0


def test_gap_counting_starts_at_start() -> None:
    stream = MediaStream()
    stream.receive(frames.text(frames.start(seq="40")))
    stream.receive(frames.text(frames.media(seq="41")))
    assert stream.missed_messages == 0


# --- Sending ------------------------------------------------------------------------------------


@pytest.mark.parametrize("send", SENDS)
def test_nothing_can_be_sent_before_start(send) -> None:  # type: ignore[no-untyped-def]
    stream = MediaStream()
    stream.receive(frames.text(frames.connected()))
    with pytest.raises(StreamStateError, match="before Twilio's start message"):
        send(stream)


@pytest.mark.parametrize("send", SENDS)
def test_nothing_can_be_sent_after_stop(send) -> None:  # type: ignore[no-untyped-def]
    stream = started()
    stream.receive(frames.text(frames.stop()))
    with pytest.raises(StreamStateError, match="has stopped"):
        send(stream)


def test_send_errors_are_not_protocol_errors() -> None:
    # A receive loop's `except ProtocolError` must not swallow our own misuse.
    assert not issubclass(StreamStateError, ProtocolError)


def test_mark_name_must_be_text() -> None:
    with pytest.raises(TypeError, match="mark name must be a str"):
        started().mark(7)  # type: ignore[arg-type]


def test_media_of_any_length() -> None:
    stream = started()
    five_seconds = SILENCE * 250
    assert json.loads(stream.media(five_seconds)) == frames.outbound_media(five_seconds)
    assert json.loads(stream.media(b"")) == frames.outbound_media(b"")
