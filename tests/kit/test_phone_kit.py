"""The call-flow test kit (gateway.testing.phone) as a user's test would use it."""

from __future__ import annotations

import time

import pytest
from agents import function_tool
from agents.realtime import RealtimeAgent

from gateway.tools import collect_digits, hang_up, transfer_call

from gateway.bridge.ending import EndReason
from gateway.testing.phone import ToolUse
from gateway.testing.realtime import Reply, ToolCall, When

REFUNDS: list[str] = []


@function_tool
def issue_refund(order_id: str) -> str:
    """Refund an order."""
    REFUNDS.append(order_id)
    return f"refund issued for order {order_id}"


AGENT = RealtimeAgent(name="support", instructions="Help with refunds.", tools=[issue_refund])


async def test_a_refund_call_reads_like_the_call(phone_system) -> None:
    began = time.monotonic()
    phone = await phone_system(agent=AGENT, script=[
        Reply("Acme, how can I help?"),
        When("refund", ToolCall("issue_refund", {"order_id": "4271"})),
        Reply("Done: your refund is on its way."),
    ])
    call = await phone.call()
    greeting = await call.listen()
    assert greeting.text == "Acme, how can I help?"
    assert greeting.ms == 60 * len("Acme, how can I help?")
    await call.say("I'd like a refund for order 4271, please.")
    answer = await call.listen()
    assert answer.text == "Done: your refund is on its way."
    assert call.tool_calls == [ToolUse("issue_refund", {"order_id": "4271"}, "refund issued for order 4271")]
    record = await call.hang_up()
    assert record.end_reason is EndReason.CALLER_HUNG_UP
    assert call.transcript[:2] == [("assistant", "Acme, how can I help?"),
                                   ("user", "I'd like a refund for order 4271, please.")]
    print(f"wall {time.monotonic() - began:.3f}s")


DESK = RealtimeAgent(name="desk", instructions="Transfer or hang up.", tools=[hang_up, transfer_call, collect_digits])
TARGETS = {"GATEWAY_TRANSFER_TARGETS": "sales=+15551230000"}


async def test_a_transfer_goes_to_the_configured_number_after_the_sentence(phone_system) -> None:
    phone = await phone_system(agent=DESK, settings=TARGETS, script=[
        Reply("Hello, Acme."),
        When("sales", (Reply("Putting you through to sales."), ToolCall("transfer_call", {"target": "sales"}))),
    ])
    call = await phone.call()
    await call.listen()
    await call.say("Sales, please.")
    heard = await call.listen()
    assert heard.text == "Putting you through to sales."
    assert heard.ms == 60 * len("Putting you through to sales.")  # heard in full, then dialled
    assert call.transferred_to == ["+15551230000"]
    assert (await call.ended()).end_reason is EndReason.TRANSFERRED


async def test_keypresses_reach_a_tool_and_the_agent_hangs_up_after_its_goodbye(phone_system) -> None:
    phone = await phone_system(agent=DESK, script=[
        (Reply("Please key in your PIN."), ToolCall("collect_digits", {"count": 4})),
        # The digits reach the tool, not the model's ears: the next turn follows its output.
        (Reply("Thanks, goodbye."), ToolCall("hang_up")),
    ])
    call = await phone.call()
    await call.listen()
    await call.press("1234")
    goodbye = await call.listen()
    assert goodbye.text == "Thanks, goodbye."
    record = await call.ended()
    assert record.end_reason is EndReason.AGENT_HUNG_UP
    assert [use.name for use in call.tool_calls] == ["collect_digits", "hang_up"]
    assert "1234" in call.tool_calls[0].output
    assert call.heard_ms == 60 * (len("Please key in your PIN.") + len("Thanks, goodbye."))


async def test_talking_over_the_agent_cuts_it_off_and_leaves_no_unheard_text(phone_system) -> None:
    # Barge-in timing is what this checks: slower than the kit's default, so a busy machine's
    # millisecond of latency is not twenty on the caller's clock.
    phone = await phone_system(speed=4, script=[
        Reply("Welcome."),
        Reply("Here is a very long answer that the caller will not wait for, " * 3),
        Reply("Sure, go ahead."),
    ])
    call = await phone.call()
    await call.listen()
    await call.say("Tell me everything.")
    await call.hear(1000)  # a second into the long answer...
    await call.say("Wait, stop.")  # ...the caller talks over it
    answer = await call.listen()
    assert answer.text == "Sure, go ahead."
    assert any(e["event"] == "interrupted" for e in call.events)
    long_heard = call.heard_ms - 60 * len("Welcome.") - 60 * len("Sure, go ahead.")
    assert 1000 <= long_heard < 60 * len("Here is a very long answer that the caller will not wait for, ") * 3
    # The model was told how much the caller heard (at 20x speed, to within a mark interval
    # plus the clear's latency scaled up), and keeps no text of what they did not hear.
    [cut] = call.model.truncations
    assert 900 <= cut.audio_end_ms <= long_heard + 250
    assert call.model.items[cut.item_id]["content"][0]["transcript"] == ""


async def test_listen_times_out_when_the_agent_never_speaks(phone_system) -> None:
    phone = await phone_system(settings={"GATEWAY_GREETING": ""}, script=[])
    call = await phone.call()
    with pytest.raises(TimeoutError, match="the agent to speak"):
        await call.listen(timeout=0.3)


async def test_a_listen_that_times_out_says_what_went_wrong(phone_system) -> None:
    phone = await phone_system(agent=AGENT, script=[ToolCall("no_such_tool", {})])
    call = await phone.call()
    with pytest.raises(TimeoutError, match="no_such_tool"):
        await call.listen(timeout=1.5)
