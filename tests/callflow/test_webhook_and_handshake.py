"""The edges Twilio talks to: the voice webhook and the Media Streams handshake."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from gateway.security import CallTokens, TwilioSignatures

from .conftest import ACCOUNT_SID, AUTH_TOKEN

FORM = {"CallSid": "CA" + "1" * 32, "AccountSid": ACCOUNT_SID, "From": "+15550001111", "To": "+15550002222",
        "CallStatus": "ringing", "Direction": "inbound"}


async def post_voice(gateway, form=FORM, signature: str | None = "sign", url: str | None = None):
    target = gateway.url + "/twilio/voice"
    headers = {}
    if signature == "sign":
        headers["X-Twilio-Signature"] = TwilioSignatures(AUTH_TOKEN).sign(url or target, form)
    elif signature is not None:
        headers["X-Twilio-Signature"] = signature
    async with httpx.AsyncClient() as client:
        return await client.post(target, data=form, headers=headers)


async def test_webhook_answers_connect_stream_twiml_with_a_valid_token(start_gateway) -> None:
    async with start_gateway() as (gateway, _):
        response = await post_voice(gateway)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    stream = ET.fromstring(response.text).find("./Connect/Stream")
    assert stream is not None
    # Built from PUBLIC_URL: our tests' public URL is http://127.0.0.1:PORT, hence ws://.
    assert stream.get("url") == gateway.url.replace("http://", "ws://") + "/twilio/media"
    params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert params["callSid"] == FORM["CallSid"]
    assert params["from"] == FORM["From"] and params["to"] == FORM["To"]
    CallTokens.derived_from(AUTH_TOKEN).verify(params["token"], FORM["CallSid"], params, now=__import__("time").time())
    assert all(len(k) + len(v) < 500 for k, v in params.items())  # Twilio's <Parameter> limit


@pytest.mark.parametrize(
    ("signature", "form"),
    [
        (None, FORM),  # missing
        ("bm90IGEgc2lnbmF0dXJl", FORM),  # wrong
        ("replay", {**FORM, "From": "+19990000000"}),  # a real signature, replayed with other params
    ],
    ids=["missing", "wrong", "replayed-with-other-params"],
)
async def test_webhook_refuses_bad_signatures_with_403(start_gateway, signature, form) -> None:
    async with start_gateway() as (gateway, realtime):
        if signature == "replay":
            signature = TwilioSignatures(AUTH_TOKEN).sign(gateway.url + "/twilio/voice", FORM)
        response = await post_voice(gateway, form, signature)
        assert response.status_code == 403
        assert realtime.connections == []


async def test_webhook_signature_is_checked_against_public_url_not_request_host(start_gateway) -> None:
    async with start_gateway() as (gateway, _):
        # Signed for the host a proxy might show us instead of PUBLIC_URL: refused.
        response = await post_voice(gateway, url="https://internal.example:9999/twilio/voice")
    assert response.status_code == 403


async def test_webhook_without_callsid_is_a_400(start_gateway) -> None:
    async with start_gateway() as (gateway, _):
        form = {k: v for k, v in FORM.items() if k != "CallSid"}
        response = await post_voice(gateway, form)
    assert response.status_code == 400


async def test_insecure_switch_skips_checks_and_warns_loudly(start_gateway, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.app"):
        async with start_gateway(GATEWAY_INSECURE_SKIP_SIGNATURE="true") as (gateway, _):
            response = await post_voice(gateway, signature=None)
    assert response.status_code == 200
    assert any("NOT checked" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("signature", [None, "d3Jvbmc=", "http-url"], ids=["missing", "wrong", "signed-http-url"])
async def test_media_stream_handshake_with_bad_signature_is_refused(start_gateway, signature) -> None:
    async with start_gateway() as (gateway, realtime):
        url = gateway.url.replace("http://", "ws://") + "/twilio/media"
        headers = {}
        if signature == "http-url":  # signed over the wrong form of the URL
            headers["X-Twilio-Signature"] = TwilioSignatures(AUTH_TOKEN).sign(gateway.url + "/twilio/media", {})
        elif signature:
            headers["X-Twilio-Signature"] = signature
        with pytest.raises(InvalidStatus) as info:
            async with websockets.connect(url, additional_headers=headers):
                pass
        assert info.value.response.status_code == 403
        assert realtime.connections == []


async def test_healthz(start_gateway) -> None:
    async with start_gateway() as (gateway, _):
        async with httpx.AsyncClient() as client:
            response = await client.get(gateway.url + "/healthz")
    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in ("status", "active_calls", "finished_calls")} == {
        "status": "ok", "active_calls": 0, "finished_calls": 0}
    assert body["tasks"] >= 1  # the event loop's tasks (flat across calls in a soak run)


@pytest.mark.parametrize("path", ["/twilio/status", "/twilio/amd"])
async def test_status_and_amd_callbacks_need_a_valid_signature(start_gateway, path) -> None:
    form = {"CallSid": FORM["CallSid"], "AccountSid": ACCOUNT_SID, "CallStatus": "ringing", "AnsweredBy": "human"}
    async with start_gateway() as (gateway, _):
        url = gateway.url + path
        async with httpx.AsyncClient() as client:
            unsigned = await client.post(url, data=form)
            forged = await client.post(url, data={**form, "CallStatus": "completed"},
                                       headers={"X-Twilio-Signature": TwilioSignatures(AUTH_TOKEN).sign(url, form)})
            signed = await client.post(url, data=form, headers={"X-Twilio-Signature": TwilioSignatures(AUTH_TOKEN).sign(url, form)})
        statuses = gateway.app.state.gateway.statuses
    assert unsigned.status_code == 403 and forged.status_code == 403
    assert signed.status_code == 204
    if path == "/twilio/status":
        assert [s["status"] for s in statuses[FORM["CallSid"]]] == ["ringing"]


@pytest.mark.parametrize("path", ["/twilio/voice", "/twilio/status", "/twilio/amd"])
async def test_oversized_webhook_bodies_are_refused_with_413(start_gateway, path) -> None:
    async with start_gateway() as (gateway, _):
        async with httpx.AsyncClient() as client:
            response = await client.post(gateway.url + path, data={**FORM, "Padding": "x" * 70_000})
    assert response.status_code == 413


async def test_an_oversized_body_without_a_length_is_cut_off_at_the_limit(start_gateway) -> None:
    async def chunks():
        for _ in range(100):  # 100 x 8 KB, streamed (chunked): far past the 64 KB limit
            yield b"x" * 8192

    async with start_gateway() as (gateway, _):
        async with httpx.AsyncClient() as client:
            response = await client.post(gateway.url + "/twilio/voice", content=chunks(),
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 413


@pytest.mark.parametrize(("content_type", "body", "status"), [
    ("application/json", b'{"CallSid": "CA1"}', 415),
    ("multipart/form-data; boundary=x", b"--x\r\n\r\n--x--", 415),
    ("", b"CallSid=CA1", 415),
    ("application/x-www-form-urlencoded", b"CallSid=\xff\xfe", 400),  # not UTF-8
])
async def test_malformed_webhook_bodies_are_refused(start_gateway, content_type, body, status) -> None:
    async with start_gateway() as (gateway, realtime):
        async with httpx.AsyncClient() as client:
            response = await client.post(gateway.url + "/twilio/voice", content=body,
                                         headers={"Content-Type": content_type} if content_type else {})
    assert response.status_code == status
    assert realtime.connections == []
