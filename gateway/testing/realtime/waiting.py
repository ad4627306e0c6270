"""``Changes``: lets tests wait for a state instead of sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

__all__ = ["Changes"]

T = TypeVar("T")


class Changes:
    """A change counter with waiters: the owner calls ``notify()`` after every change to the
    state it records; ``wait_until`` re-checks its predicate after each one."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait_until(self, predicate: Callable[[], T], *, timeout: float, what: str,
                         gone: Callable[[], str | None] = lambda: None) -> T:
        """Return ``predicate()`` once truthy. Raises ``TimeoutError`` after ``timeout``
        seconds, or ``ConnectionError`` as soon as ``gone()`` explains why it never will be."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = predicate()
            if result:
                return result
            reason = gone()
            if reason:
                raise ConnectionError(f"{reason} while waiting for {what}")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
            event = self._event
            try:
                async with asyncio.timeout(remaining):
                    await event.wait()
            except TimeoutError:
                pass
