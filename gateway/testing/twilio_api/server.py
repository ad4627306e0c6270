"""``FakeTwilio``: the fake REST API (a Starlette app under uvicorn on 127.0.0.1) and the
calls it handles. See ``gateway.testing.twilio_api`` for the manual.

Each endpoint accepts, checks and hands over: the request is recorded, authenticated and
parsed here, the call's behaviour lives in ``FakeCall`` and the JSON shapes in ``resources``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import re
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from twilio.rest import Client

from gateway.testing.caller.call import DEFAULT_FROM, DEFAULT_TO
from gateway.testing.caller.twiml import new_sid
from gateway.testing.gateway_server import GatewayServer
from gateway.testing.realtime.waiting import Changes
from gateway.testing.twilio_api.call import Answer, Behaviour, FakeCall
from gateway.testing.twilio_api.resources import (
    API_VERSION,
    ApiError,
    FakeNumber,
    call_resource,
    error_body,
    number_resource,
    page_body,
)
from gateway.twilio.rest import MAX_TWIML_CHARS, RedirectingHttpClient

__all__ = ["ApiRequest", "FakeTwilio"]

Handler = Callable[[Request, "ApiRequest"], Awaitable[tuple[int, dict[str, Any]]]]

# Error codes of 400 answers. 21201 and 21205 are Twilio's documented ones; for the others we
# found no authoritative source, so these are the fake's own plausible choices.
NO_TO = 21201  # "No 'To' number is specified"
NO_FROM = 21213
INVALID_URL = 21205  # "Url is not a valid URL"
TWIML_TOO_LONG = 12100  # Twilio's "Document parse failure"
INVALID_PARAMETER = 20001


@dataclass
class ApiRequest:
    """One request to the fake API, as received. ``fields``: the form (or query) pairs in
    order; ``form``: the same as a dict, with a list for a repeated name (e.g.
    ``StatusCallbackEvent``). ``status``: the HTTP status answered (None until answered)."""

    method: str
    path: str
    query: dict[str, str]
    fields: list[tuple[str, str]]
    headers: dict[str, str] = field(repr=False)
    status: int | None = None

    @property
    def form(self) -> dict[str, str | list[str]]:
        form: dict[str, str | list[str]] = {}
        for name, value in self.fields:
            if name not in form:
                form[name] = value
            else:
                previous = form[name]
                form[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        return form

    def get(self, name: str) -> str | None:
        """The last value of field ``name``."""
        values = self.get_all(name)
        return values[-1] if values else None

    def get_all(self, name: str) -> list[str]:
        return [value for key, value in self.fields if key == name]

    def values(self) -> dict[str, str]:
        """Every field with its last value."""
        return {name: value for name, value in self.fields}


class FakeTwilio:
    """A local fake of Twilio's REST API and of how Twilio handles calls."""

    def __init__(
        self,
        account_sid: str | None = None,
        auth_token: str | None = None,
        *,
        answer_after_s: float = 0.0,
        answered_by: str = "human",
        answer: Answer | None = None,
        amd_after_s: float = 0.0,
        connect_url: Callable[[str], str] | None = None,
        deliver_via: Callable[[str], str | None] | None = None,
        speed: float = 1.0,
        latency_s: float = 0.0,
        host: str = "127.0.0.1",
    ) -> None:
        self.account_sid = account_sid or new_sid("AC")
        self.auth_token = auth_token or secrets.token_hex(16)
        self.behaviour = Behaviour(
            auth_token=self.auth_token,
            answer_after_s=answer_after_s,
            answered_by=answered_by,
            answer=answer,
            amd_after_s=amd_after_s,
            connect_url=connect_url,
            deliver_via=deliver_via,
            speed=speed,
        )
        #: Every API answer waits this long first (set it any time).
        self.latency_s = latency_s
        self.requests: list[ApiRequest] = []
        self.calls: dict[str, FakeCall] = {}
        self.numbers: dict[str, FakeNumber] = {}
        self.base_url = ""
        self._changes = Changes()
        self._server = GatewayServer(lambda _url: self._app(), host=host)

    # --- Running --------------------------------------------------------------------------------

    async def start(self) -> FakeTwilio:
        await self._server.start()
        self.base_url = self._server.url
        return self

    async def close(self) -> None:
        """End every live call (streams get ``stop``), then stop the server."""
        await asyncio.gather(*(call.close() for call in self.calls.values()))
        await self._server.close()

    async def __aenter__(self) -> FakeTwilio:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def client(self) -> Client:
        """A real ``twilio.rest.Client`` aimed at this fake."""
        return Client(self.account_sid, self.auth_token, http_client=RedirectingHttpClient(self.base_url))

    # --- Set-up and simulation ------------------------------------------------------------------

    def add_number(
        self,
        phone_number: str,
        *,
        voice_url: str = "",
        voice_method: str = "POST",
        friendly_name: str | None = None,
    ) -> FakeNumber:
        """Give the account a phone number (an IncomingPhoneNumber ``PN...``)."""
        number = FakeNumber(
            sid=new_sid("PN"),
            account_sid=self.account_sid,
            phone_number=phone_number,
            friendly_name=friendly_name or phone_number,
            voice_url=voice_url,
            voice_method=voice_method,
        )
        self.numbers[number.sid] = number
        return number

    async def ring(
        self, webhook_url: str | None = None, from_: str = DEFAULT_FROM, to: str = DEFAULT_TO
    ) -> FakeCall:
        """An incoming call from ``from_`` to ``to``, as Twilio places it: the signed voice
        webhook POST (to ``webhook_url``, else to the voice URL configured on the number
        ``to``), then the TwiML it answers. Returns once its stream is connected (or its TwiML
        has run without one). Raises ``WebhookError`` if the webhook answers non-2xx."""
        method = "POST"
        if webhook_url is None:
            number = next((n for n in self.numbers.values() if n.phone_number == to), None)
            if number is None or not number.voice_url:
                raise ValueError(f"no webhook_url given and no number {to} with a voice URL")
            webhook_url, method = number.voice_url, number.voice_method
        call = self._new_call(direction="inbound", status="ringing", to=to, from_=from_)
        await call.ring_in(webhook_url, method)
        return call

    # --- Waiting --------------------------------------------------------------------------------

    async def wait_for_call(self, index: int = 0, timeout: float = 10.0) -> FakeCall:
        """The ``index``-th call (created over REST or by ``ring``), once it exists."""
        await self._changes.wait_until(lambda: len(self.calls) > index, timeout=timeout,
                                       what=f"call #{index}")
        return list(self.calls.values())[index]

    async def wait_for_request(
        self, predicate: Callable[[ApiRequest], bool], timeout: float = 10.0, *, since: int = 0
    ) -> ApiRequest:
        """The first request in ``requests[since:]`` that matches, once it has arrived."""

        def found() -> ApiRequest | None:
            return next((r for r in self.requests[since:] if predicate(r)), None)

        result = await self._changes.wait_until(found, timeout=timeout, what="a matching API request")
        assert isinstance(result, ApiRequest)
        return result

    # --- The API --------------------------------------------------------------------------------

    def _app(self) -> Starlette:
        account = f"/{API_VERSION}/Accounts/{{account_sid}}"
        return Starlette(
            routes=[
                Route(f"{account}/Calls.json", self._api(self._create_call), methods=["POST"]),
                Route(f"{account}/Calls/{{call_sid}}.json", self._api(self._fetch_call), methods=["GET"]),
                Route(f"{account}/Calls/{{call_sid}}.json", self._api(self._update_call), methods=["POST"]),
                Route(f"{account}/IncomingPhoneNumbers.json", self._api(self._list_numbers), methods=["GET"]),
                Route(f"{account}/IncomingPhoneNumbers/{{sid}}.json", self._api(self._fetch_number),
                      methods=["GET"]),
                Route(f"{account}/IncomingPhoneNumbers/{{sid}}.json", self._api(self._update_number),
                      methods=["POST"]),
            ],
            exception_handlers={HTTPException: self._unrouted},
        )

    def _api(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Record, delay, authenticate, then hand over; ``ApiError`` becomes Twilio's JSON."""

        async def endpoint(request: Request) -> Response:
            record = await self._record(request)
            headers: dict[str, str] = {}
            try:
                if self.latency_s > 0:
                    await asyncio.sleep(self.latency_s)
                if not self._authenticated(request):
                    headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
                    raise ApiError(401, 20003, "Authenticate")
                if request.path_params["account_sid"] != self.account_sid:
                    raise ApiError.not_found(request.url.path)
                status, body = await handler(request, record)
            except ApiError as error:
                status, body = error.status, error_body(error)
                if error.code == 20003:
                    body["detail"] = "Your AccountSid or AuthToken was incorrect."
            return self._answer(record, status, body, headers)

        return endpoint

    async def _unrouted(self, request: Request, exc: Exception) -> Response:
        record = await self._record(request)
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 405:
            error = ApiError(405, 20004, "Method not allowed")
        else:
            error = ApiError.not_found(request.url.path)
        return self._answer(record, error.status, error_body(error), {})

    async def _record(self, request: Request) -> ApiRequest:
        # The library sends a form body for POST, query parameters for GET.
        text = request.url.query if request.method == "GET" else (await request.body()).decode("utf-8", "replace")
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True)
        record = ApiRequest(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            fields=pairs,
            headers=dict(request.headers),
        )
        self.requests.append(record)
        self._changes.notify()
        return record

    def _answer(self, record: ApiRequest, status: int, body: dict[str, Any], headers: dict[str, str]) -> Response:
        record.status = status
        self._changes.notify()
        return JSONResponse(body, status_code=status, headers=headers)

    def _authenticated(self, request: Request) -> bool:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        expected = f"{self.account_sid}:{self.auth_token}"
        return hmac.compare_digest(decoded.encode(), expected.encode())

    # --- Calls ----------------------------------------------------------------------------------

    async def _create_call(self, request: Request, record: ApiRequest) -> tuple[int, dict[str, Any]]:
        form = record.values()
        to, from_, twiml, url = form.get("To"), form.get("From"), form.get("Twiml"), form.get("Url")
        if not to:
            raise ApiError.bad_request(NO_TO, "No 'To' number is specified")
        if not from_:
            raise ApiError.bad_request(NO_FROM, "No 'From' number is specified")
        if twiml is None and url is None and "ApplicationSid" not in form:
            raise ApiError.bad_request(INVALID_URL, "Url parameter is required: give Url, Twiml or ApplicationSid")
        _check_twiml_and_url(twiml, url)
        events = [event for value in record.get_all("StatusCallbackEvent") for event in value.split()]
        call = self._new_call(
            direction="outbound-api",
            status="queued",
            to=to,
            from_=from_,
            twiml=twiml,
            url=url if twiml is None else None,
            method=form.get("Method", "POST"),
            status_callback=form.get("StatusCallback"),
            status_callback_events=events,
            status_callback_method=form.get("StatusCallbackMethod", "POST"),
            machine_detection=form.get("MachineDetection"),
            async_amd=form.get("AsyncAmd", "").lower() == "true",
            async_amd_status_callback=form.get("AsyncAmdStatusCallback"),
            async_amd_status_callback_method=form.get("AsyncAmdStatusCallbackMethod", "POST"),
            timeout_s=_timeout(form.get("Timeout")),
        )
        call.dial_out()
        return 201, call_resource(call)

    async def _fetch_call(self, request: Request, record: ApiRequest) -> tuple[int, dict[str, Any]]:
        return 200, call_resource(self._call(request))

    async def _update_call(self, request: Request, record: ApiRequest) -> tuple[int, dict[str, Any]]:
        call = self._call(request)
        form = record.values()
        call.updates.append(record.form)
        status = form.get("Status")
        if status is not None and status not in ("completed", "canceled"):
            raise ApiError.bad_request(INVALID_PARAMETER, f"Status must be 'canceled' or 'completed', not {status!r}")
        _check_twiml_and_url(form.get("Twiml"), form.get("Url"))
        if not await call.update(form):  # Twilio: a call that has ended is not found for an update
            raise ApiError.not_found(request.url.path)
        return 200, call_resource(call)

    def _call(self, request: Request) -> FakeCall:
        call = self.calls.get(request.path_params["call_sid"])
        if call is None:
            raise ApiError.not_found(request.url.path)
        return call

    def _new_call(self, **details: Any) -> FakeCall:
        call = FakeCall(self.behaviour, sid=new_sid("CA"), account_sid=self.account_sid, **details)
        self.calls[call.sid] = call
        self._changes.notify()
        return call

    # --- Numbers --------------------------------------------------------------------------------

    async def _list_numbers(self, request: Request, record: ApiRequest) -> tuple[int, dict[str, Any]]:
        query = record.values()
        numbers = list(self.numbers.values())
        filters = {name: query[name] for name in ("PhoneNumber", "FriendlyName") if name in query}
        if "PhoneNumber" in filters:
            # Twilio: partial numbers match, and '*' stands for any digit.
            pattern = re.compile(re.escape(filters["PhoneNumber"]).replace(r"\*", r"\d"))
            numbers = [n for n in numbers if pattern.search(n.phone_number)]
        if "FriendlyName" in filters:
            numbers = [n for n in numbers if n.friendly_name == filters["FriendlyName"]]
        try:
            page_size = min(int(query.get("PageSize", 50)), 1000)
            page = int(query.get("Page", 0))
        except ValueError:
            raise ApiError.bad_request(INVALID_PARAMETER, "PageSize and Page must be integers") from None
        body = page_body("incoming_phone_numbers", [number_resource(n) for n in numbers],
                         path=request.url.path, filters=filters, page=page, page_size=max(page_size, 1))
        return 200, body

    async def _fetch_number(self, request: Request, record: ApiRequest) -> tuple[int, dict[str, Any]]:
        return 200, number_resource(self._number(request))

    async def _update_number(self, request: Request, record: ApiRequest) -> tuple[int, dict[str, Any]]:
        number = self._number(request)
        form = record.values()
        if form.get("VoiceUrl"):
            _check_url(form["VoiceUrl"], "VoiceUrl")
        number.updates.append(form)
        for name, attribute in FakeNumber.UPDATABLE.items():
            if name in form:
                setattr(number, attribute, form[name])
        return 200, number_resource(number)

    def _number(self, request: Request) -> FakeNumber:
        number = self.numbers.get(request.path_params["sid"])
        if number is None:
            raise ApiError.not_found(request.url.path)
        return number


def _check_twiml_and_url(twiml: str | None, url: str | None) -> None:
    if twiml is not None and len(twiml) > MAX_TWIML_CHARS:
        raise ApiError.bad_request(
            TWIML_TOO_LONG, f"Twiml is {len(twiml)} characters long; the maximum is {MAX_TWIML_CHARS}"
        )
    if url is not None:
        _check_url(url, "Url")


def _check_url(url: str, name: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ApiError.bad_request(INVALID_URL, f"{name} is not a valid URL: {url}")


def _timeout(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(int(value))
    except ValueError:
        raise ApiError.bad_request(INVALID_PARAMETER, f"Timeout must be an integer, not {value!r}") from None
