"""Phone calls end to end: the caller simulator rings a real uvicorn gateway, which talks to
the local Realtime server through the real Agents SDK. Each test reads like the call it checks."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.audio import ulaw_to_pcm16
from gateway.audio.measure import amplitude_at, db, from_pcm16, to_pcm16, tone
from gateway.bridge.ending import EndReason
from gateway.settings import DEFAULT_GREETING, DEFAULT_INSTRUCTIONS
from gateway.testing.realtime import Reply

from .conftest import gateway_of, place_call, ulaw_tone

MODES = ["pcm16", "g711_ulaw"]


def heard_pcm(caller) -> np.ndarray:
    return from_pcm16(ulaw_to_pcm16(caller.heard_audio()))



@pytest.mark.parametrize("mode", MODES)
async def test_the_agent_greets_first_and_the_caller_hears_it(start_gateway, mode) -> None:
    greeting = Reply("Thanks for calling, how can I help?", duration_ms=1500, tone_hz=440)
    async with start_gateway([greeting], GATEWAY_AUDIO_MODE=mode) as (gateway, realtime):
        caller = await place_call(gateway, speed=4)  # timing is not what this test checks
        await caller.wait_heard(1500, timeout=10)
        await caller.hang_up()
    # Everything the model said, at the right level and pitch, nothing lost or added.
    assert caller.heard_ms == pytest.approx(1500, abs=0.2)
    heard = heard_pcm(caller)
    level = amplitude_at(heard, 8000, 440)
    assert level > 1000, level
    # The greeting was asked for by the gateway, before the caller said anything.
    conn = realtime.connections[0]
    assert conn.responses[0].trigger.source == "response.create"
    # It is a response.create carrying the agent's own instructions plus the greeting request,
    # not a fake user message in the conversation.
    request = conn.received_of("response.create")[0].data["response"]["instructions"]
    assert request.startswith(DEFAULT_INSTRUCTIONS) and request.endswith(DEFAULT_GREETING)
    assert conn.user_messages == []
    record = gateway_of(gateway).finished[-1]
    assert any("Thanks for calling" in (item.get("text") or "") for item in record.transcript)
    assert record.end_reason is EndReason.CALLER_HUNG_UP
    assert caller.invalid_count == 0 and caller.errors == []


async def test_no_greeting_when_disabled(start_gateway) -> None:
    async with start_gateway([Reply("hello")], GATEWAY_GREETING="") as (gateway, realtime):
        caller = await place_call(gateway, speed=4)
        conn = await realtime.wait_for_connection()
        await conn.wait_for("input_audio_buffer.append", count=25, timeout=10)  # 0.5 s of caller audio
        await caller.hang_up()
    assert conn.responses == [] and caller.heard_ms == 0


@pytest.mark.parametrize("mode", MODES)
async def test_caller_tone_reaches_the_model_as_the_same_tone(start_gateway, mode) -> None:
    async with start_gateway([], GATEWAY_AUDIO_MODE=mode, GATEWAY_GREETING="") as (gateway, realtime):
        caller = await place_call(gateway, speed=4)
        caller.pause(200)
        caller.say(ulaw_tone(1000, 1.0, 8000))
        await caller.wait_said(timeout=10)
        conn = await realtime.wait_for_connection()
        expected_frames = caller.frames_sent
        await conn.wait_until(lambda: len(conn.received_of("input_audio_buffer.append")) >= expected_frames, timeout=10)
        await caller.hang_up()
    record = gateway_of(gateway).finished[-1]
    at_model = from_pcm16(conn.input_audio_pcm16(rate=8000))
    # Every caller frame reached the model, including those sent while it was connecting.
    assert record.frames_in == caller.frames_sent
    per_frame = 960 if mode == "pcm16" else 160
    assert len(conn.input_audio) == record.frames_in * per_frame - (90 if mode == "pcm16" else 0)
    # Same pitch, same level (within mu-law), same duration.
    loud = np.flatnonzero(np.abs(at_model) > 2000)
    duration = (loud[-1] - loud[0] + 1) / 8000
    assert duration == pytest.approx(1.0, abs=0.005)
    segment = at_model[loud[0] : loud[0] + 8000]
    assert abs(db(amplitude_at(segment, 8000, 1000) / 8000)) < 0.5
    assert amplitude_at(segment, 8000, 1000) > 100 * amplitude_at(segment, 8000, 3000)


async def test_model_audio_reaches_the_caller_without_aliasing(start_gateway) -> None:
    """The model speaks 1 kHz plus 6 kHz at equal level; 6 kHz must not fold to 2 kHz."""
    audio = to_pcm16(tone(1000, 24000, 2.0, 8000) + tone(6000, 24000, 2.0, 8000))
    async with start_gateway([Reply("tones", audio=audio)]) as (gateway, realtime):
        caller = await place_call(gateway, speed=4)
        await caller.wait_heard(2000, timeout=10)
        await caller.hang_up()
    heard = heard_pcm(caller)
    assert abs(db(amplitude_at(heard, 8000, 1000) / 8000)) < 0.5
    alias = db(amplitude_at(heard, 8000, 2000) / 8000)
    assert alias <= -60.0, f"6 kHz folded back to 2 kHz at {alias:.1f} dB"


@pytest.mark.parametrize("pace", [None, 1.0], ids=["model-streams-fast", "model-streams-real-time"])
async def test_barge_in_clears_at_once_and_truncates_at_what_was_heard(start_gateway, pace) -> None:
    """The agent starts a 4 s answer; after 1 s the caller talks over it."""
    script = [Reply("a long answer", duration_ms=4000, tone_hz=440), Reply("yes?", duration_ms=1200, tone_hz=880)]
    async with start_gateway(script, realtime_options={"pace": pace}) as (gateway, realtime):
        caller = await place_call(gateway, speed=1)  # real time: timing is what is tested
        await caller.wait_heard(1000, timeout=10)
        caller.say(ulaw_tone(1000, 0.6, 12000))  # "wait, wait"
        clear = await caller.wait_for_message("clear", timeout=5)
        conn = realtime.connections[0]
        await conn.wait_for("conversation.item.truncate", timeout=5)
        await caller.wait_heard(caller.heard_ms + 1200, timeout=10)  # the second answer
        await caller.hang_up()

    # Twilio got `clear` within 100 ms of the model hearing the caller start to talk.
    speech_started = conn.speech_started_at[0]
    clear_latency = caller.clock.to_monotonic(clear.time) - speech_started
    assert 0 <= clear_latency < 0.100, f"clear {clear_latency * 1000:.1f} ms after speech_started"

    # What the caller heard of the first answer: everything that played before the clear.
    segments = caller.heard_segments()
    first = sum(len(s.audio) for s in segments if s.start < clear.time) / 8
    # The model was told the same, within one mark interval.
    truncation = conn.truncations[0]
    assert truncation.item_id == conn.responses[0].item_ids[0]
    # Streaming in real time, the model was still talking: the barge-in cancelled it. Streaming
    # fast (like the API), it had finished sending before the caller spoke.
    assert conn.responses[0].status == ("cancelled" if pace else "completed")
    # The gateway sends the clear the moment speech_started arrives and tells the SDK's
    # truncation what had been heard then: the error is the clear's own trip to the caller
    # (a few ms here), not the SDK's and the session queue's time on top.
    assert abs(truncation.audio_end_ms - first) <= 20, (truncation.audio_end_ms, first)
    assert 1000 <= first < 4000

    # Nothing of the interrupted answer after the clear: what followed is exactly the second one.
    after = sum(len(s.audio) for s in segments if s.start >= clear.time) / 8
    assert after == pytest.approx(1200, abs=0.2)
    record = gateway_of(gateway).finished[-1]
    if pace is None:
        # The whole answer was queued at Twilio: the clear dropped it and echoed the pending
        # marks at once; none of them counted as played (else the truncation would be off).
        assert record.stale_echoes >= 1
    # Every echo Twilio sent for a cleared mark was treated as stale (plus, at most, one echo of
    # played audio that crossed the clear on the wire: the truncation was already decided).
    cleared = sum(1 for echo in caller.marks_echoed if echo.cleared)
    assert cleared <= record.stale_echoes <= cleared + 1
    print(
        f"\nbarge-in ({'fast' if pace is None else 'real-time'} model): clear {clear_latency * 1000:.1f} ms after "
        f"speech_started; truncated at {truncation.audio_end_ms} ms, caller heard {first:.1f} ms "
        f"(error {truncation.audio_end_ms - first:+.1f} ms)"
    )
    assert any(e["event"] == "interrupted" for e in record.events)
    assert caller.invalid_count == 0 and caller.errors == []
