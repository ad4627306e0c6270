"""``Playout``: Twilio's buffer of agent audio, as the caller hears it. Sans-I/O.

Twilio facts modelled (https://www.twilio.com/docs/voice/media-streams/websocket-messages,
the messages sent to Twilio: ``media``, ``mark``, ``clear``):

- Outbound ``media`` of any size is queued and played in order at real time. Audio that
  arrives while the queue is empty starts playing when it arrives; audio that arrives while
  something is playing starts where the queue ends (sending ahead is normal, and is why
  "sent" is not "heard").
- An outbound ``mark`` is echoed once all audio queued before it has played, and at once if
  nothing is queued.
- ``clear`` drops all queued audio (the piece playing is cut where it is) and echoes every
  pending mark at once.

Everything is computed on the caller clock from sample counts, never measured: a piece of
``n`` mu-law bytes that starts at ``s`` ends at exactly ``s + n / 8000``. A mark's echo time is
the instant its preceding audio ended (or the clear's arrival), not when a task got round to
it, so the record is exact and the same at any simulation speed.

Every method that takes ``now`` first plays the queue up to ``now`` and returns the marks due
by then, in order, for the I/O layer to echo. Nothing here owns a socket, task or clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from gateway.audio import ULAW_SILENCE

__all__ = ["HeardSegment", "MarkEcho", "Playout", "SAMPLE_RATE", "join_runs", "timeline"]

SAMPLE_RATE = 8000
# Tolerance for float rounding when turning a time into a sample count: a piece that started
# at s has played n samples at s + n / 8000, even if the subtraction comes out a hair short.
_EPSILON = 1e-9
_SILENCE = bytes([ULAW_SILENCE])


@dataclass(frozen=True, slots=True)
class HeardSegment:
    """Agent audio the caller heard without a break: ``audio`` (mu-law) from ``start``."""

    start: float
    """Caller-clock seconds when its first sample played."""
    audio: bytes
    cut: bool = False
    """The piece was cut short here by a ``clear`` (or by the call ending)."""

    @property
    def end(self) -> float:
        return self.start + len(self.audio) / SAMPLE_RATE

    @property
    def ms(self) -> float:
        return len(self.audio) / (SAMPLE_RATE / 1000)


@dataclass(frozen=True, slots=True)
class MarkEcho:
    """A mark Twilio echoed: at ``time``, because its audio played or because of a clear."""

    name: str
    time: float
    """Caller-clock seconds: when the audio before it finished, or when the clear arrived."""
    cleared: bool = False


@dataclass(frozen=True, slots=True)
class _Audio:
    start: float
    payload: bytes

    @property
    def end(self) -> float:
        return self.start + len(self.payload) / SAMPLE_RATE

    def played(self, now: float) -> int:
        """Samples of this piece played by ``now``."""
        if now <= self.start:
            return 0
        return min(len(self.payload), int((now - self.start) * SAMPLE_RATE + _EPSILON))


@dataclass(frozen=True, slots=True)
class _Mark:
    name: str
    due: float


class Playout:
    """The playback queue of one call, and the record of what it played."""

    def __init__(self) -> None:
        self._queue: deque[_Audio | _Mark] = deque()
        self._tail = 0.0  # when the queued audio runs out
        self._heard_samples = 0
        self._ended = False
        self.heard: list[HeardSegment] = []
        """Pieces played to their end or cut; the piece playing now is not in it yet."""

    # --- Input: what the gateway sent -----------------------------------------------------------

    def media(self, payload: bytes, now: float) -> list[MarkEcho]:
        echoes = self.advance(now)
        if payload and not self._ended:
            piece = _Audio(max(now, self._tail), bytes(payload))
            self._queue.append(piece)
            self._tail = piece.end
        return echoes

    def mark(self, name: str, now: float) -> list[MarkEcho]:
        echoes = self.advance(now)
        if self._ended:
            return echoes
        if self._tail <= now + _EPSILON:  # nothing queued: echoed at once
            echoes.append(MarkEcho(name, now))
        else:
            self._queue.append(_Mark(name, self._tail))
        return echoes

    def clear(self, now: float) -> list[MarkEcho]:
        """Drop the queue: cut the piece playing at ``now``, echo every pending mark."""
        echoes = self.advance(now)
        for entry in self._queue:
            if isinstance(entry, _Mark):
                echoes.append(MarkEcho(entry.name, now, cleared=True))
            else:
                self._hear_part(entry, now)
        self._queue.clear()
        self._tail = min(self._tail, now)
        return echoes

    def end(self, now: float) -> None:
        """The call ended at ``now``: cut what plays, drop the rest, echo nothing more."""
        self.advance(now)
        for entry in self._queue:
            if isinstance(entry, _Audio):
                self._hear_part(entry, now)
        self._queue.clear()
        self._tail = min(self._tail, now)
        self._ended = True

    # --- Time -----------------------------------------------------------------------------------

    def advance(self, now: float) -> list[MarkEcho]:
        """Play the queue up to ``now``; return the marks whose audio has played, in order."""
        echoes: list[MarkEcho] = []
        queue = self._queue
        while queue:
            head = queue[0]
            if isinstance(head, _Mark):
                if head.due > now + _EPSILON:
                    break
                echoes.append(MarkEcho(head.name, head.due))
            else:
                if head.end > now + _EPSILON:
                    break
                self._hear(HeardSegment(head.start, head.payload))
            queue.popleft()
        return echoes

    def next_deadline(self) -> float | None:
        """When ``advance`` next has something to do (None: nothing queued)."""
        if not self._queue:
            return None
        head = self._queue[0]
        return head.due if isinstance(head, _Mark) else head.end

    # --- Queries (read-only: they never play the queue) -----------------------------------------

    @property
    def ends_at(self) -> float:
        """When the queued audio runs out (in the past if nothing is queued)."""
        return self._tail

    def playing(self, now: float) -> bool:
        return self._tail > now + _EPSILON

    def pending_marks(self) -> list[str]:
        return [entry.name for entry in self._queue if isinstance(entry, _Mark)]

    def heard_samples(self, now: float) -> int:
        """Samples heard by ``now``, the piece playing now included."""
        total = self._heard_samples
        for entry in self._queue:
            if isinstance(entry, _Audio):
                if entry.start >= now:
                    break
                total += entry.played(now)
        return total

    def when_heard(self, samples: int) -> float | None:
        """When ``samples`` in all will have been heard if nothing changes (None: never, with
        what is queued now; ``-inf``: already)."""
        remaining = samples - self._heard_samples
        if remaining <= 0:
            return float("-inf")
        for entry in self._queue:
            if isinstance(entry, _Audio):
                if remaining <= len(entry.payload):
                    return entry.start + remaining / SAMPLE_RATE
                remaining -= len(entry.payload)
        return None

    def last_heard_end(self, now: float) -> float | None:
        """When the last audio heard by ``now`` ended (``now`` if audio is playing)."""
        if self.playing(now):  # queued audio is contiguous from a start at or before now
            return now
        return self.heard[-1].end if self.heard else None

    def segments(self, now: float) -> list[HeardSegment]:
        """Everything heard by ``now``: ``heard`` plus the part played of what is queued."""
        segments = list(self.heard)
        for entry in self._queue:
            if isinstance(entry, _Audio):
                played = entry.played(now)
                if not played:
                    break
                segments.append(HeardSegment(entry.start, entry.payload[:played]))
        return segments

    # --- Internals ------------------------------------------------------------------------------

    def _hear_part(self, piece: _Audio, now: float) -> None:
        played = piece.played(now)
        if played:
            cut = played < len(piece.payload)
            self._hear(HeardSegment(piece.start, piece.payload[:played], cut=cut))

    def _hear(self, segment: HeardSegment) -> None:
        self.heard.append(segment)
        self._heard_samples += len(segment.audio)


# --- Views of what was heard -------------------------------------------------------------------


def join_runs(pieces: list[HeardSegment]) -> list[HeardSegment]:
    """Pieces played back to back joined into runs of unbroken audio."""
    runs: list[tuple[float, list[bytes], HeardSegment]] = []  # start, audio, last piece
    for piece in pieces:
        if runs and not runs[-1][2].cut and abs(piece.start - runs[-1][2].end) < 1e-6:
            start, audio, _ = runs[-1]
            audio.append(piece.audio)
            runs[-1] = (start, audio, piece)
        else:
            runs.append((piece.start, [piece.audio], piece))
    return [HeardSegment(start, b"".join(audio), last.cut) for start, audio, last in runs]


def timeline(pieces: list[HeardSegment], until: float | None = None) -> bytes:
    """The pieces at their place on the clock from time 0, mu-law silence between them; cut
    or padded to ``until`` seconds if given."""
    out = bytearray()
    for piece in pieces:
        at = max(len(out), round(piece.start * SAMPLE_RATE))
        out += _SILENCE * (at - len(out))
        out += piece.audio
    if until is not None:
        size = round(until * SAMPLE_RATE)
        del out[size:]
        out += _SILENCE * (size - len(out))
    return bytes(out)
