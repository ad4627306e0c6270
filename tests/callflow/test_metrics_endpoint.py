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
