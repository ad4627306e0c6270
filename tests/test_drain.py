"""Graceful drain, with a real ``gateway serve`` process and a real SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from gateway.testing.caller import TwilioCaller
from gateway.testing.caller.twiml import WebhookError, fetch_twiml, new_sid, parse_response, webhook_form
from gateway.testing.realtime import RealtimeServer, Reply
from tests.callflow.conftest import DATA_DIR

AUTH_TOKEN = "drain-test-token"
ACCOUNT_SID = "AC" + "1" * 32
ELSEWHERE = "https://gw2.example.com/twilio/voice"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def start_gateway(realtime_url: str, **extra: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PUBLIC_URL": url,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "OPENAI_REALTIME_URL": realtime_url,
        "GATEWAY_DATA_DIR": DATA_DIR,  # the run's, not the working directory
        **extra,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--workers", "1", "--env-file", os.devnull],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    async with httpx.AsyncClient() as client:
        deadline = time.monotonic() + 20
        while True:
            try:
                if (await client.get(url + "/healthz")).status_code == 200:
                    return process, url
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"gateway did not start: {process.communicate()[0]}")
            await asyncio.sleep(0.05)


async def place_call(url: str) -> TwilioCaller:
    call_sid = new_sid("CA")
    form = webhook_form(call_sid=call_sid, account_sid=ACCOUNT_SID, from_="+15550001111", to="+15550002222")
    twiml = await fetch_twiml(url + "/twilio/voice", form, AUTH_TOKEN)
    caller = TwilioCaller.from_twiml(twiml, auth_token=AUTH_TOKEN, call_sid=call_sid, account_sid=ACCOUNT_SID)
    return await caller.connect()


async def wait_exit(process: subprocess.Popen[str], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("the gateway did not exit")
        await asyncio.sleep(0.05)
    return process.returncode


async def test_sigterm_drains_calls_in_progress_then_exits_0() -> None:
    script = [Reply("Hello.", duration_ms=400), Reply("Still here, and still talking.", duration_ms=600)]
    async with RealtimeServer(script) as realtime:
        process, url = await start_gateway(realtime.url, GATEWAY_DRAIN_REDIRECT_URL=ELSEWHERE)
        try:
            caller = await place_call(url)
            await caller.wait_heard(400)
            process.send_signal(signal.SIGTERM)
            async with httpx.AsyncClient() as client:
                deadline = time.monotonic() + 5
                while (ready := await client.get(url + "/readyz")).status_code != 503:
                    assert time.monotonic() < deadline, "readyz never turned 503"
                    await asyncio.sleep(0.02)
                assert ready.json()["active_calls"] == 1
                assert (await client.get(url + "/healthz")).status_code == 200  # alive
            # A new call is sent to another instance.
            form = webhook_form(call_sid=new_sid("CA"), account_sid=ACCOUNT_SID, from_="+1555", to="+1556")
            redirect = parse_response(await fetch_twiml(url + "/twilio/voice", form, AUTH_TOKEN))
            assert [(v.tag, v.text, v.get("method")) for v in redirect] == [("Redirect", ELSEWHERE, "POST")]
            # The call in progress goes on: the caller speaks and is answered.
            said = caller.say(b"\x00" * 4800)  # 600 ms of loud mu-law (0x00 is full scale)
            await caller.wait_said()
            await caller.wait_agent_silent(300, after=said.end, timeout=10)
            assert caller.heard_ms == pytest.approx(400 + 600, abs=1)
            assert process.poll() is None  # still serving it
            await caller.hang_up()
            assert await wait_exit(process, 10) == 0  # the last call ended: exit, status 0
        finally:
            if process.poll() is None:
                process.kill()
    log = process.communicate()[0]
    assert "draining: not taking new calls; 1 in progress" in log
    assert "drained: no calls in progress" in log


async def test_the_drain_timeout_ends_what_is_left_and_exits_0() -> None:
    async with RealtimeServer([Reply("Hello, this will take a while.", duration_ms=400)]) as realtime:
        process, url = await start_gateway(realtime.url, GATEWAY_DRAIN_TIMEOUT_S="1")
        try:
            caller = await place_call(url)
            await caller.wait_heard(400)
            began = time.monotonic()
            process.send_signal(signal.SIGTERM)
            form = webhook_form(call_sid=new_sid("CA"), account_sid=ACCOUNT_SID, from_="+1555", to="+1556")
            await asyncio.sleep(0.2)
            with pytest.raises(WebhookError) as refused:  # no redirect configured: 503
                await fetch_twiml(url + "/twilio/voice", form, AUTH_TOKEN)
            assert "503" in str(refused.value)
            assert await wait_exit(process, 15) == 0
            assert 1.0 <= time.monotonic() - began < 10
            await caller.wait_closed(timeout=5)  # the call ended with the process
        finally:
            if process.poll() is None:
                process.kill()
    assert "drain timeout: 1 call(s) still in progress end now" in process.communicate()[0]
