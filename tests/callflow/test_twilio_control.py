"""Call control through Twilio REST, against a fake Twilio (the real `twilio` library talks to
it): hang-up only after the goodbye was heard, transfers, outbound calls, AMD, the API."""

from __future__ import annotations


import httpx
import pytest
from agents.realtime import RealtimeAgent

from gateway.bridge.agents import CallInfo
from gateway.bridge.ending import EndReason
from gateway.testing.realtime import Reply, ToolCall
from gateway.tools import hang_up, transfer_call

from .conftest import API_KEY, finished, gateway_of, place_call, ulaw_tone


AGENT = RealtimeAgent(name="Desk", instructions="Help, transfer or hang up.", tools=[hang_up, transfer_call])
TARGETS = {"GATEWAY_TRANSFER_TARGETS": "sales=+15551230000,desk=sip:desk@pbx.example.com"}


async def test_hang_up_happens_only_after_the_goodbye_was_heard(start_phone_system) -> None:
    script = [Reply("Hello.", duration_ms=300), (Reply("Goodbye!", duration_ms=1500), ToolCall("hang_up", {}))]
    async with start_phone_system(script, agent=AGENT) as (gateway, realtime, twilio):
        call = await twilio.ring(gateway.url + "/twilio/voice")
        caller = call.caller
        await caller.wait_heard(300)
        caller.say(ulaw_tone(1000, 0.3))  # "bye then"
        await call.wait_status("completed", timeout=15)
        record = await finished(gateway)
    # The whole goodbye was heard before Twilio ended the call (the model sent it all at once,
    # with the tool call right behind it: hanging up on tool_start would have cut it).
    assert caller.heard_ms == pytest.approx(1800, abs=0.2)
    goodbye = caller.heard_segments()[-1]
    assert caller.closed_at >= goodbye.end
    assert call.updates == [{"Status": "completed"}]
    assert record.end_reason is EndReason.AGENT_HUNG_UP
    assert {"type": "call_event", "event": "hang_up", "reason": "agent"} in record.transcript


async def test_hang_up_of_a_call_twilio_no_longer_has_is_not_an_error(start_phone_system, caplog) -> None:
    script = [(Reply("Goodbye!", duration_ms=300), ToolCall("hang_up", {}))]
    async with start_phone_system(script, agent=AGENT) as (gateway, realtime, twilio):
        caller = await place_call(gateway, speed=4)  # straight to the stream: Twilio never saw it
        await caller.wait_closed(timeout=10)
        record = await finished(gateway)
    assert any(r.path.endswith(f"/Calls/{caller.call_sid}.json") and r.status == 404 for r in twilio.requests)
    assert caller.closed_by == "gateway" and caller.heard_ms == pytest.approx(300, abs=0.2)
    assert record.end_reason is EndReason.AGENT_HUNG_UP
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.parametrize(("target", "dial"), [("sales", "+15551230000"), ("desk", "sip:desk@pbx.example.com")])
async def test_transfer_dials_the_allowed_target_after_the_hand_off_sentence(start_phone_system, target, dial) -> None:
    script = [(Reply("Transferring you now.", duration_ms=1200), ToolCall("transfer_call", {"target": target}))]
    async with start_phone_system(script, agent=AGENT, **TARGETS) as (gateway, realtime, twilio):
        call = await twilio.ring(gateway.url + "/twilio/voice")
        caller = call.caller
        await call.wait_until(lambda: call.dialed, timeout=15)
        record = await finished(gateway)
    assert call.dialed == [dial]
    assert caller.heard_ms == pytest.approx(1200, abs=0.2)  # the whole sentence, then the transfer
    assert record.end_reason is EndReason.TRANSFERRED
    assert any(e["event"] == "transfer" and e["target"] == dial for e in record.events)


async def test_an_interrupted_hand_off_delays_the_transfer_until_the_agent_finished_again(start_phone_system) -> None:
    script = [
        (Reply("Transferring you to sales, please hold on.", duration_ms=3000, tone_hz=440),
         ToolCall("transfer_call", {"target": "sales"})),
        Reply("Sure. Transferring you now.", duration_ms=800, tone_hz=880),
    ]
    async with start_phone_system(script, agent=AGENT, **TARGETS) as (gateway, realtime, twilio):
        call = await twilio.ring(gateway.url + "/twilio/voice")
        caller = call.caller
        await caller.wait_heard(1000)
        caller.say(ulaw_tone(1000, 0.5))  # "wait, which department?"
        clear = await caller.wait_for_message("clear", timeout=5)
        assert call.dialed == []  # not mid-sentence
        await call.wait_until(lambda: call.dialed, timeout=15)
    second = [s for s in caller.heard_segments() if s.start > clear.time]
    # The agent's second answer was heard in full before the caller was transferred.
    assert sum(len(s.audio) for s in second) / 8 == pytest.approx(800, abs=0.2)
    assert caller.closed_at >= second[-1].end
    assert call.dialed == ["+15551230000"]


async def test_a_target_not_in_the_allowed_list_is_refused(start_phone_system) -> None:
    script = [ToolCall("transfer_call", {"target": "+19005550123"}), Reply("I can't do that.", duration_ms=300)]
    async with start_phone_system(script, agent=AGENT, **TARGETS) as (gateway, realtime, twilio):
        call = await twilio.ring(gateway.url + "/twilio/voice")
        await call.caller.wait_heard(300, timeout=10)
        outputs = realtime.connections[0].function_call_outputs
        await call.hang_up()
        record = await finished(gateway)
    assert "not an allowed target" in outputs[0].output and "sales" in outputs[0].output
    assert call.dialed == [] and call.redirects == []
    assert any(e["event"] == "transfer_refused" for e in record.events)


def context_agent(info: CallInfo) -> RealtimeAgent:
    return RealtimeAgent(name="Reminder", instructions=f"Remind {info.context.get('name', 'them')} of the appointment.")


async def test_outbound_call_end_to_end_with_context(start_phone_system) -> None:
    script = [Reply("Hi, this is a reminder.", duration_ms=500)]
    async with start_phone_system(script, agent=context_agent, GATEWAY_CALLER_ID="+15550009999") as (gateway, realtime, twilio):
        async with httpx.AsyncClient() as client:
            response = await client.post(
                gateway.url + "/calls", headers={"Authorization": f"Bearer {API_KEY}"},
                json={"to": "+15557654321", "context": {"name": "Ada"}},
            )
        assert response.status_code == 201, response.text
        call = twilio.calls[response.json()["call_sid"]]
        caller = await call.wait_caller()
        await caller.wait_heard(500)
        listed = await httpx.AsyncClient().get(gateway.url + "/calls", headers={"Authorization": f"Bearer {API_KEY}"})
        await call.hang_up()
        record = await finished(gateway)
        statuses = [s["status"] for s in gateway_of(gateway).statuses[call.sid]]
    assert call.to == "+15557654321" and call.from_ == "+15550009999" and call.direction == "outbound-api"
    assert realtime.connections[0].session["instructions"] == "Remind Ada of the appointment."
    assert record.direction == "outbound" and record.call_sid == call.sid
    assert [c["call_sid"] for c in listed.json()["calls"]] == [call.sid]
    assert statuses[:3] == ["initiated", "ringing", "in-progress"] and statuses[-1] == "completed"


async def test_answering_machine_is_told_to_the_agent(start_phone_system) -> None:
    script = [Reply("Hello?", duration_ms=300)]
    options = {"answered_by": "machine_end_beep"}
    async with start_phone_system(script, twilio_options=options, GATEWAY_AMD="true", GATEWAY_CALLER_ID="+15550009999") as (gateway, realtime, twilio):
        async with httpx.AsyncClient() as client:
            response = await client.post(gateway.url + "/calls", headers={"Authorization": f"Bearer {API_KEY}"},
                                         json={"to": "+15557654321"})
        call = twilio.calls[response.json()["call_sid"]]
        await call.wait_caller()
        conn = await realtime.wait_for_connection()
        await conn.wait_until(lambda: conn.user_messages, timeout=10)
        await call.hang_up()
        record = await finished(gateway)
    assert "answering machine" in conn.user_messages[0].text
    assert call.async_amd and call.machine_detection
    assert any(e["event"] == "answered_by" and e["answered_by"] == "machine_end_beep" for e in record.events)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {API_KEY}"}])
async def test_the_calls_api_refuses_without_the_key(start_phone_system, headers) -> None:
    async with start_phone_system() as (gateway, realtime, twilio):
        async with httpx.AsyncClient() as client:
            placed = await client.post(gateway.url + "/calls", headers=headers, json={"to": "+15557654321"})
            listed = await client.get(gateway.url + "/calls", headers=headers)
    assert placed.status_code == 401 and listed.status_code == 401
    assert twilio.requests == []  # nothing reached Twilio
