"""Fixtures for call-flow tests: a real uvicorn gateway and the local Realtime server, on
127.0.0.1 with free ports; the real SDK in between."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable

import pytest

from gateway.app import create_app
from gateway.settings import Settings
from gateway.testing.gateway_server import GatewayServer
from gateway.testing.realtime import RealtimeServer

AUTH_TOKEN = "test-auth-token"
ACCOUNT_SID = "AC" + "0" * 32

#: Where the test gateways keep records and recordings unless a test gives its own
#: GATEWAY_DATA_DIR: a directory of this run's, removed at its end (not the working directory).
DATA_DIR = tempfile.mkdtemp(prefix="gateway-tests-")
atexit.register(shutil.rmtree, DATA_DIR, ignore_errors=True)


def gateway_settings(public_url: str, realtime_url: str, **overrides: str) -> Settings:
    env = {
        "PUBLIC_URL": public_url,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "OPENAI_REALTIME_URL": realtime_url,
        "GATEWAY_DATA_DIR": DATA_DIR,
        **overrides,
    }
    return Settings.from_mapping(env)


@pytest.fixture
def start_gateway() -> Callable[..., contextlib.AbstractAsyncContextManager[tuple[GatewayServer, RealtimeServer]]]:
    """``async with start_gateway(script, **settings) as (gateway, realtime):``"""

    @contextlib.asynccontextmanager
    async def start(script=(), *, agent=None, on_digit=None, on_call_end=None, realtime_options=None,
                    **overrides: str) -> AsyncIterator[tuple[GatewayServer, RealtimeServer]]:
        async with RealtimeServer(list(script), **(realtime_options or {})) as realtime:
            make = lambda url: create_app(gateway_settings(url, realtime.url, **overrides), agent=agent,  # noqa: E731
                                          on_digit=on_digit, on_call_end=on_call_end)
            async with GatewayServer(make) as gateway:
                yield gateway, realtime

    return start


async def place_call(gateway: GatewayServer, *, speed: float = 1.0, connect: bool = True, **caller_options):
    """Ring the gateway like Twilio: signed webhook POST, then the TwiML's stream, signed."""
    from gateway.testing.caller import TwilioCaller, fetch_twiml, new_sid, webhook_form

    call_sid = new_sid("CA")
    form = webhook_form(call_sid=call_sid, account_sid=ACCOUNT_SID, from_="+15550001111", to="+15550002222")
    twiml = await fetch_twiml(gateway.url + "/twilio/voice", form, AUTH_TOKEN)
    caller = TwilioCaller.from_twiml(
        twiml, auth_token=AUTH_TOKEN, call_sid=call_sid, account_sid=ACCOUNT_SID, speed=speed, **caller_options
    )
    if connect:
        await caller.connect()
    return caller


def ulaw_tone(freq: float, seconds: float, amplitude: float = 12000.0) -> bytes:
    from gateway.audio import pcm16_to_ulaw
    from gateway.audio.measure import to_pcm16, tone

    return pcm16_to_ulaw(to_pcm16(tone(freq, 8000, seconds, amplitude)))


API_KEY = "test-api-key"


@pytest.fixture
def start_phone_system():
    """``async with start_phone_system(script, **settings) as (gateway, realtime, twilio):``: the
    gateway, the local Realtime server and a fake Twilio (REST API and call behaviour) sharing
    one account; the gateway's REST client is aimed at the fake."""
    from gateway.testing.twilio_api import FakeTwilio

    @contextlib.asynccontextmanager
    async def start(script=(), *, agent=None, realtime_options=None, twilio_options=None, **overrides: str):
        async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN, **(twilio_options or {})) as twilio:
            async with RealtimeServer(list(script), **(realtime_options or {})) as realtime:
                settings = {"TWILIO_API_BASE_URL": twilio.base_url, "GATEWAY_API_KEY": API_KEY, **overrides}
                make = lambda url: create_app(gateway_settings(url, realtime.url, **settings), agent=agent)  # noqa: E731
                async with GatewayServer(make) as gateway:
                    yield gateway, realtime, twilio

    return start


def gateway_of(server: GatewayServer):
    """The running app's ``Gateway`` (calls in progress, finished records, statuses)."""
    return server.app.state.gateway


async def finished(server: GatewayServer, count: int = 1, timeout: float = 10.0):
    """Wait until ``count`` calls have finished; the latest ``CallRecord``."""
    deadline = time.monotonic() + timeout
    while len(gateway_of(server).finished) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} call(s) did not finish within {timeout} s")
        await asyncio.sleep(0.01)
    return gateway_of(server).finished[-1]
