"""``/internal/v1/...``: what instances of one deployment ask each other, each request signed
(``gateway.web.peers``; unsigned, stale or tampered: 403, and never a hint of why).

- ``POST /internal/v1/held`` ``{"call_sid", "holder"}``: the holder of a call's stream tells
  the call's home where it is; answers ``{"answered_by"}``, a result the home kept for it.
- ``POST /internal/v1/callback`` ``{"kind", "form", "hops", "only_if_held"}``: a Twilio
  callback forwarded by the instance it landed on (``gateway.web.routing``); answers
  ``{"outcome"}``.
- ``GET /internal/v1/metrics``: this worker's own metrics, for the sibling that gathers them
  (``gateway serve --workers N``).
- ``GET /internal/v1/calls``: this instance's calls in progress, for the one listing every
  instance's (``gateway.web.fleet``).
- ``POST /internal/v1/hangup`` ``{"call_sid"}``: an operator's hang-up, from the instance that
  got it; answers ``{"held": true}`` if the call was here (and is ending), else false.

They are served on every listener: the signature, not the address, is what keeps them closed.
Keep ``/internal/`` out of the public proxy's routes all the same (docs/deploy.md).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from starlette.routing import BaseRoute, Route

from gateway.web.fleet import CALLS_PATH, HANGUP_PATH, Fleet
from gateway.web.peers import Peers, normal_url
from gateway.web.routing import CALLBACK_PATH, HELD_PATH, MAX_HOPS, NOT_HERE, CallRouter
from gateway.web.startup import Endpoint

__all__ = ["InternalEndpoints", "MAX_INTERNAL_BYTES", "METRICS_PATH"]

log = logging.getLogger("gateway.app")

#: A forwarded callback is a Twilio form (at most 64 KiB) in JSON.
MAX_INTERNAL_BYTES = 256 * 1024
#: Where a worker's own metrics are, for the sibling gathering them.
METRICS_PATH = "/internal/v1/metrics"


class InternalEndpoints:
    def __init__(self, peers: Peers, router: CallRouter, fleet: Fleet, metrics_text: Callable[[], bytes] | None) -> None:
        self.peers = peers
        self.router = router
        self.fleet = fleet
        self.metrics_text = metrics_text

    def routes(self, wrap: Callable[[Endpoint], Endpoint] = lambda endpoint: endpoint) -> list[BaseRoute]:
        """The routes, at the paths the senders use (``HELD_PATH``, ``CALLBACK_PATH``, ...)."""
        return [
            Route(HELD_PATH, wrap(self.held), methods=["POST"]),
            Route(CALLBACK_PATH, wrap(self.callback), methods=["POST"]),
            Route(METRICS_PATH, wrap(self.metrics), methods=["GET"]),
            Route(CALLS_PATH, wrap(self.calls), methods=["GET"]),
            Route(HANGUP_PATH, wrap(self.hang_up), methods=["POST"]),
        ]

    async def calls(self, request: Request) -> Response:
        if not self.peers.verify("GET", _path(request), b"", request.headers):
            return _refused()
        return JSONResponse(self.fleet.own(time.time()))

    async def held(self, request: Request) -> Response:
        payload = await self._payload(request)
        if isinstance(payload, Response):
            return payload
        call_sid, holder = payload.get("call_sid"), payload.get("holder")
        if not isinstance(call_sid, str) or not call_sid or not isinstance(holder, str) or not holder:
            return _bad("expected call_sid and holder")
        log.info("[call=%s] held by %s (this instance is its home)", call_sid, normal_url(holder))
        return JSONResponse(self.router.held(call_sid, normal_url(holder)))

    async def callback(self, request: Request) -> Response:
        payload = await self._payload(request)
        if isinstance(payload, Response):
            return payload
        kind, form, hops = payload.get("kind"), payload.get("form"), payload.get("hops")
        required = {"status": ("CallSid", "CallStatus"), "amd": ("CallSid", "AnsweredBy")}.get(kind)  # type: ignore[arg-type]
        if (required is None or not isinstance(form, dict) or not isinstance(hops, int) or not 0 < hops <= MAX_HOPS
                or not all(isinstance(v, str) for v in form.values()) or not all(form.get(k) for k in required)):
            return _bad("expected kind (status or amd), its form and hops")
        only_if_held = payload.get("only_if_held") is True
        outcome = await self.router.callback(kind, form, hops=hops, only_if_held=only_if_held)  # type: ignore[arg-type]
        if outcome != NOT_HERE:
            log.info("[call=%s] %s callback forwarded here: %s", form["CallSid"], kind, outcome)
        return JSONResponse({"outcome": outcome})

    async def hang_up(self, request: Request) -> Response:
        payload = await self._payload(request)
        if isinstance(payload, Response):
            return payload
        call_sid = payload.get("call_sid")
        if not isinstance(call_sid, str) or not call_sid:
            return _bad("expected call_sid")
        return JSONResponse({"held": self.fleet.hang_up_here(call_sid)})

    async def metrics(self, request: Request) -> Response:
        if not self.peers.verify("GET", _path(request), b"", request.headers):
            return _refused()
        if self.metrics_text is None:
            return PlainTextResponse("metrics are off", status_code=404)
        return Response(self.metrics_text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def _payload(self, request: Request) -> dict[str, object] | Response:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_INTERNAL_BYTES:
                return PlainTextResponse("request body too large", status_code=413)
        if not self.peers.verify(request.method, _path(request), bytes(body), request.headers):
            return _refused()
        try:
            payload = json.loads(body)
        except ValueError:
            return _bad("the body must be JSON")
        return payload if isinstance(payload, dict) else _bad("the body must be a JSON object")


def _path(request: Request) -> str:
    """The path within the app (what the sender signed: its instance URL names any mount)."""
    path, root = request.url.path, request.scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def _refused() -> Response:
    return PlainTextResponse("forbidden", status_code=403)


def _bad(message: str) -> Response:
    return JSONResponse({"error": message}, status_code=400)
