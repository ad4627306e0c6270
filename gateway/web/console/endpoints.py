"""The console's endpoints: pages, files and JSON, each behind the login (see the package).

Endpoints accept, check and hand over: who may look is ``sessions``, what there is to see is
``calls``, the files are ``assets``.
"""

from __future__ import annotations

import functools
import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.ratelog import peer_tag
from gateway.settings import Settings
from gateway.store import CallStore
from gateway.web.console.assets import CONTENT_SECURITY_POLICY, Assets
from gateway.web.console.calls import ConsoleCalls
from gateway.web.console.sessions import LoginThrottle, SessionTokens
from gateway.web.fleet import Fleet
from gateway.web.registry import CallRegistry
from gateway.web.twilio_forms import FormRefused, parse_form

__all__ = ["COOKIE", "Console"]

log = logging.getLogger("gateway.app")

#: The session cookie's name.
COOKIE = "gateway_console"
#: Largest login form read (a key and a ``next``).
MAX_FORM_BYTES = 4096
#: Recent calls listed at most per request.
MAX_RECENT = 500
#: A call SID as it may appear in a console path (Twilio's are ``CA`` and 32 hex digits).
_CALL_SID = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: Where a login may lead back to: a console page, relative to the console.
_NEXT = re.compile(r"(calls/[A-Za-z0-9_-]{1,64})?")

_PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_DATA_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}

Endpoint = Callable[[Request], Awaitable[Response]]


class Console:
    """``routes()``: the console under ``/console``. Without ``GATEWAY_API_KEY`` every console
    path answers 404, saying how to turn it on."""

    def __init__(self, settings: Settings, registry: CallRegistry, store: CallStore | None,
                 fleet: Fleet | None = None) -> None:
        self.settings = settings
        self.sessions = SessionTokens(settings.api_key) if settings.api_key else None
        self.throttle = LoginThrottle()
        self.calls = ConsoleCalls(settings, registry, store, fleet)
        self.assets = Assets()
        self.secure_cookie = settings.public_url.lower().startswith("https:")

    def routes(self, wrap: Callable[[Endpoint], Endpoint] = lambda endpoint: endpoint) -> list[BaseRoute]:
        """The console's routes, each endpoint wrapped in ``wrap`` (the gateway's start-up guard)."""
        page = lambda endpoint: wrap(self._page(endpoint))  # noqa: E731
        api = lambda endpoint: wrap(self._api(endpoint))  # noqa: E731
        open_ = lambda endpoint: wrap(self._on(endpoint))  # noqa: E731
        return [
            Route("/console", page(self.index), methods=["GET"]),
            Route("/console/calls/{call_sid}", page(self.call_page), methods=["GET"]),
            Route("/console/login", open_(self.login_form), methods=["GET"]),
            Route("/console/login", open_(self._posted_here(self.login)), methods=["POST"]),
            Route("/console/logout", open_(self._posted_here(self.logout)), methods=["POST"]),
            Route("/console/static/{name}", open_(self.static), methods=["GET"]),
            Route("/console/api/live", api(self.live), methods=["GET"]),
            Route("/console/api/calls", api(self.recent), methods=["GET"]),
            Route("/console/api/calls/{call_sid}", api(self.call), methods=["GET"]),
            Route("/console/api/calls/{call_sid}/timeline.png", api(self.timeline), methods=["GET"]),
            Route("/console/api/calls/{call_sid}/recording.wav", api(self.recording), methods=["GET"]),
        ]

    # --- The checks, around every endpoint ------------------------------------------------------

    def _on(self, endpoint: Endpoint) -> Endpoint:
        """Only with an API key configured."""

        @functools.wraps(endpoint)
        async def checked(request: Request) -> Response:
            if self.sessions is None:
                return PlainTextResponse("The console is off: set GATEWAY_API_KEY to turn it on.\n",
                                         status_code=404, headers=_DATA_HEADERS)
            return await endpoint(request)

        return checked

    def _page(self, endpoint: Endpoint) -> Endpoint:
        """A page: logged-in users only, the others are sent to the login form."""

        async def checked(request: Request) -> Response:
            if not self._logged_in(request):
                path = request.url.path.removeprefix(_root(request) + "/console").lstrip("/")
                after = f"?next={quote(path, safe='/')}" if path and _NEXT.fullmatch(path) else ""
                return RedirectResponse(_root(request) + "/console/login" + after, status_code=303,
                                        headers=_PAGE_HEADERS)
            return await endpoint(request)

        return self._on(functools.wraps(endpoint)(checked))

    def _api(self, endpoint: Endpoint) -> Endpoint:
        """Data: logged-in users only, the others get a 401."""

        async def checked(request: Request) -> Response:
            if not self._logged_in(request):
                return JSONResponse({"error": "log in to the console first"}, status_code=401, headers=_DATA_HEADERS)
            sid = request.path_params.get("call_sid")
            if sid is not None and not _CALL_SID.fullmatch(sid):
                return _not_found("no such call")
            return await endpoint(request)

        return self._on(functools.wraps(endpoint)(checked))

    def _posted_here(self, endpoint: Endpoint) -> Endpoint:
        """A form posted from the console's own pages only. ``SameSite=Strict`` already keeps
        the cookie off another site's requests; this also stops another site from logging a
        user out or in (to an account of its own) behind their back. Browsers say where a
        request comes from in ``Sec-Fetch-Site``
        (https://developer.mozilla.org/en-US/docs/Web/HTTP/Headers/Sec-Fetch-Site); a client
        that sends none (not a browser, or an old one) is not refused for it."""

        @functools.wraps(endpoint)
        async def checked(request: Request) -> Response:
            if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
                return PlainTextResponse("Forms are posted to the console from its own pages only.\n",
                                         status_code=403, headers=_DATA_HEADERS)
            return await endpoint(request)

        return checked

    def _logged_in(self, request: Request) -> bool:
        return self.sessions is not None and self.sessions.valid(request.cookies.get(COOKIE), time.time())

    # --- Logging in and out ---------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        if self._logged_in(request):
            return RedirectResponse(_root(request) + "/console", status_code=303, headers=_PAGE_HEADERS)
        return self._login_page(request, "", request.query_params.get("next", ""))

    async def login(self, request: Request) -> Response:
        """``POST /console/login`` with ``key`` (and ``next``): the key, checked in constant
        time, buys a session cookie. A peer that keeps guessing is refused for a while."""
        assert self.sessions is not None
        peer = request.client.host if request.client else "?"
        now = time.time()
        try:
            form = parse_form(request.headers.get("content-type", ""), await _body(request, MAX_FORM_BYTES))
        except FormRefused as refused:
            return PlainTextResponse(refused.message, status_code=refused.status_code, headers=_DATA_HEADERS)
        after = form.get("next", "")
        wait_s = self.throttle.retry_after(peer, now)
        if wait_s > 0:
            log.warning("%s console login refused: too many wrong keys, %.0f s to wait",
                        peer_tag(request.client), wait_s)
            response = self._login_page(request, f"Too many wrong keys: try again in {wait_s:.0f} s.", after,
                                        status_code=429)
            response.headers["Retry-After"] = str(int(wait_s) + 1)
            return response
        key = form.get("key", "")
        if not hmac.compare_digest(key.encode(), (self.settings.api_key or "").encode()):
            failures = self.throttle.failed(peer, now)
            log.warning("%s console login refused: wrong key (%d in %.0f s)", peer_tag(request.client),
                        failures, self.throttle.window_s)
            return self._login_page(request, "That key is not right.", after, status_code=401)
        self.throttle.succeeded(peer)
        log.info("%s console login", peer_tag(request.client))
        target = after if _NEXT.fullmatch(after) else ""
        response = RedirectResponse(_root(request) + "/console" + (f"/{target}" if target else ""),
                                    status_code=303, headers=_PAGE_HEADERS)
        response.set_cookie(COOKIE, self.sessions.issue(now), max_age=self.sessions.ttl_s,
                            path=_root(request) + "/console", secure=self.secure_cookie, httponly=True,
                            samesite="strict")
        return response

    async def logout(self, request: Request) -> Response:
        assert self.sessions is not None
        self.sessions.revoke(request.cookies.get(COOKIE), time.time())
        response = RedirectResponse(_root(request) + "/console/login", status_code=303, headers=_PAGE_HEADERS)
        response.delete_cookie(COOKIE, path=_root(request) + "/console", secure=self.secure_cookie, httponly=True,
                               samesite="strict")
        return response

    def _login_page(self, request: Request, message: str, after: str, status_code: int = 200) -> Response:
        body = self.assets.page("login.html", base=_base(request), message=message,
                                next=after if _NEXT.fullmatch(after) else "")
        return Response(body, status_code=status_code, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)

    # --- Pages and files ------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        return self._html(request, "index.html")

    async def call_page(self, request: Request) -> Response:
        if not _CALL_SID.fullmatch(request.path_params["call_sid"]):
            return _not_found("no such call")
        return self._html(request, "call.html")

    async def static(self, request: Request) -> Response:
        """The style sheet and the scripts: the package's own files, the same for everyone, so
        served before login too (the login page uses the style sheet)."""
        asset = self.assets.asset(request.path_params["name"])
        if asset is None:
            return _not_found("no such file")
        return Response(asset.body, media_type=asset.media_type,
                        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})

    def _html(self, request: Request, name: str) -> Response:
        return Response(self.assets.page(name, base=_base(request)), media_type="text/html; charset=utf-8",
                        headers=_PAGE_HEADERS)

    # --- Data -----------------------------------------------------------------------------------

    async def live(self, request: Request) -> Response:
        """The calls in progress now; the page asks every second."""
        return JSONResponse(await self.calls.live(time.time()), headers=_DATA_HEADERS)

    async def recent(self, request: Request) -> Response:
        try:
            limit = min(MAX_RECENT, max(1, int(request.query_params.get("limit", "50"))))
        except ValueError:
            return JSONResponse({"error": "limit: a whole number"}, status_code=400, headers=_DATA_HEADERS)
        return JSONResponse(await self.calls.recent(limit), headers=_DATA_HEADERS)

    async def call(self, request: Request) -> Response:
        body = await self.calls.call_json(request.path_params["call_sid"])
        if body is None:
            return _not_found("no such call (a call in progress is listed once it has ended)")
        return Response(body, media_type="application/json", headers=_DATA_HEADERS)

    async def timeline(self, request: Request) -> Response:
        call_sid = request.path_params["call_sid"]
        try:
            png = await self.calls.timeline(call_sid)
        except Exception:  # a picture that cannot be drawn costs the page its picture, nothing more
            log.exception("[call=%s] console: the call's timeline could not be drawn", call_sid)
            return JSONResponse({"error": "the timeline could not be drawn"}, status_code=500, headers=_DATA_HEADERS)
        if png is None:
            return _not_found("no such call")
        return Response(png, media_type="image/png",
                        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=86400"})

    async def recording(self, request: Request) -> Response:
        call_sid = request.path_params["call_sid"]
        path = await self.calls.recording(call_sid)
        if path is None:
            return _not_found("no recording of this call")
        return FileResponse(path, media_type="audio/wav", content_disposition_type="inline",
                            filename=f"{call_sid}.wav",
                            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"})


def _root(request: Request) -> str:
    """The path the gateway is mounted at (``""`` unless mounted, docs/mounting.md)."""
    return request.scope.get("root_path", "").rstrip("/")


def _base(request: Request) -> str:
    return _root(request) + "/console/"


def _not_found(message: str) -> Response:
    return JSONResponse({"error": message}, status_code=404, headers=_DATA_HEADERS)


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise FormRefused(413, "request body too large")
    body = bytearray()
    async for chunk in request.stream():  # never buffer more than the limit
        body += chunk
        if len(body) > limit:
            raise FormRefused(413, "request body too large")
    return bytes(body)
