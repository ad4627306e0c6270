"""GET /metrics on a live gateway (gateway.metrics)."""

from __future__ import annotations

import httpx

from gateway.testing.realtime import Reply

from .conftest import finished, place_call


async def test_get_metrics_on_a_live_gateway(start_gateway) -> None:
    async with start_gateway([Reply("Hello!", duration_ms=200)]) as (gateway, realtime):
        caller = await place_call(gateway, speed=4)
        await caller.wait_heard(200)
        async with httpx.AsyncClient() as client:
            during = await client.get(gateway.url + "/metrics")
        await caller.hang_up()
        await finished(gateway)
        async with httpx.AsyncClient() as client:
            after = await client.get(gateway.url + "/metrics")
    assert during.status_code == 200 and during.headers["content-type"].startswith("text/plain")
    assert "gateway_active_calls 1.0" in during.text
    assert "gateway_active_calls 0.0" in after.text
    assert 'gateway_calls_total{direction="inbound",end_reason="caller_hung_up"} 1.0' in after.text
    assert "gateway_time_to_first_audio_seconds_count 1.0" in after.text
    assert "CA" not in after.text  # no call SIDs in labels


async def test_a_barge_in_is_observed_in_the_clear_latency(start_gateway) -> None:
    from .conftest import ulaw_tone

    script = [Reply("A long answer that the caller will talk over.", duration_ms=3000), Reply("Yes?", duration_ms=300)]
    async with start_gateway(script) as (gateway, realtime):
        caller = await place_call(gateway)
        await caller.wait_heard(600)
        caller.say(ulaw_tone(500, 0.6))  # talks over the agent
        await caller.wait_until(lambda: caller.clears, timeout=10)
        await caller.hang_up()
        await finished(gateway)
        async with httpx.AsyncClient() as client:
            text = (await client.get(gateway.url + "/metrics")).text
    assert "gateway_barge_in_clear_seconds_count 1.0" in text
    # The clear went out within milliseconds of the model's speech_started (loopback, one call).
    assert 'gateway_barge_in_clear_seconds_bucket{le="0.05"} 1.0' in text


async def test_with_metrics_off_there_is_no_endpoint_and_calls_go_on(start_gateway) -> None:
    async with start_gateway([Reply("Hello!", duration_ms=200)], GATEWAY_METRICS="false") as (gateway, realtime):
        caller = await place_call(gateway, speed=4)
        await caller.wait_heard(200)
        await caller.hang_up()
        record = await finished(gateway)
        async with httpx.AsyncClient() as client:
            scraped = await client.get(gateway.url + "/metrics")
    assert scraped.status_code == 404 and record.end_reason.name == "CALLER_HUNG_UP"
