"""``TwilioRest`` against the local fake Twilio API, through the real ``twilio`` library.

Nothing is patched: the library builds and sends every request (over a real socket, to
``FakeTwilio`` on 127.0.0.1) and parses every answer, so these tests also pin down what the
library sends for each operation.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from gateway.testing.twilio_api import FakeCall, FakeTwilio
from gateway.twilio.rest import (
    MAX_TWIML_CHARS,
    IncomingNumber,
    RedirectingHttpClient,
    TwilioRest,
    TwilioRestError,
)

ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "rest-test-auth-token"
CALLEE = "+15550001111"
OUR_NUMBER = "+15550002222"
# Holds an answered call in progress with no stream to serve: the far party is not simulated.
BRIDGED = "<Response><Dial>+15550003333</Dial></Response>"
TRANSFER = "<Response><Dial>+15550009999</Dial></Response>"


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        yield fake


@pytest.fixture
def rest(twilio: FakeTwilio) -> Iterator[TwilioRest]:
    client = TwilioRest(ACCOUNT_SID, AUTH_TOKEN, base_url=twilio.base_url)
    yield client
    client.close()


async def answered_call(twilio: FakeTwilio, rest: TwilioRest) -> FakeCall:
    sid = await rest.create_call(to=CALLEE, from_=OUR_NUMBER, twiml=BRIDGED)
    call = twilio.calls[sid]
    await call.wait_until(lambda: call.dialed)
    return call


async def test_create_call_returns_the_sid_and_sends_exactly_the_library_form(twilio, rest):
    # (Nothing listens on port 9: the fake's callbacks fail at once, and stay on this machine.)
    twiml = "<Response><Say>Hello</Say></Response>"
    sid = await rest.create_call(
        to=CALLEE,
        from_=OUR_NUMBER,
        twiml=twiml,
        status_callback="http://127.0.0.1:9/status",
        status_callback_event=["initiated", "answered", "completed"],
        machine_detection="Enable",
        async_amd=True,
        async_amd_status_callback="http://127.0.0.1:9/amd",
        timeout=20,
    )

    assert sid.startswith("CA") and list(twilio.calls) == [sid]
    [request] = twilio.requests
    assert (request.method, request.path, request.status) == (
        "POST", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json", 201)
    # Exactly what the library sends, in its order; StatusCallbackEvent repeated.
    assert request.fields == [
        ("To", CALLEE),
        ("From", OUR_NUMBER),
        ("StatusCallback", "http://127.0.0.1:9/status"),
        ("StatusCallbackEvent", "initiated"),
        ("StatusCallbackEvent", "answered"),
        ("StatusCallbackEvent", "completed"),
        ("Timeout", "20"),
        ("MachineDetection", "Enable"),
        ("AsyncAmd", "true"),
        ("AsyncAmdStatusCallback", "http://127.0.0.1:9/amd"),
        ("Twiml", twiml),
    ]
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["user-agent"].startswith("twilio-python/")


async def test_create_call_leaves_out_what_is_not_given(twilio, rest):
    await rest.create_call(to=CALLEE, from_=OUR_NUMBER, twiml=BRIDGED)
    assert twilio.requests[0].form == {"To": CALLEE, "From": OUR_NUMBER, "Twiml": BRIDGED}


async def test_hang_up_ends_the_call_then_reports_it_gone(twilio, rest):
    call = await answered_call(twilio, rest)

    assert await rest.hang_up(call.sid) is True
    update = twilio.requests[-1]
    assert (update.method, update.path) == ("POST", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{call.sid}.json")
    assert update.form == {"Status": "completed"}
    assert call.status == "completed"

    # Already gone: Twilio answers 404 with code 20404, which is not an error here.
    assert await rest.hang_up(call.sid) is False
    assert twilio.requests[-1].status == 404
    assert await rest.hang_up("CA" + "9" * 32) is False


async def test_redirect_replaces_the_running_twiml(twilio, rest):
    call = await answered_call(twilio, rest)

    assert await rest.redirect(call.sid, TRANSFER) is True
    assert twilio.requests[-1].form == {"Twiml": TRANSFER}
    assert call.redirects == [TRANSFER]
    await call.wait_until(lambda: "+15550009999" in call.dialed)
    assert call.status == "in-progress"

    await call.hang_up()
    assert await rest.redirect(call.sid, TRANSFER) is False


async def test_wrong_credentials_raise_with_twilio_code_20003(twilio):
    rest = TwilioRest(ACCOUNT_SID, "not-the-token", base_url=twilio.base_url)
    with pytest.raises(TwilioRestError) as raised:
        await rest.create_call(to=CALLEE, from_=OUR_NUMBER, twiml=BRIDGED)
    error = raised.value
    assert (error.code, error.status, error.operation) == (20003, 401, "create_call")
    assert "Authenticate" in error.message and "HTTP 401" in str(error)
    assert twilio.calls == {}

    # List pages fail differently inside the library (a bare TwilioException); same error here.
    with pytest.raises(TwilioRestError) as raised:
        await rest.find_number(CALLEE)
    assert (raised.value.code, raised.value.status) == (20003, 401)
    # A 401 is not "already gone": hang_up raises too.
    with pytest.raises(TwilioRestError):
        await rest.hang_up("CA" + "9" * 32)


async def test_twiml_over_4000_characters_is_refused_before_sending(twilio, rest):
    too_long = "<Response><Say>" + "a" * MAX_TWIML_CHARS + "</Say></Response>"
    with pytest.raises(ValueError, match="4000"):
        await rest.create_call(to=CALLEE, from_=OUR_NUMBER, twiml=too_long)
    with pytest.raises(ValueError, match="4000"):
        await rest.redirect("CA" + "9" * 32, too_long)
    assert twilio.requests == []

    just_fits = "<Response><Say>" + "a" * (MAX_TWIML_CHARS - 32) + "</Say></Response>"
    assert len(just_fits) == MAX_TWIML_CHARS
    await rest.create_call(to=CALLEE, from_=OUR_NUMBER, twiml=just_fits)
    assert twilio.requests[-1].status == 201


async def test_find_and_configure_a_number(twilio, rest):
    number = twilio.add_number(CALLEE, voice_url="https://old.example.com/voice", voice_method="GET")
    twilio.add_number(CALLEE + "2")  # a longer number Twilio's partial match also returns

    assert await rest.find_number(CALLEE) == IncomingNumber(number.sid, "https://old.example.com/voice", "GET")
    assert twilio.requests[-1].query == {"PhoneNumber": CALLEE, "PageSize": "20"}
    assert await rest.find_number("+15559999999") is None

    await rest.configure_number(number.sid, "https://gateway.example.com/twilio/voice")
    update = twilio.requests[-1]
    assert update.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers/{number.sid}.json"
    assert update.form == {"VoiceMethod": "POST", "VoiceUrl": "https://gateway.example.com/twilio/voice"}
    assert await rest.find_number(CALLEE) == IncomingNumber(
        number.sid, "https://gateway.example.com/twilio/voice", "POST")

    with pytest.raises(TwilioRestError) as raised:
        await rest.configure_number("PN" + "0" * 32, "https://gateway.example.com/twilio/voice")
    assert (raised.value.code, raised.value.status) == (20404, 404)


async def test_requests_do_not_block_the_event_loop(twilio, rest):
    call = await answered_call(twilio, rest)
    twilio.latency_s = 0.3
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    started = time.monotonic()
    try:
        hung_up, number = await asyncio.gather(rest.hang_up(call.sid), rest.find_number(CALLEE))
    finally:
        ticking.cancel()
    elapsed = time.monotonic() - started

    assert hung_up is True and number is None
    assert elapsed >= 0.3
    # Both requests were in flight at once (one after the other would take 0.6 s), and the
    # loop kept running all along: a blocking client would have frozen the ticker, and the
    # fake too, which shares this loop.
    assert elapsed < 0.6
    assert ticks >= 15


async def test_no_answer_at_all_is_a_rest_error_without_code():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    rest = TwilioRest(ACCOUNT_SID, AUTH_TOKEN, base_url=f"http://127.0.0.1:{port}", timeout=2)
    with pytest.raises(TwilioRestError) as raised:
        await rest.hang_up("CA" + "9" * 32)
    assert (raised.value.code, raised.value.status) == (None, None)
    assert "request failed" in str(raised.value)


def test_only_twilio_hosts_are_redirected():
    client = RedirectingHttpClient("http://127.0.0.1:8080/")
    path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers.json"
    assert client.rewrite(f"https://api.twilio.com{path}?PhoneNumber=%2B1555&PageSize=20") == (
        f"http://127.0.0.1:8080{path}?PhoneNumber=%2B1555&PageSize=20")
    assert client.rewrite("https://api.us1.twilio.com/x") == "http://127.0.0.1:8080/x"
    assert client.rewrite("https://example.com/x") == "https://example.com/x"
    assert client.rewrite("https://eviltwilio.com/x") == "https://eviltwilio.com/x"
    with pytest.raises(ValueError):
        RedirectingHttpClient("127.0.0.1:8080")


def test_connections_idle_for_a_while_are_not_reused() -> None:
    """A server closes idle keep-alive connections after a few seconds; a request sent on one
    just then is lost. So the client reuses a pooled connection only if it was in use within
    ``IDLE_REUSE_S``: a local HTTP/1.1 server sees which connection each request came on."""
    import http.server
    import threading

    from gateway.twilio.rest import IDLE_REUSE_S

    ports: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            ports.append(self.client_address[1])
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    now = [100.0]
    client = RedirectingHttpClient(f"http://127.0.0.1:{server.server_address[1]}", clock=lambda: now[0])
    try:
        for at in (100.0, 100.0 + IDLE_REUSE_S / 2, 100.0 + IDLE_REUSE_S * 2, 100.0 + IDLE_REUSE_S * 2.1):
            now[0] = at
            assert client.request("GET", "https://api.twilio.com/2010-04-01/Accounts.json").status_code == 200
    finally:
        client.session.close()
        server.shutdown()
        server.server_close()
    assert ports[0] == ports[1]  # in use a moment ago: reused
    assert ports[2] != ports[1]  # idle for longer: a new connection
    assert ports[3] == ports[2]
    assert client.fresh_pools == 1
