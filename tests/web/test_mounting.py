"""The gateway mounted in another Starlette application, at ``/phone``, under a real uvicorn on
127.0.0.1: Twilio's requests reach it (signed over ``PUBLIC_URL``, which names ``/phone``), a
whole call runs through the mount, and its start-up runs whether or not the host's lifespan
composes the gateway's (Starlette runs no lifespan of a mounted app)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from gateway.app import Gateway, create_app
from gateway.bridge import sdk
from gateway.security import TwilioSignatures
from gateway.settings import Settings
from gateway.testing.caller import TwilioCaller, new_sid, parse_stream_twiml, webhook_form
from gateway.testing.gateway_server import GatewayServer
from gateway.testing.realtime import RealtimeServer, Reply
from gateway.web.twiml import connect_stream
from tests.callflow.conftest import DATA_DIR

AUTH_TOKEN = "mount-test-token"
ACCOUNT_SID = "AC" + "2" * 32


class Host:
    """The host application's server, and the gateway mounted in it."""

    def __init__(self, server: GatewayServer, gateway: Gateway, events: list[str]) -> None:
        self.server = server
        self.gateway = gateway
        self.events = events  # the host's lifespan, as it ran

    @property
    def phone(self) -> str:
        return self.server.url + "/phone"


@contextlib.asynccontextmanager
async def host_app(*, compose: bool, realtime_url: str = "ws://127.0.0.1:9/v1/realtime",
                   public_path: str = "/phone", **overrides: str) -> AsyncIterator[Host]:
    """``Starlette(routes=[..., Mount("/phone", app=create_app(settings))], lifespan=...)``; the
    host's lifespan composes the gateway's when ``compose``."""
    events: list[str] = []
    gateways: list[Gateway] = []

    def make(url: str) -> Starlette:
        settings = Settings.from_mapping({
            "PUBLIC_URL": url + public_path,
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "OPENAI_REALTIME_URL": realtime_url,
            "GATEWAY_DATA_DIR": DATA_DIR,
            **overrides,
        })
        phone = create_app(settings)
        gateway = phone.state.gateway
        gateways.append(gateway)

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            events.append("host start")
            if compose:
                async with gateway.lifespan(app):
                    yield
            else:
                yield
            events.append("host stop")

        async def home(request: Request) -> PlainTextResponse:
            return PlainTextResponse("the host's own page")

        return Starlette(routes=[Route("/", home), Mount("/phone", app=phone)], lifespan=lifespan)

    async with GatewayServer(make) as server:
        try:
            yield Host(server, gateways[0], events)
        finally:
            # Without a composed lifespan nothing shuts the gateway down: its per-peer log
            # limit would stay on the process's loggers, and limit later tests' lines.
            gateways[0].startup.peer_log.uninstall()


async def post_signed(url: str, form: dict[str, str], signed_url: str | None = None) -> httpx.Response:
    signature = TwilioSignatures(AUTH_TOKEN).sign(signed_url or url, form)
    async with httpx.AsyncClient() as client:
        return await client.post(url, data=form, headers={"X-Twilio-Signature": signature})


def incoming_call() -> dict[str, str]:
    return webhook_form(call_sid=new_sid("CA"), account_sid=ACCOUNT_SID, from_="+15550001111", to="+15550002222")


async def test_a_signed_voice_webhook_reaches_the_mounted_gateway() -> None:
    async with host_app(compose=True) as host:
        answer = await post_signed(host.phone + "/twilio/voice", incoming_call())
        async with httpx.AsyncClient() as client:
            own_page = await client.get(host.server.url + "/")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/xml")
    # The stream's URL, and so the handshake's signature, name the mount too.
    stream = parse_stream_twiml(answer.text)
    assert stream.url == host.server.url.replace("http://", "ws://") + "/phone/twilio/media"
    assert own_page.text == "the host's own page"


async def test_status_and_amd_callbacks_reach_the_mounted_gateway() -> None:
    form = {"CallSid": new_sid("CA"), "AccountSid": ACCOUNT_SID, "CallStatus": "ringing", "AnsweredBy": "human"}
    async with host_app(compose=True) as host:
        status = await post_signed(host.phone + "/twilio/status", form)
        amd = await post_signed(host.phone + "/twilio/amd", form)
        statuses = host.gateway.statuses
        early_amd = host.gateway.registry.early_amd
    assert (status.status_code, amd.status_code) == (204, 204)
    assert [s["status"] for s in statuses[form["CallSid"]]] == ["ringing"]
    assert early_amd == {form["CallSid"]: "human"}  # no stream yet: kept for its start


async def test_signed_over_the_url_without_the_mount_path_is_refused(caplog) -> None:
    caplog.set_level(logging.WARNING, "gateway.app")
    async with host_app(compose=True) as host:
        # What a gateway configured without /phone in PUBLIC_URL would check: not what Twilio signed.
        answer = await post_signed(host.phone + "/twilio/voice", incoming_call(),
                                   signed_url=host.server.url + "/twilio/voice")
    assert answer.status_code == 403
    assert any("does not match " + host.phone + "/twilio/voice" in r.getMessage() for r in caplog.records)


async def test_public_url_without_the_mount_path_refuses_what_twilio_signs() -> None:
    async with host_app(compose=True, public_path="") as host:
        answer = await post_signed(host.phone + "/twilio/voice", incoming_call())
    assert answer.status_code == 403


async def test_a_whole_call_runs_through_the_mount() -> None:
    async with RealtimeServer([Reply("Hello from the mounted gateway.", duration_ms=400)]) as realtime:
        async with host_app(compose=True, realtime_url=realtime.url) as host:
            form = incoming_call()
            answer = await post_signed(host.phone + "/twilio/voice", form)
            assert answer.status_code == 200, answer.text
            caller = TwilioCaller.from_twiml(answer.text, auth_token=AUTH_TOKEN, call_sid=form["CallSid"],
                                             account_sid=ACCOUNT_SID, speed=4)
            await caller.connect()  # the handshake's signature, over wss://.../phone/twilio/media
            await caller.wait_heard(400, timeout=10)
            in_progress = [c.call_sid for c in host.gateway.calls.values()]
            await caller.hang_up()
            deadline = time.monotonic() + 10
            while not host.gateway.finished:
                assert time.monotonic() < deadline, "the call did not finish"
                await asyncio.sleep(0.01)
    assert in_progress == [form["CallSid"]]
    assert host.gateway.finished[-1].call_sid == form["CallSid"]
    assert caller.errors == [] and caller.invalid_count == 0


@pytest.fixture
def prepare_calls(monkeypatch) -> list[str]:
    """Every ``sdk.prepare()`` call from here on (the real one runs too: idempotent)."""
    calls: list[str] = []
    real = sdk.prepare

    def prepare() -> None:
        calls.append("prepare")
        real()

    monkeypatch.setattr(sdk, "prepare", prepare)
    return calls


async def test_a_composed_lifespan_starts_up_before_any_request_and_shuts_down(prepare_calls, caplog) -> None:
    caplog.set_level(logging.INFO, "gateway.app")
    closed: list[str] = []
    async with host_app(compose=True, GATEWAY_INSECURE_SKIP_SIGNATURE="true") as host:
        startup = host.gateway.startup
        assert (startup.done, startup.ran_by) == (True, "lifespan")  # no request made yet
        assert prepare_calls == ["prepare"] and sdk._done
        real_close = host.gateway.rest.close
        host.gateway.rest.close = lambda: (closed.append("rest"), real_close())  # type: ignore[method-assign]
        unsigned = await post_signed(host.phone + "/twilio/voice", incoming_call(), signed_url="http://elsewhere/")
    assert unsigned.status_code == 200  # insecure mode: not checked
    assert prepare_calls == ["prepare"]  # once
    assert closed == ["rest"] and host.events == ["host start", "host stop"]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("NOT checked" in m for m in messages) == 1
    assert any(m.startswith("start-up done (lifespan)") for m in messages)
    assert not any("first request" in m for m in messages)


async def test_without_a_composed_lifespan_the_first_request_starts_up(prepare_calls, caplog) -> None:
    caplog.set_level(logging.INFO, "gateway.app")
    async with host_app(compose=False, GATEWAY_INSECURE_SKIP_SIGNATURE="true") as host:
        startup = host.gateway.startup
        assert not startup.done and prepare_calls == []  # Starlette ran no lifespan of the mount
        assert not any("NOT checked" in r.getMessage() for r in caplog.records)
        async with httpx.AsyncClient() as client:
            first = await client.get(host.phone + "/healthz")
            assert (startup.done, startup.ran_by) == (True, "first request: /phone/healthz")
            second = await client.get(host.phone + "/readyz")
    assert first.status_code == 200 and second.status_code == 200
    assert prepare_calls == ["prepare"] and sdk._done  # once, on the first request
    messages = [r.getMessage() for r in caplog.records]
    assert sum("NOT checked" in m for m in messages) == 1
    assert sum("ran on its first request" in m for m in messages) == 1
    assert host.events == ["host start", "host stop"]


async def test_the_first_request_may_be_the_media_stream(prepare_calls) -> None:
    async with RealtimeServer([Reply("Hi.", duration_ms=200)]) as realtime:
        async with host_app(compose=False, realtime_url=realtime.url) as host:
            form = incoming_call()
            # The TwiML the voice webhook would answer, built without a request to the gateway.
            parameters = {"callSid": form["CallSid"], "from": form["From"], "to": form["To"]}
            answer = connect_stream(host.gateway.settings, host.gateway.tokens, form["CallSid"], parameters,
                                    now=time.time())
            assert not host.gateway.startup.done
            caller = TwilioCaller.from_twiml(answer, auth_token=AUTH_TOKEN, call_sid=form["CallSid"],
                                             account_sid=ACCOUNT_SID, speed=4)
            await caller.connect()
            await caller.wait_heard(200, timeout=10)
            await caller.hang_up()
    assert host.gateway.startup.ran_by == "first request: /phone/twilio/media"
    assert prepare_calls == ["prepare"]


async def test_its_routes_included_in_the_host_app_work_the_same() -> None:
    gateways: list[Gateway] = []

    def make(url: str) -> Starlette:
        settings = Settings.from_mapping({"PUBLIC_URL": url + "/phone", "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
                                          "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "OPENAI_REALTIME_URL": "ws://127.0.0.1:9/",
                                          "GATEWAY_DATA_DIR": DATA_DIR})
        gateway = create_app(settings).state.gateway
        gateways.append(gateway)
        return Starlette(routes=[Mount("/phone", routes=gateway.routes)], lifespan=gateway.lifespan)

    async with GatewayServer(make) as server:
        assert gateways[0].startup.ran_by == "lifespan"
        answer = await post_signed(server.url + "/phone/twilio/voice", incoming_call())
    assert answer.status_code == 200, answer.text
    assert parse_stream_twiml(answer.text).url.endswith("/phone/twilio/media")
