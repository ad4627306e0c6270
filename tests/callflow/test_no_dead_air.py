"""No dead air: a reply cut by a model drop is taken up again without the caller saying a
word; while the model is not there the caller hears hold audio, from the configured delay on,
until the agent speaks or the fallback runs. Each test measures the caller's longest silence
(what the simulated caller's ear got, quieter than -45 dBFS)."""

from __future__ import annotations

import pytest

from gateway.audio.measure import longest_quiet
from gateway.bridge.ending import CLOSE_INTERNAL, EndReason
from gateway.testing.realtime import Reply

from .conftest import finished

FALLBACK = {"GATEWAY_FALLBACK_SAY": "Sorry, please call back later.", "GATEWAY_FALLBACK_DIAL": "+15559990000"}
WELCOME = "Welcome to Acme Outfitters, the home of tents and boots for every season of the year."


def silence_after_first_audio(caller) -> float:
    """The longest silence the caller sat through once the agent had first been heard."""
    first = caller.heard_segments()[0].start
    return longest_quiet(caller.heard_timeline()[int(first * 8000):])


async def test_a_reply_cut_by_a_model_drop_is_taken_up_again(start_phone_system) -> None:
    async with start_phone_system([Reply(WELCOME, duration_ms=3000)], **FALLBACK) as (gateway, realtime, twilio):
        call = await twilio.ring(gateway.url + "/twilio/voice")
        caller = call.caller
        await caller.wait_heard(1000)
        first = realtime.connections[0]
        await first.close(1011)  # mid-sentence
        second = await realtime.wait_for_connection(1, timeout=10)
        # The new session knows how far the caller got, and is asked to go on from there.
        seeded = await second.wait_for("conversation.item.create")
        asked = await second.wait_for("response.create")
        heard_then = caller.heard_ms
        await caller.wait_heard(heard_then + 1500, timeout=10)  # the agent again, unprompted
        await call.hang_up()
        record = await finished(gateway)
    said = seeded.data["item"]["content"][0]["text"]
    assert said and WELCOME.startswith(said) and len(said) < len(WELCOME)
    instructions = asked.data["response"]["instructions"]
    assert "line dropped" in instructions and said in instructions
    assert caller.utterances == []  # the caller said nothing
    (resumed,) = [e for e in record.events if e["event"] == "reply_resumed"]
    assert resumed["what"] == "reply" and 900 <= resumed["heard_ms"] <= 1400
    assert caller.clears  # the rest of the cut reply was cleared, as at a barge-in
    assert silence_after_first_audio(caller) < 1.0
    assert record.reconnects == 1 and record.end_reason is EndReason.CALLER_HUNG_UP


async def test_a_slow_model_gets_the_caller_hold_audio_within_the_delay(start_phone_system) -> None:
    async with start_phone_system([Reply("Hello!", duration_ms=500, tone_hz=440)], GATEWAY_HOLD_AFTER_S="0.5",
                                  **FALLBACK) as (gateway, realtime, twilio):
        realtime.fail_next("hang")  # the first handshake hangs until the gateway gives up on it (2.5 s)
        call = await twilio.ring(gateway.url + "/twilio/voice")
        caller = call.caller
        await realtime.wait_for_connection(0, timeout=10)
        await caller.wait_until(lambda: caller.clears, timeout=10)  # the hold audio, cleared for the greeting
        await caller.wait_agent_silent(300, timeout=10)
        await call.hang_up()
        record = await finished(gateway)
    segments = caller.heard_segments()
    assert 0.5 <= segments[0].start < 0.8  # hold audio from the configured delay on
    kinds = [e["event"] for e in record.events]
    assert kinds.index("hold_started") < kinds.index("hold_ended")
    assert longest_quiet(caller.heard_timeline()) < 0.8  # the first 0.5 s, nothing longer after
    assert caller.heard_ms >= 1480 + 500 - 1  # the hold message, the greeting after it
    assert record.end_reason is EndReason.CALLER_HUNG_UP and "Say" not in call.verbs


async def test_an_unreachable_model_gets_hold_audio_then_the_fallback(start_phone_system) -> None:
    async with start_phone_system([Reply("Hello!")], GATEWAY_MODEL_CONNECT_BUDGET_S="2.5",
                                  GATEWAY_HOLD_AFTER_S="0.5", **FALLBACK) as (gateway, realtime, twilio):
        realtime.fail_next(*[503] * 50)
        call = await twilio.ring(gateway.url + "/twilio/voice")
        await call.wait_until(lambda: call.dialed, timeout=15)
        record = await finished(gateway)
    caller = call.caller
    assert caller.close_code == CLOSE_INTERNAL and record.end_reason is EndReason.MODEL_FAILED
    assert 0.5 <= caller.heard_segments()[0].start < 0.8 and caller.heard_ms > 1000
    assert longest_quiet(caller.heard_timeline(caller.closed_at)) < 0.8
    assert call.verbs[-2:] == ["Say", "Dial"] and call.dialed == ["+15559990000"]


@pytest.mark.parametrize("hold_after_s", ["0"])
async def test_hold_audio_can_be_turned_off(start_phone_system, hold_after_s) -> None:
    async with start_phone_system([Reply("Hello!")], GATEWAY_MODEL_CONNECT_BUDGET_S="1",
                                  GATEWAY_HOLD_AFTER_S=hold_after_s, **FALLBACK) as (gateway, realtime, twilio):
        realtime.fail_next(*[503] * 50)
        call = await twilio.ring(gateway.url + "/twilio/voice")
        await call.wait_until(lambda: call.dialed, timeout=15)
        await finished(gateway)
    assert call.caller.heard_ms == 0  # as before hold audio existed: silence, then the fallback
