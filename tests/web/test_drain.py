"""Draining: the flag is up at once and for good; the wait ends when the calls have."""

from __future__ import annotations

import asyncio
import logging

from gateway.web.drain import Drain


async def test_with_no_calls_in_progress_draining_is_immediate(caplog) -> None:
    caplog.set_level(logging.WARNING, "gateway.app")
    drain = Drain({})
    assert not drain.draining
    assert await drain.run(timeout_s=30) == 0
    assert drain.draining
    assert any(r.getMessage() == "drained: no calls in progress" for r in caplog.records)


async def test_the_drain_waits_for_the_calls_in_progress_to_end() -> None:
    calls = {"MZ1": object(), "MZ2": object()}
    drain = Drain(calls)
    waiting = asyncio.create_task(drain.run(timeout_s=30, poll_s=0.001))
    await asyncio.sleep(0)  # the drain has started: new calls are turned away from now on
    assert drain.draining and not waiting.done()
    calls.clear()
    assert await waiting == 0


async def test_calls_still_going_at_the_deadline_are_counted(caplog) -> None:
    caplog.set_level(logging.WARNING, "gateway.app")
    drain = Drain({"MZ1": object()})
    assert await drain.run(timeout_s=0) == 1
    assert any("1 call(s) still in progress end now" in r.getMessage() for r in caplog.records)
