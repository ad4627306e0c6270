"""The gateway's start-up and shutdown work, and how it runs whether or not a lifespan does.

Start-up, once per gateway:

- a loud warning if ``GATEWAY_INSECURE_SKIP_SIGNATURE`` is on;
- the gateway's ``PeerLogFilter`` on the loggers whose lines name peers (``gateway.ratelog``):
  a peer opening thousands of connections gets a few lines, not one per connection;
- ``gateway.bridge.sdk.prepare()``: the Agents SDK's one-off costs (about 100 ms on the first
  session of the process, about 20 ms per raw message before it) paid now, not during calls.

Shutdown: the Twilio REST client's pooled connections are closed, and the filter removed (its
count of lines held back and never told is logged).

``create_app``'s own lifespan does both. But a server runs only the outermost application's
lifespan: Starlette does not pass lifespan events to mounted applications, so a gateway mounted
in another app (``Mount("/phone", app=create_app(settings))``) never sees one. Hence two ways in:

- ``lifespan()``, for the host application to compose into its own: start-up at start,
  shutdown at stop (docs/mounting.md);
- ``guarded(endpoint)``: every gateway endpoint is wrapped so that if no lifespan has run the
  start-up, the first request to the gateway runs it (once, logged) before it is handled. A
  mounted gateway therefore never skips it; it pays for it in that first request, and without
  a lifespan nothing closes the REST client before the process exits.
"""

from __future__ import annotations

import asyncio

import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from starlette.requests import HTTPConnection

from gateway.bridge import sdk
from gateway.ratelog import PeerLogFilter
from gateway.settings import Settings
from gateway.twilio.rest import TwilioRest

__all__ = ["Startup"]

log = logging.getLogger("gateway.app")

Endpoint = TypeVar("Endpoint", bound=Callable[[Any], Awaitable[Any]])


class Startup:
    def __init__(self, settings: Settings, rest: TwilioRest,
                 background: Callable[[], Coroutine[Any, Any, None]] | None = None) -> None:
        self.settings = settings
        self.rest = rest
        #: Work that runs for the gateway's life (the event-loop lag probe), started with it.
        self.background = background
        self._task: asyncio.Task[None] | None = None
        #: Whether start-up has run (it runs at most once).
        self.done = False
        #: What ran it: ``"lifespan"``, or the first request's method and path.
        self.ran_by: str | None = None
        #: Lines naming a peer, limited per peer while the gateway runs.
        self.peer_log = PeerLogFilter()

    def run(self, by: str = "lifespan") -> bool:
        """Start up, unless done already; True if this call did it."""
        if self.done:
            return False
        self.done = True  # once, even if a step fails: a failing warm-up must not repeat per request
        self.ran_by = by
        began = time.perf_counter()
        if self.settings.insecure_skip_signature:
            log.warning(
                "!!! GATEWAY_INSECURE_SKIP_SIGNATURE is on: Twilio signatures are NOT checked. "
                "Anyone who finds this URL can place calls on your model account. Local development only. !!!"
            )
        self.peer_log.install()
        sdk.prepare()
        if self.background is not None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # started outside an event loop (a script, a test): nothing to run on
                log.info("start-up outside an event loop: the background work does not run")
            else:
                self._task = loop.create_task(self.background(), name="gateway-background")
        log.info("start-up done (%s) in %.0f ms", by, (time.perf_counter() - began) * 1000)
        return True

    def close(self) -> None:
        """Shutdown: close the Twilio REST client's pooled connections; remove the filter."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.peer_log.uninstall()
        untold = self.peer_log.limiter.untold
        if untold:
            log.info("%d log line(s) naming peers were held back by the per-peer limit since the last ones written",
                     untold)
        self.rest.close()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """Start-up, then shutdown when the block ends. Usable as a Starlette or FastAPI
        ``lifespan`` itself (``app`` is not used), or inside the host application's own."""
        self.run("lifespan")
        try:
            yield
        finally:
            self.close()

    def guarded(self, endpoint: Endpoint) -> Endpoint:
        """``endpoint``, after running the start-up if nothing has yet (a mounted gateway)."""

        @functools.wraps(endpoint)
        async def first_use_starts_up(connection: HTTPConnection) -> Any:
            if not self.done and self.run(f"first request: {connection.url.path}"):
                log.warning(
                    "gateway start-up ran on its first request, not at start: no lifespan ran it (a "
                    "mounted app gets none). Compose app.state.gateway.lifespan() into your app's "
                    "lifespan to start up at start and close the Twilio REST client at shutdown."
                )
            return await endpoint(connection)

        return first_use_starts_up  # type: ignore[return-value]
