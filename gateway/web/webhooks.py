"""Twilio's webhooks, each a signed form (``gateway.web.twilio_forms``):

- ``POST /twilio/voice``: an incoming call. Answered with TwiML connecting its stream to us,
  with a per-call token (``gateway.web.twiml``); while draining, turned away: redirected to
  ``GATEWAY_DRAIN_REDIRECT_URL``, else 503 (Twilio then uses the number's fallback URL, or
  plays its error message).
- ``POST /twilio/status``: a call's status callback, kept with the call.
- ``POST /twilio/amd``: answering-machine detection's result (outbound calls): the agent is told
  who answered.

Both callbacks go to the instance holding the call's stream (``gateway.web.routing``), led by
the owner hint in their URL's query (``gateway.web.peers.HINT_PARAMETER``).
"""

from __future__ import annotations

import logging
import time

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from gateway.security import CallTokens
from gateway.settings import Settings
from gateway.web import twiml
from gateway.web.drain import Drain
from gateway.web.peers import HINT_PARAMETER
from gateway.web.routing import CallRouter
from gateway.web.twilio_forms import FormRefused, TwilioForms

__all__ = ["TwilioWebhooks"]

log = logging.getLogger("gateway.app")

_XML = "application/xml"


class TwilioWebhooks:
    def __init__(
        self, settings: Settings, forms: TwilioForms, tokens: CallTokens, drain: Drain, router: CallRouter,
    ) -> None:
        self.settings = settings
        self.forms = forms
        self.tokens = tokens
        self.drain = drain
        self.router = router

    async def voice(self, request: Request) -> Response:
        try:
            form = await self.forms.read(request, required=("CallSid",))
        except FormRefused as refused:
            return refused.response()
        call_sid = form["CallSid"]
        if self.drain.draining:
            return self.turn_away(call_sid)
        parameters = {"callSid": call_sid, "from": form.get("From", ""), "to": form.get("To", "")}
        log.info("[call=%s] incoming call from %s to %s", call_sid, parameters["from"] or "?", parameters["to"] or "?")
        answer = twiml.connect_stream(self.settings, self.tokens, call_sid, parameters, now=time.time())
        return Response(answer, media_type=_XML)

    def turn_away(self, call_sid: str) -> Response:
        """A new call while draining: to another instance, or 503."""
        url = self.settings.drain_redirect_url
        if url is None:
            log.info("[call=%s] draining: new call refused with 503", call_sid)
            return PlainTextResponse("draining", status_code=503, headers={"Retry-After": "30"})
        log.info("[call=%s] draining: new call redirected to %s", call_sid, url)
        return Response(twiml.redirect(url), media_type=_XML)

    async def status(self, request: Request) -> Response:
        try:
            form = await self.forms.read(request, required=("CallSid", "CallStatus"))
        except FormRefused as refused:
            return refused.response()
        outcome = await self.router.callback("status", form, request.query_params.get(HINT_PARAMETER))
        log.info("[call=%s] Twilio status: %s (%s)", form["CallSid"], form["CallStatus"], outcome)
        return PlainTextResponse("", status_code=204)

    async def amd(self, request: Request) -> Response:
        try:
            form = await self.forms.read(request, required=("CallSid", "AnsweredBy"))
        except FormRefused as refused:
            return refused.response()
        outcome = await self.router.callback("amd", form, request.query_params.get(HINT_PARAMETER))
        log.info("[call=%s] answered by: %s (%s)", form["CallSid"], form["AnsweredBy"], outcome)
        return PlainTextResponse("", status_code=204)
