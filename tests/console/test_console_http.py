"""The console over plain HTTP (httpx) against a real gateway on uvicorn: who gets in, what a
logged-out request gets, where the key may go (a POST body, never a URL), and the data behind
the pages, read from a real call and the real SQLite store."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from gateway.app import create_app
from gateway.bridge.record import CallRecord
from gateway.settings import Settings
from gateway.store.stored import stored_call
from gateway.testing.gateway_server import GatewayServer
from gateway.testing.realtime import Reply
from gateway.web.console import COOKIE
from gateway.web.console.sessions import MAX_FAILURES

PAGES = ["/console", "/console/calls/CA0123"]
DATA = ["/console/api/live", "/console/api/calls", "/console/api/calls/CA0123",
        "/console/api/calls/CA0123/timeline.png", "/console/api/calls/CA0123/recording.wav"]


class Browser(httpx.AsyncClient):
    """An HTTP client that notes every URL it requests and every redirect it is given."""

    def __init__(self, base_url: str) -> None:
        self.urls: list[str] = []
        super().__init__(base_url=base_url, event_hooks={"request": [self._note], "response": [self._noted]})

    async def _note(self, request: httpx.Request) -> None:
        self.urls.append(str(request.url))

    async def _noted(self, response: httpx.Response) -> None:
        if "location" in response.headers:
            self.urls.append(response.headers["location"])

    async def log_in(self, key: str, headers: dict[str, str] | None = None, **form: str) -> httpx.Response:
        return await self.post("/console/login", data={"key": key, **form}, headers=headers)


@contextlib.asynccontextmanager
async def browser(url: str) -> AsyncIterator[Browser]:
    async with Browser(url) as client:
        yield client


async def start(phone_system, tmp_path: Path, script=(), **settings: str):
    return await phone_system(script=list(script), settings={"GATEWAY_DATA_DIR": str(tmp_path / "data"), **settings})


async def test_without_an_api_key_there_is_no_console(phone_system, tmp_path) -> None:
    phone = await start(phone_system, tmp_path, GATEWAY_API_KEY="")
    async with browser(phone.url) as client:
        for path in [*PAGES, *DATA, "/console/login", "/console/static/console.css"]:
            response = await client.get(path)
            assert response.status_code == 404, path
        assert "GATEWAY_API_KEY" in (await client.get("/console")).text
        assert (await client.log_in("")).status_code == 404
        assert (await client.log_in("anything")).status_code == 404


async def test_logged_out_pages_lead_to_the_login_form_and_data_is_refused(phone_system, tmp_path) -> None:
    phone = await start(phone_system, tmp_path)
    async with browser(phone.url) as client:
        first = await client.get("/console")
        assert first.status_code == 303 and first.headers["location"] == "/console/login"
        page = await client.get("/console/calls/CA0123")
        assert page.status_code == 303 and page.headers["location"] == "/console/login?next=calls/CA0123"
        for path in DATA:
            response = await client.get(path)
            assert response.status_code == 401, path
            assert response.json() == {"error": "log in to the console first"}
        # A forged cookie is no better than none.
        client.cookies.set(COOKIE, "v1.99999999999.nonce." + "0" * 64, path="/console")
        assert (await client.get("/console/api/live")).status_code == 401
        assert (await client.get("/console")).status_code == 303
        # The login form, and the style sheet it uses, are open to all; the key goes in a POST body.
        login = await client.get("/console/login")
        assert login.status_code == 200
        assert re.search(r'<form method="post" action="login">', login.text)
        assert 'type="password"' in login.text
        assert login.headers["content-security-policy"].startswith("default-src 'none'")
        assert (await client.get("/console/static/console.css")).headers["content-type"].startswith("text/css")
        assert (await client.get("/console/static/../app.py")).status_code == 404


async def test_the_right_key_buys_a_session_cookie_and_no_url_ever_holds_the_key(phone_system, tmp_path, caplog) -> None:
    phone = await start(phone_system, tmp_path)
    async with browser(phone.url) as client:
        with caplog.at_level(logging.WARNING, logger="gateway.app"):
            wrong = await client.log_in("not-" + phone.api_key)
        assert wrong.status_code == 401 and "That key is not right." in wrong.text
        assert "set-cookie" not in wrong.headers
        assert any("console login refused: wrong key" in r.getMessage() and "[peer=127.0.0.1:" in r.getMessage()
                   for r in caplog.records)
        right = await client.log_in(phone.api_key)
        assert right.status_code == 303 and right.headers["location"] == "/console"
        cookie = right.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=v1.")
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "path", "max-age"} <= attributes and "secure" not in attributes  # http here
        assert "samesite=strict" in cookie.lower() and "path=/console" in cookie.lower()
        assert phone.api_key not in cookie

        for path in PAGES:
            assert (await client.get(path)).status_code == 200, path
        live = await client.get("/console/api/live")
        assert live.status_code == 200 and live.json()["calls"] == []
        assert live.headers["cache-control"] == "no-store"
        assert (await client.get("/console/login")).headers["location"] == "/console"  # already in
    # Every URL requested and every redirect given: none holds the key.
    assert len(client.urls) >= 8 and not [url for url in client.urls if phone.api_key in url]
    async with browser(phone.url) as other:  # and a key put in a query string logs nobody in
        assert (await other.get("/console/login", params={"key": phone.api_key})).status_code == 200
        assert not other.cookies
        assert (await other.get("/console/api/live")).status_code == 401


async def test_a_login_leads_back_to_the_page_asked_for_and_nowhere_else(phone_system, tmp_path) -> None:
    phone = await start(phone_system, tmp_path)
    async with browser(phone.url) as client:
        back = await client.log_in(phone.api_key, next="calls/CA0123")
        assert back.headers["location"] == "/console/calls/CA0123"
        for elsewhere in ["//evil.example/x", "https://evil.example/", "../twilio/voice", "calls/../../x", "calls/a?b"]:
            assert (await client.log_in(phone.api_key, next=elsewhere)).headers["location"] == "/console", elsewhere
    async with browser(phone.url) as client:
        form = await client.get("/console/login", params={"next": '"><script>alert(1)</script>'})
        assert form.status_code == 200 and "<script>" not in form.text
        form = await client.get("/console/login", params={"next": "calls/CA0123"})
        assert '<input type="hidden" name="next" value="calls/CA0123">' in form.text


async def test_another_site_cannot_post_the_forms(phone_system, tmp_path) -> None:
    phone = await start(phone_system, tmp_path)
    async with browser(phone.url) as client:
        for site in ("cross-site", "same-site"):
            refused = await client.log_in(phone.api_key, headers={"Sec-Fetch-Site": site})
            assert refused.status_code == 403 and "set-cookie" not in refused.headers
        assert (await client.log_in(phone.api_key, headers={"Sec-Fetch-Site": "same-origin"})).status_code == 303
        out = await client.post("/console/logout", headers={"Sec-Fetch-Site": "cross-site"})
        assert out.status_code == 403 and "set-cookie" not in out.headers
        assert (await client.get("/console/api/live")).status_code == 200  # still logged in


async def test_a_peer_that_keeps_guessing_is_refused_for_a_while(phone_system, tmp_path) -> None:
    phone = await start(phone_system, tmp_path)
    async with browser(phone.url) as client:
        for _ in range(MAX_FAILURES):
            assert (await client.log_in("guess")).status_code == 401
        refused = await client.log_in(phone.api_key)  # even the right key, for now
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) > 0
        assert "set-cookie" not in refused.headers


async def test_logging_out_ends_the_session(phone_system, tmp_path) -> None:
    phone = await start(phone_system, tmp_path)
    async with browser(phone.url) as client:
        await client.log_in(phone.api_key)
        token = client.cookies[COOKIE]
        out = await client.post("/console/logout")
        assert out.status_code == 303 and out.headers["location"] == "/console/login"
        assert f'{COOKIE}=""' in out.headers["set-cookie"] and "max-age=0" in out.headers["set-cookie"].lower()
        assert (await client.get("/console/api/live")).status_code == 401
        client.cookies.set(COOKIE, token, path="/console")  # the old cookie, kept by someone
        assert (await client.get("/console/api/live")).status_code == 401


def test_the_session_cookie_is_secure_under_an_https_public_url(tmp_path) -> None:
    async def run() -> None:
        settings = Settings.from_mapping({
            "PUBLIC_URL": "https://gateway.example.com", "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
            "TWILIO_AUTH_TOKEN": "token", "OPENAI_REALTIME_URL": "ws://127.0.0.1:9/v1/realtime",
            "GATEWAY_API_KEY": "k" * 32, "GATEWAY_DATA_DIR": str(tmp_path)})
        async with GatewayServer(lambda url: create_app(settings)) as server, browser(server.url) as client:
            response = await client.log_in("k" * 32)
        assert response.status_code == 303
        assert "secure" in [part.strip().lower() for part in response.headers["set-cookie"].split(";")]

    asyncio.run(run())


async def test_the_console_works_under_a_mount_path(tmp_path) -> None:
    settings = lambda url: Settings.from_mapping({  # noqa: E731
        "PUBLIC_URL": url + "/phone", "TWILIO_ACCOUNT_SID": "AC" + "0" * 32, "TWILIO_AUTH_TOKEN": "token",
        "OPENAI_REALTIME_URL": "ws://127.0.0.1:9/v1/realtime", "GATEWAY_API_KEY": "mounted-key",
        "GATEWAY_DATA_DIR": str(tmp_path)})

    def make(url: str) -> Starlette:
        phone = create_app(settings(url))
        # The gateway's lifespan composed into the host's, so that its shutdown runs (docs/mounting.md).
        return Starlette(routes=[Mount("/phone", app=phone)], lifespan=phone.state.gateway.lifespan)

    async with GatewayServer(make) as server, browser(server.url) as client:
        assert (await client.get("/phone/console")).headers["location"] == "/phone/console/login"
        login = await client.get("/phone/console/login")
        assert '<base href="/phone/console/">' in login.text
        response = await client.post("/phone/console/login", data={"key": "mounted-key"})
        assert response.headers["location"] == "/phone/console"
        assert "path=/phone/console" in response.headers["set-cookie"].lower()
        page = await client.get("/phone/console")
        assert page.status_code == 200 and '<base href="/phone/console/">' in page.text
        assert (await client.get("/phone/console/api/live")).json()["calls"] == []


async def test_a_call_is_live_then_listed_with_its_transcript_picture_and_recording(phone_system, tmp_path) -> None:
    phone = await start(phone_system, tmp_path, [Reply("Hello from Acme."), Reply("It ships tomorrow.")],
                        GATEWAY_RECORD="true")
    async with browser(phone.url) as client:
        await client.log_in(phone.api_key)
        call = await phone.call()
        (live,) = (await client.get("/console/api/live")).json()["calls"]
        assert live["call_sid"] == call.call_sid and live["from"] == "+15550001111"
        assert live["speaking"] in ("agent", "caller", "")
        await call.listen()
        await call.say("When does my order ship?")
        await call.listen()
        await call.hang_up()
        assert (await client.get("/console/api/live")).json()["calls"] == []

        listed = (await client.get("/console/api/calls")).json()
        assert listed["source"] == "store"
        assert [c["call_sid"] for c in listed["calls"]] == [call.call_sid]
        assert listed["calls"][0]["end_reason"] == "caller_hung_up" and "events" not in listed["calls"][0]
        stored = (await client.get(f"/console/api/calls/{call.call_sid}")).json()
        said = [(item.get("role"), item.get("text")) for item in stored["transcript"] if item["type"] == "message"]
        assert said == [("assistant", "Hello from Acme."), ("user", "When does my order ship?"),
                        ("assistant", "It ships tomorrow.")]
        assert stored["events"][-1]["event"] == "call_ended"

        picture = await client.get(f"/console/api/calls/{call.call_sid}/timeline.png")
        assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
        assert picture.content.startswith(b"\x89PNG\r\n\x1a\n")
        again = await client.get(f"/console/api/calls/{call.call_sid}/timeline.png")
        assert again.content == picture.content

        audio = await client.get(f"/console/api/calls/{call.call_sid}/recording.wav")
        assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
        assert audio.content[:4] == b"RIFF" and audio.content[8:12] == b"WAVE"
        assert audio.content == (tmp_path / "data" / stored["recording"]).read_bytes()
        part = await client.get(f"/console/api/calls/{call.call_sid}/recording.wav", headers={"Range": "bytes=0-99"})
        assert part.status_code == 206 and part.content == audio.content[:100]  # the player seeks

        assert (await client.get("/console/api/calls/CAnone")).status_code == 404
        assert (await client.get("/console/api/calls/CAnone/timeline.png")).status_code == 404
        assert (await client.get("/console/api/calls/CA..%2F..%2Fx")).status_code == 404
        assert (await client.get("/console/api/calls?limit=x")).status_code == 400


async def test_a_recording_outside_the_data_directory_is_never_served(phone_system, tmp_path) -> None:
    phone = await start(phone_system, tmp_path)
    data = tmp_path / "data"
    (data / "recordings").mkdir(parents=True)
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"RIFF-not-yours")
    (data / "recordings" / "good.wav").write_bytes(b"RIFF-ours")
    (data / "recordings" / "link.wav").symlink_to(secret)
    (data / "calls.txt").write_bytes(b"not a recording")
    names = {"CAgood": "recordings/good.wav", "CAdotdot": "../secret.wav", "CAdeep": "recordings/../../secret.wav",
             "CAabsolute": str(secret), "CAlink": "recordings/link.wav", "CAnotwav": "calls.txt",
             "CAmissing": "recordings/gone.wav"}
    for call_sid, name in names.items():
        await asyncio.to_thread(phone.app.store.save, stored_call(CallRecord(call_sid=call_sid, recording=name)))
    async with browser(phone.url) as client:
        await client.log_in(phone.api_key)
        good = await client.get("/console/api/calls/CAgood/recording.wav")
        assert good.status_code == 200 and good.content == b"RIFF-ours"
        for call_sid in names.keys() - {"CAgood"}:
            refused = await client.get(f"/console/api/calls/{call_sid}/recording.wav")
            assert refused.status_code == 404, call_sid
            assert b"not-yours" not in refused.content
    assert os.path.exists(secret)


async def test_without_the_store_the_console_lists_this_instances_calls(phone_system, tmp_path) -> None:
    phone = await start(phone_system, tmp_path, [Reply("Hello.")], GATEWAY_STORE_CALLS="false")
    async with browser(phone.url) as client:
        await client.log_in(phone.api_key)
        call = await phone.call()
        await call.listen()
        await call.hang_up()
        listed = (await client.get("/console/api/calls")).json()
        assert listed["source"] == "memory" and [c["call_sid"] for c in listed["calls"]] == [call.call_sid]
        stored = (await client.get(f"/console/api/calls/{call.call_sid}")).json()
        assert stored["transcript"][0]["text"] == "Hello."


async def test_a_store_that_cannot_be_read_is_reported_not_fatal(phone_system, tmp_path, caplog) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the data directory should be")
    phone = await phone_system(settings={"GATEWAY_DATA_DIR": str(blocked)})
    async with browser(phone.url) as client:
        await client.log_in(phone.api_key)
        with caplog.at_level(logging.WARNING, logger="gateway.app"):
            listed = await client.get("/console/api/calls")
        assert listed.status_code == 200
        assert listed.json()["source"] == "memory" and "could not be read" in listed.json()["error"]
        assert any("the call store could not be read" in r.getMessage() for r in caplog.records)
        assert (await client.get("/console/api/calls/CA0123")).status_code == 404
        assert (await client.get("/console/api/live")).status_code == 200


@pytest.mark.parametrize("name", ["../x.wav", "/etc/x.wav", "a/../../x.wav", "x.mp3", "", None, 5, "a\x00.wav"])
def test_recording_file_refuses_names_that_leave_the_data_directory(tmp_path, name) -> None:
    from gateway.web.console.calls import recording_file

    (tmp_path / "x.wav").write_bytes(b"")
    assert recording_file(tmp_path / "data", name) is None
