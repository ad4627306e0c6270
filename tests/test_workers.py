"""``gateway serve --workers N``: real worker processes on one port, a real SIGTERM, real
callbacks landing on the wrong worker; the local Realtime server and a fake Twilio in the test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from gateway.testing.caller import TwilioCaller
from gateway.testing.caller.twiml import fetch_twiml, new_sid, webhook_form
from gateway.testing.realtime import RealtimeServer, Reply
from gateway.testing.twilio_api import FakeTwilio
from tests.callflow.conftest import DATA_DIR

AUTH_TOKEN = "workers-test-token"
ACCOUNT_SID = "AC" + "2" * 32
API_KEY = "workers-test-key"

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the supervisor's tests need Linux")


def free_ports(n: int) -> int:
    """The first of ``n`` consecutive ports that are free now."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = probe.getsockname()[1]
        if first + n > 65535:
            continue
        socks = []
        try:
            for port in range(first, first + n):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise AssertionError("no run of free ports")


@dataclass
class Workers:
    process: subprocess.Popen[str]
    url: str  # the shared public port
    workers: list[str]  # each worker's internal address

    async def pid(self, i: int) -> int:
        async with httpx.AsyncClient() as client:
            return (await client.get(self.workers[i] + "/healthz")).json()["pid"]

    def log(self) -> str:
        if self.process.poll() is None:
            self.process.kill()
        return self.process.communicate()[0]


@contextlib.asynccontextmanager
async def serve_workers(n: int, realtime_url: str, **extra: str) -> AsyncIterator[Workers]:
    port, base = free_ports(1), free_ports(n)
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PUBLIC_URL": url, "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
           "OPENAI_REALTIME_URL": realtime_url, "GATEWAY_DATA_DIR": DATA_DIR, "GATEWAY_API_KEY": API_KEY,
           "GATEWAY_INSTANCE_URL": f"http://127.0.0.1:{base}", **extra}
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--workers", str(n), "--port", str(port), "--env-file", os.devnull],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    workers = Workers(process, url, [f"http://127.0.0.1:{base + i}" for i in range(n)])
    try:
        await until_answering(workers, 30)
        yield workers
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def until_answering(workers: Workers, timeout: float, but_not: set[int] = frozenset()) -> list[int]:
    """Until every worker answers ``/healthz`` (with a pid not in ``but_not``): their pids."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while True:
            pids = []
            for worker in workers.workers:
                try:
                    pids.append((await client.get(worker + "/healthz")).json()["pid"])
                except httpx.TransportError:
                    break
            if len(pids) == len(workers.workers) and not set(pids) & but_not:
                return pids
            if workers.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the workers did not all answer: {workers.log()}")
            await asyncio.sleep(0.05)


async def call_worker(workers: Workers, i: int) -> TwilioCaller:
    """An incoming call whose webhook reaches the shared port and whose stream reaches worker i."""
    call_sid = new_sid("CA")
    form = webhook_form(call_sid=call_sid, account_sid=ACCOUNT_SID, from_="+15550001111", to="+15550002222")
    twiml = await fetch_twiml(workers.url + "/twilio/voice", form, AUTH_TOKEN)
    media = workers.workers[i].replace("http://", "ws://") + "/twilio/media"
    caller = TwilioCaller.from_twiml(twiml, auth_token=AUTH_TOKEN, call_sid=call_sid, account_sid=ACCOUNT_SID,
                                     connect_url=media)
    return await caller.connect()


def metric(text: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(name + " "))
    return float(line.split()[1])


async def wait_exit(process: subprocess.Popen[str], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        assert time.monotonic() < deadline, "the supervisor did not exit"
        await asyncio.sleep(0.05)
    return process.returncode


async def test_two_workers_serve_one_port_report_together_and_drain_together() -> None:
    script = [Reply("Hello there.", duration_ms=400), Reply("Hello there.", duration_ms=400)]
    metrics_port = free_ports(1)
    async with RealtimeServer(script) as realtime, \
            serve_workers(2, realtime.url, GATEWAY_METRICS_PORT=str(metrics_port)) as workers:
        pids = await until_answering(workers, 5)
        callers = [await call_worker(workers, 0), await call_worker(workers, 1)]
        for caller in callers:
            await caller.wait_heard(400)
        async with httpx.AsyncClient() as client:
            # The metrics port (the first worker's) reports both workers' calls.
            text = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
            per_worker = [(await client.get(w + "/healthz")).json()["active_calls"] for w in workers.workers]
            workers.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 5
            while [(await client.get(w + "/readyz")).status_code for w in workers.workers] != [503, 503]:
                assert time.monotonic() < deadline, "the workers did not all start draining"
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)
            assert workers.process.poll() is None  # the calls are still going
            await callers[0].hang_up()
            await asyncio.sleep(0.3)
            assert workers.process.poll() is None  # one still going
            await callers[1].hang_up()
            status = await wait_exit(workers.process, 15)
    log = workers.log()
    assert len(set(pids)) == 2
    assert per_worker == [1, 1]
    assert metric(text, "gateway_active_calls") == 2 and metric(text, "gateway_workers_answering") == 2
    assert status == 0
    assert "SIGTERM: draining every worker" in log
    assert log.count("drained: no calls in progress") == 2


async def test_a_worker_that_dies_is_replaced_and_the_others_go_on() -> None:
    async with RealtimeServer([Reply("Still here.", duration_ms=400)]) as realtime, \
            serve_workers(2, realtime.url) as workers:
        caller = await call_worker(workers, 0)
        await caller.wait_heard(400)
        victim = await workers.pid(1)
        os.kill(victim, signal.SIGKILL)
        pids = await until_answering(workers, 30, but_not={victim})
        assert caller.closed_at is None  # worker 0's call did not notice
        async with httpx.AsyncClient() as client:  # each worker's /metrics reports both, the new one too
            texts = [(await client.get(w + "/metrics")).text for w in workers.workers]
        await caller.hang_up()
        workers.process.send_signal(signal.SIGTERM)
        status = await wait_exit(workers.process, 15)
    assert victim not in pids
    assert [metric(t, "gateway_active_calls") for t in texts] == [1, 1]
    assert [metric(t, "gateway_workers_answering") for t in texts] == [2, 2]
    assert status == 0
    assert f"worker 1 exited unexpectedly (status -{int(signal.SIGKILL)})" in workers.log()


@contextlib.asynccontextmanager
async def outbound_deployment(n: int, twilio_options: dict) -> AsyncIterator[tuple[Workers, RealtimeServer, FakeTwilio, dict]]:
    """``n`` workers, a fake Twilio whose streams and callbacks reach the workers ``lb`` names."""
    lb = {"stream": 0, "callbacks": 0}
    box: dict[str, Workers] = {}
    media = lambda url: box["w"].workers[lb["stream"]].replace("http://", "ws://") + "/twilio/media"  # noqa: E731
    via = lambda url: box["w"].workers[lb["callbacks"]]  # noqa: E731
    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN, connect_url=media, deliver_via=via, **twilio_options) as twilio, \
            RealtimeServer([Reply("Hello?", duration_ms=300)]) as realtime, \
            serve_workers(n, realtime.url, TWILIO_API_BASE_URL=twilio.base_url, GATEWAY_AMD="true",
                          GATEWAY_CALLER_ID="+15550009999") as workers:
        box["w"] = workers
        yield workers, realtime, twilio, lb


async def place_outbound(worker: str) -> str:
    async with httpx.AsyncClient() as client:
        response = await client.post(worker + "/calls", headers={"Authorization": f"Bearer {API_KEY}"},
                                     json={"to": "+15557654321"})
    assert response.status_code == 201, response.text
    return response.json()["call_sid"]


async def placed_on_0_streamed_to_1(workers: Workers, realtime: RealtimeServer, twilio: FakeTwilio, lb: dict):
    """An outbound call placed on worker 0 (its home), its stream on worker 1 and its callbacks
    landing on worker 2: ``(call, model connection)``."""
    lb["stream"], lb["callbacks"] = 1, 2
    call_sid = await place_outbound(workers.workers[0])
    conn = await realtime.wait_for_connection(timeout=10)
    return twilio.calls[call_sid], conn


async def test_an_answering_machine_result_landing_on_another_worker_reaches_the_agent() -> None:
    """Placed on worker 0 (its home), streamed to worker 1, the result lands on worker 2."""
    async with outbound_deployment(3, {"answered_by": "machine_end_beep", "amd_after_s": 0.5}) as (
            workers, realtime, twilio, lb):
        call, conn = await placed_on_0_streamed_to_1(workers, realtime, twilio, lb)
        await conn.wait_until(lambda: conn.user_messages, timeout=10)
        await call.hang_up()
    log, call_sid = workers.log(), call.sid
    assert "answering machine" in conn.user_messages[0].text
    assert [c.status for c in call.callbacks if c.kind == "amd"] == [204]
    assert f"[call={call_sid}] held by {workers.workers[1]}" in log
    assert f"forwarded to its home {workers.workers[0]}: forwarded to its holder {workers.workers[1]}: told the call" in log


async def test_a_home_worker_that_died_is_replaced_and_the_result_still_finds_the_holder() -> None:
    """The home's replacement forgot who holds the call: it asks its siblings."""
    async with outbound_deployment(3, {"answered_by": "machine_end_beep", "amd_after_s": 60}) as (
            workers, realtime, twilio, lb):
        call, conn = await placed_on_0_streamed_to_1(workers, realtime, twilio, lb)
        await call.caller.wait_heard(300)
        home = await workers.pid(0)
        os.kill(home, signal.SIGKILL)
        await until_answering(workers, 30, but_not={home})
        from gateway.testing.twilio_api.webhooks import deliver

        answer = await deliver("amd", call.async_amd_status_callback,
                               {"CallSid": call.sid, "AccountSid": ACCOUNT_SID, "AnsweredBy": "machine_end_beep"},
                               AUTH_TOKEN, via=workers.workers[2])
        await conn.wait_until(lambda: conn.user_messages, timeout=10)
        await call.hang_up()
    assert answer.status == 204
    assert "answering machine" in conn.user_messages[0].text
    assert f"forwarded to its holder {workers.workers[1]}: told the call" in workers.log()
