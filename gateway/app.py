"""The Starlette application, built by ``create_app`` from one ``Settings`` object.

Routes (endpoints accept, check, wire and hand over; the logic lives in the cores):

- ``POST /twilio/voice``: Twilio's incoming-call webhook. Signature checked (403 otherwise);
  answers TwiML ``<Connect><Stream url="wss://PUBLIC_HOST/twilio/media">`` with the call's
  parameters and a per-call token.
- ``WS /twilio/media``: the Media Streams WebSocket. Handshake signature checked (upgrade
  refused otherwise); then one ``Call`` runs until the call ends.
- ``GET /healthz``: liveness, with the number of active calls.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from twilio.twiml.voice_response import Connect, Stream, VoiceResponse

from gateway.bridge.agents import AgentSource, default_agent, load_agent_source
from gateway.bridge.call import CLOSE_POLICY, Call, CallRecord
from gateway.security import TOKEN_PARAMETER, CallTokens, TwilioSignatures
from gateway.settings import Settings

log = logging.getLogger("gateway.app")

#: Finished calls whose records are kept in memory.
RECENT_CALLS = 200
#: Largest webhook body we read (Twilio's voice webhooks are a few hundred bytes).
MAX_WEBHOOK_BYTES = 64 * 1024


class Gateway:
    """Per-application state: settings, checkers, the agent, the calls in progress."""

    def __init__(self, settings: Settings, agent: AgentSource | None = None) -> None:
        self.settings = settings
        self.signatures = TwilioSignatures(settings.twilio_auth_token)
        self.tokens = CallTokens.derived_from(settings.twilio_auth_token, settings.call_token_secret)
        if agent is None:
            agent = load_agent_source(settings.agent) if settings.agent else default_agent(settings.instructions)
        self.agent = agent
        self.calls: dict[str, Call] = {}  # stream SID -> call in progress
        self.calls_handled = 0
        #: Records of the most recent finished calls (refused streams included).
        self.finished: collections.deque[CallRecord] = collections.deque(maxlen=RECENT_CALLS)

    # --- POST /twilio/voice ---------------------------------------------------------------

    async def voice_webhook(self, request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_WEBHOOK_BYTES:
            return PlainTextResponse("request body too large", status_code=413)
        form = await request.form()
        params = {key: str(value) for key, value in form.items()}
        if not self._webhook_signed(request, params):
            return PlainTextResponse("invalid Twilio signature", status_code=403)
        call_sid = params.get("CallSid", "")
        if not call_sid:
            return PlainTextResponse("missing CallSid", status_code=400)
        parameters = {"callSid": call_sid, "from": params.get("From", ""), "to": params.get("To", "")}
        parameters[TOKEN_PARAMETER] = self.tokens.issue(
            call_sid, parameters, now=time.time(), ttl_s=self.settings.call_token_ttl_s
        )
        log.info("[call=%s] incoming call from %s to %s", call_sid, parameters["from"] or "?", parameters["to"] or "?")
        return Response(self.stream_twiml(parameters), media_type="application/xml")

    def stream_twiml(self, parameters: dict[str, str]) -> str:
        stream = Stream(url=self.settings.stream_url)
        for name, value in parameters.items():
            stream.parameter(name=name, value=value)
        connect = Connect()
        connect.append(stream)
        response = VoiceResponse()
        response.append(connect)
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
        call = Call(websocket, self.settings, self.tokens, self.agent, on_start=self._started)
        try:
            await call.run()
        finally:
            self.calls.pop(call.record.stream_sid, None)
            self.finished.append(call.record)

    def _started(self, call: Call) -> None:
        self.calls[call.record.stream_sid] = call
        self.calls_handled += 1

    # --- GET /healthz ------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "active_calls": len(self.calls)})


def create_app(settings: Settings, *, agent: AgentSource | None = None) -> Starlette:
    gateway = Gateway(settings, agent)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if settings.insecure_skip_signature:
            log.warning(
                "!!! GATEWAY_INSECURE_SKIP_SIGNATURE is on: Twilio signatures are NOT checked. "
                "Anyone who finds this URL can place calls on your model account. Local development only. !!!"
            )
        yield

    app = Starlette(
        routes=[
            Route("/twilio/voice", gateway.voice_webhook, methods=["POST"]),
            WebSocketRoute("/twilio/media", gateway.media_stream),
            Route("/healthz", gateway.healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    return app
