"""Faults: the model unreachable at the start (refused, timed out, 401, 429, 5xx), dropping
mid-call, a misbehaving tool. The caller never gets dead air: a retry succeeds, the
conversation goes on, or Twilio runs the fallback TwiML after ``</Connect>``."""

from __future__ import annotations

import asyncio
import socket

import pytest
from agents import function_tool
from agents.realtime import RealtimeAgent

from gateway.bridge.ending import CLOSE_INTERNAL, EndReason
from gateway.testing.realtime import Reply, ToolCall

from .conftest import finished, ulaw_tone

FALLBACK = {"GATEWAY_FALLBACK_SAY": "Sorry, please call back later.", "GATEWAY_FALLBACK_DIAL": "+15559990000"}


@pytest.mark.parametrize("failures", [[429], [500, 503], ["hang"]], ids=["429", "5xx-twice", "timeout"])
async def test_a_model_that_fails_to_connect_is_retried_within_the_budget(start_phone_system, failures) -> None:
    # No hold audio here (test_no_dead_air.py has it): the first thing heard is the greeting.
    async with start_phone_system([Reply("Hello!", duration_ms=500)], GATEWAY_HOLD_AFTER_S="0",
                                  **FALLBACK) as (gateway, realtime, twilio):
        realtime.fail_next(*failures)
        call = await twilio.ring(gateway.url + "/twilio/voice")
        await call.caller.wait_heard(500, timeout=10)  # the greeting, after the retries
        await call.hang_up()
        record = await finished(gateway)
    assert realtime.handshakes_failed == len(failures) and len(realtime.connections) == 1
    assert record.end_reason is EndReason.CALLER_HUNG_UP
    assert "Say" not in call.verbs and call.dialed == []  # no fallback: the call went through


async def test_an_unreachable_model_gets_the_caller_the_fallback_not_dead_air(start_phone_system) -> None:
    async with start_phone_system([Reply("Hello!")], GATEWAY_MODEL_CONNECT_BUDGET_S="1", **FALLBACK) as (
            gateway, realtime, twilio):
        realtime.fail_next(*[503] * 50)
        call = await twilio.ring(gateway.url + "/twilio/voice")
        await call.wait_until(lambda: call.dialed, timeout=10)
        record = await finished(gateway)
    assert call.caller.close_code == CLOSE_INTERNAL and call.caller.heard_ms == 0
    assert record.end_reason is EndReason.MODEL_FAILED
    # Retried with backoff (0.25, 0.5 s ...) until the 1 s budget was spent, then the fallback.
    assert 2 <= realtime.handshakes_failed <= 4
    assert call.verbs[-2:] == ["Say", "Dial"] and call.dialed == ["+15559990000"]


async def test_a_refused_key_is_not_retried(start_phone_system) -> None:
    async with start_phone_system([Reply("Hello!")], realtime_options={"api_key": "right"},
                                  OPENAI_API_KEY="wrong", **FALLBACK) as (gateway, realtime, twilio):
        call = await twilio.ring(gateway.url + "/twilio/voice")
        await call.wait_until(lambda: call.dialed, timeout=10)
        record = await finished(gateway)
    assert realtime.connections == [] and record.end_reason is EndReason.MODEL_FAILED
    assert call.dialed == ["+15559990000"]


async def test_nothing_listening_at_the_model_url_gets_the_fallback(start_phone_system) -> None:
    with socket.socket() as sock:  # a port with nothing behind it
        sock.bind(("127.0.0.1", 0))
        dead = f"ws://127.0.0.1:{sock.getsockname()[1]}/v1/realtime"
    async with start_phone_system([], OPENAI_REALTIME_URL=dead, GATEWAY_MODEL_CONNECT_BUDGET_S="1",
                                  **FALLBACK) as (gateway, realtime, twilio):
        call = await twilio.ring(gateway.url + "/twilio/voice")
        await call.wait_until(lambda: call.dialed, timeout=10)
        record = await finished(gateway)
    assert record.end_reason is EndReason.MODEL_FAILED and call.verbs[-2:] == ["Say", "Dial"]


async def test_a_model_dropping_mid_call_is_reconnected_and_the_conversation_goes_on(start_phone_system) -> None:
    script = [Reply("Welcome to Acme.", duration_ms=600), Reply("Your order ships today.", duration_ms=800)]
    async with start_phone_system(script, **FALLBACK) as (gateway, realtime, twilio):
        call = await twilio.ring(gateway.url + "/twilio/voice")
        caller = call.caller
        await caller.wait_agent_silent(300)
        first = realtime.connections[0]
        realtime.fail_next(500)  # the first reconnection attempt fails too
        await first.close(1011)
        second = await realtime.wait_for_connection(1, timeout=10)
        # The new session was given the conversation so far.
        seeded = await second.wait_for("conversation.item.create")
        assert seeded.data["item"]["content"][0]["text"] == "Welcome to Acme."
        # The caller goes on talking to a session that answers (each connection of the local
        # server plays the script from its first line: 600 ms here).
        said = caller.say(ulaw_tone(300, 0.6))
        await caller.wait_said()
        await caller.wait_agent_silent(300, after=said.end, timeout=10)
        await call.hang_up()
        record = await finished(gateway)
    assert record.reconnects == 1 and record.end_reason is EndReason.CALLER_HUNG_UP
    assert any(e["event"] == "model_reconnected" for e in record.events)
    assert second.user_turns and second.responses  # heard by the new session, which answered
    assert caller.heard_ms == pytest.approx(600 + 600, abs=1)  # greeting, then the answer
    assert call.dialed == [] and "Say" not in call.verbs


async def test_a_model_that_cannot_be_reconnected_gets_the_fallback(start_phone_system) -> None:
    async with start_phone_system([Reply("Welcome.", duration_ms=300)], GATEWAY_MODEL_CONNECT_BUDGET_S="1",
                                  **FALLBACK) as (gateway, realtime, twilio):
        call = await twilio.ring(gateway.url + "/twilio/voice")
        await call.caller.wait_heard(300)
        realtime.fail_next(*[503] * 50)
        await realtime.connections[0].close(1011)
        await call.wait_until(lambda: call.dialed, timeout=10)
        record = await finished(gateway)
    assert record.end_reason is EndReason.MODEL_FAILED and call.dialed == ["+15559990000"]


TOOL_CALLS: list[str] = []


@function_tool
async def flaky_lookup(order: str) -> str:
    """Look up an order (broken)."""
    TOOL_CALLS.append("flaky")
    raise RuntimeError("database unavailable")


@function_tool
async def slow_lookup(order: str) -> str:
    """Look up an order (hangs)."""
    TOOL_CALLS.append("slow")
    await asyncio.sleep(3600)
    return "never"


TOOLS_AGENT = RealtimeAgent(name="Tools", instructions="Look up orders.", tools=[flaky_lookup, slow_lookup])


async def test_a_tool_that_raises_or_hangs_does_not_end_the_call(start_phone_system) -> None:
    script = [
        Reply("Hi.", duration_ms=200),
        ToolCall("flaky_lookup", {"order": "1"}),
        Reply("Sorry, I could not look that up.", duration_ms=300),
        ToolCall("slow_lookup", {"order": "2"}),
        Reply("That is taking too long, sorry.", duration_ms=300),
    ]
    async with start_phone_system(script, agent=TOOLS_AGENT, GATEWAY_TOOL_TIMEOUT_S="1") as (
            gateway, realtime, twilio):
        call = await twilio.ring(gateway.url + "/twilio/voice")
        conn = await realtime.wait_for_connection(0)
        await call.caller.wait_heard(200)
        call.caller.say(ulaw_tone(300, 0.5))  # asks: the first tool call, then the apology
        await call.caller.wait_heard(200 + 300, timeout=10)
        call.caller.say(ulaw_tone(300, 0.5))  # asks again: the second tool call
        await call.caller.wait_heard(200 + 300 + 300, timeout=10)
        assert not call.caller.closed  # the call went on
        await call.hang_up()
        record = await finished(gateway)
    failed, timed_out = (o.output for o in conn.function_call_outputs)
    # The SDK's function_tool turns an exception into an error result itself (its default
    # failure_error_function); the gateway's guard covers tools that opt out of that.
    assert "error occurred" in failed
    assert "did not finish within 1 s" in timed_out
    assert record.end_reason is EndReason.CALLER_HUNG_UP
