"""The sans-I/O recorder, with explicit times: where each side's audio lands on the recording."""

from __future__ import annotations

from gateway.audio import hold as hold_audio
from gateway.bridge.actions import SendClear, SendMark, SendMedia
from gateway.bridge.hold import Hold
from gateway.recording.recorder import (
    AHEAD_MS,
    KEY_TONE_TAIL_MS,
    SETTLE_MS,
    Chunk,
    Recorder,
)

T0 = 1000.0  # the call's clock at the stream's start (sample 0)
MS = 8  # samples a millisecond
SILENT = 0xFF


def frame(value: int, ms: int = 20) -> bytes:
    return bytes([value]) * (ms * MS)


class Tape:
    """Every chunk a recorder hands over, joined: the whole recording, both channels."""

    def __init__(self) -> None:
        self.caller = bytearray()
        self.agent = bytearray()

    def add(self, chunk: Chunk | None) -> None:
        if chunk is None:
            return
        assert chunk.offset == len(self.caller), "chunks follow each other with no gap or overlap"
        assert len(chunk.caller) == len(chunk.agent)
        self.caller += chunk.caller
        self.agent += chunk.agent

    @staticmethod
    def at(ms: float) -> int:
        return round(ms * MS)


def finished(recorder: Recorder, end_ms: float) -> Tape:
    tape = Tape()
    tape.add(recorder.finish(T0 + end_ms / 1000))
    return tape


def silent(data: bytes | bytearray) -> bool:
    return set(data) <= {SILENT}


# --- The caller: placed by Twilio's timestamp ------------------------------------------------------


def test_caller_frames_land_at_their_timestamp_not_their_arrival() -> None:
    recorder = Recorder(T0)
    # Frames stamped 0, 20, 40 ms arrive late and bunched (at 300 ms): they still land at 0-60 ms.
    for k in range(3):
        recorder.caller(20 * k, frame(10 + k), T0 + 0.3)
    tape = finished(recorder, 100)
    assert tape.caller[: Tape.at(60)] == frame(10) + frame(11) + frame(12)
    assert silent(tape.caller[Tape.at(60):])
    assert len(tape.caller) == Tape.at(100)


def test_a_lost_frame_is_silence_and_a_reordered_one_finds_its_place() -> None:
    recorder = Recorder(T0)
    recorder.caller(0, frame(1), T0 + 0.02)
    recorder.caller(40, frame(3), T0 + 0.06)  # 20 ms is missing...
    recorder.caller(80, frame(5), T0 + 0.10)  # ...and 60 ms, which comes late, out of order
    recorder.caller(60, frame(4), T0 + 0.11)
    tape = finished(recorder, 100)
    assert tape.caller == frame(1) + frame(SILENT) + frame(3) + frame(4) + frame(5)


def test_a_caller_frame_later_than_the_settled_audio_is_dropped_and_counted() -> None:
    recorder = Recorder(T0)
    tape = Tape()
    for k in range(250):  # 5 s
        recorder.caller(20 * k, frame(7), T0 + 0.02 * (k + 1))
    tape.add(recorder.take(T0 + 5.0))  # final up to 5 s - SETTLE_MS
    assert len(tape.caller) == Tape.at(5000 - SETTLE_MS)
    recorder.caller(1000, frame(99), T0 + 5.0)  # stamped 1 s: written out already
    tape.add(recorder.finish(T0 + 5.0))
    assert recorder.caller_dropped == 160
    assert 99 not in tape.caller
    assert tape.caller == frame(7, 5000)


def test_a_timestamp_far_ahead_of_the_clock_is_not_believed() -> None:
    recorder = Recorder(T0)
    recorder.caller(0, frame(1), T0 + 0.02)
    recorder.caller(3_600_000, frame(2), T0 + 0.04)  # "an hour in": would pad 28 MB of silence
    assert recorder.caller_dropped == 160
    recorder.caller(AHEAD_MS // 2, frame(3), T0 + 0.04)  # ahead, but plausibly (clock skew)
    tape = finished(recorder, AHEAD_MS // 2 + 20)
    assert tape.caller[Tape.at(AHEAD_MS // 2):] == frame(3)
    assert 2 not in tape.caller


def test_a_peer_sending_faster_than_real_time_cannot_grow_memory() -> None:
    recorder = Recorder(T0)
    for k in range(10_000):  # 200 s of audio in the first second
        recorder.caller(20 * k, frame(1), T0 + k / 10_000)
    recorder.take(T0 + 10.0)
    assert len(recorder._caller) <= (AHEAD_MS + SETTLE_MS) * MS
    assert recorder.caller_dropped > 0


# --- The agent: as Twilio plays it -----------------------------------------------------------------


def test_agent_frames_sent_at_once_play_back_to_back_from_when_they_were_sent() -> None:
    recorder = Recorder(T0)
    for k in range(5):  # a burst: the model streams faster than real time
        recorder.agent(frame(20 + k), T0 + 1.0)
    recorder.agent(frame(30), T0 + 1.05)  # sent while the burst plays: queued behind it (1.1 s)
    recorder.agent(frame(40), T0 + 2.0)  # sent after the queue ran out: plays when sent
    tape = finished(recorder, 2100)
    assert silent(tape.agent[: Tape.at(1000)])
    assert tape.agent[Tape.at(1000) : Tape.at(1120)] == b"".join(frame(20 + k) for k in range(5)) + frame(30)
    assert silent(tape.agent[Tape.at(1120) : Tape.at(2000)])
    assert tape.agent[Tape.at(2000) : Tape.at(2020)] == frame(40)


def test_a_clear_cuts_the_agent_where_the_caller_was_and_drops_the_queue() -> None:
    recorder = Recorder(T0)
    for k in range(50):  # a 1 s reply, sent at once at 1.0 s
        recorder.agent(frame(k + 1), T0 + 1.0)
    recorder.sent(SendMark("g0:item:0:800"), T0 + 1.0)  # marks are not audio
    recorder.sent(SendClear(), T0 + 1.31)  # barge-in: the caller heard 310 ms of it
    recorder.sent(SendMedia(frame(200)), T0 + 1.5)  # the next reply plays when it is sent
    tape = finished(recorder, 1600)
    heard = b"".join(frame(k + 1) for k in range(50))[: Tape.at(310)]
    assert tape.agent[Tape.at(1000) : Tape.at(1310)] == heard
    assert silent(tape.agent[Tape.at(1310) : Tape.at(1500)])
    assert tape.agent[Tape.at(1500) : Tape.at(1520)] == frame(200)


def test_a_clear_after_the_audio_played_out_cuts_nothing() -> None:
    recorder = Recorder(T0)
    recorder.agent(frame(9), T0 + 1.0)
    recorder.clear(T0 + 2.0)
    tape = finished(recorder, 2000)
    assert tape.agent[Tape.at(1000) : Tape.at(1020)] == frame(9)


def test_agent_audio_still_queued_when_the_call_ends_was_never_heard() -> None:
    recorder = Recorder(T0)
    for k in range(50):
        recorder.agent(frame(5), T0 + 1.0)  # 1 s queued at 1.0 s; the caller hangs up at 1.5 s
    tape = finished(recorder, 1500)
    assert len(tape.agent) == Tape.at(1500)
    assert tape.agent[Tape.at(1000):] == frame(5, 500)


def test_hold_audio_is_what_the_caller_heard_until_the_agent_cleared_it() -> None:
    """The hold message goes out at once (gateway.bridge.hold) and plays at real time; the
    agent's first audio clears it. The caller heard the message up to the clear."""
    hold = Hold(after_s=1.0)
    hold.away(T0)
    recorder = Recorder(T0)
    for action in hold.start():  # due at 1 s
        recorder.sent(action, T0 + 1.0)
    for action in hold.stop():  # the agent speaks at 1.8 s: hold audio cleared
        recorder.sent(action, T0 + 1.8)
    recorder.sent(SendMedia(frame(3)), T0 + 1.8)
    tape = finished(recorder, 2000)
    message = b"".join(hold_audio.frames("message"))
    assert silent(tape.agent[: Tape.at(1000)])
    assert tape.agent[Tape.at(1000) : Tape.at(1800)] == message[: Tape.at(800)]
    assert tape.agent[Tape.at(1800) : Tape.at(1820)] == frame(3)


# --- Keys being collected: the caller's channel silent ------------------------------------------------------


def test_while_keys_are_collected_the_callers_channel_is_silent_and_the_agents_goes_on() -> None:
    recorder = Recorder(T0)
    for k in range(50):  # the agent's prompt, 1 s from 0.5 s, still playing when collection begins
        recorder.agent(frame(50), T0 + 0.5)
    tape = Tape()
    for k in range(200):  # the caller, 4 s of sound (speech, then keypad tones)
        now = T0 + 0.02 * (k + 1)
        if k == 50:
            recorder.collecting(True, now)  # collect_digits starts at 1.02 s
        if k == 100:
            recorder.collecting(False, now)  # the last key at 2.02 s
        if k == 120:
            recorder.agent(frame(60, 300), now)  # "thank you", at 2.42 s
        recorder.caller(20 * k, frame(80), now)
        tape.add(recorder.take(now))
    tape.add(recorder.finish(T0 + 4.0))
    assert tape.agent[Tape.at(500) : Tape.at(1500)] == frame(50, 1000)  # the whole prompt, as heard
    assert silent(tape.agent[Tape.at(1500) : Tape.at(2420)])
    assert tape.agent[Tape.at(2420) : Tape.at(2720)] == frame(60, 300)
    assert tape.caller[: Tape.at(1020)] == frame(80, 1020)
    tail_end = 2020 + KEY_TONE_TAIL_MS
    assert silent(tape.caller[Tape.at(1020) : Tape.at(tail_end)])  # the last key's tone too
    assert tape.caller[Tape.at(tail_end) :] == frame(80, 4000 - tail_end)


def test_a_call_that_ends_while_keys_are_collected_ends_silent() -> None:
    recorder = Recorder(T0)
    recorder.collecting(True, T0 + 1.0)
    for k in range(100):
        recorder.caller(20 * k, frame(80), T0 + 0.02 * (k + 1))
    tape = finished(recorder, 2000)
    assert tape.caller[: Tape.at(1000)] == frame(80, 1000)
    assert silent(tape.caller[Tape.at(1000):])
    assert not recorder.paused


# --- Bounded memory ----------------------------------------------------------------------------------


def test_a_long_call_keeps_only_the_last_seconds_in_memory() -> None:
    recorder = Recorder(T0)
    tape = Tape()
    most = 0
    for k in range(30_000):  # 10 minutes, both sides talking all the time
        now = T0 + 0.02 * (k + 1)
        recorder.caller(20 * k, frame(k % 200), now)
        recorder.agent(frame(k % 100), now)
        if k % 250 == 0:  # every 5 s, as CallRecording does
            tape.add(recorder.take(now))
            most = max(most, len(recorder._caller), len(recorder._agent))
    tape.add(recorder.finish(T0 + 600.0))
    assert most <= (SETTLE_MS + 5000 + 20) * MS  # ~56 KB a channel, however long the call
    assert len(tape.caller) == len(tape.agent) == 600 * 8000
    assert tape.caller[Tape.at(599_980):] == frame(29_999 % 200)
