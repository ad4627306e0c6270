"""Finished calls into the store, from a thread of their own: writing never touches a call.

``submit(record)`` is all the event loop does: it appends the finished record to a queue. The
writer's thread turns each into its stored form (``stored_call``) and saves it. While the
database is away (a restart, a network cut) the records wait, in order, and the thread tries
again with backoff (``RETRY_S`` doubling up to ``RETRY_MAX_S``); one warning says the store is
away, one line says it is back and how many waited. Nothing is lost silently:

- more than ``max_waiting`` records waiting: the oldest is written to the log in full (JSON,
  ERROR, ``call record not stored``) and let go;
- at shutdown (``close``), what could not be written within the timeout is logged the same way.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from typing import Any

from gateway.bridge.record import CallRecord
from gateway.store import CallStore
from gateway.store.stored import stored_call

__all__ = ["RecordWriter"]

log = logging.getLogger("gateway.store")

RETRY_S = 0.5
RETRY_MAX_S = 30.0


class RecordWriter:
    def __init__(self, store: CallStore, *, redact: bool = True, max_waiting: int = 10_000,
                 retry_s: float = RETRY_S, retry_max_s: float = RETRY_MAX_S) -> None:
        self.store = store
        self.redact = redact
        self.max_waiting = max_waiting
        self.retry_s, self.retry_max_s = retry_s, retry_max_s
        self._queue: collections.deque[CallRecord | dict[str, Any]] = collections.deque()
        self._wake = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        #: Records written since start; the store is away since (monotonic), or None.
        self.written = 0
        self.away_since: float | None = None
        #: Records given up on (logged in full instead).
        self.logged = 0
        self._busy = False  # the head of the queue is being written

    @property
    def waiting(self) -> int:
        """Records not yet written."""
        return len(self._queue)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="gateway-record-writer", daemon=True)
            self._thread.start()

    def submit(self, record: CallRecord) -> None:
        """Queue a finished call's record (on the event loop: no I/O, no conversion)."""
        dropped = []
        with self._wake:
            self._queue.append(record)
            while len(self._queue) > self.max_waiting:
                oldest = 1 if self._busy else 0  # not the one being written
                dropped.append(self._queue[oldest])
                del self._queue[oldest]
            self._wake.notify()
        for old in dropped:  # only while the store has been away for very many calls
            self._give_up(old, f"more than {self.max_waiting} records waiting for the store")

    def flushed(self, timeout: float) -> bool:
        """Block until every queued record is written (True), or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        with self._wake:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = 5.0) -> int:
        """Write what is queued, for at most ``timeout``; log in full what could not be. Returns
        how many records were logged instead of written. Blocks: call it from a thread."""
        if self._thread is not None:
            self.flushed(timeout)
        with self._wake:
            self._closing = True
            self._wake.notify_all()
            left = list(self._queue)
            self._queue.clear()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        for record in left:
            self._give_up(record, "the gateway stopped while the store was away")
        self.store.close()
        return len(left)

    def _run(self) -> None:
        delay = self.retry_s
        while True:
            with self._wake:
                while not self._queue and not self._closing:
                    self._wake.wait()
                if self._closing:
                    return
                item = self._queue[0]
                self._busy = True
            try:
                call = item if isinstance(item, dict) else stored_call(item, redact=self.redact)
                self.store.save(call)
            except (TypeError, ValueError) as e:  # this record cannot be stored: never retried
                self._done(item)
                self._give_up(item, f"it cannot be stored: {type(e).__name__}: {e}")
                continue
            except Exception as e:  # the database is away: this record and the next wait
                with self._wake:
                    self._busy = False
                    if isinstance(item, CallRecord) and self._queue and self._queue[0] is item:
                        self._queue[0] = call  # converted once, however often it is retried
                    self._wake.notify_all()
                if self.away_since is None:
                    self.away_since = time.monotonic()
                    first_line = (str(e).strip().splitlines() or [""])[0]
                    log.warning("call store %s unavailable (%s: %s): records wait and are written when it is back",
                                getattr(self.store, "where", self.store.kind), type(e).__name__, first_line)
                with self._wake:
                    if not self._closing:
                        self._wake.wait(delay)
                    if self._closing:
                        return
                delay = min(delay * 2, self.retry_max_s)
                continue
            self._done(item)
            self.written += 1
            if self.away_since is not None:
                log.warning("call store back after %.1f s: writing the record(s) that waited (%d left)",
                            time.monotonic() - self.away_since, len(self._queue))
                self.away_since = None
            delay = self.retry_s

    def _done(self, item: CallRecord | dict[str, Any]) -> None:
        """The head of the queue is written (or given up on)."""
        with self._wake:
            if self._queue:
                self._queue.popleft()
            self._busy = False
            self._wake.notify_all()

    def _give_up(self, record: CallRecord | dict[str, Any], why: str) -> None:
        """Log the record in full instead of storing it: the data stays in the logs."""
        self.logged += 1
        try:
            call = record if isinstance(record, dict) else stored_call(record, redact=self.redact)
            text = json.dumps(call, ensure_ascii=False, separators=(",", ":"), default=repr)
        except Exception:  # noqa: BLE001 - a record that cannot even be converted: its repr
            call, text = {"call_sid": getattr(record, "call_sid", "")}, repr(record)
        log.error("call record not stored (%s): %s", why, text, extra={"call_sid": call.get("call_sid")})
