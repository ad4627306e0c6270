"""Liveness stays 200 while draining; readiness answers 503 from the drain's first moment."""

from __future__ import annotations

import json

from gateway.web.drain import Drain
from gateway.web.health import Health
from gateway.web.registry import CallRegistry


async def test_ready_until_draining_and_alive_throughout() -> None:
    registry = CallRegistry()
    drain = Drain(registry.calls)
    health = Health(registry, drain)
    ready = await health.readyz(None)  # type: ignore[arg-type]
    assert ready.status_code == 200 and json.loads(ready.body) == {"status": "ready", "active_calls": 0}
    await drain.run(timeout_s=0)
    not_ready = await health.readyz(None)  # type: ignore[arg-type]
    assert not_ready.status_code == 503 and json.loads(not_ready.body) == {"status": "draining", "active_calls": 0}
    alive = await health.healthz(None)  # type: ignore[arg-type]
    body = json.loads(alive.body)
    assert alive.status_code == 200 and body["status"] == "ok" and body["tasks"] >= 1
    assert (body["active_calls"], body["finished_calls"]) == (0, 0)
