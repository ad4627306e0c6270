"""``FakeTwilio``: Twilio's REST API and call behaviour, against real local peers.

The application side is real too: a small Starlette app receives the callbacks and webhooks
(checking every signature with the ``twilio`` library's ``RequestValidator``), and a small
WebSocket server plays the gateway's stream endpoint, recording every message.
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.parse
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.twiml.voice_response import Connect, VoiceResponse
from websockets.asyncio.server import ServerConnection, serve

from gateway.security import TwilioSignatures
from gateway.testing.caller import CallEnded, WebhookError
from gateway.testing.gateway_server import GatewayServer
from gateway.testing.realtime.waiting import Changes
from gateway.testing.twilio_api import FakeCall, FakeTwilio
from gateway.twilio.rest import TwilioRest

ACCOUNT_SID = "AC" + "2" * 32
AUTH_TOKEN = "fake-twilio-test-token"
PUBLIC_STREAM_URL = "wss://gateway.example.com/twilio/stream"
CALLEE = "+15550001111"
OUR_NUMBER = "+15550002222"
TRANSFER = "<Response><Dial>+15550009999</Dial></Response>"


def stream_twiml(after: str = "", **parameters: str) -> str:
    response = VoiceResponse()
    connect = Connect()
    stream = connect.stream(url=PUBLIC_STREAM_URL)
    for name, value in parameters.items():
        stream.parameter(name=name, value=value)
    response.append(connect)
    return str(response).replace("</Response>", after + "</Response>")


# -- the application's side -------------------------------------------------------------------


@dataclass
class Hit:
    path: str
    form: dict[str, str]
    signed: bool  # X-Twilio-Signature valid for this URL and form


class Receiver:
    """The application's webhook endpoints: records every request, checks its signature and
    answers ``twiml[path]`` (XML) or ``statuses[path]`` (an HTTP error)."""

    def __init__(self) -> None:
        self.validator = RequestValidator(AUTH_TOKEN)
        self.hits: list[Hit] = []
        self.twiml: dict[str, str] = {}
        self.statuses: dict[str, int] = {}
        self.url = ""
        self._changes = Changes()
        self.app = Starlette(routes=[Route("/{path:path}", self.endpoint, methods=["GET", "POST"])])

    async def endpoint(self, request: Request) -> Response:
        form = dict(urllib.parse.parse_qsl((await request.body()).decode(), keep_blank_values=True))
        signature = request.headers.get("x-twilio-signature", "")
        signed = self.validator.validate(str(request.url), form, signature)
        self.hits.append(Hit(request.url.path, form, signed))
        self._changes.notify()
        if request.url.path in self.statuses:
            return Response("broken", status_code=self.statuses[request.url.path])
        return Response(self.twiml.get(request.url.path, ""), media_type="application/xml")

    def at(self, path: str) -> list[Hit]:
        return [hit for hit in self.hits if hit.path == path]

    async def wait_for(self, path: str, count: int = 1) -> list[Hit]:
        await self._changes.wait_until(lambda: len(self.at(path)) >= count, timeout=5.0, what=f"{count} x {path}")
        return self.at(path)


@dataclass
class StreamConnection:
    ws: ServerConnection
    signature: str | None
    messages: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False

    @property
    def events(self) -> list[str]:
        """Every event but media, in order."""
        return [m["event"] for m in self.messages if m["event"] != "media"]

    def inbound_audio(self) -> bytes:
        return b"".join(base64.b64decode(m["media"]["payload"]) for m in self.messages if m["event"] == "media")

    def first(self, event: str) -> dict[str, Any]:
        return next(m for m in self.messages if m["event"] == event)


class StreamServer:
    """The gateway's stream endpoint, reduced to recording what Twilio sends."""

    def __init__(self) -> None:
        self.connections: list[StreamConnection] = []
        self.url = ""
        self.changes = Changes()

    async def handler(self, ws: ServerConnection) -> None:
        connection = StreamConnection(ws, ws.request.headers.get("X-Twilio-Signature") if ws.request else None)
        self.connections.append(connection)
        self.changes.notify()
        async for data in ws:
            connection.messages.append(json.loads(data))
            self.changes.notify()
        connection.closed = True
        self.changes.notify()

    async def wait(self, predicate: Callable[[], Any]) -> Any:
        return await self.changes.wait_until(predicate, timeout=5.0, what="the stream")

    async def connection(self, index: int = 0) -> StreamConnection:
        await self.wait(lambda: len(self.connections) > index)
        connection = self.connections[index]
        await self.wait(lambda: "start" in connection.events)
        return connection


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    app = Receiver()
    async with GatewayServer(lambda url: app.app) as server:
        app.url = server.url
        yield app


@pytest.fixture
async def streams() -> AsyncIterator[StreamServer]:
    server = StreamServer()
    async with serve(server.handler, "127.0.0.1", 0) as ws_server:
        port = ws_server.sockets[0].getsockname()[1]
        server.url = f"ws://127.0.0.1:{port}/twilio/stream"
        yield server


@pytest.fixture
def connect_urls() -> list[str]:
    return []


@pytest.fixture
async def twilio(receiver: Receiver, streams: StreamServer, connect_urls: list[str]) -> AsyncIterator[FakeTwilio]:
    # (The receiver outlives the fake, so the callbacks sent as it closes are received.)
    def to_local(url: str) -> str:
        connect_urls.append(url)
        return streams.url

    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN, connect_url=to_local) as fake:
        yield fake


@pytest.fixture
def rest(twilio: FakeTwilio) -> TwilioRest:
    return TwilioRest(ACCOUNT_SID, AUTH_TOKEN, base_url=twilio.base_url)


# -- outbound calls ---------------------------------------------------------------------------


async def test_outbound_call_sends_signed_callbacks_and_connects_the_stream(twilio, rest, receiver, streams,
                                                                           connect_urls):
    sid = await rest.create_call(
        to=CALLEE, from_=OUR_NUMBER, twiml=stream_twiml(campaign="spring"),
        status_callback=f"{receiver.url}/status",
        status_callback_event=["initiated", "ringing", "answered", "completed"],
    )
    call = twilio.calls[sid]
    caller = await call.wait_caller()
    stream = await streams.connection()

    # The stream: Twilio's handshake, signed over the URL as written in the TwiML.
    assert connect_urls == [PUBLIC_STREAM_URL]
    assert TwilioSignatures(AUTH_TOKEN).stream_valid(PUBLIC_STREAM_URL, stream.signature)
    start = stream.first("start")["start"]
    assert (start["callSid"], start["accountSid"]) == (sid, ACCOUNT_SID)
    assert start["customParameters"] == {"campaign": "spring"}
    assert stream.events[:2] == ["connected", "start"]

    # The person who answered speaks: their audio reaches the stream.
    said = bytes(0x10 + i % 0x60 for i in range(400))  # never 0xFF, the silence byte
    caller.say(said)
    await streams.wait(lambda: said in stream.inbound_audio())

    hits = await receiver.wait_for("/status", 3)
    assert [hit.form["CallStatus"] for hit in hits] == ["initiated", "ringing", "in-progress"]

    assert await rest.hang_up(sid) is True
    # Before the REST answer came back, the stream had its stop and was closed.
    assert stream.events[-1] == "stop" and stream.first("stop")["stop"]["callSid"] == sid
    await streams.wait(lambda: stream.closed)
    assert stream.ws.close_code == 1000
    assert caller.closed_by == "caller"

    completed = await call.wait_callback("completed")
    hits = await receiver.wait_for("/status", 4)
    assert [hit.form["CallStatus"] for hit in hits] == ["initiated", "ringing", "in-progress", "completed"]
    assert all(hit.signed for hit in hits)
    assert completed.ok and completed.signature
    for number, hit in enumerate(hits):
        assert hit.form["SequenceNumber"] == str(number)
        assert (hit.form["CallSid"], hit.form["AccountSid"]) == (sid, ACCOUNT_SID)
        assert (hit.form["From"], hit.form["To"], hit.form["Direction"]) == (OUR_NUMBER, CALLEE, "outbound-api")
    assert "CallDuration" in hits[-1].form and "CallDuration" not in hits[2].form
    assert call.statuses == ["queued", "ringing", "in-progress", "completed"]
    assert call.errors == []


async def test_status_callback_without_events_sends_only_completed(twilio, rest, receiver):
    sid = await rest.create_call(to=CALLEE, from_=OUR_NUMBER, twiml="<Response><Hangup/></Response>",
                                 status_callback=f"{receiver.url}/status")
    callback = await twilio.calls[sid].wait_callback("completed")
    assert [hit.form["CallStatus"] for hit in receiver.at("/status")] == ["completed"]
    assert callback.form["CallDuration"] == "0" and twilio.calls[sid].verbs == ["Hangup"]


async def test_async_amd_posts_who_answered(streams, receiver):
    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN, answered_by="machine_end_beep", amd_after_s=0.05,
                          connect_url=lambda url: streams.url) as twilio:
        rest = TwilioRest(ACCOUNT_SID, AUTH_TOKEN, base_url=twilio.base_url)
        sid = await rest.create_call(to=CALLEE, from_=OUR_NUMBER, twiml=stream_twiml(),
                                     machine_detection="Enable", async_amd=True,
                                     async_amd_status_callback=f"{receiver.url}/amd")
        call = twilio.calls[sid]
        await call.wait_callback(kind="amd")

        [hit] = receiver.at("/amd")
        assert hit.signed
        assert hit.form == {"AccountSid": ACCOUNT_SID, "AnsweredBy": "machine_end_beep", "CallSid": sid,
                            "MachineDetectionDuration": "50"}
        await call.wait_caller()  # asynchronous AMD: the TwiML runs meanwhile
        fetched = await asyncio.to_thread(lambda: twilio.client().calls(sid).fetch())
        assert (fetched.answered_by, fetched.status, fetched.direction) == ("machine_end_beep", "in-progress",
                                                                            "outbound-api")


async def test_url_twiml_is_fetched_signed_when_answered(twilio, receiver, streams):
    receiver.twiml["/outbound"] = stream_twiml(leg="b")
    client = twilio.client()
    created = await asyncio.to_thread(
        lambda: client.calls.create(to=CALLEE, from_=OUR_NUMBER, url=f"{receiver.url}/outbound"))
    assert (created.status, created.to, created._from) == ("queued", CALLEE, OUR_NUMBER)

    stream = await streams.connection()
    [hit] = receiver.at("/outbound")
    assert hit.signed
    assert (hit.form["CallSid"], hit.form["CallStatus"], hit.form["Direction"]) == (
        created.sid, "in-progress", "outbound-api")
    assert stream.first("start")["start"]["customParameters"] == {"leg": "b"}


async def test_unanswered_calls_end_busy_no_answer_or_canceled(streams, receiver):
    go_ahead = asyncio.Event()

    async def answer(call: FakeCall) -> str:
        if call.to == "+15550000001":
            return "busy"
        await go_ahead.wait()  # rings until the test says
        return "human"

    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN, answer=answer) as twilio:
        rest = TwilioRest(ACCOUNT_SID, AUTH_TOKEN, base_url=twilio.base_url)
        status_callback = f"{receiver.url}/status"
        busy = twilio.calls[await rest.create_call(to="+15550000001", from_=OUR_NUMBER, twiml=stream_twiml(),
                                                   status_callback=status_callback)]
        callback = await busy.wait_callback("busy")
        assert busy.statuses == ["queued", "ringing", "busy"] and busy.callers == [] and busy.verbs == []
        assert callback.form["CallDuration"] == "0"

        ringing = twilio.calls[await rest.create_call(to=CALLEE, from_=OUR_NUMBER, twiml=stream_twiml())]
        await ringing.wait_status("ringing")
        assert await rest.hang_up(ringing.sid) is True  # before it is answered: canceled
        assert ringing.status == "canceled" and ringing.callers == []
        go_ahead.set()
        with pytest.raises(CallEnded, match="ended canceled"):
            await ringing.wait_status("in-progress", timeout=1.0)

    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN, answer_after_s=30.0) as twilio:
        rest = TwilioRest(ACCOUNT_SID, AUTH_TOKEN, base_url=twilio.base_url)
        call = twilio.calls[await rest.create_call(to=CALLEE, from_=OUR_NUMBER, twiml=stream_twiml(), timeout=1)]
        await call.wait_status("no-answer", timeout=3.0)
        assert call.answered_by is None and streams.connections == []


# -- call control -----------------------------------------------------------------------------


async def test_redirect_to_dial_stops_the_stream_and_records_the_transfer(twilio, rest, streams):
    sid = await rest.create_call(to=CALLEE, from_=OUR_NUMBER, twiml=stream_twiml())
    call = twilio.calls[sid]
    caller = await call.wait_caller()
    stream = await streams.connection()

    assert await rest.redirect(sid, TRANSFER) is True
    assert stream.events[-1] == "stop"
    await streams.wait(lambda: stream.closed)
    assert stream.ws.close_code == 1000 and caller.closed_by == "caller"

    await call.wait_until(lambda: call.dialed)
    assert call.dialed == ["+15550009999"]
    assert call.redirects == [TRANSFER] and call.updates == [{"Twiml": TRANSFER}]
    assert call.verbs == ["Connect", "Dial"]
    assert call.status == "in-progress"  # bridged to the number dialled

    await call.hang_up()  # the far end hangs up
    assert call.status == "completed"
    with pytest.raises(TwilioRestException) as raised:  # gone: an update now finds nothing
        await asyncio.to_thread(lambda: twilio.client().calls(sid).update(twiml=TRANSFER))
    assert (raised.value.status, raised.value.code) == (404, 20404)
    assert len(streams.connections) == 1


async def test_concurrent_hang_ups_end_the_call_once(twilio, rest, streams, receiver):
    call = twilio.calls[await rest.create_call(to=CALLEE, from_=OUR_NUMBER, twiml=stream_twiml(),
                                               status_callback=f"{receiver.url}/status")]
    stream = await streams.connection()

    results = await asyncio.gather(rest.hang_up(call.sid), rest.hang_up(call.sid))
    assert sorted(results) == [False, True]
    await call.hang_up()  # the callee too, too late: nothing more happens
    assert stream.events.count("stop") == 1
    assert call.statuses.count("completed") == 1
    await call.wait_callback("completed")
    assert len(call.status_callbacks) == 1


async def test_when_the_app_closes_the_stream_the_next_verb_runs(twilio, rest, streams):
    after = "<Dial><Number>+15550004444</Number><Sip>sip:desk@example.com</Sip></Dial>"
    call = twilio.calls[await rest.create_call(to=CALLEE, from_=OUR_NUMBER, twiml=stream_twiml(after=after))]
    stream = await streams.connection(0)
    await stream.ws.close()
    await call.wait_until(lambda: call.dialed)
    assert call.dialed == ["+15550004444", "sip:desk@example.com"]
    assert call.status == "in-progress" and call.caller is not None and call.caller.closed_by == "gateway"
    assert "stop" not in stream.events

    last = twilio.calls[await rest.create_call(to=CALLEE, from_=OUR_NUMBER, twiml=stream_twiml())]
    stream = await streams.connection(1)
    await stream.ws.close()
    await last.wait_status("completed")  # nothing after </Connect>: Twilio hangs up
    assert await rest.hang_up(last.sid) is False


# -- inbound calls ----------------------------------------------------------------------------


async def test_ring_posts_the_signed_webhook_and_rest_controls_the_call(twilio, rest, receiver, streams):
    receiver.twiml["/voice"] = stream_twiml(token="t-1")
    call = await twilio.ring(f"{receiver.url}/voice", from_="+15557770000", to=CALLEE)

    [hit] = receiver.at("/voice")
    assert hit.signed
    assert hit.form["CallSid"] == call.sid and hit.form["AccountSid"] == ACCOUNT_SID
    assert (hit.form["From"], hit.form["To"], hit.form["Direction"]) == ("+15557770000", CALLEE, "inbound")
    stream = await streams.connection()
    start = stream.first("start")["start"]
    assert (start["callSid"], start["customParameters"]) == (call.sid, {"token": "t-1"})
    assert call.direction == "inbound" and call.status == "in-progress"
    assert await twilio.wait_for_call(0) is call

    assert await rest.hang_up(call.sid) is True
    assert stream.events[-1] == "stop"
    assert call.status == "completed"


async def test_ring_follows_the_numbers_voice_url(twilio, rest, receiver, streams):
    number = twilio.add_number(CALLEE)
    receiver.twiml["/voice"] = stream_twiml()
    await rest.configure_number(number.sid, f"{receiver.url}/voice")

    call = await twilio.ring(to=CALLEE)
    assert receiver.at("/voice")[0].form["CallSid"] == call.sid
    assert call.caller is not None and not call.caller.closed

    receiver.statuses["/broken"] = 500
    with pytest.raises(WebhookError) as raised:
        await twilio.ring(f"{receiver.url}/broken")
    assert raised.value.status == 500
    failed = list(twilio.calls.values())[-1]
    assert failed.status == "failed" and failed.errors[0].startswith("11200")


# -- the API itself ---------------------------------------------------------------------------


async def test_api_errors_have_twilios_shape(twilio):
    async with httpx.AsyncClient(base_url=twilio.base_url) as http:
        answer = await http.get(f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/CA{'0' * 32}.json",
                                auth=(ACCOUNT_SID, "wrong"))
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"].startswith("Basic")
        assert answer.json() == {"code": 20003, "detail": "Your AccountSid or AuthToken was incorrect.",
                                 "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003",
                                 "status": 401}
        path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/CA{'0' * 32}.json"
        answer = await http.get(path, auth=(ACCOUNT_SID, AUTH_TOKEN))
        assert answer.status_code == 404
        assert answer.json() == {"code": 20404, "message": f"The requested resource {path} was not found",
                                 "more_info": "https://www.twilio.com/docs/errors/20404", "status": 404}
        answer = await http.get("/2010-04-01/Accounts/Nowhere.json", auth=(ACCOUNT_SID, AUTH_TOKEN))
        assert (answer.status_code, answer.json()["code"]) == (404, 20404)

    client = twilio.client()

    def create(**kwargs: Any) -> TwilioRestException:
        with pytest.raises(TwilioRestException) as raised:
            client.calls.create(**kwargs)
        return raised.value

    no_to = await asyncio.to_thread(create, to="", from_=OUR_NUMBER, twiml=TRANSFER)
    too_long = await asyncio.to_thread(create, to=CALLEE, from_=OUR_NUMBER, twiml="<Response>" + " " * 4000 + "</Response>")
    no_twiml = await asyncio.to_thread(create, to=CALLEE, from_=OUR_NUMBER)
    assert (no_to.status, no_to.code) == (400, 21201)
    assert (too_long.status, too_long.code) == (400, 12100) and "4000" in too_long.msg
    assert (no_twiml.status, no_twiml.code) == (400, 21205)
    assert twilio.calls == {} and [r.status for r in twilio.requests[-3:]] == [400, 400, 400]

    elsewhere = Client(ACCOUNT_SID, AUTH_TOKEN, account_sid="AC" + "3" * 32, http_client=client.http_client)
    with pytest.raises(TwilioRestException) as raised:
        await asyncio.to_thread(lambda: elsewhere.calls.create(to=CALLEE, from_=OUR_NUMBER, twiml=TRANSFER))
    assert raised.value.code == 20404


async def test_number_list_pages_like_twilio(twilio):
    for last in "123":
        twilio.add_number(f"+1555000000{last}")
    twilio.add_number("+15559990000")
    client = twilio.client()

    numbers = await asyncio.to_thread(
        lambda: client.incoming_phone_numbers.list(phone_number="+1555000000*", page_size=2))
    assert [n.phone_number for n in numbers] == ["+15550000001", "+15550000002", "+15550000003"]
    # The library followed next_page_uri (an api.twilio.com URL) back to the fake.
    pages = [r for r in twilio.requests if r.path.endswith("/IncomingPhoneNumbers.json")]
    assert [r.query.get("Page") for r in pages] == [None, "1"]
    assert numbers[0].capabilities["voice"] is True and numbers[0].date_created is not None


async def test_wait_for_request_sees_requests_as_they_arrive(twilio, rest):
    twilio.latency_s = 0.2
    creating = asyncio.create_task(rest.create_call(to=CALLEE, from_=OUR_NUMBER, twiml=TRANSFER))
    request = await twilio.wait_for_request(lambda r: r.path.endswith("/Calls.json"))
    assert request.status is None  # arrived, not yet answered
    sid = await creating
    assert request.status == 201
    assert (await twilio.wait_for_call(0)).sid == sid
    with pytest.raises(TimeoutError):
        await twilio.wait_for_call(1, timeout=0.05)
