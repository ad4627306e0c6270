"""The picture of a stored call (``gateway.calltimeline``), from a real call: the caller
simulator, the local Realtime server and the gateway, at the speed of a real call (the stored
times are the gateway's clock and ``heard_ms`` is audio: they agree only at speed 1)."""

from __future__ import annotations

import asyncio
import io
import struct
import time
import wave
from dataclasses import dataclass

import numpy as np
import pytest
from agents import function_tool
from agents.realtime import RealtimeAgent

from gateway.calltimeline import (
    RATE,
    RecordingError,
    call_timeline,
    read_recording,
    speech_spans,
    timeline_png,
)
from gateway.demo.chart import render_png
from gateway.store import stored_call
from gateway.testing.phone import PhoneSystem
from gateway.testing.realtime import Reply, ToolCall
from gateway.testing.realtime.script import synthesize_voice
from gateway.tools import collect_digits, hang_up
from tests.demo.test_chart import decode_png

GREETING = "Hello, Acme."
LONG = "Let me tell you everything about our shipping policy, from the very start, and then some more."
ASK = "Type your order number, then pound."
STATUS = "Order 42 shipped."
GOODBYE = "Goodbye!"
ASKED = "Where is my order?"
BARGE = "Wait, stop."
THANKS = "Thanks, bye."
#: The agent is done once quiet this long: shorter than the kit's default, the call is real time.
QUIET_MS = 300


@function_tool
def lookup_order(order_number: str) -> str:
    """Look up an order's status."""
    return f"Order {order_number}: shipped."


AGENT = RealtimeAgent(name="Ava", instructions="Help with orders.", tools=[collect_digits, lookup_order, hang_up])

#: What the local model says, in order: the greeting; a long answer the caller talks over; a
#: request for the order number, with collect_digits; the lookup (its own response, no words);
#: the status; the goodbye, with hang_up.
SCRIPT = [
    Reply(GREETING),
    Reply(LONG),
    (Reply(ASK), ToolCall("collect_digits", {"count": None, "terminator": "#"})),
    ToolCall("lookup_order", {"order_number": "42"}),
    Reply(STATUS),
    (Reply(GOODBYE), ToolCall("hang_up")),
]


@dataclass
class Call:
    """The finished call: its stored form, its recording (GATEWAY_RECORD), and what the
    simulated caller lived, to check the picture against."""

    stored: dict
    wav: bytes
    utterances: list[tuple[float, float]]  # caller-clock (start, end) of what the caller said
    heard: list[tuple[float, float]]  # stretches of agent audio the caller heard


async def _place_call() -> Call:
    async with PhoneSystem(AGENT, SCRIPT, speed=1.0, settings={"GATEWAY_RECORD": "true"}) as phone:
        call = await phone.call()
        await call.listen(quiet_ms=QUIET_MS)
        await call.say(ASKED)
        await call.hear(1500)  # a second and a half into the long answer...
        await call.say(BARGE)  # ...the caller talks over it
        await call.listen(quiet_ms=QUIET_MS)
        await call.press("42#", gap_ms=150)
        await call.listen(quiet_ms=QUIET_MS)
        await call.say(THANKS)
        await call.listen(quiet_ms=QUIET_MS)
        record = await call.ended()
        assert record.recording is not None
        wav = (phone.data_dir / record.recording).read_bytes()  # written before the record is final
        return Call(stored_call(record), wav, [(u.start, u.end) for u in call.caller.utterances],
                    [(s.start, s.end) for s in call.heard_segments()])


def _wav(left: np.ndarray, right: np.ndarray, rate: int = RATE, channels: int = 2) -> bytes:
    n = max(len(left), len(right))
    stereo = np.zeros((n, 2), "<i2")
    stereo[:len(left), 0], stereo[:len(right), 1] = left, right
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(stereo[:, :channels].tobytes())
    return out.getvalue()


@pytest.fixture(scope="module")
def real_call() -> Call:
    """One call of about ten seconds, shared by the tests of this module."""
    return asyncio.run(_place_call())


def _near(a: float, b: float, within: float) -> bool:
    return abs(a - b) <= within


# ---------------------------------------------------------------------------------------------
# What happened: the markers


def test_a_real_calls_barge_in_tools_keys_and_hang_up_are_marked(real_call: Call) -> None:
    call = real_call.stored
    timeline = call_timeline(call)
    marks = [(m.kind, m.label) for m in timeline.markers]
    [barge] = call["barge_ins"]
    [clear] = [m for m in timeline.markers if m.kind == "clear"]
    [cut] = [m for m in timeline.markers if m.kind == "truncate"]
    assert clear.t == cut.t == barge["t"]
    assert cut.label == f"truncated at {barge['heard_ms'] / 1000:.2f} s heard"
    assert 1.4 <= barge["heard_ms"] / 1000 <= 2.5  # the caller heard 1.5 s, then spoke
    assert [label for kind, label in marks if kind == "tool_start"] == [
        "collect_digits(terminator='#')", "lookup_order(order_number='42')", "hang_up()"]
    ends = [label for kind, label in marks if kind == "tool_end"]
    assert len(ends) == 2 and "**" in ends[0] and "42" not in ends[0]  # collected digits: redacted
    assert ends[1] == "Order 42: shipped."
    assert [label for kind, label in marks if kind == "dtmf"] == ["*", "*", "*"]
    [hangup] = [m for m in timeline.markers if m.kind == "hangup"]
    assert hangup.label == call["end_reason"] == "agent_hung_up"
    assert _near(hangup.t, call["duration_s"], 0.01)
    assert timeline.title.startswith("+15550001111 \u2192 +15550002222 \u00b7 agent Ava \u00b7 ")
    assert timeline.title.endswith(call["call_sid"])
    assert any(line.startswith("Barge-ins: 1 (") for line in timeline.summary)
    assert any(line.startswith("Tools: collect_digits") for line in timeline.summary)


# ---------------------------------------------------------------------------------------------
# Who spoke when


def test_without_a_recording_the_speech_is_drawn_from_the_events_and_labelled(real_call: Call) -> None:
    call = real_call.stored
    timeline = call_timeline(call)
    assert timeline.caller_audio == timeline.agent_audio == b""
    # Each reply with words, in order (the lookup's response said nothing and is left out).
    assert [s.label for s in timeline.agent_speech] == [GREETING, LONG, ASK, STATUS, GOODBYE]
    heard = real_call.heard
    greeting, long, ask, status, goodbye = timeline.agent_speech
    # The cut reply: exactly what was heard of it, ending at the clear.
    [barge] = call["barge_ins"]
    assert long.end == barge["t"] and _near(long.end - long.start, barge["heard_ms"] / 1000, 0.002)
    # The others: from the response's start, as long as their words take to say (the local
    # model speaks 60 ms a character, the estimate 65): near what the caller heard.
    for span, (start, end) in zip((greeting, ask, status, goodbye), (heard[0], heard[2], heard[3], heard[4])):
        assert _near(span.start, start, 0.3), (span, start)
        assert _near(span.end, end, 0.15 * (end - start) + 0.3), (span, end)
    # The caller's turns, between the replies, with their words.
    assert [s.label for s in timeline.caller_speech] == [ASKED, BARGE, THANKS]
    asked, barged, thanks = timeline.caller_speech
    assert asked.start == greeting.end and asked.end == long.start
    assert _near(barged.start, barge["t"], 0.05) and barged.end == ask.start
    assert thanks.start == status.end and thanks.end == goodbye.start
    # The rest of the cut reply, unheard: from the clear to the next reply at most.
    [cut] = timeline.cut_audio
    assert cut.start == barge["t"] and barge["t"] < cut.end <= ask.start
    assert any(line.startswith("No recording: ") for line in timeline.summary)


def test_with_a_recording_the_speech_is_where_each_channel_has_sound(real_call: Call) -> None:
    timeline = call_timeline(real_call.stored, real_call.wav)  # the gateway's own recording
    recording = read_recording(real_call.wav)
    assert (timeline.caller_audio, timeline.agent_audio) == (recording.caller, recording.agent)
    said = timeline.caller_speech
    assert len(said) == len(real_call.utterances) == 3
    for span, (start, end) in zip(said, real_call.utterances):
        assert _near(span.start, start, 0.04) and _near(span.end, end, 0.04), (span, start, end)
    assert [s.label for s in said] == [ASKED, BARGE, THANKS]
    agent = timeline.agent_speech
    assert [s.label for s in agent] == [GREETING, LONG, ASK, STATUS, GOODBYE]
    assert len(real_call.heard) == 5
    # Every reply from the agent's channel, the one asking for the keys too (it plays on while
    # collect_digits collects them; only the caller's side is silent then).
    for span, (start, end) in zip(agent, real_call.heard):
        assert _near(span.start, start, 0.04) and _near(span.end, end, 0.04), (span, start, end)
    assert timeline.summary[-1].startswith(f"Recording: {real_call.stored['recording']} (caller left, agent right")


def test_a_recording_that_cannot_be_read_costs_the_words_not_the_picture(real_call: Call, tmp_path) -> None:
    timeline = call_timeline(real_call.stored, tmp_path / "gone.wav")
    assert [s.label for s in timeline.agent_speech] == [GREETING, LONG, ASK, STATUS, GOODBYE]
    assert "unreadable (cannot open the recording" in timeline.summary[-1]
    assert "unreadable (not a readable WAV" in call_timeline(real_call.stored, b"RIFF????").summary[-1]
    mono = _wav(np.zeros(800, "<i2"), np.zeros(800, "<i2"), channels=1)
    with pytest.raises(RecordingError, match="expected a stereo 16-bit WAV, got 1 channel"):
        read_recording(mono)


def test_a_recording_at_another_rate_is_read_at_8_khz() -> None:
    t = np.arange(16000) / 16000
    left = (8000 * np.sin(2 * np.pi * 200 * t)).astype("<i2")
    recording = read_recording(_wav(left, np.zeros(16000, "<i2"), rate=16000))
    assert len(recording.caller) == len(recording.agent) == 2 * 8000
    assert recording.seconds == 1.0


# ---------------------------------------------------------------------------------------------
# Speech in a channel


def _voice(spans: list[tuple[float, float]], seconds: float, noise: float = 0.0) -> bytes:
    out = np.random.default_rng(1).normal(0, noise, int(seconds * RATE)) if noise else np.zeros(int(seconds * RATE))
    for a, b in spans:
        voice = np.frombuffer(synthesize_voice(int((b - a) * 1000), 200.0, rate=RATE), "<i2")
        out[int(a * RATE):int(a * RATE) + len(voice)] += voice
    return np.clip(out, -32767, 32767).astype("<i2").tobytes()


def test_speech_spans_find_utterances_and_join_the_pauses_inside_one() -> None:
    assert speech_spans(b"") == speech_spans(bytes(16000)) == []
    audio = _voice([(0.5, 1.5), (1.8, 2.5), (4.0, 5.0)], 6.0)
    assert speech_spans(audio, gap_s=0.6) == [(0.5, 2.5), (4.0, 5.0)]
    assert speech_spans(audio, gap_s=0.2) == [(0.5, 1.5), (1.8, 2.5), (4.0, 5.0)]
    # A turn changed hands in the pause (a response began, a key was pressed): two turns.
    assert speech_spans(audio, gap_s=0.6, splits=[1.7, 3.0]) == [(0.5, 1.5), (1.8, 2.5), (4.0, 5.0)]
    assert speech_spans(audio, gap_s=0.6, splits=[1.0, 3.0]) == [(0.5, 2.5), (4.0, 5.0)]
    # A phone line's hiss (about -50 dBFS) is not speech; a click of a frame is dropped.
    noisy = _voice([(1.0, 2.0)], 3.0, noise=100.0)
    assert speech_spans(noisy) == [(1.0, 2.0)]
    click = np.zeros(3 * RATE, "<i2")
    click[RATE:RATE + 80] = 20000
    assert speech_spans(click.tobytes()) == []


# ---------------------------------------------------------------------------------------------
# The picture


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


def test_the_picture_of_a_real_call_is_a_png(real_call: Call, tmp_path) -> None:
    path = tmp_path / "call.wav"
    path.write_bytes(real_call.wav)
    for wav in (None, path):
        png = timeline_png(real_call.stored, wav)
        width, height = _png_size(png)
        pixels = decode_png(png)  # decodes, every chunk's CRC checked
        assert (width, height) == (1600, pixels.shape[0]) and 400 < height < 900
    assert _png_size(timeline_png(real_call.stored, width=900))[0] == 900


def test_a_stored_call_with_little_or_nonsense_in_it_still_draws(real_call: Call) -> None:
    """The store may have been written by anyone who can write to it: nothing in a stored
    call makes the drawing raise."""
    wild = dict(real_call.stored, figures="x", keypresses=7, started_at=1e300, tool_calls=[None, 1])
    wild["events"] = [*real_call.stored["events"], {"t": 1e30, "event": "error", "error": {}},
                      {"t": float("nan"), "event": "dtmf"}, {"t": 1.0, "event": "guardrail_tripped", "guardrails": 3},
                      {"t": 2.0, "event": "agent_turn", "seconds": "long"}]
    wild["barge_ins"] = [{"t": 4.0, "item_id": {"not": "hashable"}, "heard_ms": float("inf")}]
    wild["transcript"] = [*real_call.stored["transcript"], {"type": "message", "role": "user", "text": 5,
                                                           "item_id": []}]
    for call, wav in (({}, None), ({"events": "junk", "transcript": [None, {"type": "message"}]}, None),
                      (wild, None), (wild, real_call.wav)):
        timeline = call_timeline(call, wav)
        assert timeline.duration <= 90_000.0
        assert _png_size(render_png(timeline, 800))[0] == 800


def test_a_minute_of_recorded_call_is_drawn_in_a_fraction_of_a_second(real_call: Call) -> None:
    minute = 60.0
    caller = _voice([(t, t + 2.5) for t in np.arange(0.0, 57.0, 6.0)], minute, noise=30.0)
    agent = _voice([(t + 3.0, t + 5.5) for t in np.arange(0.0, 55.0, 6.0)], minute)
    wav = _wav(np.frombuffer(caller, "<i2"), np.frombuffer(agent, "<i2"))
    call = dict(real_call.stored, duration_s=minute)
    timeline_png(call, wav)  # warm up: the font atlas
    start = time.perf_counter()
    png = timeline_png(call, wav)
    elapsed = time.perf_counter() - start
    assert _png_size(png)[0] == 1600
    assert elapsed < 1.0, elapsed
