"""Reading a signed Twilio webhook form: size limit, content type, encoding, required
parameters and the signature over the URL rebuilt from PUBLIC_URL. Requests are built from ASGI
scopes, no server."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable

import pytest
from starlette.requests import Request

from gateway.security import TwilioSignatures
from gateway.settings import Settings
from gateway.web.twilio_forms import (
    FORM_TYPE,
    MAX_WEBHOOK_BYTES,
    FormRefused,
    TwilioForms,
    parse_form,
    signed_url,
)

AUTH_TOKEN = "forms-test-token"
FORM = {"CallSid": "CA" + "1" * 32, "From": "+15550001111", "To": "+15550002222", "CallStatus": "ringing"}


def settings(public_url: str = "https://gw.example.com", **overrides: str) -> Settings:
    return Settings.from_mapping({"PUBLIC_URL": public_url, "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
                                  "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "OPENAI_API_KEY": "sk-test", **overrides})


def request(chunks: Iterable[bytes], *, path: str = "/twilio/voice", root_path: str = "", query: str = "",
            content_type: str | None = FORM_TYPE, content_length: int | None = None,
            signature: str | None = None, client: tuple[str, int] | None = None) -> Request:
    chunks = list(chunks)
    headers = [(b"host", b"internal:8080")]
    if content_type is not None:
        headers.append((b"content-type", content_type.encode()))
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    if signature is not None:
        headers.append((b"x-twilio-signature", signature.encode()))
    sent = iter(chunks)

    async def receive() -> dict[str, object]:
        chunk = next(sent, None)
        if chunk is None:
            raise AssertionError("the body was read past its end")
        return {"type": "http.request", "body": chunk, "more_body": chunk is not chunks[-1]}

    scope = {"type": "http", "method": "POST", "scheme": "http", "server": ("internal", 8080),
             "path": path, "root_path": root_path, "query_string": query.encode(), "headers": headers,
             "client": client}
    return Request(scope, receive)


def signed_request(form: dict[str, str], url: str, **options: object) -> Request:
    body = urllib.parse.urlencode(form).encode()
    signature = TwilioSignatures(AUTH_TOKEN).sign(url, form)
    return request([body], content_length=len(body), signature=signature, **options)  # type: ignore[arg-type]


def forms(**overrides: str) -> TwilioForms:
    s = settings(**overrides)
    return TwilioForms(s, TwilioSignatures(s.twilio_auth_token))


def refusal(exc: pytest.ExceptionInfo[FormRefused]) -> tuple[int, str]:
    response = exc.value.response()
    return response.status_code, response.body.decode()


# --- parse_form ---------------------------------------------------------------------------------

def test_a_form_body_with_a_charset_is_read_blank_values_kept() -> None:
    assert parse_form("application/x-www-form-urlencoded; charset=utf-8", b"CallSid=CA1&Digits=&To=%2B1") == {
        "CallSid": "CA1", "Digits": "", "To": "+1"}


@pytest.mark.parametrize("content_type", ["application/json", "", "text/plain", "multipart/form-data; boundary=x"])
def test_anything_but_a_form_is_a_415(content_type: str) -> None:
    with pytest.raises(FormRefused) as exc:
        parse_form(content_type, b"CallSid=CA1")
    assert refusal(exc) == (415, "expected application/x-www-form-urlencoded")


@pytest.mark.parametrize("body", [b"CallSid=\xff\xfe", "CallSid=caf\u00e9".encode("latin-1")])
def test_a_body_that_is_not_utf8_is_a_400(body: bytes) -> None:
    with pytest.raises(FormRefused) as exc:
        parse_form(FORM_TYPE, body)
    assert refusal(exc) == (400, "malformed form body")


# --- signed_url ---------------------------------------------------------------------------------

def test_the_signed_url_is_public_url_plus_the_path_within_the_app() -> None:
    mounted = settings("https://gw.example.com/phone")
    assert signed_url(mounted, "/phone/twilio/voice", "/phone") == "https://gw.example.com/phone/twilio/voice"
    assert signed_url(settings(), "/twilio/status", "", "a=1&b=2") == "https://gw.example.com/twilio/status?a=1&b=2"
    # A root path that is not the path's prefix is left alone (the request names its full path).
    assert signed_url(settings(), "/twilio/voice", "/phone") == "https://gw.example.com/twilio/voice"


# --- TwilioForms.read ---------------------------------------------------------------------------

async def test_a_signed_form_is_read() -> None:
    got = await forms().read(signed_request(FORM, "https://gw.example.com/twilio/voice"), required=("CallSid",))
    assert got == FORM


async def test_a_mounted_gateway_checks_the_url_twilio_requested() -> None:
    url = "https://gw.example.com/phone/twilio/voice"
    got = await forms(public_url="https://gw.example.com/phone").read(
        signed_request(FORM, url, path="/phone/twilio/voice", root_path="/phone"))
    assert got == FORM


async def test_the_query_string_is_part_of_the_signed_url() -> None:
    url = "https://gw.example.com/twilio/status?attempt=2"
    assert await forms().read(signed_request(FORM, url, path="/twilio/status", query="attempt=2")) == FORM
    with pytest.raises(FormRefused) as exc:
        await forms().read(signed_request(FORM, url, path="/twilio/status", query="attempt=3"))
    assert refusal(exc) == (403, "invalid Twilio signature")


@pytest.mark.parametrize("signed_for", ["http://internal:8080/twilio/voice", "https://gw.example.com/twilio/amd"])
async def test_a_form_signed_for_another_url_is_a_403(signed_for: str, caplog) -> None:
    with pytest.raises(FormRefused) as exc:
        await forms().read(signed_request(FORM, signed_for))
    assert refusal(exc) == (403, "invalid Twilio signature")
    assert any("does not match https://gw.example.com/twilio/voice" in r.getMessage() for r in caplog.records)


async def test_the_refusal_line_names_the_peer(caplog) -> None:
    with pytest.raises(FormRefused):
        await forms().read(signed_request(FORM, "https://elsewhere/", client=("203.0.113.9", 40412)))
    assert [r.getMessage() for r in caplog.records] == [
        "[peer=203.0.113.9:40412] webhook refused: X-Twilio-Signature does not match https://gw.example.com/twilio/voice"
    ]


async def test_an_unsigned_form_is_a_403_unless_checks_are_switched_off() -> None:
    body = urllib.parse.urlencode(FORM).encode()
    with pytest.raises(FormRefused) as exc:
        await forms().read(request([body]))
    assert refusal(exc)[0] == 403
    assert await forms(GATEWAY_INSECURE_SKIP_SIGNATURE="true").read(request([body])) == FORM


async def test_a_missing_required_parameter_is_a_400_after_the_signature() -> None:
    form = {k: v for k, v in FORM.items() if k != "CallStatus"}
    with pytest.raises(FormRefused) as exc:
        await forms().read(signed_request(form, "https://gw.example.com/twilio/voice"), required=("CallSid", "CallStatus"))
    assert refusal(exc) == (400, "missing CallSid or CallStatus")
    blank = {**FORM, "CallSid": ""}
    with pytest.raises(FormRefused) as exc:
        await forms().read(signed_request(blank, "https://gw.example.com/twilio/voice"), required=("CallSid",))
    assert refusal(exc) == (400, "missing CallSid")


def test_the_limit_is_64_kb() -> None:
    assert MAX_WEBHOOK_BYTES == 64 * 1024 and forms().limit == MAX_WEBHOOK_BYTES


async def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    unread = request([b"never read"], content_length=MAX_WEBHOOK_BYTES + 1)
    unread._receive = None  # type: ignore[assignment]  # reading would fail: nothing is read
    with pytest.raises(FormRefused) as exc:
        await forms().read(unread)
    assert refusal(exc) == (413, "request body too large")


async def test_a_streamed_body_is_read_up_to_the_limit_and_no_further() -> None:
    s = settings(GATEWAY_INSECURE_SKIP_SIGNATURE="true")
    small = TwilioForms(s, TwilioSignatures(AUTH_TOKEN), limit=100)
    exactly = b"CallSid=" + b"A" * 92  # 100 bytes, in chunks, no content-length
    assert await small.read(request([exactly[:40], exactly[40:]])) == {"CallSid": "A" * 92}
    over = [b"CallSid=" + b"A" * 60, b"A" * 33, b"more that is never read"]
    with pytest.raises(FormRefused) as exc:
        await small.read(request(over))
    assert refusal(exc) == (413, "request body too large")


async def test_the_size_is_checked_before_the_content_type() -> None:
    with pytest.raises(FormRefused) as exc:
        await forms().read(request([b"x" * 10], content_type="application/json", content_length=MAX_WEBHOOK_BYTES + 1))
    assert refusal(exc)[0] == 413
