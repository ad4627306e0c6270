"""The Starlette application, built by ``create_app`` from one ``Settings`` object.

Routes (endpoints accept, check, wire and hand over; the logic lives in the cores):

- ``POST /twilio/voice``: Twilio's incoming-call webhook. Signature checked (403 otherwise);
  answers TwiML ``<Connect><Stream url="wss://PUBLIC_HOST/twilio/media">`` with the call's
  parameters and a per-call token.
- ``WS /twilio/media``: the Media Streams WebSocket. Handshake signature checked (upgrade
  refused otherwise); then one ``Call`` runs until the call ends.
- ``POST /twilio/status``, ``POST /twilio/amd``: Twilio's call-status and answering-machine
  callbacks (signature checked), recorded with the call; the agent is told who answered.
- ``POST /calls`` (bearer ``GATEWAY_API_KEY``): place an outbound call; ``GET /calls``: the
  calls in progress on this instance.
- ``GET /healthz``: liveness, with the number of active calls.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import json
import logging
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from twilio.twiml.voice_response import Connect, Stream, VoiceResponse

from gateway.bridge.agents import AgentSource, default_agent, load_agent_source
from gateway.bridge.call import CLOSE_POLICY, Call, CallRecord, DigitHandler, EventHook
from gateway.bridge import sdk
from gateway.bridge.control import dial_verb
from gateway.security import TOKEN_PARAMETER, CallTokens, TwilioSignatures
from gateway.settings import Settings
from gateway.twilio.rest import TwilioRest, TwilioRestError

log = logging.getLogger("gateway.app")

#: Finished calls whose records are kept in memory.
RECENT_CALLS = 200
#: Largest webhook body we read (Twilio's voice webhooks are a few hundred bytes).
MAX_WEBHOOK_BYTES = 64 * 1024


class Gateway:
    """Per-application state: settings, checkers, the agent, the calls in progress."""

    def __init__(
        self,
        settings: Settings,
        agent: AgentSource | None = None,
        on_digit: DigitHandler | None = None,
        on_event: EventHook | None = None,
    ) -> None:
        self.settings = settings
        self.on_digit = on_digit
        self.on_event = on_event
        self.signatures = TwilioSignatures(settings.twilio_auth_token)
        self.tokens = CallTokens.derived_from(settings.twilio_auth_token, settings.call_token_secret)
        if agent is None:
            agent = load_agent_source(settings.agent) if settings.agent else default_agent(settings.instructions)
        self.agent = agent
        self.rest = TwilioRest(settings.twilio_account_sid, settings.twilio_auth_token, base_url=settings.twilio_api_base_url)
        self.calls: dict[str, Call] = {}  # stream SID -> call in progress
        #: Twilio status callbacks, by call SID (bounded): [{"status", "at", ...}].
        self.statuses: collections.OrderedDict[str, list[dict[str, str]]] = collections.OrderedDict()
        #: Answering-machine results that arrived before their stream started.
        self._early_amd: collections.OrderedDict[str, str] = collections.OrderedDict()
        #: Records of the most recent finished calls (refused streams included).
        self.finished: collections.deque[CallRecord] = collections.deque(maxlen=RECENT_CALLS)
        #: Set by ``drain()`` (SIGTERM): no new calls; the ones in progress go on.
        self.draining = False

    # --- POST /twilio/voice ---------------------------------------------------------------

    async def voice_webhook(self, request: Request) -> Response:
        params = await self._signed_form(request)
        if isinstance(params, Response):
            return params
        call_sid = params.get("CallSid", "")
        if not call_sid:
            return PlainTextResponse("missing CallSid", status_code=400)
        if self.draining:
            return self._turn_away(call_sid)
        parameters = {"callSid": call_sid, "from": params.get("From", ""), "to": params.get("To", "")}
        parameters[TOKEN_PARAMETER] = self.tokens.issue(
            call_sid, parameters, now=time.time(), ttl_s=self.settings.call_token_ttl_s
        )
        log.info("[call=%s] incoming call from %s to %s", call_sid, parameters["from"] or "?", parameters["to"] or "?")
        return Response(self.stream_twiml(parameters), media_type="application/xml")

    def _turn_away(self, call_sid: str) -> Response:
        """A new call while draining: send it to another instance, or 503 (Twilio then uses the
        number's fallback URL, or plays its error message)."""
        url = self.settings.drain_redirect_url
        if url is None:
            log.info("[call=%s] draining: new call refused with 503", call_sid)
            return PlainTextResponse("draining", status_code=503, headers={"Retry-After": "30"})
        log.info("[call=%s] draining: new call redirected to %s", call_sid, url)
        response = VoiceResponse()
        response.redirect(url, method="POST")
        return Response(str(response), media_type="application/xml")

    async def drain(self, timeout_s: float, poll_s: float = 0.1) -> int:
        """Stop taking calls; wait for the calls in progress to end, at most ``timeout_s``.
        Returns how many are still going (they end with the process)."""
        self.draining = True
        log.warning("draining: not taking new calls; %d in progress; waiting up to %.0f s",
                    len(self.calls), timeout_s)
        deadline = time.monotonic() + timeout_s
        while self.calls and time.monotonic() < deadline:
            await asyncio.sleep(poll_s)
        if self.calls:
            log.warning("drain timeout: %d call(s) still in progress end now", len(self.calls))
        else:
            log.warning("drained: no calls in progress")
        return len(self.calls)

    async def readyz(self, request: Request) -> Response:
        """Readiness (for the load balancer): 503 from the moment the gateway drains."""
        if self.draining:
            return JSONResponse({"status": "draining", "active_calls": len(self.calls)}, status_code=503)
        return JSONResponse({"status": "ready", "active_calls": len(self.calls)})

    def stream_twiml(self, parameters: dict[str, str]) -> str:
        stream = Stream(url=self.settings.stream_url)
        for name, value in parameters.items():
            stream.parameter(name=name, value=value)
        connect = Connect()
        connect.append(stream)
        response = VoiceResponse()
        response.append(connect)
        # Twilio goes on to the next verbs when the stream ends without the call ending: the
        # gateway closes it that way only when the model cannot be reached (a hang-up ends
        # the call over REST, a transfer replaces the TwiML).
        if self.settings.fallback_say:
            response.say(self.settings.fallback_say)
        if self.settings.fallback_dial:
            response.append(dial_verb(self.settings.fallback_dial))
        return str(response)

    def _webhook_signed(self, request: Request, params: dict[str, str]) -> bool:
        if self.settings.insecure_skip_signature:
            return True
        # The URL Twilio signed is our public URL, never what the proxy-rewritten request says.
        path = request.url.path
        root = request.scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        url = self.settings.public(path)
        if request.url.query:
            url += "?" + request.url.query
        ok = self.signatures.webhook_valid(
            url,
            params,
            request.headers.get("x-twilio-signature"),
            request.headers.get("x-twilio-webhooks-signature-settings"),
        )
        if not ok:
            log.warning("webhook refused: X-Twilio-Signature does not match %s", url)
        return ok

    # --- WS /twilio/media ------------------------------------------------------------------

    async def media_stream(self, websocket: WebSocket) -> None:
        if not self.settings.insecure_skip_signature and not self.signatures.stream_valid(
            self.settings.stream_url, websocket.headers.get("x-twilio-signature")
        ):
            log.warning("media stream refused: X-Twilio-Signature does not match %s", self.settings.stream_url)
            await websocket.close(CLOSE_POLICY)  # before accept: the upgrade is refused (HTTP 403)
            return
        await websocket.accept()
        call = Call(websocket, self.settings, self.tokens, self.agent, on_start=self._started, rest=self.rest, on_digit=self.on_digit, on_event=self.on_event)
        try:
            await call.run()
        finally:
            self.calls.pop(call.record.stream_sid, None)
            self.finished.append(call.record)

    def _started(self, call: Call) -> None:
        self.calls[call.record.stream_sid] = call
        answered_by = self._early_amd.pop(call.call_sid, None)
        if answered_by is not None:
            call.answered_by(answered_by)

    def _call_by_sid(self, call_sid: str) -> Call | None:
        return next((c for c in self.calls.values() if c.call_sid == call_sid), None)

    # --- POST /twilio/status, POST /twilio/amd ---------------------------------------------------

    async def status_callback(self, request: Request) -> Response:
        params = await self._signed_form(request)
        if isinstance(params, Response):
            return params
        call_sid, status = params.get("CallSid", ""), params.get("CallStatus", "")
        if not call_sid or not status:
            return PlainTextResponse("missing CallSid or CallStatus", status_code=400)
        entry = {"status": status, "at": str(round(time.time(), 3))}
        if "CallDuration" in params:
            entry["duration_s"] = params["CallDuration"]
        self.statuses.setdefault(call_sid, []).append(entry)
        self.statuses.move_to_end(call_sid)
        _trim(self.statuses)
        call = self._call_by_sid(call_sid)
        if call is not None:
            call.record.note("twilio_status", status=status)
        log.info("[call=%s] Twilio status: %s", call_sid, status)
        return PlainTextResponse("", status_code=204)

    async def amd_callback(self, request: Request) -> Response:
        params = await self._signed_form(request)
        if isinstance(params, Response):
            return params
        call_sid, answered_by = params.get("CallSid", ""), params.get("AnsweredBy", "")
        if not call_sid or not answered_by:
            return PlainTextResponse("missing CallSid or AnsweredBy", status_code=400)
        log.info("[call=%s] answered by: %s", call_sid, answered_by)
        call = self._call_by_sid(call_sid)
        if call is not None:
            call.answered_by(answered_by)
        else:  # detection can finish before the stream's start reaches us
            self._early_amd[call_sid] = answered_by
            _trim(self._early_amd)
        return PlainTextResponse("", status_code=204)

    async def _signed_form(self, request: Request) -> dict[str, str] | Response:
        """A Twilio webhook's form parameters, or the response refusing the request."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_WEBHOOK_BYTES:
            return PlainTextResponse("request body too large", status_code=413)
        body = bytearray()
        async for chunk in request.stream():  # never buffer more than the limit
            body += chunk
            if len(body) > MAX_WEBHOOK_BYTES:
                return PlainTextResponse("request body too large", status_code=413)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":  # what Twilio sends, and nothing else
            return PlainTextResponse("expected application/x-www-form-urlencoded", status_code=415)
        try:
            pairs = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except (UnicodeDecodeError, ValueError):
            return PlainTextResponse("malformed form body", status_code=400)
        params = dict(pairs)
        if not self._webhook_signed(request, params):
            return PlainTextResponse("invalid Twilio signature", status_code=403)
        return params

    # --- POST /calls, GET /calls ------------------------------------------------------------------

    def _authorized(self, request: Request) -> bool:
        key = self.settings.api_key
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return bool(key) and scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), key.encode())

    async def place_call(self, request: Request) -> Response:
        if not self._authorized(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        if self.draining:
            return JSONResponse({"error": "draining: place the call on another instance"}, status_code=503)
        try:
            body = json.loads(await request.body() or b"{}")
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            to = body.get("to")
            if not isinstance(to, str) or not to:
                raise ValueError("'to' (the number to call) is required")
            from_ = body.get("from") or self.settings.caller_id
            if not from_:
                raise ValueError("'from' is required (or set GATEWAY_CALLER_ID)")
            agent = body.get("agent")
            if agent is not None:
                load_agent_source(agent)  # fail now, not when the callee answers
            context = body.get("context") or {}
            if not isinstance(context, dict) or not all(isinstance(v, str) for v in context.values()):
                raise ValueError("'context' must be an object of strings")
        except (ValueError, json.JSONDecodeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        ref = uuid.uuid4().hex
        parameters = {"direction": "outbound", "ref": ref, "from": from_, "to": to}
        if agent:
            parameters["agent"] = agent
        parameters.update({f"ctx.{key}": value for key, value in context.items()})
        parameters[TOKEN_PARAMETER] = self.tokens.issue(ref, parameters, now=time.time(), ttl_s=self.settings.call_token_ttl_s)
        twiml = self.stream_twiml(parameters)
        options = {}
        if self.settings.amd:
            options = {"machine_detection": "DetectMessageEnd", "async_amd": True,
                       "async_amd_status_callback": self.settings.public("/twilio/amd")}
        try:
            call_sid = await self.rest.create_call(
                to=to, from_=from_, twiml=twiml,
                status_callback=self.settings.public("/twilio/status"),
                status_callback_event=["initiated", "ringing", "answered", "completed"],
                **options,
            )
        except (TwilioRestError, ValueError) as exc:
            log.error("outbound call to %s failed: %s", to, exc)
            return JSONResponse({"error": f"Twilio refused the call: {exc}"}, status_code=502)
        log.info("[call=%s] outbound call to %s placed (ref %s)", call_sid, to, ref)
        return JSONResponse({"call_sid": call_sid, "ref": ref, "to": to, "from": from_}, status_code=201)

    async def list_calls(self, request: Request) -> Response:
        if not self._authorized(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        now = time.time()
        calls = [
            {
                "call_sid": c.record.call_sid, "stream_sid": c.record.stream_sid, "from": c.record.from_,
                "to": c.record.to, "agent": c.record.agent, "direction": c.record.direction,
                "duration_s": round(now - c.record.started_at, 1),
            }
            for c in self.calls.values()
        ]
        return JSONResponse({"calls": calls})

    # --- GET /healthz ------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        """Liveness, and the process's vital signs (for dashboards and soak runs)."""
        return JSONResponse({
            "status": "ok",
            "active_calls": len(self.calls),
            "finished_calls": len(self.finished),
            "tasks": len(asyncio.all_tasks()),
        })


def _trim(recent: collections.OrderedDict) -> None:
    """Keep the ``RECENT_CALLS`` most recently touched entries."""
    while len(recent) > RECENT_CALLS:
        recent.popitem(last=False)


def create_app(
    settings: Settings,
    *,
    agent: AgentSource | None = None,
    on_digit: DigitHandler | None = None,
    on_event: EventHook | None = None,
) -> Starlette:
    """The gateway. ``agent`` overrides ``GATEWAY_AGENT``; ``on_digit`` handles keypresses in
    code (menus, shortcuts) before the model hears of them; ``on_event(call, event)`` sees
    every session event of every call (see ``gateway.bridge.call.EventHook``)."""
    gateway = Gateway(settings, agent, on_digit, on_event)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if settings.insecure_skip_signature:
            log.warning(
                "!!! GATEWAY_INSECURE_SKIP_SIGNATURE is on: Twilio signatures are NOT checked. "
                "Anyone who finds this URL can place calls on your model account. Local development only. !!!"
            )
        sdk.prepare()  # the SDK's one-off costs now, not in the first calls (gateway.bridge.sdk)
        try:
            yield
        finally:
            gateway.rest.close()

    app = Starlette(
        routes=[
            Route("/twilio/voice", gateway.voice_webhook, methods=["POST"]),
            Route("/twilio/status", gateway.status_callback, methods=["POST"]),
            Route("/twilio/amd", gateway.amd_callback, methods=["POST"]),
            Route("/calls", gateway.place_call, methods=["POST"]),
            Route("/calls", gateway.list_calls, methods=["GET"]),
            WebSocketRoute("/twilio/media", gateway.media_stream),
            Route("/healthz", gateway.healthz, methods=["GET"]),
            Route("/readyz", gateway.readyz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    return app
