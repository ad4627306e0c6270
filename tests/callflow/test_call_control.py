"""Call control on live calls: silence, keypad collection, hang-up and transfer timing."""

from __future__ import annotations

import dataclasses

import logging

import time

import pytest
from agents.realtime import RealtimeAgent

from gateway.bridge.call import CHECK_IN_REQUEST
from gateway.bridge.ending import EndReason
from gateway.testing.realtime import Reply, ToolCall
from gateway.tools import collect_digits

from .conftest import finished, gateway_of, place_call, ulaw_tone


@dataclasses.dataclass
class Utterance:
    start: float
    end: float


def utterances(segments, pause_s: float) -> list[Utterance]:
    """Heard segments joined where less than ``pause_s`` separates them."""
    joined: list[Utterance] = []
    for segment in segments:
        if joined and segment.start - joined[-1].end < pause_s:
            joined[-1].end = segment.end
        else:
            joined.append(Utterance(segment.start, segment.end))
    return joined


async def test_a_silent_caller_is_checked_on_then_the_call_ends_politely(start_gateway) -> None:
    script = [
        Reply("Hello, how can I help?", duration_ms=300, tone_hz=440),
        Reply("Are you still there?", duration_ms=300, tone_hz=550),
        Reply("Goodbye.", duration_ms=300, tone_hz=660),
    ]
    settings = {"GATEWAY_SILENCE_CHECK_IN_S": "1", "GATEWAY_SILENCE_GIVE_UP_S": "1"}
    async with start_gateway(script, **settings) as (gateway, realtime):
        caller = await place_call(gateway)  # says nothing at all
        await caller.wait_closed(timeout=15)
        record = await finished(gateway)
    conn = realtime.connections[0]
    requests = [e.data["response"]["instructions"] for e in conn.received_of("response.create")]
    assert len(requests) == 3
    assert requests[1].endswith(CHECK_IN_REQUEST) and "silent for too long" in requests[2]
    # Every reply was heard in full, the goodbye included, before the gateway ended the call.
    assert caller.heard_ms == pytest.approx(900, abs=0.2)
    # The three replies, each one run of audio (a stall of a loaded machine may split a reply's
    # playout: pieces closer than the pauses asserted below are one reply).
    greeting, check_in, goodbye = utterances(caller.heard_segments(), pause_s=0.5)
    assert check_in.start - greeting.end >= 1.0  # a second of silence after the greeting
    assert goodbye.start - check_in.end >= 1.0
    assert caller.closed_by == "gateway" and caller.closed_at >= goodbye.end
    assert record.end_reason is EndReason.AGENT_HUNG_UP
    assert any(e["event"] == "hang_up" and e["reason"] == "silence" for e in record.events)


async def test_collect_digits_tool_gets_the_pin_instead_of_the_model(start_gateway, caplog) -> None:
    agent = RealtimeAgent(name="Bank", instructions="Ask for the PIN.", tools=[collect_digits])
    script = [
        Reply("Please enter your PIN, then press pound.", duration_ms=300),
        ToolCall("collect_digits", {"count": 6, "terminator": "#", "timeout_s": 5}),
        Reply("Thanks.", duration_ms=300),
    ]
    caplog.set_level(logging.INFO, logger="gateway")
    async with start_gateway(script, agent=agent) as (gateway, realtime):
        caller = await place_call(gateway)
        await caller.wait_heard(300)
        conn = realtime.connections[0]
        # Greeting, then the caller speaks (VAD turn), which makes the model call the tool.
        caller.say(ulaw_tone(1000, 0.3))
        (call,) = gateway_of(gateway).calls.values()
        await conn.wait_until(lambda: call.control.collecting, timeout=10)
        for digit in "1234#":
            await caller.press(digit)
        await conn.wait_until(lambda: conn.function_call_outputs, timeout=10)
        await caller.hang_up()
        record = await finished(gateway)
    assert conn.function_call_outputs[0].output == "The caller entered 1234 (ended by terminator)."
    assert conn.user_messages == []  # the keypresses did not go to the model as text
    assert [e["collected"] for e in record.events if e["event"] == "dtmf"] == [True] * 5
    # The PIN stays out of the logs (GATEWAY_REDACT_DIGITS, on by default).
    lines = [r.getMessage() for r in caplog.records]
    assert sum(line.endswith("] caller pressed * (collected)") for line in lines) == 5
    assert any(line.endswith("] tool collect_digits finished: The caller entered **** (ended by terminator).")
               for line in lines)
    assert not any("1234" in line for line in lines)


async def test_a_keypad_timeout_fires_with_every_other_timer_off(start_gateway) -> None:
    """collect_digits' own timeout is the call's only deadline here. (The bridge before the
    sans-I/O call woke its timer on another event than the one collect_digits set, so with no
    silence or duration timers the tool waited until something else happened: forever.)"""
    agent = RealtimeAgent(name="Bank", instructions="Ask for the PIN.", tools=[collect_digits])
    script = [
        Reply("Please enter your PIN.", duration_ms=300),
        ToolCall("collect_digits", {"count": 4, "timeout_s": 1}),
        Reply("I did not get that.", duration_ms=300),
    ]
    off = {"GATEWAY_SILENCE_CHECK_IN_S": "0", "GATEWAY_SILENCE_GIVE_UP_S": "0", "GATEWAY_MAX_CALL_S": "0",
           "GATEWAY_SESSION_ROLLOVER_S": "0"}
    async with start_gateway(script, agent=agent, **off) as (gateway, realtime):
        caller = await place_call(gateway)
        await caller.wait_heard(300)
        conn = realtime.connections[0]
        caller.say(ulaw_tone(1000, 0.3))
        (call,) = gateway_of(gateway).calls.values()
        await conn.wait_until(lambda: call.control.collecting, timeout=10)
        began = time.monotonic()
        await conn.wait_until(lambda: conn.function_call_outputs, timeout=5)  # presses nothing
        await caller.hang_up()
        await finished(gateway)
    (output,) = conn.function_call_outputs
    assert output.output == "The caller pressed no keys."
    assert output.time - began < 2.0  # the 1 s timeout, not whenever something else happens


async def test_an_application_digit_handler_takes_keypresses_in_code(start_gateway) -> None:
    seen: list[tuple[str, str]] = []

    async def menu(call, digit: str) -> bool:
        seen.append((call.call_sid, digit))
        return digit == "0"  # "0" is ours (say, operator); the model hears of the others

    async with start_gateway([Reply("Hi.", duration_ms=300)], on_digit=menu) as (gateway, realtime):
        caller = await place_call(gateway, speed=4)
        await caller.wait_heard(300)
        await caller.press("0")
        await caller.press("7")
        conn = realtime.connections[0]
        await conn.wait_until(lambda: conn.user_messages, timeout=5)
        await caller.hang_up()
    assert seen == [(caller.call_sid, "0"), (caller.call_sid, "7")]
    assert [m.text for m in conn.user_messages] == ["The caller pressed the 7 key on their phone."]


async def test_the_maximum_call_duration_ends_the_call_politely(start_gateway) -> None:
    script = [Reply("Hello, how can I help?", duration_ms=300), Reply("Goodbye.", duration_ms=400, tone_hz=660)]
    settings = {"GATEWAY_MAX_CALL_S": "2", "GATEWAY_SILENCE_CHECK_IN_S": "0", "GATEWAY_SILENCE_GIVE_UP_S": "0"}
    async with start_gateway(script, **settings) as (gateway, realtime):
        caller = await place_call(gateway)
        await caller.wait_closed(timeout=10)
        record = await finished(gateway)
    requests = [e.data["response"]["instructions"] for e in realtime.connections[0].received_of("response.create")]
    assert "maximum length" in requests[-1]
    goodbye = caller.heard_segments()[-1]
    assert len(goodbye.audio) == 400 * 8  # heard in full
    assert goodbye.start >= 2.0 - 0.1  # not before the limit (caller clock starts at stream start)
    assert caller.closed_by == "gateway" and caller.closed_at >= goodbye.end
    assert any(e["event"] == "hang_up" and e["reason"] == "maximum duration" for e in record.events)


async def test_session_rollover_keeps_the_call_and_the_conversation_going(start_gateway) -> None:
    script = [Reply("Hello, how can I help?", duration_ms=300), Reply("Happy to help.", duration_ms=300)]
    settings = {"GATEWAY_SESSION_ROLLOVER_S": "3", "GATEWAY_SILENCE_CHECK_IN_S": "0", "GATEWAY_SILENCE_GIVE_UP_S": "0"}
    async with start_gateway(script, **settings) as (gateway, realtime):
        caller = await place_call(gateway)
        await caller.wait_heard(300)
        caller.say(ulaw_tone(1000, 0.4))  # a first question, answered by the first session
        await caller.wait_heard(600)
        second = await realtime.wait_for_connection(1, timeout=10)  # the rollover
        first = realtime.connections[0]
        await first.wait_until(lambda: first.closed, timeout=5)
        caller.say(ulaw_tone(1000, 0.4))  # the call goes on: the new session hears and answers
        await caller.wait_heard(900, timeout=10)
        await caller.hang_up()
        record = await finished(gateway)
    # The new session was given the conversation so far, in order.
    items = [e.data["item"] for e in second.received_of("conversation.item.create")]
    said = [(i["role"], i["content"][0]["text"]) for i in items]
    assert said[0] == ("assistant", "Hello, how can I help?")
    assert said[1][0] == "user" and said[2] == ("assistant", "Happy to help.")
    assert second.user_turns and second.responses[0].done
    assert record.rollovers == 1 and record.end_reason is EndReason.CALLER_HUNG_UP
    (rollover,) = [e for e in record.events if e["event"] == "session_rollover"]
    assert rollover["seconds"] < 1.0  # the pause a caller could notice, at most
    assert caller.invalid_count == 0 and caller.errors == []
