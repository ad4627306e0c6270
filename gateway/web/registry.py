"""The calls of this gateway instance, and what Twilio says about them.

- the calls in progress, by stream SID (a call is registered when its stream's ``start``
  arrives, the first moment its call SID is known);
- the records of the most recently finished calls (refused streams included);
- Twilio's status callbacks by call SID, and answering-machine results that arrived before
  their stream started (AMD can finish before the ``start`` message reaches us);
- the calls this instance is the home of that another instance holds (``gateway.web.routing``).

Everything kept for finished calls is bounded: a process that runs for weeks keeps the last
``RECENT_CALLS`` of each.

This is the one module of the web edge that uses the bridge's runner (``gateway.bridge.runner``):
building and running a call, and what the web edge tells a call in progress.
"""

from __future__ import annotations

import collections
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Union

from starlette.websockets import WebSocket

from gateway.bridge.agents import AgentSource
from gateway.bridge.record import CallRecord
from gateway.bridge.runner import CallRunner, DigitHandler, EventHook
from gateway.security import CallTokens
from gateway.settings import Settings
from gateway.twilio.rest import TwilioRest

__all__ = ["RECENT_CALLS", "CallEndHook", "CallRunner", "CallRecord", "CallRegistry", "CallWiring", "DigitHandler", "EventHook"]

#: Finished calls whose records, statuses and early AMD results are kept in memory.
RECENT_CALLS = 200

#: ``on_call_end(record)``: the record of every call that started, once it is over (to store
#: it, send it on, count it). It may be async; it runs after the call, so it delays no call's
#: audio, but a sync one runs on the event loop and must be quick. What it raises is logged.
CallEndHook = Callable[[CallRecord], Union[None, Awaitable[None]]]

log = logging.getLogger("gateway.app")


@dataclass(frozen=True)
class CallWiring:
    """What every call is built with: the settings, the token checker, the agent, the REST
    client and the application's hooks."""

    settings: Settings
    tokens: CallTokens
    agent: AgentSource
    rest: TwilioRest
    on_digit: DigitHandler | None = None
    on_event: EventHook | None = None
    on_call_end: CallEndHook | None = None


class CallRegistry:
    def __init__(self, recent: int = RECENT_CALLS, on_ended: Callable[[CallRecord], None] | None = None,
                 on_started: Callable[[CallRunner], None] | None = None) -> None:
        self.recent = recent
        #: Told every call whose ``start`` arrived, at once (the router: its home): must be quick.
        self.on_started = on_started
        #: Told every finished stream's record at once (the gateway's metrics): must be quick.
        self.on_ended = on_ended
        #: Stream SID -> call in progress.
        self.calls: dict[str, CallRunner] = {}
        #: Records of the most recent finished calls (refused streams included), oldest first.
        self.finished: collections.deque[CallRecord] = collections.deque(maxlen=recent)
        #: Twilio status callbacks, by call SID (bounded): ``[{"status", "at", "duration_s"?}]``.
        self.statuses: collections.OrderedDict[str, list[dict[str, str]]] = collections.OrderedDict()
        #: Answering-machine results that arrived before their stream started, by call SID.
        self.early_amd: collections.OrderedDict[str, str] = collections.OrderedDict()
        #: Calls this instance is the home of, held by another instance: call SID -> its URL.
        self.held_elsewhere: collections.OrderedDict[str, str] = collections.OrderedDict()

    async def run(self, websocket: WebSocket, wiring: CallWiring) -> None:
        """One call on an accepted Media Streams socket, until it is over: in ``calls`` from its
        ``start``, then its record in ``finished``."""
        call = CallRunner(websocket, wiring.settings, wiring.tokens, wiring.agent, on_start=self.started,
                    rest=wiring.rest, on_digit=wiring.on_digit, on_event=wiring.on_event)
        try:
            await call.run()
        finally:
            self.ended(call)
        if wiring.on_call_end is not None and call.record.call_sid:
            await self._tell(wiring.on_call_end, call.record)

    @staticmethod
    async def _tell(hook: CallEndHook, record: CallRecord) -> None:
        try:
            told = hook(record)
            if inspect.isawaitable(told):
                await told
        except Exception:  # the application's bug must not touch the gateway
            log.exception("[call=%s] the on_call_end hook failed", record.call_sid)

    def started(self, call: CallRunner) -> None:
        """The call's ``start`` arrived: it is in progress (and may have an early AMD result)."""
        self.calls[call.record.stream_sid] = call
        answered_by = self.early_amd.pop(call.call_sid, None)
        if answered_by is not None:
            call.answered_by(answered_by)
        if self.on_started is not None:
            self.on_started(call)

    def ended(self, call: CallRunner) -> None:
        self.calls.pop(call.record.stream_sid, None)
        self.finished.append(call.record)
        if self.on_ended is not None:
            try:
                self.on_ended(call.record)
            except Exception:  # metrics or traces must never cost a call its record
                log.exception("[call=%s] metrics or traces of the finished call failed", call.record.call_sid or "-")

    def find(self, call_sid: str) -> CallRunner | None:
        """The call in progress with this call SID."""
        return next((c for c in self.calls.values() if c.call_sid == call_sid), None)

    def ended_recently(self, call_sid: str) -> bool:
        """Whether a call with this SID finished here lately (its record is in ``finished``)."""
        return any(record.call_sid == call_sid for record in self.finished)

    def twilio_status(self, call_sid: str, status: str, duration_s: str | None = None) -> str:
        """A status callback: kept by call SID, and noted in the call's record if in progress.
        Says which."""
        entry = {"status": status, "at": str(round(time.time(), 3))}
        if duration_s is not None:
            entry["duration_s"] = duration_s
        self.statuses.setdefault(call_sid, []).append(entry)
        self.statuses.move_to_end(call_sid)
        self.trim(self.statuses)
        call = self.find(call_sid)
        if call is None:
            return "kept"
        call.twilio_status(status)
        return "told the call"

    def answered_by(self, call_sid: str, answered_by: str) -> str:
        """An answering-machine result: told to the call, or kept until its stream starts
        (dropped if the call has ended). Says which."""
        call = self.find(call_sid)
        if call is not None:
            call.answered_by(answered_by)
            return "told the call"
        if self.ended_recently(call_sid):
            log.info("[call=%s] answering-machine result %r came after the call ended: dropped", call_sid, answered_by)
            return "dropped: the call has ended"
        self.early_amd[call_sid] = answered_by
        self.trim(self.early_amd)
        return "kept until the stream starts"

    def in_progress(self, now: float) -> list[dict[str, object]]:
        """The calls in progress, as ``GET /calls`` lists them."""
        return [
            {
                "call_sid": c.record.call_sid, "stream_sid": c.record.stream_sid, "from": c.record.from_,
                "to": c.record.to, "agent": c.record.agent, "direction": c.record.direction,
                "duration_s": round(now - c.record.started_at, 1), "speaking": c.speaking,
            }
            for c in self.calls.values()
        ]

    def trim(self, recent: collections.OrderedDict[str, Any]) -> None:
        """Keep the ``recent`` most recently touched entries."""
        while len(recent) > self.recent:
            recent.popitem(last=False)
