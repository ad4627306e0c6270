"""Draining: no new calls, and the calls in progress go on until they end (or a deadline).

``gateway serve`` drains on SIGTERM (``gateway.serving.DrainingServer``). While draining, the
voice webhook turns new calls away, ``POST /calls`` answers 503 and ``/readyz`` answers 503;
``/healthz`` stays 200 (the process is alive).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sized

__all__ = ["Drain"]

log = logging.getLogger("gateway.app")


class Drain:
    def __init__(self, in_progress: Sized) -> None:
        #: The calls in progress (only their number is read).
        self.in_progress = in_progress
        #: Set by ``run()``, for good: a drained process does not take calls again.
        self.draining = False

    async def run(self, timeout_s: float, poll_s: float = 0.1) -> int:
        """Stop taking calls; wait for the calls in progress to end, at most ``timeout_s``.
        Returns how many are still going (they end with the process)."""
        self.draining = True
        log.warning("draining: not taking new calls; %d in progress; waiting up to %.0f s",
                    len(self.in_progress), timeout_s)
        deadline = time.monotonic() + timeout_s
        while len(self.in_progress) and time.monotonic() < deadline:
            await asyncio.sleep(poll_s)
        if len(self.in_progress):
            log.warning("drain timeout: %d call(s) still in progress end now", len(self.in_progress))
        else:
            log.warning("drained: no calls in progress")
        return len(self.in_progress)
