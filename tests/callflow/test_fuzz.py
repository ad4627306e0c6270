"""Fuzzing the running gateway's media stream (hypothesis, bounded): arbitrary message sequences,
from a peer that may even hold a valid call token, never crash the process, never end in an
internal error, and never disturb a good call running next to them (its audio keeps flowing
both ways).

The gateway, the local Realtime server and the good call run on an event loop in a background
thread for the whole module; each hypothesis example is one hostile connection."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Coroutine
from typing import Any

import httpx
import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import create_app
from gateway.bridge.ending import EndReason
from gateway.security import TwilioSignatures
from gateway.testing.caller.twiml import fetch_twiml, new_sid, parse_stream_twiml, webhook_form
from gateway.testing.gateway_server import GatewayServer
from gateway.testing.realtime import RealtimeServer, Reply

from .conftest import ACCOUNT_SID, AUTH_TOKEN, gateway_settings, place_call

EXAMPLES = 40
GOOD_REPLY_MS = 120_000  # the good call's agent talks all through the fuzzing, in real time


class Background:
    """An event loop in a thread, for servers that outlive one hypothesis example."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def system():
    bg = Background()
    # The good call (the first connection) hears one long real-time reply; hostile calls that
    # get as far as a model connection hear a short one.
    long, short = Reply("Talking all along.", duration_ms=GOOD_REPLY_MS), Reply("Hi.", duration_ms=200)
    realtime = RealtimeServer(on_turn=lambda conn, trigger: long if conn.index == 0 else short, pace=1.0)
    gateway: GatewayServer | None = None

    async def start():
        nonlocal gateway
        await realtime.start()
        gateway = await GatewayServer(lambda url: create_app(gateway_settings(url, realtime.url))).start()
        good = await place_call(gateway)
        await good.wait_heard(500)
        return good

    good = bg.run(start())
    yield bg, gateway, realtime, good

    async def stop():
        await good.hang_up()
        await gateway.close()
        await realtime.close()

    bg.run(stop())
    bg.stop()


def media(sid: str, payload: str) -> dict[str, Any]:
    return {"event": "media", "sequenceNumber": "5", "streamSid": sid,
            "media": {"track": "inbound", "chunk": "1", "timestamp": "20", "payload": payload}}


PAYLOADS = st.one_of(
    st.binary(max_size=400).map(lambda b: base64.b64encode(b).decode()),
    st.text(max_size=50),
)
EVENTS = st.sampled_from(["connected", "start", "media", "mark", "dtmf", "stop", "clear", "futureThing", ""])


@st.composite
def message(draw, sid: str) -> str | bytes:
    kind = draw(st.integers(0, 9))
    if kind == 0:  # any text at all
        return draw(st.text(max_size=300))
    if kind == 1:  # a binary frame
        return draw(st.binary(max_size=300))
    if kind == 2:  # media for this (or another) stream, odd payloads included
        return json.dumps(media(draw(st.sampled_from([sid, "MZ" + "0" * 32, ""])), draw(PAYLOADS)))
    if kind == 3:
        return json.dumps({"event": "dtmf", "streamSid": sid,
                           "dtmf": {"track": "inbound_track", "digit": draw(st.text(max_size=3))}})
    if kind == 4:
        return json.dumps({"event": "mark", "streamSid": sid, "mark": {"name": draw(st.text(max_size=40))}})
    # A Twilio-shaped object with arbitrary fields and values.
    obj = draw(st.dictionaries(st.sampled_from(["event", "streamSid", "sequenceNumber", "media", "start",
                                                "mark", "dtmf", "stop", "extra"]),
                               st.one_of(st.none(), st.integers(), st.text(max_size=20), EVENTS,
                                         st.dictionaries(st.text(max_size=10), st.text(max_size=10),
                                                         max_size=3)),
                               max_size=6))
    obj.setdefault("event", draw(EVENTS))
    return json.dumps(obj)


async def hostile(gateway: GatewayServer, start_properly: bool, frames: list[str | bytes]) -> None:
    """One hostile connection: optionally a genuine call start (valid token), then ``frames``."""
    stream_url = gateway.url.replace("http://", "ws://") + "/twilio/media"
    headers = {"X-Twilio-Signature": TwilioSignatures(AUTH_TOKEN).sign(stream_url, {})}
    async with websockets.connect(stream_url, additional_headers=headers, max_size=None) as ws:
        if start_properly:
            call_sid = new_sid("CA")
            form = webhook_form(call_sid=call_sid, account_sid=ACCOUNT_SID, from_="+1555", to="+1556")
            stream = parse_stream_twiml(await fetch_twiml(gateway.url + "/twilio/voice", form, AUTH_TOKEN))
            start = {"event": "start", "sequenceNumber": "1", "streamSid": "MZ" + "f" * 32,
                     "start": {"streamSid": "MZ" + "f" * 32, "accountSid": ACCOUNT_SID, "callSid": call_sid,
                               "tracks": ["inbound"], "customParameters": dict(stream.parameters),
                               "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}
            await ws.send(json.dumps(start))
        try:
            for frame in frames:
                await ws.send(frame)
            await asyncio.wait_for(ws.recv(), 0.05)  # whatever it answers (audio, or a close)
        except (websockets.ConnectionClosed, TimeoutError):
            pass


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data(), start_properly=st.booleans())
def test_arbitrary_message_sequences_never_crash_or_disturb_a_good_call(system, data, start_properly) -> None:
    bg, gateway, realtime, good = system
    sid = "MZ" + "f" * 32
    frames = data.draw(st.lists(message(sid), max_size=20), label="frames")
    before = len(gateway.app.state.gateway.finished)
    bg.run(hostile(gateway, start_properly, frames))

    async def settle():
        deadline = time.monotonic() + 10
        while len(gateway.app.state.gateway.finished) <= before:  # every connection leaves a record
            if time.monotonic() > deadline:
                raise TimeoutError("the hostile call did not end")
            await asyncio.sleep(0.01)

    bg.run(settle())
    for record in list(gateway.app.state.gateway.finished)[before:]:
        assert record.end_reason is not EndReason.INTERNAL_ERROR, record


def test_the_good_call_kept_flowing_through_the_fuzzing(system) -> None:
    bg, gateway, realtime, good = system

    async def check():
        return good.clock.now(), realtime.connections[0].audio_clock_ms, good.heard_segments()

    now, model_heard_ms, heard = bg.run(check())
    assert httpx.get(gateway.url + "/healthz").status_code == 200  # the process is fine
    assert not good.closed and good.errors == []
    # Caller -> model: every 20 ms frame so far reached the model (within two frames in flight).
    assert now * 1000 - model_heard_ms < 100
    # Model -> caller: the agent's real-time speech kept playing. (Everything here shares one
    # event loop and, with hypothesis, one GIL, so a few 100 ms of jitter are the harness's;
    # frame timing under load is measured in bench/load.py, with processes of their own.)
    gaps = [b.start - a.end for a, b in zip(heard, heard[1:])]
    assert max(gaps, default=0) < 0.5, gaps
    # In all, at most a second of the window went unheard (a CI run once saw 526 ms in gaps of
    # under 0.5 s each: the shared loop's jitter, not lost audio; lost audio shows above).
    assert sum(s.ms for s in heard) > (now - heard[0].start) * 1000 - 1000
