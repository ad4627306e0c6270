"""The Starlette application, built by ``create_app`` from one ``Settings`` object.

Routes (each from its module in ``gateway.web``; endpoints accept, check, wire and hand over):

- ``POST /twilio/voice``: Twilio's incoming-call webhook. Signature checked (403 otherwise);
  answers TwiML ``<Connect><Stream url="wss://PUBLIC_HOST/twilio/media">`` with the call's
  parameters and a per-call token (``webhooks``).
- ``WS /twilio/media``: the Media Streams WebSocket. Handshake signature checked (upgrade
  refused otherwise); then one call runs until it ends (``media``, ``gateway.bridge.runner``).
- ``POST /twilio/status``, ``POST /twilio/amd``: Twilio's call-status and answering-machine
  callbacks (signature checked), recorded with the call; the agent is told who answered. A
  callback for a call whose stream another instance holds is forwarded there (``routing``).
- ``/internal/v1/...``: what instances of one deployment ask each other, signed (``internal``).
- ``POST /calls`` (bearer ``GATEWAY_API_KEY``): place an outbound call; ``GET /calls``: the
  calls in progress on every instance; ``POST /calls/{call_sid}/hangup``: end one, wherever it
  is (``calls_api``, ``fleet``).
- ``GET /console``: the web console (docs/console.md), behind ``GATEWAY_API_KEY`` with a login
  page: live calls, recent calls from the call store, each call's page (``console``).
- ``GET /metrics``: Prometheus metrics, unless ``GATEWAY_METRICS_PORT`` moves them or
  ``GATEWAY_METRICS=false`` (``gateway.metrics``).
- ``GET /healthz``: liveness, with the number of active calls; ``GET /readyz``: readiness,
  503 while draining (``health``, ``drain``).

Finished calls go to the call store (``gateway.store``: SQLite under ``GATEWAY_DATA_DIR``, or
PostgreSQL), from a writer thread, and with ``GATEWAY_RECORD`` each call is recorded
(``gateway.recording``).

``app.state.gateway`` is the ``Gateway``: the parts, and what the server and the test kit use
(``calls``, ``finished``, ``statuses``, ``draining``, ``drain()``, ``lifespan()``). To run the
gateway inside another Starlette or FastAPI application, see docs/mounting.md.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Sequence

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from gateway.bridge.agents import AgentSource, default_agent, load_agent_source
from gateway.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from gateway.metrics import LoopLag, Metrics, merge
from gateway.tracing import CallSpans
from gateway.security import CallTokens, TwilioSignatures
from gateway.recording import keep_recordings
from gateway.settings import Settings
from gateway.store import CallStore, open_store
from gateway.store.writer import RecordWriter
from gateway.twilio.rest import TwilioRest
from gateway.web.calls_api import CallsApi
from gateway.web.console import Console
from gateway.web.drain import Drain
from gateway.web.fleet import Fleet
from gateway.web.health import Health
from gateway.web.internal import METRICS_PATH, InternalEndpoints
from gateway.web.media import MediaEndpoint
from gateway.web.peers import Peers
from gateway.web.registry import CallEndHook, CallRecord, CallRegistry, CallRunner, CallWiring, DigitHandler, EventHook
from gateway.web.routing import CallRouter
from gateway.web.startup import Startup
from gateway.web.twilio_forms import TwilioForms
from gateway.web.webhooks import TwilioWebhooks

__all__ = ["Gateway", "create_app"]

#: At shutdown, records still queued for the store get this long to be written; what is left
#: is logged in full (``gateway.store.writer``).
STORE_CLOSE_TIMEOUT_S = 10.0


class Gateway:
    """The gateway's parts, composed: settings, checkers, the agent, the REST client, the calls
    and each group of endpoints. ``routes`` lists them; ``lifespan()`` starts up and shuts down."""

    def __init__(
        self,
        settings: Settings,
        agent: AgentSource | None = None,
        on_digit: DigitHandler | None = None,
        on_event: EventHook | None = None,
        on_call_end: CallEndHook | None = None,
        siblings: Sequence[str] = (),
    ) -> None:
        self.settings = settings
        self.signatures = TwilioSignatures(settings.twilio_auth_token)
        self.tokens = CallTokens.derived_from(settings.twilio_auth_token, settings.call_token_secret)
        if agent is None:
            agent = load_agent_source(settings.agent) if settings.agent else default_agent(settings.instructions)
        self.agent = agent
        self.rest = TwilioRest(settings.twilio_account_sid, settings.twilio_auth_token, base_url=settings.twilio_api_base_url)
        #: Where finished calls are kept (None: GATEWAY_STORE_CALLS=false); written by ``writer``,
        #: from its thread. Nothing connects before the first call ends or the first read.
        self.store: CallStore | None = open_store(settings) if settings.store_calls else None
        self.writer = RecordWriter(self.store, redact=settings.redact_digits) if self.store is not None else None
        # The gauges read the registry, the drain and the writer when scraped.
        self.metrics = Metrics(settings.audio_mode, active=lambda: len(self.registry.calls),
                               draining=lambda: self._drain.draining,
                               records_waiting=lambda: self.writer.waiting if self.writer is not None else 0)
        self.spans = CallSpans()
        self.registry = CallRegistry(on_ended=self._call_ended, on_started=self._call_started)
        #: This instance among the others (``GATEWAY_INSTANCE_URL``; ``siblings``: the other
        #: workers of ``gateway serve --workers N``), and the routing of callbacks between them.
        self.peers = Peers.derived_from(settings.twilio_auth_token, settings.call_token_secret,
                                        instance_url=settings.instance_url, siblings=siblings)
        self.router = CallRouter(self.registry, self.peers)
        self._registering: set[asyncio.Task[None]] = set()
        self._drain = Drain(self.registry.calls)
        self.startup = Startup(settings, self.rest, background=self._background)
        wiring = CallWiring(settings, self.tokens, agent, self.rest, on_digit, on_event, on_call_end)
        forms = TwilioForms(settings, self.signatures)
        self.webhooks = TwilioWebhooks(settings, forms, self.tokens, self._drain, self.router)
        self.media = MediaEndpoint(settings, self.signatures, self.registry, wiring)
        self.fleet = Fleet(self.registry, self.peers, self.store)
        self.calls_api = CallsApi(settings, self.tokens, self.rest, self._drain, self.peers, self.fleet)
        self.internal = InternalEndpoints(self.peers, self.router, self.fleet,
                                          self.metrics.text if settings.metrics else None)
        self.health = Health(self.registry, self._drain)
        self.console = Console(settings, self.registry, self.store, self.fleet)

    @property
    def routes(self) -> list[BaseRoute]:
        """The gateway's routes, each running the start-up first if no lifespan has."""
        guarded = self.startup.guarded
        return [
            Route("/twilio/voice", guarded(self.webhooks.voice), methods=["POST"]),
            Route("/twilio/status", guarded(self.webhooks.status), methods=["POST"]),
            Route("/twilio/amd", guarded(self.webhooks.amd), methods=["POST"]),
            WebSocketRoute("/twilio/media", guarded(self.media.stream)),
            Route("/calls", guarded(self.calls_api.place_call), methods=["POST"]),
            Route("/calls", guarded(self.calls_api.list_calls), methods=["GET"]),
            Route("/calls/{call_sid}/hangup", guarded(self.calls_api.hang_up), methods=["POST"]),
            Route("/healthz", guarded(self.health.healthz), methods=["GET"]),
            Route("/readyz", guarded(self.health.readyz), methods=["GET"]),
            *self.internal.routes(guarded),
            *self.console.routes(guarded),
            # With GATEWAY_METRICS_PORT, gateway serve serves them on that port instead.
            *([] if self.settings.metrics_port is not None or not self.settings.metrics else
              [Route("/metrics", guarded(self.metrics_endpoint), methods=["GET"])]),
        ]

    async def _background(self) -> None:
        """For the gateway's life: the event-loop lag probe (unless ``GATEWAY_METRICS=false``),
        the recordings' retention (``GATEWAY_RECORDING_RETENTION_DAYS``, whether or not
        ``GATEWAY_RECORD`` is on now: older recordings still expire) and, with an instance URL,
        this instance's announcements in the store (``gateway.web.fleet``)."""
        work = [keep_recordings(self.settings), self.fleet.announce_forever()]
        if self.settings.metrics:
            work.append(LoopLag(self.metrics).run())
        await asyncio.gather(*work)

    def _call_started(self, call: CallRunner) -> None:
        """A call's stream started here: if another instance is its home (an outbound call it
        placed), tell it, in a task of its own (the call does not wait)."""
        home = call.info.parameters.get("home") if call.info is not None else None
        if not home or self.peers.instance_url is None or self.peers.is_me(home):
            return
        task = asyncio.create_task(self.router.register(call.call_sid, home), name=f"held-{call.call_sid}")
        self._registering.add(task)
        task.add_done_callback(self._registering.discard)

    def _call_ended(self, record: CallRecord) -> None:
        """Every finished stream's record: into the metrics, the traces if configured, and the
        store (queued for its writer's thread) if it was a call (a refused stream has no SID)."""
        if self.settings.metrics:
            self.metrics.call_ended(record)
        self.spans.call_ended(record)
        if self.writer is not None and record.call_sid:
            self.writer.start()  # at the first call (a mounted gateway may have had no lifespan)
            self.writer.submit(record)

    async def metrics_endpoint(self, request: Request) -> Response:
        """``GET /metrics``: Prometheus text format (``gateway.metrics``); with sibling workers,
        theirs and this one's together (``gateway.metrics.merge``)."""
        return Response(await self.metrics_text(), media_type=METRICS_CONTENT_TYPE)

    async def metrics_text(self) -> bytes:
        """This worker's metrics, gathered with its siblings' (those that answer)."""
        own = self.metrics.text()
        if not self.peers.siblings:
            return own
        theirs = await asyncio.gather(*(self.peers.get(url, METRICS_PATH) for url in self.peers.siblings))
        return merge([own, *(text for text in theirs if text is not None)])

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """Start-up now, shutdown when the block ends (``gateway.web.startup``); at shutdown the
        records still queued are written (or logged in full if the store stays away)."""
        async with self.startup.lifespan(app):
            try:
                yield
            finally:
                await self.fleet.withdraw()
                if self.writer is not None:
                    await asyncio.to_thread(self.writer.close, STORE_CLOSE_TIMEOUT_S)

    # --- What the server (gateway.serving) and the test kit read ---------------------------------

    @property
    def calls(self) -> dict[str, CallRunner]:
        """The calls in progress, by stream SID."""
        return self.registry.calls

    @property
    def finished(self) -> collections.deque[CallRecord]:
        """The records of the most recent finished calls."""
        return self.registry.finished

    @property
    def statuses(self) -> collections.OrderedDict[str, list[dict[str, str]]]:
        """Twilio status callbacks, by call SID."""
        return self.registry.statuses

    @property
    def draining(self) -> bool:
        return self._drain.draining

    async def drain(self, timeout_s: float, poll_s: float = 0.1) -> int:
        """Stop taking calls; wait for the calls in progress to end, at most ``timeout_s``.
        Returns how many are still going (``gateway.web.drain``)."""
        return await self._drain.run(timeout_s, poll_s)


def create_app(
    settings: Settings,
    *,
    agent: AgentSource | None = None,
    on_digit: DigitHandler | None = None,
    on_event: EventHook | None = None,
    on_call_end: CallEndHook | None = None,
    siblings: Sequence[str] = (),
) -> Starlette:
    """The gateway. ``agent`` overrides ``GATEWAY_AGENT``; ``on_digit`` handles keypresses in
    code (menus, shortcuts) before the model hears of them; ``on_event(call, event)`` sees
    every session event of every call (see ``gateway.bridge.runner.EventHook``);
    ``on_call_end(record)`` gets the record of every call that started, once it is over
    (``gateway.web.registry.CallEndHook``). ``siblings``: the instance URLs of the other workers
    of ``gateway serve --workers N`` (``GET /metrics`` gathers theirs)."""
    gateway = Gateway(settings, agent, on_digit, on_event, on_call_end, siblings)
    app = Starlette(routes=gateway.routes, lifespan=gateway.lifespan)
    app.state.gateway = gateway
    return app
