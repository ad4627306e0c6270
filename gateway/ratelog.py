"""Log lines a peer cannot multiply: a budget of lines per (peer host, kind of line).

Every stream or webhook refused before a call exists is logged with the peer's address
(``[peer=HOST:PORT]``), so that an operator can tell who is knocking. A peer that opens
thousands of connections would then write thousands of lines. Here each (host, kind) key has
a token bucket (a burst of ``burst`` lines, then one every ``every_s`` seconds), and all keys
together share one more bucket (``total_burst``, then one every ``total_every_s``), so that
a thousand hosts cannot do what one host may not. Lines beyond a budget are counted, not
written; the next line of the key that does get written says how many were held back::

    [peer=203.0.113.9:40412] stream refused before start: ... (312 more like this from
    203.0.113.9 suppressed in the last 60 s)

Memory stays bounded under any number of peers: at most ``max_keys`` keys are kept, the least
recently used forgotten first (their untold counts move to a shared tally, told with the next
line written).

- ``LogLimiter``: the sans-I/O core (keys and times in, verdicts out), unit-tested with
  explicit timestamps (tests/test_ratelog.py).
- ``PeerLogFilter``: the edge, a ``logging.Filter`` for the loggers whose lines name peers
  (``PEER_LOGGERS``); ``gateway.web.startup`` installs one per gateway at start-up and removes
  it at shutdown. A record names a peer by a ``peer`` attribute (``extra={"peer": ...}``) or
  by ``[peer=HOST:PORT]`` in its message; its kind is its logger and format string, so each
  log statement has its own budget. Lines naming no peer (a call's, with its call SID) pass
  untouched.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import re
import threading
import time
from collections.abc import Callable, Hashable

__all__ = ["PEER_LOGGERS", "LogLimiter", "Pass", "PeerLogFilter", "peer_tag"]

#: The loggers whose lines may name a peer: the web edge's, the call's, the server's, and
#: uvicorn's (a media stream's handshake lines carry the peer: ``gateway.serving``).
PEER_LOGGERS = ("gateway.app", "gateway.call", "gateway.serving", "uvicorn.error")

#: Per (peer host, kind of line): five lines at once, then one a minute.
BURST, EVERY_S = 5, 60.0
#: All peers together: fifty lines at once, then one every five seconds.
TOTAL_BURST, TOTAL_EVERY_S = 50, 5.0
#: Keys remembered at most (each about 300 bytes).
MAX_KEYS = 1024

_PEER = re.compile(r"\[peer=([^\]\s]*)\]")
#: A call's lines start with its SIDs (``gateway.bridge.logs.CallLog``), which a peer chooses:
#: they are no part of a line's kind.
_CALL_PREFIX = re.compile(r"^\[call=[^\]]*\] ")


def peer_tag(client: tuple[str, int] | None) -> str:
    """``[peer=HOST:PORT]`` for a connection's client address (``None``: unknown)."""
    return f"[peer={client[0]}:{client[1]}]" if client else "[peer=?]"


def host_of(peer: str) -> str:
    """The host of ``HOST:PORT`` (IPv6 hosts contain colons; the port is the last part)."""
    host, colon, port = peer.rpartition(":")
    return host if colon and port.isdigit() and host else peer


@dataclasses.dataclass(frozen=True)
class Pass:
    """A line to write, and what was held back before it."""

    #: Lines of the same key not written since its last written line.
    suppressed: int = 0
    #: Seconds since that line (or since the key was first seen).
    over_s: float = 0.0
    #: Lines of keys forgotten (least recently used) before theirs could be told.
    forgotten: int = 0

    def note(self, host: str) -> str:
        """What to add to the line: ``""`` when nothing was held back."""
        parts = []
        if self.suppressed:
            parts.append(f"{self.suppressed} more like this from {host} suppressed in the last {self.over_s:.0f} s")
        if self.forgotten:
            parts.append(f"{self.forgotten} more from peers no longer tracked")
        return f"({'; '.join(parts)})" if parts else ""


class _Bucket:
    __slots__ = ("tokens", "at", "since", "suppressed")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.at = now  # when tokens was last brought up to date
        self.since = now  # the last line written (or first seen)
        self.suppressed = 0

    def refill(self, now: float, burst: int, every_s: float) -> None:
        if now > self.at:
            self.tokens = min(float(burst), self.tokens + (now - self.at) / every_s)
            self.at = now


class LogLimiter:
    """Token buckets for log lines: one per key, at most ``max_keys`` of them, and one for all.

    ``allow(key, now)`` says whether to write a line of ``key`` at ``now`` (seconds on any
    monotonic clock): a ``Pass`` (write it, with its ``note``) or ``None`` (counted, not
    written)."""

    def __init__(self, *, burst: int = BURST, every_s: float = EVERY_S, total_burst: int = TOTAL_BURST,
                 total_every_s: float = TOTAL_EVERY_S, max_keys: int = MAX_KEYS) -> None:
        if burst < 1 or total_burst < 1 or max_keys < 1 or every_s <= 0 or total_every_s <= 0:
            raise ValueError("bursts and max_keys must be at least 1, intervals positive")
        self.burst, self.every_s = burst, every_s
        self.total_burst, self.total_every_s = total_burst, total_every_s
        self.max_keys = max_keys
        self._keys: collections.OrderedDict[Hashable, _Bucket] = collections.OrderedDict()
        self._total: _Bucket | None = None
        #: Held-back lines of forgotten keys, not yet told.
        self.forgotten = 0
        #: Every line held back so far.
        self.suppressed_total = 0

    def __len__(self) -> int:
        """Keys remembered."""
        return len(self._keys)

    @property
    def untold(self) -> int:
        """Lines held back whose count no written line has told yet."""
        return self.forgotten + sum(b.suppressed for b in self._keys.values())

    def allow(self, key: Hashable, now: float) -> Pass | None:
        bucket = self._keys.get(key)
        if bucket is None:
            bucket = self._keys[key] = _Bucket(float(self.burst), now)
            if len(self._keys) > self.max_keys:
                _, oldest = self._keys.popitem(last=False)
                self.forgotten += oldest.suppressed
        else:
            self._keys.move_to_end(key)
            bucket.refill(now, self.burst, self.every_s)
        if self._total is None:
            self._total = _Bucket(float(self.total_burst), now)
        total = self._total
        total.refill(now, self.total_burst, self.total_every_s)
        if bucket.tokens < 1 or total.tokens < 1:
            bucket.suppressed += 1
            self.suppressed_total += 1
            return None
        bucket.tokens -= 1
        total.tokens -= 1
        verdict = Pass(bucket.suppressed, max(0.0, now - bucket.since), self.forgotten)
        bucket.suppressed, bucket.since, self.forgotten = 0, now, 0
        return verdict


class PeerLogFilter(logging.Filter):
    """A ``logging.Filter`` that writes a line naming a peer only within its budget
    (``LogLimiter``), with the count of lines held back added to the next one written."""

    def __init__(self, limiter: LogLimiter | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.limiter = limiter if limiter is not None else LogLimiter()
        self.clock = clock
        self._lock = threading.Lock()  # a tool's worker thread may log too
        self._installed: list[logging.Logger] = []

    def filter(self, record: logging.LogRecord) -> bool:
        peer = getattr(record, "peer", None)
        if not isinstance(peer, str):
            try:
                message = record.getMessage()
            except (TypeError, ValueError):
                return True  # a malformed line: the handler reports it
            found = _PEER.search(message) if "[peer=" in message else None
            if found is None:
                return True
            peer = found.group(1)
        host = host_of(peer.removeprefix("[peer=").removesuffix("]"))
        with self._lock:
            verdict = self.limiter.allow((host, record.name, _CALL_PREFIX.sub("", str(record.msg))), self.clock())
        if verdict is None:
            return False
        note = verdict.note(host)
        if note:
            record.msg, record.args = f"{record.getMessage()} {note}", ()
        return True

    def install(self, names: tuple[str, ...] = PEER_LOGGERS) -> None:
        """Attach to the loggers ``names`` (once)."""
        for name in names:
            logger = logging.getLogger(name)
            if self not in logger.filters:
                logger.addFilter(self)
                self._installed.append(logger)

    def uninstall(self) -> None:
        """Detach from every logger ``install`` attached to."""
        for logger in self._installed:
            logger.removeFilter(self)
        self._installed.clear()
