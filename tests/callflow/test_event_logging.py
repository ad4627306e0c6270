import logging

from gateway.testing.realtime import Reply

from .conftest import place_call


async def test_every_session_event_is_logged_with_the_call_sid_at_debug(start_gateway, caplog) -> None:
    with caplog.at_level(logging.DEBUG, logger="gateway.call"):
        async with start_gateway([Reply("hi", duration_ms=300)]) as (gateway, _):
            caller = await place_call(gateway, speed=4)
            await caller.wait_heard(300)
            await caller.hang_up()
    lines = [r.getMessage() for r in caplog.records if "session event" in r.getMessage()]
    assert lines and all(f"call={caller.call_sid}" in line for line in lines)
    logged = {line.rsplit(" ", 1)[-1] for line in lines}
    assert {"agent_start", "audio", "audio_end", "agent_end", "history_added", "raw_model_event"} <= logged
