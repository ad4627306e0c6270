"""A call's model sessions share one trace group: the call SID (issue 12, traces)."""

from __future__ import annotations

from gateway.testing.realtime import Reply

from .conftest import finished, ulaw_tone


async def test_every_session_of_a_call_is_traced_under_its_call_sid(start_phone_system) -> None:
    script = [Reply("Welcome.", duration_ms=300), Reply("Still here.", duration_ms=300)]
    async with start_phone_system(script) as (gateway, realtime, twilio):
        call = await twilio.ring(gateway.url + "/twilio/voice")
        await call.caller.wait_heard(300)
        await realtime.connections[0].close(1011)  # a drop: the new session joins the same group
        second = await realtime.wait_for_connection(1, timeout=10)
        said = call.caller.say(ulaw_tone(300, 0.4))
        await call.caller.wait_said()
        await call.caller.wait_agent_silent(200, after=said.end, timeout=10)
        await call.hang_up()
        await finished(gateway)
    for conn in (realtime.connections[0], second):
        traced = [e.data["session"]["tracing"] for e in conn.received_of("session.update")
                  if isinstance(e.data.get("session", {}).get("tracing"), dict)]
        assert traced, "no session.update carried the trace settings"
        assert traced[-1]["group_id"] == call.sid
        assert traced[-1]["metadata"]["call_sid"] == call.sid
