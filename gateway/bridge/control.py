"""``CallControl``: what the gateway's tools (``gateway.tools``) can do to the live call they
run in: hang up, transfer to a person, collect keypresses.

Each request goes to the call (``gateway.bridge.call.Call``), which decides when to act; the
tool waits for the call's answer. The rule for ending or transferring a call is "never
mid-sentence": the gateway acts only once the agent's words have been *heard*, not merely
sent. Two facts make that exact:

- The SDK puts a tool's ``tool_start`` event on the session's event queue just before it runs
  the tool function (agents/realtime/session.py, function-tool dispatch), behind every audio
  event of the response that called it. So when the gateway's event consumer reaches that
  ``tool_start``, everything the agent said before calling the tool has been sent to Twilio.
- Twilio echoes a mark once the audio before it has played (see ``Playback``), so "no marks
  pending" means the caller has heard it all.

If the caller talks over the hand-off sentence of a transfer, the transfer waits for the agent
to finish speaking again.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

from gateway.bridge.actions import Action
from gateway.bridge.call import Call
from gateway.bridge.timing import DigitsResult


class CallControl:
    """The requests go to ``call`` at once; the actions they produce wait in ``take()`` for
    the call's timer task, which ``wake`` (the call's one wake-up) rouses. The runner hands
    each tool the call's reply with ``answer``."""

    def __init__(self, call: Call, wake: asyncio.Event, clock: Callable[[], float] = time.monotonic) -> None:
        self._call = call
        self._wake = wake
        self._clock = clock
        self._pending: list[Action] = []
        self._waiters: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)

    # --- What the call is doing (for the test kit and the tools) -----------------------------

    @property
    def ending(self) -> str | None:
        """"hang_up" or "transfer" once the call is being ended by the gateway."""
        return self._call.ending

    @property
    def collecting(self) -> bool:
        """A keypad collection is waiting for keypresses."""
        return self._call.collecting

    def quiet(self) -> bool:
        """No response in progress and nothing sent still unheard."""
        return self._call.quiet()

    # --- Requests ------------------------------------------------------------------------------

    async def hang_up(self) -> str:
        """End the call once the agent's goodbye has been heard."""
        return await self._request(lambda now, waiter: self._call.request_hang_up(now, waiter))

    def end_now(self) -> None:
        """An operator ends the call at once (``Call.operator_hang_up``); the call's timer task
        carries it out."""
        self._pending += self._call.operator_hang_up(self._clock())
        self._wake.set()

    async def transfer(self, target: str) -> str:
        """Transfer the caller to an allowed target once the hand-off has been heard."""
        return await self._request(lambda now, waiter: self._call.request_transfer(target, now, waiter))

    async def collect_digits(self, count: int | None, terminator: str | None, timeout_s: float) -> DigitsResult:
        return await self._request(
            lambda now, waiter: self._call.request_digits(count, terminator, timeout_s, now, waiter))

    async def _request(self, make: Callable[[float, int], list[Action]]) -> Any:
        waiter = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._waiters[waiter] = future
        try:
            self._pending += make(self._clock(), waiter)
            self._wake.set()
            return await future
        finally:
            self._waiters.pop(waiter, None)

    def take(self) -> list[Action]:
        """The actions requests produced, to carry out now."""
        pending, self._pending = self._pending, []
        return pending

    def answer(self, waiter: int, value: Any) -> None:
        future = self._waiters.get(waiter)
        if future is not None and not future.done():
            future.set_result(value)
