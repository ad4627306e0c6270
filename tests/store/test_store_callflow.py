"""Call records of real calls through a real gateway: in SQLite with no settings, in a real
PostgreSQL, and a PostgreSQL stopped mid-call."""

from __future__ import annotations

import asyncio
import time

import httpx

from gateway.testing.realtime import Reply
from tests.callflow.conftest import finished, gateway_of, place_call, start_gateway, ulaw_tone  # noqa: F401 - a fixture


async def _stored(store, call_sid: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        call = await asyncio.to_thread(store.get, call_sid)
        if call is not None:
            return call
        if time.monotonic() > deadline:
            raise TimeoutError(f"{call_sid} was not stored within {timeout} s")
        await asyncio.sleep(0.05)


async def test_a_finished_call_is_stored_in_sqlite_under_the_data_dir(start_gateway, tmp_path) -> None:
    async with start_gateway([Reply("Hello, how can I help?", duration_ms=300)],
                             GATEWAY_DATA_DIR=str(tmp_path)) as (gateway, realtime):
        caller = await place_call(gateway, speed=4)
        await caller.wait_heard(300)
        await caller.hang_up()
        await finished(gateway)
        store = gateway_of(gateway).store
        call = await _stored(store, caller.call_sid)
    assert store.kind == "sqlite" and (tmp_path / "calls.sqlite3").is_file()
    assert call["end_reason"] == "caller_hung_up" and call["from"] == "+15550001111" and call["agent"]
    assert call["figures"]["first_audio_s"] is not None and call["figures"]["frames_out"] > 0
    assert any(i.get("role") == "assistant" and i.get("text") == "Hello, how can I help?" for i in call["transcript"])
    assert call["events"][0]["event"] == "call_started" and call["events"][-1]["event"] == "call_ended"


async def test_with_postgresql_stopped_mid_call_the_call_goes_on_and_its_record_lands_later(
        start_gateway, pg_server, pg_url) -> None:
    script = [Reply("First answer.", duration_ms=200), Reply("Second answer.", duration_ms=200)]
    async with start_gateway(script, GATEWAY_DATABASE_URL=pg_url) as (gateway, realtime):
        app = gateway_of(gateway)
        app.writer.retry_s = app.writer.retry_max_s = 0.1
        # A first call connects the store and migrates it.
        first = await place_call(gateway, speed=4)
        await first.wait_heard(200)
        await first.hang_up()
        await finished(gateway)
        await _stored(app.store, first.call_sid)

        caller = await place_call(gateway, speed=4)
        await caller.wait_heard(200)
        pg_server.stop()  # mid-call
        try:
            caller.say(ulaw_tone(500, 0.4))  # the caller asks something
            await caller.wait_heard(400)  # the agent's second answer: the call is unaffected
            await caller.hang_up()
            record = await finished(gateway, count=2)
            assert app.writer.waiting == 1
            async with httpx.AsyncClient() as client:
                scraped = (await client.get(gateway.url + "/metrics")).text
            assert "gateway_records_waiting 1.0" in scraped
        finally:
            pg_server.start()
        call = await _stored(app.store, caller.call_sid)
    assert record.end_reason.name == "CALLER_HUNG_UP"
    assert call["call_sid"] == caller.call_sid and call["end_reason"] == "caller_hung_up"
    assert [i.get("text") for i in call["transcript"] if i.get("role") == "assistant"] == ["First answer.", "Second answer."]
