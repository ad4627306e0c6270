"""``create_app(on_call_end=...)``: the application gets every finished call's record."""

from __future__ import annotations

import asyncio
import logging

from gateway.bridge.ending import EndReason
from gateway.testing.realtime import Reply

from .conftest import finished, place_call


async def test_the_application_gets_each_finished_call_record(start_gateway) -> None:
    records = []

    async def on_call_end(record) -> None:  # may be async: awaited after the call
        records.append(record)  # before any await: done by the time the record is in `finished`
        await asyncio.sleep(0)

    async with start_gateway([Reply("Hello!", duration_ms=200)], on_call_end=on_call_end) as (gateway, realtime):
        caller = await place_call(gateway, speed=4)
        await caller.wait_heard(200)
        await caller.hang_up()
        await finished(gateway)
        # A stream refused before its start (a forged token) is no call: nothing is told.
        refused = await place_call(gateway, connect=False)
        refused.parameters["token"] = "v1.9999999999.forged"
        await refused.connect()
        await refused.wait_closed()
        await finished(gateway, count=2)
    (record,) = records
    assert record.call_sid == caller.call_sid and record.end_reason is EndReason.CALLER_HUNG_UP
    assert record.events[-1]["event"] == "call_ended" and record.transcript


async def test_a_failing_hook_is_logged_and_the_next_call_goes_on(start_gateway, caplog) -> None:
    def on_call_end(record) -> None:
        raise RuntimeError("storage down")

    with caplog.at_level(logging.ERROR, logger="gateway.app"):
        async with start_gateway([Reply("Hello!", duration_ms=200)], on_call_end=on_call_end) as (gateway, realtime):
            for count in (1, 2):
                caller = await place_call(gateway, speed=4)
                await caller.wait_heard(200)
                await caller.hang_up()
                await finished(gateway, count=count)
    failures = [r for r in caplog.records if "on_call_end hook failed" in r.getMessage()]
    assert len(failures) == 2 and all(r.exc_info for r in failures)
    assert failures[0].getMessage().startswith("[call=CA")


async def test_a_sync_hook_gets_the_record_too(start_gateway) -> None:
    records = []
    async with start_gateway([Reply("Hi.", duration_ms=100)], on_call_end=records.append) as (gateway, realtime):
        caller = await place_call(gateway, speed=4)
        await caller.wait_heard(100)
        await caller.hang_up()
        await finished(gateway)
    assert [r.call_sid for r in records] == [caller.call_sid]
