"""Who may call, and how calls end: tokens, isolation, hang-up, the model ending, no leaks."""

from __future__ import annotations

import asyncio
import gc
import os
import time
import weakref

import pytest

from gateway.bridge.ending import CLOSE_INTERNAL, CLOSE_POLICY, EndReason
from gateway.security import CallTokens
from gateway.testing.realtime import Reply

from .conftest import AUTH_TOKEN, finished, gateway_of, place_call, ulaw_tone


@pytest.mark.parametrize("tamper", ["forged", "missing", "other-call", "expired"])
async def test_stream_without_a_valid_token_is_ended_before_any_model_connection(start_gateway, tamper) -> None:
    async with start_gateway([Reply("hello")]) as (gateway, realtime):
        caller = await place_call(gateway, connect=False)
        params = dict(caller.parameters)
        if tamper == "forged":
            params["token"] = params["token"][:-4] + "AAAA"
        elif tamper == "missing":
            del params["token"]
        elif tamper == "other-call":
            params["callSid"] = "CA" + "9" * 32  # a valid token for another call's parameters
        elif tamper == "expired":
            tokens = CallTokens.derived_from(AUTH_TOKEN)
            unsigned = {k: v for k, v in params.items() if k != "token"}
            params["token"] = tokens.issue(caller.call_sid, unsigned, now=time.time() - 3600, ttl_s=60)
        caller.parameters = params
        await caller.connect()
        await caller.wait_closed(timeout=5)
        await finished(gateway)
    assert caller.closed_by == "gateway" and caller.close_code == CLOSE_POLICY
    assert realtime.connections == []  # no model minutes burnt
    assert gateway_of(gateway).finished[-1].end_reason is EndReason.REFUSED


async def test_two_concurrent_calls_are_isolated(start_gateway) -> None:
    async with start_gateway([Reply("hi", duration_ms=3000, tone_hz=440)]) as (gateway, realtime):
        first, second = await asyncio.gather(place_call(gateway), place_call(gateway))
        await asyncio.gather(first.wait_heard(1000), second.wait_heard(1000))
        conns = {c.index: c for c in realtime.connections}
        assert len(conns) == 2
        # The first caller talks over the agent; only the first call is interrupted.
        first.say(ulaw_tone(1000, 0.6))
        await first.wait_for_message("clear", timeout=5)
        await second.wait_heard(3000, timeout=10)
        await asyncio.gather(first.hang_up(), second.hang_up())
        await finished(gateway, 2)
    assert first.clears and not second.clears
    assert second.heard_ms == pytest.approx(3000, abs=0.2)
    # Each model connection heard its own caller: the talker's tone reached one of them only.
    loud = [c for c in realtime.connections if c.user_turns]
    assert len(loud) == 1
    records = {r.call_sid: r for r in gateway_of(gateway).finished}
    assert set(records) == {first.call_sid, second.call_sid}
    assert all(r.end_reason is EndReason.CALLER_HUNG_UP for r in records.values())


async def test_stop_ends_the_call_and_closes_the_model_session(start_gateway) -> None:
    async with start_gateway([Reply("hi", duration_ms=500)]) as (gateway, realtime):
        caller = await place_call(gateway, speed=4)
        await caller.wait_heard(500)
        conn = realtime.connections[0]
        assert len(gateway_of(gateway).calls) == 1
        await caller.hang_up()
        await finished(gateway)
        await conn.wait_until(lambda: conn.closed, timeout=5)
    assert gateway_of(gateway).calls == {}
    assert gateway_of(gateway).finished[-1].end_reason is EndReason.CALLER_HUNG_UP


async def test_a_stop_read_after_the_socket_closed_still_says_the_caller_hung_up(start_gateway) -> None:
    """The caller sends ``stop`` and closes while the Twilio reader is busy (here: awaiting the
    application's keypad hook), and the agent is talking: the agent's next frame fails on the
    closed socket before the reader gets to the ``stop`` queued ahead of the close. The call
    still ended because the caller hung up, and its record says so."""
    closed = asyncio.Event()

    async def on_digit(info, digit: str) -> bool:
        await closed.wait()  # the reader waits here while the socket closes
        await asyncio.sleep(0.3)  # and the session's sends fail meanwhile
        return True

    async with start_gateway([Reply("I will talk for quite a while now.", duration_ms=5000)],
                             on_digit=on_digit, realtime_options={"pace": 1.0}) as (gateway, realtime):
        caller = await place_call(gateway)
        await caller.wait_heard(300)
        await caller.press("5")
        await caller.hang_up()
        closed.set()
        record = await finished(gateway)
    assert record.end_reason is EndReason.CALLER_HUNG_UP


async def test_a_dropped_twilio_socket_closes_the_session_and_keeps_the_record(start_gateway) -> None:
    async with start_gateway([Reply("hi there", duration_ms=500)]) as (gateway, realtime):
        caller = await place_call(gateway, speed=4)
        await caller.wait_heard(500)
        conn = realtime.connections[0]
        await caller.hang_up(send_stop=False)  # the socket just goes: no stop
        record = await finished(gateway)
        await conn.wait_until(lambda: conn.closed, timeout=5)  # no model minutes burnt after
    assert record.end_reason is EndReason.TWILIO_DISCONNECTED
    assert record.call_sid == caller.call_sid and record.frames_in > 0 and record.ended_at is not None
    assert [item["text"] for item in record.transcript if item.get("role") == "assistant"] == ["hi there"]
    assert gateway_of(gateway).calls == {}


@pytest.mark.parametrize(("code", "reason", "close_code"), [
    (1000, EndReason.MODEL_ENDED, 1000),
    (1011, EndReason.MODEL_FAILED, CLOSE_INTERNAL),
])
async def test_the_model_ending_the_session_ends_the_call_cleanly(start_gateway, code, reason, close_code) -> None:
    # (A failed session is reconnected first: see test_faults. Here reconnecting fails too.)
    async with start_gateway([Reply("hi", duration_ms=300)], GATEWAY_MODEL_CONNECT_BUDGET_S="0") as (gateway, realtime):
        caller = await place_call(gateway, speed=4)
        await caller.wait_heard(300)
        realtime.fail_next(503)
        await realtime.connections[0].close(code)
        await caller.wait_closed(timeout=5)
        await finished(gateway)
    assert caller.closed_by == "gateway" and caller.close_code == close_code
    assert gateway_of(gateway).finished[-1].end_reason is reason
    assert gateway_of(gateway).calls == {}


async def test_an_ended_call_is_freed_at_once_not_by_the_garbage_collector(start_gateway) -> None:
    """When a call ends, its objects (runner, call, playback, buffers) are freed by reference
    counting, not left in a reference cycle for the cyclic collector: its full collections
    stop every call of the process, for longer the more they have to free (bench/README.md,
    "Barge-in": "Ended calls left all their objects to the collector")."""
    gc.collect()
    gc.disable()  # nothing but reference counting frees anything from here on
    try:
        async with start_gateway([Reply("hi", duration_ms=300)]) as (gateway, realtime):
            caller = await place_call(gateway, speed=4)
            await caller.wait_heard(300)
            (runner,) = gateway_of(gateway).calls.values()
            freed = [weakref.ref(runner), weakref.ref(runner.call), weakref.ref(runner.model)]
            del runner
            await caller.hang_up()
            await finished(gateway)
            deadline = time.monotonic() + 5
            while any(ref() is not None for ref in freed) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)  # the call's handler unwinding
            assert [ref() for ref in freed] == [None, None, None]
    finally:
        gc.enable()


async def test_an_ended_call_leaves_nothing_for_the_garbage_collector(start_gateway) -> None:
    """Not the call's objects, nor the libraries' under them: uvicorn's protocol and its
    scope, the model's ``websockets`` connection (its logger adapter names it, its keepalive
    task's traceback holds it), asyncio's socket transports (a bound method of their own
    before Python 3.13). Whatever a call leaves in a reference cycle, a full collection must
    free, and those stop every call of the process for longer the more they free."""
    async with start_gateway([Reply("hi", duration_ms=300)]) as (gateway, realtime):
        for calls in (1, 2):  # the first: imports and pools made once per process
            caller = await place_call(gateway, speed=4)
            await caller.wait_heard(300)
            if calls == 2:
                gc.collect()
                gc.disable()  # from here on, only reference counting frees anything
            await caller.hang_up()
            await finished(gateway, calls)
        try:
            await realtime.connections[-1].wait_until(lambda: realtime.connections[-1].closed, timeout=5)
            await asyncio.sleep(0.2)  # both sockets' connection_lost
            gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds goes to gc.garbage, not freed
            found = gc.collect()
            left = sorted({f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage})
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert (found, left) == (0, [])


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_fifty_calls_in_a_row_leak_nothing(start_gateway) -> None:
    async with start_gateway([]) as (gateway, realtime):  # every reply is the default "Okay."
        async def one_call() -> None:
            caller = await place_call(gateway, speed=10)
            await caller.wait_heard(200)  # the default reply: the greeting
            await caller.hang_up()

        await one_call()  # warm-up: imports, lazily created pools
        await finished(gateway)
        gc.collect()
        tasks_before, fds_before = len(asyncio.all_tasks()), open_fds()
        for _ in range(50):
            await one_call()
        await finished(gateway, 51)
        await realtime.connections[-1].wait_until(lambda: all(c.closed for c in realtime.connections), timeout=5)
        gc.collect()
        await asyncio.sleep(0)  # let finished tasks be collected
        tasks_after, fds_after = len(asyncio.all_tasks()), open_fds()
    assert tasks_after == tasks_before, (tasks_before, tasks_after)
    assert fds_after <= fds_before, (fds_before, fds_after)
    assert all(r.end_reason is EndReason.CALLER_HUNG_UP for r in gateway_of(gateway).finished)


async def test_a_failing_agent_factory_ends_only_that_call(start_gateway, caplog) -> None:
    def broken(info):
        raise RuntimeError("database down")

    async with start_gateway([Reply("hi")], agent=broken) as (gateway, realtime):
        caller = await place_call(gateway, speed=4)
        await caller.wait_closed(timeout=5)
        record = await finished(gateway)
    assert record.end_reason is EndReason.INTERNAL_ERROR and realtime.connections == []
    assert any("agent factory failed" in r.getMessage() and r.exc_info for r in caplog.records)
    assert caller.closed_by == "gateway"
