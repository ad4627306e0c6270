"""``CallerClock``: the one clock a simulated call is timed by.

Caller-clock time is seconds since the stream started, ``(monotonic - t0) * speed``. Everything
the caller records (frame timestamps, what it heard and when, mark echoes, clears) is in
caller-clock time, so a call run at ``speed=10`` records the same times as one run at
``speed=1``, only ten times sooner. Timeouts given to the ``wait_*`` helpers stay in real
seconds: they protect the test suite, not the call.

Loops scheduled on this clock use absolute deadlines (``sleep_until(k * 0.02)``), never
accumulated ``sleep(0.02)``, so they cannot drift: a late wake-up is caught up, not carried.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

__all__ = ["CallerClock"]


class CallerClock:
    """Seconds since stream start, scaled by ``speed``; frozen by ``stop()`` when the call ends.

    Before ``start()`` the time is 0.0; after ``stop()`` it stays where it stopped, so the
    record of a finished call does not change however late it is read.
    """

    __slots__ = ("speed", "_monotonic", "_t0", "_stopped_at")

    def __init__(
        self, speed: float = 1.0, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        if not (isinstance(speed, (int, float)) and math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a positive finite number, not {speed!r}")
        self.speed = float(speed)
        self._monotonic = monotonic
        self._t0: float | None = None
        self._stopped_at: float | None = None

    @property
    def started(self) -> bool:
        return self._t0 is not None

    @property
    def stopped(self) -> bool:
        return self._stopped_at is not None

    def start(self) -> None:
        """Time 0 is now (the stream's ``start`` message)."""
        if self._t0 is not None:
            raise RuntimeError("the caller clock is already running")
        self._t0 = self._monotonic()

    def stop(self) -> None:
        """Freeze the clock at the current time (idempotent)."""
        if self._stopped_at is None:
            self._stopped_at = self.now()

    def now(self) -> float:
        """Caller-clock seconds since stream start."""
        if self._stopped_at is not None:
            return self._stopped_at
        if self._t0 is None:
            return 0.0
        return (self._monotonic() - self._t0) * self.speed

    def to_monotonic(self, t: float) -> float:
        """The ``time.monotonic()`` instant of caller-clock time ``t``, to compare the caller's
        record with other processes' monotonic timestamps (e.g. the Realtime server's)."""
        if self._t0 is None:
            raise RuntimeError("the caller clock has not started")
        return self._t0 + t / self.speed

    def real_delay(self, t: float) -> float:
        """Real seconds from now until caller-clock time ``t`` (0 if it has passed or the clock
        is not running)."""
        if self._t0 is None or self._stopped_at is not None:
            return 0.0
        return max(0.0, (self._t0 + t / self.speed) - self._monotonic())

    async def sleep_until(self, t: float) -> None:
        """Sleep until caller-clock time ``t`` (an absolute deadline, so loops do not drift)."""
        await asyncio.sleep(self.real_delay(t))
