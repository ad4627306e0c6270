"""The gateway's Twilio REST edge: call control and number set-up, without blocking the loop.

A thin adapter around the ``twilio`` library's own ``Client``: the library builds every request
(paths, form fields, auth) and parses every answer; this module only

- runs each blocking library call in a worker thread (``asyncio.to_thread``): twilio's async
  client needs ``aiohttp``, which the project does not depend on, and a synchronous HTTP call
  on the event loop would freeze every other call's audio while it waits;
- turns "that call is already gone" (error 20404, HTTP 404) into ``False`` for ``hang_up`` and
  ``redirect``: a caller who hangs up first is not an error;
- raises one error type, ``TwilioRestError`` (code, HTTP status, message; one log line), for
  everything else, network failures included;
- with ``base_url``, sends every request the library makes to ``https://*.twilio.com`` to that
  address instead, paths unchanged (``RedirectingHttpClient``). That is how tests aim the real
  library at ``gateway.testing.twilio_api.FakeTwilio``::

    rest = TwilioRest(account_sid, auth_token)                          # Twilio
    rest = TwilioRest(account_sid, auth_token, base_url=fake.base_url)  # a local fake

Facts relied on (Twilio's Call resource, https://www.twilio.com/docs/voice/api/call-resource,
and the library's source, ``twilio/rest/api/v2010/account/call/__init__.py`` and
``twilio/base/page.py``): hang up is ``calls(sid).update(status="completed")``; a transfer is
``calls(sid).update(twiml=...)``, which replaces the running ``<Connect><Stream>``; inline
``twiml`` is limited to 4000 characters; list pages that fail raise a bare ``TwilioException``
carrying the HTTP response, not a ``TwilioRestException``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

__all__ = [
    "CALL_NOT_FOUND",
    "MAX_TWIML_CHARS",
    "IncomingNumber",
    "IDLE_REUSE_S",
    "PoolingHttpClient",
    "RedirectingHttpClient",
    "TwilioRest",
    "TwilioRestError",
]

logger = logging.getLogger("gateway.twilio.rest")

#: Twilio's error code for a resource that does not exist (a call that has ended and gone).
CALL_NOT_FOUND = 20404
#: The longest inline ``Twiml`` Twilio accepts on a call (Call resource, ``Twiml`` parameter).
MAX_TWIML_CHARS = 4000
#: Seconds before a REST request is abandoned (the library's default is to wait forever).
DEFAULT_TIMEOUT_S = 10.0

T = TypeVar("T")


class TwilioRestError(Exception):
    """A Twilio REST request failed: Twilio's error ``code`` (e.g. 20003 for bad credentials,
    ``None`` when no answer came), the HTTP ``status`` (``None`` likewise) and its ``message``.
    ``str()`` is one log-friendly line."""

    def __init__(
        self,
        operation: str,
        *,
        code: int | None,
        status: int | None,
        message: str,
        method: str | None = None,
        uri: str | None = None,
    ) -> None:
        self.operation = operation
        self.code = code
        self.status = status
        self.message = message
        self.method = method
        self.uri = uri
        where = f" ({method} {uri})" if method and uri else ""
        http = f"HTTP {status}" if status is not None else "no HTTP answer"
        code_text = f", Twilio error {code}" if code is not None else ""
        super().__init__(f"Twilio REST {operation} failed: {http}{code_text}: {message}{where}")


class IncomingNumber(NamedTuple):
    """A phone number of the account, as far as the gateway cares: where its calls go."""

    sid: str
    voice_url: str | None
    voice_method: str | None


#: A pooled connection idle this long is not reused: a server closes idle keep-alive
#: connections after a few seconds (uvicorn 5 s, many load balancers 5-60 s), and a request sent
#: just as it does is lost with "Remote end closed connection without response", which for a
#: POST (placing a call) cannot safely be sent again. A fresh connection costs one handshake.
IDLE_REUSE_S = 2.0


class PoolingHttpClient(TwilioHttpClient):
    """The library's own HTTP client, whose pooled connections are dropped once they have all
    been idle for ``IDLE_REUSE_S`` (see there), so that no request goes out on a connection the
    server may be closing. Requests run in worker threads: the pool is dropped only when none is
    in flight."""

    def __init__(self, *, timeout: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(timeout=timeout)
        self._clock = clock
        self._lock = threading.Lock()
        self._in_flight = 0
        self._last_done: float | None = None
        #: How many times the pool was dropped (for tests and logs).
        self.fresh_pools = 0

    def request(self, *args: Any, **kwargs: Any) -> Response:
        with self._lock:
            idle = self._last_done is not None and self._clock() - self._last_done >= IDLE_REUSE_S
            if idle and self._in_flight == 0 and self.session is not None:
                self.session.close()  # the adapters' pools are emptied; new connections come as needed
                self.fresh_pools += 1
            self._in_flight += 1
        try:
            return super().request(*args, **kwargs)
        finally:
            with self._lock:
                self._in_flight -= 1
                self._last_done = self._clock()


class RedirectingHttpClient(PoolingHttpClient):
    """The library's own HTTP client, sending requests for ``https://*.twilio.com`` to
    ``base_url`` (e.g. ``http://127.0.0.1:PORT``) with the path and query exactly as the
    library built them. Other URLs (absolute ones of other hosts) are left alone.

    Proxy settings from the environment are ignored for a loopback ``base_url``: a local fake
    is never behind a proxy, and ``HTTP_PROXY`` without ``NO_PROXY`` would otherwise send its
    requests away.
    """

    def __init__(self, base_url: str, *, timeout: float | None = DEFAULT_TIMEOUT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(timeout=timeout, clock=clock)
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be an absolute http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        if self.session is not None and _is_loopback(parts.hostname):
            self.session.trust_env = False

    def rewrite(self, url: str) -> str:
        parts = urllib.parse.urlsplit(url)
        host = (parts.hostname or "").lower()
        if host != "twilio.com" and not host.endswith(".twilio.com"):
            return url
        return self.base_url + parts.path + (f"?{parts.query}" if parts.query else "")

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        return super().request(
            method,
            self.rewrite(url),
            params=params,
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )


class TwilioRest:
    """Async call control and number set-up over the ``twilio`` library. See the module doc."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if base_url is not None:
            http_client: TwilioHttpClient = RedirectingHttpClient(base_url, timeout=timeout)
        else:
            http_client = PoolingHttpClient(timeout=timeout)
        self.client = Client(account_sid, auth_token, http_client=http_client)

    async def hang_up(self, call_sid: str) -> bool:
        """End the call (``Status=completed``). ``False`` if it was already gone (20404)."""
        return await self._update_call("hang_up", call_sid, status="completed")

    async def redirect(self, call_sid: str, twiml: str) -> bool:
        """Replace the call's running TwiML with ``twiml`` (a transfer: ``<Dial>``; the
        ``<Connect><Stream>`` then stops). ``False`` if the call was already gone (20404)."""
        _check_twiml(twiml)
        return await self._update_call("redirect", call_sid, twiml=twiml)

    async def create_call(
        self,
        *,
        to: str,
        from_: str,
        twiml: str,
        status_callback: str | None = None,
        status_callback_event: Sequence[str] | None = None,
        machine_detection: str | None = None,
        async_amd: bool | None = None,
        async_amd_status_callback: str | None = None,
        timeout: int | None = None,
    ) -> str:
        """Place an outbound call that runs ``twiml`` when answered; returns its CallSid.

        ``status_callback_event``: any of initiated, ringing, answered, completed.
        ``machine_detection``: "Enable" or "DetectMessageEnd"; with ``async_amd`` the result
        is POSTed to ``async_amd_status_callback`` while the TwiML already runs. ``timeout``:
        seconds to let it ring. Raises ``ValueError`` before sending anything if ``twiml`` is
        longer than Twilio accepts.
        """
        _check_twiml(twiml)
        kwargs: dict[str, object] = {"to": to, "from_": from_, "twiml": twiml}
        optional = {
            "status_callback": status_callback,
            "status_callback_event": list(status_callback_event) if status_callback_event else None,
            "machine_detection": machine_detection,
            # The library sends AsyncAmd as given; Twilio expects the strings "true"/"false".
            "async_amd": None if async_amd is None else ("true" if async_amd else "false"),
            "async_amd_status_callback": async_amd_status_callback,
            "timeout": timeout,
        }
        kwargs.update({name: value for name, value in optional.items() if value is not None})
        call = await self._run("create_call", lambda: self.client.calls.create(**kwargs))
        logger.info("twilio rest: call created (call_sid=%s to=%s)", call.sid, to)
        return str(call.sid)

    async def find_number(self, phone_number: str) -> IncomingNumber | None:
        """The account's number ``phone_number`` (E.164), or ``None`` if it has no such number.
        Twilio's filter also matches partial numbers; only an exact match counts here."""

        def find() -> IncomingNumber | None:
            for number in self.client.incoming_phone_numbers.list(phone_number=phone_number, limit=20):
                if number.phone_number == phone_number:
                    return IncomingNumber(str(number.sid), number.voice_url, number.voice_method)
            return None

        return await self._run("find_number", find)

    async def configure_number(self, sid: str, voice_url: str, voice_method: str = "POST") -> None:
        """Point the number's incoming calls at ``voice_url`` (the gateway's voice webhook)."""

        def update() -> None:
            self.client.incoming_phone_numbers(sid).update(voice_url=voice_url, voice_method=voice_method)

        await self._run("configure_number", update)
        logger.info("twilio rest: number %s now sends calls to %s %s", sid, voice_method, voice_url)

    def close(self) -> None:
        """Close the pooled HTTP connections."""
        session = getattr(self.client.http_client, "session", None)
        if session is not None:
            session.close()

    async def _update_call(self, operation: str, call_sid: str, **changes: str) -> bool:
        try:
            await self._run(operation, lambda: self.client.calls(call_sid).update(**changes))
        except TwilioRestError as error:
            if error.code == CALL_NOT_FOUND:
                logger.info("twilio rest: %s: the call is already gone (call_sid=%s)", operation, call_sid)
                return False
            raise
        logger.info("twilio rest: %s done (call_sid=%s)", operation, call_sid)
        return True

    async def _run(self, operation: str, work: Callable[[], T]) -> T:
        """Run one blocking library call in a worker thread; library errors become ours."""
        try:
            return await asyncio.to_thread(work)
        except TwilioRestException as error:
            raise TwilioRestError(
                operation, code=error.code, status=error.status, message=error.msg,
                method=error.method, uri=error.uri,
            ) from error
        except TwilioServiceException as error:
            raise TwilioRestError(
                operation, code=error.code, status=error.status,
                message=error.detail or error.title, method=error.method, uri=error.uri,
            ) from error
        except TwilioException as error:
            raise _from_bare_exception(operation, error) from error
        except OSError as error:  # requests' errors (no connection, timeout) are OSErrors
            raise TwilioRestError(operation, code=None, status=None, message=f"request failed: {error}") from error


def _check_twiml(twiml: str) -> None:
    if len(twiml) > MAX_TWIML_CHARS:
        raise ValueError(
            f"inline TwiML is {len(twiml)} characters; Twilio accepts at most {MAX_TWIML_CHARS}"
        )


def _from_bare_exception(operation: str, error: TwilioException) -> TwilioRestError:
    """A list page that failed: ``TwilioException("Unable to fetch page", response)``."""
    response = error.args[1] if len(error.args) > 1 else None
    if not isinstance(response, Response):
        return TwilioRestError(operation, code=None, status=None, message=str(error))
    code: int | None = None
    message = str(error.args[0])
    try:
        body = json.loads(response.text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = body.get("code") if isinstance(body.get("code"), int) else None
        message = f"{message}: {body.get('message') or body.get('detail') or ''}".rstrip(": ")
    return TwilioRestError(operation, code=code, status=response.status_code, message=message)


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
