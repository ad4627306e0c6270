"""``GET /healthz`` (liveness, with the process's vital signs) and ``GET /readyz`` (readiness,
for the load balancer: 503 from the moment the gateway drains)."""

from __future__ import annotations

import asyncio
import os

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.web.drain import Drain
from gateway.web.registry import CallRegistry

__all__ = ["Health"]


class Health:
    def __init__(self, registry: CallRegistry, drain: Drain) -> None:
        self.registry = registry
        self.drain = drain

    async def healthz(self, request: Request) -> Response:
        """Liveness, and the process's vital signs (for dashboards and soak runs)."""
        return JSONResponse({
            "status": "ok",
            "pid": os.getpid(),  # which worker of gateway serve --workers N answered
            "active_calls": len(self.registry.calls),
            "finished_calls": len(self.registry.finished),
            "tasks": len(asyncio.all_tasks()),
        })

    async def readyz(self, request: Request) -> Response:
        """Readiness: 503 once draining (``/healthz`` stays 200: do not kill the process)."""
        active = len(self.registry.calls)
        if self.drain.draining:
            return JSONResponse({"status": "draining", "active_calls": active}, status_code=503)
        return JSONResponse({"status": "ready", "active_calls": active})
