"""Deliberate handlings of session events on a live call: tool approval, guardrails,
handoffs, keypresses."""

from __future__ import annotations


import pytest
from agents import GuardrailFunctionOutput, function_tool, output_guardrail
from agents.realtime import RealtimeAgent, realtime_handoff

from gateway.testing.realtime import Reply, ToolCall

from .conftest import finished, place_call


def refund_agent(calls: list[int]) -> RealtimeAgent:
    @function_tool(needs_approval=True)
    def issue_refund(amount: int) -> str:
        """Refund the caller."""
        calls.append(amount)
        return f"refunded {amount}"

    return RealtimeAgent(name="Billing", instructions="Help with billing.", tools=[issue_refund])


@pytest.mark.parametrize("policy", ["reject", "approve"])
async def test_tool_approval_is_decided_by_policy_at_once(start_gateway, policy) -> None:
    calls: list[int] = []
    script = [ToolCall("issue_refund", {"amount": 5}), Reply("All done.", duration_ms=400)]
    async with start_gateway(script, agent=refund_agent(calls), GATEWAY_TOOL_APPROVAL=policy) as (gateway, realtime):
        caller = await place_call(gateway, speed=4)
        await caller.wait_heard(400, timeout=10)  # the turn went on: nothing hung
        await caller.hang_up()
        record = await finished(gateway)
    outputs = realtime.connections[0].function_call_outputs
    assert len(outputs) == 1
    if policy == "reject":
        assert calls == [] and "not permitted" in outputs[0].output
    else:
        assert calls == [5] and outputs[0].output == "refunded 5"
    assert {"event": "tool_approval", "tool": "issue_refund", "decision": policy}.items() <= next(
        e for e in record.events if e["event"] == "tool_approval"
    ).items()


async def test_a_tripped_output_guardrail_clears_what_the_caller_would_hear(start_gateway) -> None:
    @output_guardrail
    def no_secrets(ctx, agent, output: str) -> GuardrailFunctionOutput:
        return GuardrailFunctionOutput(output_info=None, tripwire_triggered="secret" in output)

    agent = RealtimeAgent(name="Careful", instructions="Be careful.", output_guardrails=[no_secrets])
    # The SDK checks the transcript every 100 characters; the word arrives early in a long reply.
    words = "the secret code is one two three " + "and more words " * 10
    script = [Reply(words, duration_ms=4000, tone_hz=440)]
    async with start_gateway(script, agent=agent, realtime_options={"pace": 1.0}) as (gateway, realtime):
        caller = await place_call(gateway)
        await caller.wait_for_message("clear", timeout=10)
        await caller.hang_up()
        record = await finished(gateway)
    assert any(e["event"] == "guardrail_tripped" and e["guardrails"] == ["no_secrets"] for e in record.events)
    assert caller.heard_ms < 4000  # the rest of the reply was never heard
    assert realtime.connections[0].responses[0].status == "cancelled"


async def test_handoff_switches_agent_and_keeps_the_audio_format(start_gateway) -> None:
    specialist = RealtimeAgent(name="Specialist", instructions="You are the specialist.")
    front = RealtimeAgent(name="Front desk", instructions="Route calls.", handoffs=[realtime_handoff(specialist)])
    script = [ToolCall("transfer_to_specialist", {}), Reply("Specialist here.", duration_ms=500)]
    async with start_gateway(script, agent=front, GATEWAY_AUDIO_MODE="g711_ulaw") as (gateway, realtime):
        caller = await place_call(gateway, speed=4)
        await caller.wait_heard(500, timeout=10)
        await caller.hang_up()
        record = await finished(gateway)
    conn = realtime.connections[0]
    assert record.agent == "Specialist"
    assert any(e["event"] == "handoff" and e["to_agent"] == "Specialist" for e in record.events)
    # The SDK re-sent the session for the new agent: its instructions, our audio format.
    assert conn.session["instructions"] == "You are the specialist."
    assert conn.input_format.wire == {"type": "audio/pcmu"} and conn.output_format.wire == {"type": "audio/pcmu"}
    assert caller.heard_ms == pytest.approx(500, abs=0.2)


async def test_a_keypress_reaches_the_agent(start_gateway) -> None:
    async with start_gateway([Reply("Press a key.", duration_ms=300)]) as (gateway, realtime):
        caller = await place_call(gateway, speed=4)
        await caller.wait_heard(300)
        await caller.press("5")
        conn = realtime.connections[0]
        await conn.wait_until(lambda: conn.user_messages, timeout=5)
        await caller.hang_up()
        record = await finished(gateway)
    assert "pressed the 5 key" in conn.user_messages[0].text
    assert {"event": "dtmf", "digit": "5"}.items() <= next(e for e in record.events if e["event"] == "dtmf").items()
