"""``gateway serve``'s server: uvicorn, with a graceful drain on SIGTERM.

A deploy stops the old process with SIGTERM. Ending its calls then would hang up on people
mid-sentence, so the first SIGTERM (or Ctrl-C) drains instead:

- ``/readyz`` answers 503 at once (the load balancer stops sending new work); ``/healthz``
  stays 200 (the process is alive, do not kill it);
- new incoming-call webhooks are turned away: a ``<Redirect>`` to
  ``GATEWAY_DRAIN_REDIRECT_URL`` (another instance), else 503 (Twilio then tries the number's
  fallback URL); ``POST /calls`` answers 503;
- calls in progress go on until they end, or until ``GATEWAY_DRAIN_TIMEOUT_S`` has passed;
- then the server shuts down as usual and the process exits with status 0.

A second signal exits at once (uvicorn's own handling).
"""

from __future__ import annotations

import asyncio
import signal
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn

if TYPE_CHECKING:
    from gateway.app import Gateway

__all__ = ["DrainingServer"]


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, gateway: Gateway, drain_timeout_s: float) -> None:
        super().__init__(config)
        self.gateway = gateway
        self.drain_timeout_s = drain_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Future[None] | None = None

    async def startup(self, sockets=None) -> None:  # noqa: ANN001 - uvicorn's signature
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # uvicorn installs this with signal.signal: it runs in the main thread, between two
        # steps of the event loop. The first SIGTERM/SIGINT drains (and is not re-raised at
        # exit, so the exit status is 0); any later one is uvicorn's.
        if sig in (signal.SIGTERM, signal.SIGINT) and self._drain_task is None and self._loop is not None:
            self._drain_task = self._loop.create_future()  # claims the drain before it starts
            self._loop.call_soon_threadsafe(self._start_drain)
            return
        super().handle_exit(sig, frame)

    def _start_drain(self) -> None:
        self._drain_task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        await self.gateway.drain(self.drain_timeout_s)
        self.should_exit = True
