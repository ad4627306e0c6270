"""Hostile and broken input on the media stream: each has a defined outcome, a log line naming
the call (or the peer, before ``start``) and the reason, and a proper close code."""

from __future__ import annotations

import base64
import json
import logging

import pytest
import websockets

from gateway.bridge.ending import (
    CLOSE_POLICY,
    CLOSE_PROTOCOL,
    CLOSE_TOO_BIG,
    CLOSE_UNSUPPORTED,
    EndReason,
)
from gateway.security import TwilioSignatures
from gateway.testing.realtime import Reply

from .conftest import AUTH_TOKEN, finished, gateway_of, place_call


async def raw_stream(gateway):
    """A signed Media Streams connection that sends nothing by itself (no connected/start)."""
    url = gateway.url.replace("http://", "ws://") + "/twilio/media"
    signature = TwilioSignatures(AUTH_TOKEN).sign(url, {})
    return await websockets.connect(url, additional_headers={"X-Twilio-Signature": signature})


async def closed_code(ws) -> int | None:
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await ws.recv()
    return ws.close_code


def media(stream_sid: str, payload: bytes | str, chunk: int = 1) -> str:
    if isinstance(payload, bytes):
        payload = base64.b64encode(payload).decode()
    return json.dumps({"event": "media", "sequenceNumber": str(chunk + 1), "streamSid": stream_sid,
                       "media": {"track": "inbound", "chunk": str(chunk), "timestamp": "0", "payload": payload}})


async def test_media_before_start_is_refused_without_a_model_connection(start_gateway, caplog) -> None:
    caplog.set_level(logging.WARNING, "gateway")
    async with start_gateway() as (gateway, realtime):
        ws = await raw_stream(gateway)
        await ws.send(media("MZ" + "0" * 32, b"\xff" * 160))
        assert await closed_code(ws) == CLOSE_PROTOCOL
        record = await finished(gateway)
    assert record.end_reason is EndReason.PROTOCOL_ERROR and realtime.connections == []
    assert any("stream refused before start" in r.getMessage() and "[peer=127.0.0.1:" in r.getMessage()
               for r in caplog.records)


async def test_no_start_in_time_is_refused(start_gateway, caplog) -> None:
    caplog.set_level(logging.WARNING, "gateway")
    async with start_gateway(GATEWAY_START_TIMEOUT_S="1") as (gateway, realtime):
        ws = await raw_stream(gateway)
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        assert await closed_code(ws) == CLOSE_POLICY
        record = await finished(gateway)
    assert record.end_reason is EndReason.REFUSED and realtime.connections == []
    assert any("no start within 1 s" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "frame, code, reason, logged",
    [
        (lambda sid: b'{"event": "mark"}', CLOSE_UNSUPPORTED, EndReason.BINARY_FRAME, "binary frame"),
        # ~80 KB of JSON; sent in the call (uvicorn reports the close ahead of queued frames)
        (lambda sid: media(sid, b"\xff" * 60_000), CLOSE_TOO_BIG, EndReason.TOO_BIG, "message too big"),
    ],
    ids=["binary-1003", "oversized-1009"],
)
async def test_a_frame_no_twilio_stream_sends_ends_the_stream(start_gateway, caplog, frame, code, reason,
                                                              logged) -> None:
    caplog.set_level(logging.WARNING, "gateway")
    async with start_gateway([Reply("Hello.")]) as (gateway, realtime):
        caller = await place_call(gateway)
        await caller.wait_heard(200)
        await caller.send_raw(frame(caller.stream_sid))
        await caller.wait_closed(timeout=5)
        record = await finished(gateway)
    assert caller.close_code == code and record.end_reason is reason
    assert any(caller.call_sid in r.getMessage() and logged in r.getMessage() for r in caplog.records)


async def test_a_flood_of_messages_ends_the_stream_with_1008(start_gateway, caplog) -> None:
    caplog.set_level(logging.WARNING, "gateway")
    async with start_gateway([Reply("Hello.")], GATEWAY_MAX_MESSAGE_RATE="100",
                             GATEWAY_MAX_MESSAGE_BURST="200") as (gateway, realtime):
        caller = await place_call(gateway)
        mark = json.dumps({"event": "mark", "sequenceNumber": "9", "streamSid": caller.stream_sid,
                           "mark": {"name": "flood"}})
        await caller.wait_heard(200)
        try:
            for _ in range(5000):  # far beyond 200 at once
                await caller.send_raw(mark)
        except websockets.ConnectionClosed:
            pass  # closed mid-flood
        await caller.wait_closed(timeout=5)
        record = await finished(gateway)
    assert caller.close_code == CLOSE_POLICY and record.end_reason is EndReason.RATE_LIMITED
    assert any(caller.call_sid in r.getMessage() and "rate limit" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "frame, reason",
    [
        (lambda sid: media(sid, "not base64!!"), "not valid base64"),
        (lambda sid: json.dumps({"event": "start", "sequenceNumber": "3", "streamSid": sid,
                                 "start": {}}), "start"),  # a second start
        (lambda sid: media("MZ" + "9" * 32, b"\xff" * 160), "but this stream is"),  # another stream's
        (lambda sid: "{not json", "JSON"),
    ],
    ids=["invalid-base64", "second-start", "wrong-stream-sid", "not-json"],
)
async def test_a_malformed_message_in_a_call_ends_it_with_1007(start_gateway, caplog, frame, reason) -> None:
    caplog.set_level(logging.WARNING, "gateway")
    async with start_gateway([Reply("Hello.")]) as (gateway, realtime):
        caller = await place_call(gateway)
        await caller.wait_heard(200)
        await caller.send_raw(frame(caller.stream_sid))
        await caller.wait_closed(timeout=5)
        record = await finished(gateway)
    assert caller.close_code == CLOSE_PROTOCOL and record.end_reason is EndReason.PROTOCOL_ERROR
    lines = [r.getMessage() for r in caplog.records if caller.call_sid in r.getMessage()]
    assert any("ending call" in line and reason in line for line in lines), lines
    assert realtime.connections[0].closed  # the model session went with it


async def test_unknown_events_and_odd_payload_sizes_are_accepted(start_gateway) -> None:
    async with start_gateway([Reply("Hello.", duration_ms=2000)]) as (gateway, realtime):
        caller = await place_call(gateway)
        await caller.wait_heard(200)
        conn = realtime.connections[0]
        await caller.send_raw(json.dumps({"event": "futureEvent", "streamSid": caller.stream_sid}))
        before = conn.audio_clock_ms
        for size in (1, 7, 161, 400):  # Twilio sends 160; other sizes are still audio
            await caller.send_raw(media(caller.stream_sid, b"\xff" * size, chunk=10_000 + size))
        await caller.wait_heard(600)  # the call goes on
        assert not caller.closed
        await caller.hang_up()
        record = await finished(gateway)
    assert record.end_reason is EndReason.CALLER_HUNG_UP
    assert gateway_of(gateway).finished[-1].frames_in >= 4
    assert conn.audio_clock_ms > before
