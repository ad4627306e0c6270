"""Twilio's callbacks reach the instance holding the call's stream, whichever instance they land
on: three real gateways behind one public URL, a fake Twilio whose streams and callbacks are
steered to chosen instances (as a load balancer would pick them), the real SDK between."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx

from gateway.app import create_app
from gateway.testing.gateway_server import GatewayServer
from gateway.testing.realtime import RealtimeServer, Reply
from gateway.testing.twilio_api import FakeTwilio
from gateway.testing.twilio_api.webhooks import deliver
from gateway.web.peers import HINT_PARAMETER, Peers

from .conftest import ACCOUNT_SID, API_KEY, AUTH_TOKEN, DATA_DIR, gateway_of, gateway_settings

#: The deployment's one public address; nothing listens there: the fake Twilio's requests are
#: steered to an instance (``Lb``).
PUBLIC = "http://lb.invalid"
CALLER_ID = "+15550009999"


@dataclass
class Lb:
    """Which instance the next stream and the next callbacks reach (indexes into ``servers``)."""

    stream: int = 0
    callbacks: int = 0
    servers: list[GatewayServer] = field(default_factory=list)

    def media(self, url: str) -> str:
        return self.servers[self.stream].url.replace("http://", "ws://") + "/twilio/media"

    def via(self, url: str) -> str:
        return self.servers[self.callbacks].url


@contextlib.asynccontextmanager
async def deployment(n: int = 3, script=(), realtime_options=None,
                     **twilio_options) -> AsyncIterator[tuple[Lb, RealtimeServer, FakeTwilio]]:
    lb = Lb()
    data_dir = tempfile.mkdtemp(dir=DATA_DIR)  # the deployment's own store: who announces in it is ours
    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN, connect_url=lb.media, deliver_via=lb.via, **twilio_options) as twilio:
        async with RealtimeServer(list(script), **(realtime_options or {})) as realtime:
            async with contextlib.AsyncExitStack() as stack:
                for _ in range(n):
                    make = lambda url: create_app(gateway_settings(  # noqa: E731
                        PUBLIC, realtime.url, GATEWAY_INSTANCE_URL=url, TWILIO_API_BASE_URL=twilio.base_url,
                        GATEWAY_API_KEY=API_KEY, GATEWAY_AMD="true", GATEWAY_CALLER_ID=CALLER_ID,
                        GATEWAY_DATA_DIR=data_dir))
                    lb.servers.append(await stack.enter_async_context(GatewayServer(make)))
                yield lb, realtime, twilio


async def place_outbound(server: GatewayServer) -> str:
    """``POST /calls`` on one instance (which becomes the call's home): the call SID."""
    async with httpx.AsyncClient() as client:
        response = await client.post(server.url + "/calls", headers={"Authorization": f"Bearer {API_KEY}"},
                                     json={"to": "+15557654321"})
    assert response.status_code == 201, response.text
    return response.json()["call_sid"]


async def placed_and_held(lb: Lb, twilio: FakeTwilio):
    """An outbound call placed on instance 0 (its home), its stream on 1, its callbacks
    landing on 2: ``(home, holder, landing, call)`` once the holder has it."""
    home, holder, landing = lb.servers
    lb.stream, lb.callbacks = 1, 2
    call = twilio.calls[await place_outbound(home)]
    await held(holder, call.sid)
    return home, holder, landing, call


async def send_amd(call, answered_by: str, via: GatewayServer):
    """An answering-machine result for ``call``, as Twilio sends it, reaching ``via``."""
    form = {"CallSid": call.sid, "AccountSid": ACCOUNT_SID, "AnsweredBy": answered_by}
    return await deliver("amd", call.async_amd_status_callback, form, AUTH_TOKEN, via=via.url)


async def held(server: GatewayServer, call_sid: str, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while gateway_of(server).registry.find(call_sid) is None:
            await asyncio.sleep(0.01)


async def test_an_answering_machine_result_landing_on_a_third_instance_reaches_the_agent(caplog) -> None:
    caplog.set_level(logging.INFO, "gateway")
    async with deployment(script=[Reply("Hello?", duration_ms=300)], answered_by="machine_end_beep",
                          amd_after_s=0.5) as (lb, realtime, twilio):
        home, holder, landing = lb.servers
        lb.stream, lb.callbacks = 1, 2
        call_sid = await place_outbound(home)
        call = twilio.calls[call_sid]
        await held(holder, call_sid)
        conn = await realtime.wait_for_connection()
        await conn.wait_until(lambda: conn.user_messages, timeout=10)
        await call.hang_up()
        await call.wait_status("completed", timeout=10)
        await asyncio.sleep(0.2)  # the completed callback's forwarding
    assert "answering machine" in conn.user_messages[0].text
    amd = [c for c in call.callbacks if c.kind == "amd"]
    assert len(amd) == 1 and amd[0].status == 204 and HINT_PARAMETER in amd[0].url
    record = gateway_of(holder).finished[-1]
    assert any(e["event"] == "answered_by" and e["answered_by"] == "machine_end_beep" for e in record.events)
    # Every status callback was answered, and the last one reached the holder too.
    assert all(c.status == 204 for c in call.callbacks if c.kind == "status")
    assert gateway_of(holder).statuses[call_sid][-1]["status"] == "completed"
    assert not gateway_of(landing).registry.early_amd and not gateway_of(home).registry.early_amd
    text = caplog.text
    assert f"[call={call_sid}] held by {holder.url} (this instance is its home)" in text
    assert f"forwarded to its home {home.url}: forwarded to its holder {holder.url}: told the call" in text


async def test_a_result_that_comes_before_the_stream_starts_waits_at_the_home() -> None:
    release = asyncio.Event()

    async def answer_when_released(call) -> str:
        await release.wait()
        return "machine_start"

    async with deployment(script=[Reply("Hello?", duration_ms=300)], answer=answer_when_released,
                          amd_after_s=60) as (lb, realtime, twilio):
        home, holder, landing = lb.servers
        lb.stream, lb.callbacks = 1, 2
        call_sid = await place_outbound(home)
        call = twilio.calls[call_sid]
        # Twilio's own result would come a minute after the answer: send one now, as Twilio
        # would, before the stream exists anywhere.
        early = await send_amd(call, "machine_start", via=landing)
        assert early.status == 204
        assert gateway_of(home).registry.early_amd == {call_sid: "machine_start"}
        release.set()
        await held(holder, call_sid)
        conn = await realtime.wait_for_connection()
        await conn.wait_until(lambda: conn.user_messages, timeout=10)
        await call.hang_up()
    assert "answering machine" in conn.user_messages[0].text
    assert not gateway_of(home).registry.early_amd  # handed to the holder when it registered


async def test_a_result_for_a_call_that_has_ended_is_dropped_where_it_was_held(caplog) -> None:
    caplog.set_level(logging.INFO, "gateway")
    async with deployment(script=[Reply("Hello?", duration_ms=300)], amd_after_s=60) as (lb, realtime, twilio):
        home, holder, landing, call = await placed_and_held(lb, twilio)
        await call.caller.wait_heard(300)
        await call.hang_up()
        async with asyncio.timeout(10):
            while gateway_of(holder).registry.find(call.sid) is not None:
                await asyncio.sleep(0.01)
        late = await send_amd(call, "human", via=landing)
    assert late.status == 204
    assert f"forwarded to its holder {holder.url}: dropped: the call has ended" in caplog.text
    assert all(not gateway_of(s).registry.early_amd for s in lb.servers)  # kept nowhere


async def test_a_forged_hint_is_not_followed(caplog) -> None:
    """A callback signed by Twilio, whose owner hint this deployment did not sign (another
    secret, naming a listener of the test's): handled where it landed, nothing sent there."""
    trap = socket.create_server(("127.0.0.1", 0))
    trap.setblocking(False)
    trap_url = f"http://127.0.0.1:{trap.getsockname()[1]}"
    forged = Peers(b"not this deployment's secret", trap_url).hint()
    try:
        async with deployment(n=2) as (lb, realtime, twilio):
            call_sid = "CA" + "f" * 32
            url = f"{PUBLIC}/twilio/amd?{HINT_PARAMETER}={forged}"
            answer = await deliver("amd", url, {"CallSid": call_sid, "AnsweredBy": "human"}, AUTH_TOKEN,
                                   via=lb.servers[1].url)
            kept = dict(gateway_of(lb.servers[1]).registry.early_amd)
        try:
            trap.accept()
            contacted = True
        except BlockingIOError:
            contacted = False
    finally:
        trap.close()
    assert answer.status == 204
    assert not contacted
    assert kept == {call_sid: "human"}
    assert "owner hint this deployment did not sign" in caplog.text


async def test_a_home_that_is_gone_is_passed_over(caplog) -> None:
    async with deployment(script=[Reply("Hello?", duration_ms=300)], amd_after_s=60) as (lb, realtime, twilio):
        home, holder, landing, call = await placed_and_held(lb, twilio)
        await home.close()  # the home dies; the call goes on at its holder
        answer = await send_amd(call, "machine_end_silence", via=landing)
        still_held = gateway_of(holder).registry.find(call.sid) is not None
        await call.hang_up()
    assert answer.status == 204
    assert still_held
    assert f"its home {home.url} could not be reached" in caplog.text
    # Without sibling workers to ask, the result stays where it landed (docs/deploy.md).
    assert gateway_of(landing).registry.early_amd == {call.sid: "machine_end_silence"}


async def test_the_internal_endpoints_refuse_unsigned_stale_and_altered_requests() -> None:
    async with deployment(n=1) as (lb, realtime, twilio):
        server = lb.servers[0]
        peers = gateway_of(server).peers
        body = b'{"call_sid":"CA1","holder":"http://127.0.0.1:1"}'
        async with httpx.AsyncClient() as client:
            async def post(headers: dict[str, str], content: bytes = body) -> int:
                return (await client.post(server.url + "/internal/v1/held", content=content, headers=headers)).status_code

            unsigned = await post({})
            stale = await post(peers.sign("POST", "/internal/v1/held", body, now=0))
            altered = await post(peers.sign("POST", "/internal/v1/held", body), body.replace(b"CA1", b"CA2"))
            elsewhere = await post(peers.sign("POST", "/internal/v1/callback", body))
            other = await post(Peers(b"another deployment").sign("POST", "/internal/v1/held", body))
            metrics = (await client.get(server.url + "/internal/v1/metrics")).status_code
            signed = await post(peers.sign("POST", "/internal/v1/held", body))
    assert [unsigned, stale, altered, elsewhere, other, metrics] == [403] * 6
    assert signed == 200


async def test_get_calls_lists_the_calls_of_every_instance() -> None:
    script = [Reply("Hello.", duration_ms=300), Reply("Hello.", duration_ms=300)]
    async with deployment(script=script) as (lb, realtime, twilio):
        first, second, third = lb.servers
        lb.callbacks = 0
        lb.stream = 1
        one = await twilio.ring(PUBLIC + "/twilio/voice")
        lb.stream = 2
        two = await twilio.ring(PUBLIC + "/twilio/voice")
        await held(second, one.sid)
        await held(third, two.sid)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with httpx.AsyncClient() as client:
            everywhere = (await client.get(first.url + "/calls", headers=headers)).json()
            await third.close()  # it shuts down: withdrawn from the store, its call gone
            after = (await client.get(first.url + "/calls", headers=headers)).json()
        await one.hang_up()
    assert sorted((c["call_sid"], c["instance"]) for c in everywhere["calls"]) == sorted(
        [(one.sid, second.url), (two.sid, third.url)])
    assert everywhere["instances"] == 3 and everywhere["unreachable"] == []
    assert [(c["call_sid"], c["instance"]) for c in after["calls"]] == [(one.sid, second.url)]
    assert after["instances"] == 2 and after["unreachable"] == []


async def test_an_operator_hang_up_reaches_the_instance_holding_the_call() -> None:
    script = [Reply("Let me tell you a long story about phones.", duration_ms=5000)]
    async with deployment(script=script, realtime_options={"pace": 1.0}) as (lb, realtime, twilio):
        first, holder = lb.servers[0], lb.servers[2]
        lb.callbacks, lb.stream = 0, 2
        call = await twilio.ring(PUBLIC + "/twilio/voice")
        await held(holder, call.sid)
        await call.caller.wait_heard(300)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with httpx.AsyncClient() as client:
            ended = await client.post(f"{first.url}/calls/{call.sid}/hangup", headers=headers)
            await call.wait_status("completed", timeout=10)
            again = await client.post(f"{first.url}/calls/{call.sid}/hangup", headers=headers)
            unknown = await client.post(f"{first.url}/calls/CA{'0' * 32}/hangup", headers=headers)
            refused = await client.post(f"{first.url}/calls/{call.sid}/hangup")
        record = await finished_on(holder)
    assert ended.status_code == 202 and ended.json() == {"call_sid": call.sid, "instance": holder.url}
    assert call.updates == [{"Status": "completed"}]  # through Twilio's REST API, by the holder
    assert call.caller.heard_ms < 2000  # at once: not after the agent's 5 s
    assert any(e["event"] == "hang_up" and e["reason"] == "operator" for e in record.events)
    assert again.status_code == 404 and unknown.status_code == 404
    assert refused.status_code == 401


async def finished_on(server: GatewayServer, timeout: float = 10.0):
    async with asyncio.timeout(timeout):
        while not gateway_of(server).finished:
            await asyncio.sleep(0.01)
    return gateway_of(server).finished[-1]
