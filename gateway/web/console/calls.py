"""What the console shows, read from where it is: the calls in progress from the registry, the
finished ones from the store, their recordings from ``GATEWAY_DATA_DIR``.

Nothing here blocks the event loop. The store's methods block (``gateway.store``), turning a
long call into JSON takes milliseconds, and drawing a timeline takes tens of them: each runs
in a thread. The live view is read on the loop, as ``GET /calls`` reads it: a few
microseconds a call.

Finished calls reach the store a moment after they end (``gateway.store.writer`` writes from
a queue), and not at all with ``GATEWAY_STORE_CALLS=false``. So the records this instance still
holds in memory (``CallRegistry.finished``, the last 200) fill the gap: a call the store does
not have (yet) is read from memory, and the recent list adds this instance's calls the store
has not written yet. When the store fails (a database away), the console says so and shows
what memory has.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from pathlib import Path
from typing import Any

from gateway.bridge.record import CallRecord
from gateway.recording import stored_recording
from gateway.settings import Settings
from gateway.store import CallStore
from gateway.store.stored import stored_call, summary
from gateway.web.fleet import Fleet
from gateway.web.registry import CallRegistry

__all__ = ["ConsoleCalls", "Listing", "recording_file"]

log = logging.getLogger("gateway.app")

#: Rendered timelines kept (a finished call's picture never changes).
TIMELINES_KEPT = 16


class Listing(dict[str, Any]):
    """``{"calls": [summary, ...], "source": "store" | "memory", "error"?: str}``."""


def recording_file(data_dir: Path, relative: object) -> Path | None:
    """The recording file a stored call names, if it is a WAV inside ``data_dir`` and still
    there (``gateway.recording.stored_recording``). Blocks: call it from a thread."""
    path = stored_recording(data_dir, relative)
    return path if path is not None and path.is_file() else None


class ConsoleCalls:
    def __init__(self, settings: Settings, registry: CallRegistry, store: CallStore | None,
                 fleet: Fleet | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self.store = store
        #: Every instance's calls in progress (``gateway.web.fleet``); None: this one's only.
        self.fleet = fleet
        self._timelines: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._drawing = asyncio.Lock()  # one picture at a time: each takes a core for a while

    # --- Live -----------------------------------------------------------------------------------

    async def live(self, now: float) -> dict[str, Any]:
        """The calls in progress, on every instance (``Fleet.live``)."""
        if self.fleet is None:
            return {"now": round(now, 3), "calls": self.registry.in_progress(now)}
        return {"now": round(now, 3), **await self.fleet.live(now)}

    # --- Finished -------------------------------------------------------------------------------

    async def recent(self, limit: int) -> Listing:
        """The most recent finished calls, newest first."""
        held = self._held()
        return await asyncio.to_thread(self._recent, held, limit)

    async def call_json(self, call_sid: str) -> bytes | None:
        """A finished call in full, as JSON (``gateway.store.stored``), or None."""
        held = self._held(call_sid)

        def read() -> bytes | None:
            call = self._find(call_sid, held)
            return None if call is None else json.dumps(call, ensure_ascii=False, separators=(",", ":")).encode()

        return await asyncio.to_thread(read)

    async def recording(self, call_sid: str) -> Path | None:
        """The call's recording file, if it has one and it is where it must be."""
        held = self._held(call_sid)

        def find() -> Path | None:
            call = self._find(call_sid, held)
            return None if call is None else recording_file(self.settings.data_dir, call.get("recording"))

        return await asyncio.to_thread(find)

    async def timeline(self, call_sid: str) -> bytes | None:
        """The call's timeline picture (PNG), drawn from its stored form and its recording."""
        if call_sid in self._timelines:
            self._timelines.move_to_end(call_sid)
            return self._timelines[call_sid]
        held = self._held(call_sid)
        async with self._drawing:
            if call_sid in self._timelines:  # drawn while this request waited its turn
                return self._timelines[call_sid]
            png = await asyncio.to_thread(self._draw, call_sid, held)
        if png is not None:
            self._timelines[call_sid] = png
            while len(self._timelines) > TIMELINES_KEPT:
                self._timelines.popitem(last=False)
        return png

    # --- In threads -----------------------------------------------------------------------------

    def _recent(self, held: list[CallRecord], limit: int) -> Listing:
        if self.store is None:
            return Listing(calls=[summary(self._stored(r)) for r in held[:limit]], source="memory")
        try:
            stored = self.store.history(limit=limit)
        except Exception as exc:  # the database is away: say so, and show what memory has
            log.warning("console: the call store could not be read (%s); showing this instance's recent calls",
                        _describe(exc))
            return Listing(calls=[summary(self._stored(r)) for r in held[:limit]], source="memory",
                           error=f"the call store could not be read: {_describe(exc)}")
        known = {call["call_sid"] for call in stored}
        oldest = stored[-1]["started_at"] if len(stored) >= limit else float("-inf")
        unwritten = [summary(self._stored(r)) for r in held if r.call_sid not in known and r.started_at >= oldest]
        calls = sorted(stored + unwritten, key=lambda c: c.get("started_at") or 0.0, reverse=True)[:limit]
        return Listing(calls=calls, source="store")

    def _find(self, call_sid: str, held: list[CallRecord]) -> dict[str, Any] | None:
        if self.store is not None:
            try:
                call = self.store.get(call_sid)
            except Exception as exc:  # the database is away: memory may still have it
                log.warning("[call=%s] console: the call store could not be read (%s)", call_sid, _describe(exc))
                call = None
            if call is not None:
                return call
        return self._stored(held[0]) if held else None

    def _draw(self, call_sid: str, held: list[CallRecord]) -> bytes | None:
        from gateway.calltimeline import timeline_png  # numpy and the chart: only when asked

        call = self._find(call_sid, held)
        if call is None:
            return None
        return timeline_png(call, recording_file(self.settings.data_dir, call.get("recording")))

    def _stored(self, record: CallRecord) -> dict[str, Any]:
        return stored_call(record, redact=self.settings.redact_digits)

    # --- On the loop ----------------------------------------------------------------------------

    def _held(self, call_sid: str | None = None) -> list[CallRecord]:
        """The finished calls this instance holds (``call_sid``'s only, if given), newest first.
        Taken on the loop; the records of finished calls no longer change, so threads may read
        them."""
        return [r for r in reversed(self.registry.finished)
                if r.call_sid and (call_sid is None or r.call_sid == call_sid)]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
