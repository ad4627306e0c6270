"""The gateway's own API (bearer ``GATEWAY_API_KEY``; no key configured, no access):

- ``POST /calls``: place an outbound call. Body: ``{"to", "from"?, "agent"?, "context"?}``
  (``from`` defaults to ``GATEWAY_CALLER_ID``). Twilio calls the number; when it answers, the
  TwiML connects the stream back to us with the context as stream parameters, all under a
  per-call token. 201 with the call SID and our ``ref``; 400 for a bad body, 502 when Twilio
  refuses, 503 while draining.
- ``POST /calls/{call_sid}/hangup``: end a call in progress now, on whichever instance holds
  it (``gateway.web.fleet``): 202 ``{"call_sid", "instance"}``, or 404 if no instance that
  answered holds it.
- ``GET /calls``: the calls in progress on every instance (``gateway.web.fleet``): ``{"calls":
  [...], "instances", "unreachable"}``, each call naming its ``instance``.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.bridge.agents import load_agent_source
from gateway.security import CallTokens
from gateway.settings import Settings
from gateway.twilio.rest import TwilioRest, TwilioRestError
from gateway.web import twiml
from gateway.web.drain import Drain
from gateway.web.fleet import Fleet
from gateway.web.peers import HINT_PARAMETER, Peers

__all__ = ["CallsApi", "OutboundCall", "bearer_matches"]

log = logging.getLogger("gateway.app")

#: The status-callback events asked for on outbound calls.
STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")


def bearer_matches(api_key: str | None, authorization: str) -> bool:
    """``Authorization: Bearer <api_key>``, compared in constant time; never without a key."""
    scheme, _, token = authorization.partition(" ")
    return bool(api_key) and scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), api_key.encode())


@dataclass(frozen=True)
class OutboundCall:
    """A ``POST /calls`` request, checked."""

    to: str
    from_: str
    agent: str | None = None
    context: dict[str, str] | None = None

    @classmethod
    def from_json(cls, body: bytes, caller_id: str | None) -> OutboundCall:
        """Raises ``ValueError`` saying what is wrong (``json.JSONDecodeError`` is one)."""
        request = json.loads(body or b"{}")
        if not isinstance(request, dict):
            raise ValueError("the body must be a JSON object")
        to = request.get("to")
        if not isinstance(to, str) or not to:
            raise ValueError("'to' (the number to call) is required")
        from_ = request.get("from") or caller_id
        if not from_:
            raise ValueError("'from' is required (or set GATEWAY_CALLER_ID)")
        agent = request.get("agent")
        if agent is not None:
            load_agent_source(agent)  # fail now, not when the callee answers
        context = request.get("context") or {}
        if not isinstance(context, dict) or not all(isinstance(v, str) for v in context.values()):
            raise ValueError("'context' must be an object of strings")
        return cls(to, from_, agent, context)

    def stream_parameters(self, ref: str) -> dict[str, str]:
        """What the stream's ``start`` brings back to us when the callee answers."""
        parameters = {"direction": "outbound", "ref": ref, "from": self.from_, "to": self.to}
        if self.agent:
            parameters["agent"] = self.agent
        parameters.update({f"ctx.{key}": value for key, value in (self.context or {}).items()})
        return parameters


class CallsApi:
    def __init__(
        self, settings: Settings, tokens: CallTokens, rest: TwilioRest, drain: Drain, peers: Peers, fleet: Fleet,
    ) -> None:
        self.settings = settings
        self.tokens = tokens
        self.rest = rest
        self.drain = drain
        self.peers = peers
        self.fleet = fleet

    async def place_call(self, request: Request) -> Response:
        if not self._authorized(request):
            return _unauthorized()
        if self.drain.draining:
            return JSONResponse({"error": "draining: place the call on another instance"}, status_code=503)
        try:
            outbound = OutboundCall.from_json(await request.body(), self.settings.caller_id)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        try:
            call_sid, ref = await self.dial(outbound)
        except (TwilioRestError, ValueError) as exc:  # ValueError: TwiML too long for Twilio
            log.error("outbound call to %s failed: %s", outbound.to, exc)
            return JSONResponse({"error": f"Twilio refused the call: {exc}"}, status_code=502)
        return JSONResponse({"call_sid": call_sid, "ref": ref, "to": outbound.to, "from": outbound.from_}, status_code=201)

    async def list_calls(self, request: Request) -> Response:
        if not self._authorized(request):
            return _unauthorized()
        return JSONResponse(await self.fleet.live())

    async def hang_up(self, request: Request) -> Response:
        if not self._authorized(request):
            return _unauthorized()
        call_sid = request.path_params["call_sid"]
        instance = await self.fleet.hang_up(call_sid)
        if instance is None:
            return JSONResponse({"error": f"no call {call_sid} in progress on any instance that answered"},
                                status_code=404)
        log.info("[call=%s] hang-up asked by an operator, carried out on %s", call_sid, instance)
        return JSONResponse({"call_sid": call_sid, "instance": instance}, status_code=202)

    async def dial(self, outbound: OutboundCall) -> tuple[str, str]:
        """Ask Twilio to place the call; its call SID and our ``ref`` (the token's key: the call
        SID is not known until Twilio answers this request).

        With other instances about (``GATEWAY_INSTANCE_URL``), this one is the call's home: the
        callback URLs carry its signed hint, and the stream's parameters its address, so that
        whichever instance holds the stream can tell it, and callbacks find the holder
        (``gateway.web.routing``)."""
        ref = uuid.uuid4().hex
        parameters = outbound.stream_parameters(ref)
        hint = self.peers.hint()
        if hint is not None:
            parameters["home"] = self.peers.instance_url or ""
        answer = twiml.connect_stream(self.settings, self.tokens, ref, parameters, now=time.time())
        query = f"?{HINT_PARAMETER}={hint}" if hint else ""
        amd: dict[str, Any] = {}
        if self.settings.amd:
            amd = {"machine_detection": "DetectMessageEnd", "async_amd": True,
                   "async_amd_status_callback": self.settings.public("/twilio/amd") + query}
        call_sid = await self.rest.create_call(
            to=outbound.to, from_=outbound.from_, twiml=answer,
            status_callback=self.settings.public("/twilio/status") + query, status_callback_event=list(STATUS_EVENTS),
            **amd,
        )
        log.info("[call=%s] outbound call to %s placed (ref %s)", call_sid, outbound.to, ref)
        return call_sid, ref

    def _authorized(self, request: Request) -> bool:
        return bearer_matches(self.settings.api_key, request.headers.get("authorization", ""))


def _unauthorized() -> Response:
    return JSONResponse({"error": "unauthorized"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
