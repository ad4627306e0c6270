"""``Recorder``: both sides of one call on one clock, as the caller lived it. Sans-I/O.

Two channels of 8 kHz mu-law, one sample a byte, on one sample clock whose zero is the
stream's ``start`` (``start``, seconds on the call's clock):

- **the caller** (left): each inbound ``media`` frame at its ``timestamp``, milliseconds since
  the stream started (https://www.twilio.com/docs/voice/media-streams/websocket-messages#media-message).
  Placing by timestamp, not by arrival, keeps the caller's pauses and ignores network jitter;
- **the agent as the caller heard it** (right): Twilio queues the media we send and plays it
  in order at real time, and ``clear`` drops what is queued (same page, the ``clear`` message).
  So a frame starts at the later of the instant it was sent and the end of the frame before
  it, and a ``clear`` at ``t`` drops everything scheduled from ``t`` on: the caller never heard
  it. Hold audio (``gateway.bridge.hold``) goes out the same way and is recorded the same way.

While ``collect_digits`` collects keys (``pause``/``resume``), the caller's channel is silent:
a PIN must not be recoverable from the recording, and keypad tones are audio. It stays silent
``KEY_TONE_TAIL_MS`` longer, as the tone of the last key may still be sounding when its ``dtmf``
message arrives. The agent's channel goes on: it carries the prompt asking for the keys, and
nothing the agent says during a collection can hold them (the tool has not returned yet).

Memory stays bounded on long calls: everything older than ``SETTLE_MS`` is final (no caller
frame is that late, and agent audio that old has been played or cleared), and ``take`` hands
it over as a ``Chunk`` for the I/O edge to write (``gateway.recording.call``); only the last
few seconds, and the agent audio queued ahead, stay here.

The hot path is one ``bytearray`` append per frame and a few integer operations.
"""

from __future__ import annotations

import dataclasses

from gateway.bridge.actions import Action, SendClear, SendMedia

#: Samples a second, and a millisecond (8 kHz mu-law: a byte a sample).
RATE = 8000
SAMPLES_PER_MS = RATE // 1000
SILENCE = b"\xff"  # mu-law zero (gateway.audio.ULAW_SILENCE)
#: Audio older than this is final. A caller frame arrives about 20 ms after its timestamp; one
#: that comes later than this (a network stall) finds its place written already and is dropped.
SETTLE_MS = 2000
#: The caller's channel stays silent this long after a key collection ends: the last key's
#: tone may still be in the audio when Twilio's ``dtmf`` message for it arrives.
KEY_TONE_TAIL_MS = 500
#: A caller frame stamped further ahead of the recorder's clock than this is not believed: a
#: bad timestamp must not pad hours of silence into memory.
AHEAD_MS = 5000
#: Caller audio beyond the final point kept at most (a peer sending faster than real time).
MAX_PENDING_MS = AHEAD_MS + SETTLE_MS


@dataclasses.dataclass(frozen=True, slots=True)
class Chunk:
    """Final audio of both channels from sample ``offset``, mu-law, of the same length."""

    offset: int
    caller: bytes | bytearray
    agent: bytes | bytearray

    @property
    def samples(self) -> int:
        return len(self.caller)


class Recorder:
    """One call's two channels; feed it what happened, take what is final."""

    def __init__(self, start: float) -> None:
        """``start``: the call-clock time (seconds) of sample 0, the stream's ``start``."""
        self.start = start
        self._base = 0  # the sample both buffers begin at; everything before it was taken
        self._caller = bytearray()
        self._agent = bytearray()  # always ends at _agent_end
        self._agent_end = 0  # where the agent's queued audio ends (absolute sample)
        self._pauses: list[list[int | None]] = []  # [first sample, end or None while paused]
        self.paused = False
        self.finished = False
        #: Caller samples dropped: late past ``SETTLE_MS``, stamped implausibly far ahead, or
        #: sent faster than real time beyond ``MAX_PENDING_MS``.
        self.caller_dropped = 0

    def sample(self, now: float) -> int:
        """The sample at call-clock time ``now``."""
        return max(0, round((now - self.start) * RATE))

    # --- What happened (the hot path) -------------------------------------------------------

    def caller(self, timestamp_ms: int, payload: bytes, now: float) -> None:
        """A caller frame: ``payload`` (mu-law) spoken from ``timestamp_ms`` after the start."""
        at = timestamp_ms * SAMPLES_PER_MS - self._base
        buf = self._caller
        if at == len(buf):  # right after the frame before: the usual case
            buf += payload
        elif at > len(buf):  # a gap (a lost frame): silence up to it
            if at + self._base > self.sample(now) + AHEAD_MS * SAMPLES_PER_MS:
                self.caller_dropped += len(payload)
                return
            buf += SILENCE * (at - len(buf))
            buf += payload
        elif at >= 0:  # out of order, or repeated: over what was there
            buf[at : at + len(payload)] = payload
        else:  # late: its start is final already; keep what is not
            self.caller_dropped += min(-at, len(payload))
            rest = payload[-at:]
            buf[: len(rest)] = rest

    def agent(self, payload: bytes, now: float) -> None:
        """Agent (or hold) audio sent to Twilio at ``now``: it plays after what is queued."""
        at = round((now - self.start) * RATE)
        if at > self._agent_end:  # nothing queued: it starts playing now
            self._agent += SILENCE * (at - self._agent_end)
            self._agent_end = at
        self._agent += payload
        self._agent_end += len(payload)

    def clear(self, now: float) -> None:
        """A ``clear`` sent at ``now``: what was queued after that instant is never heard."""
        at = max(self.sample(now), self._base)
        if at < self._agent_end:
            del self._agent[at - self._base :]
            self._agent_end = at

    def sent(self, action: Action, now: float) -> None:
        """An action sent to Twilio at ``now`` (``SendMedia``, ``SendClear``; marks are not audio)."""
        kind = type(action)
        if kind is SendMedia:
            self.agent(action.payload, now)
        elif kind is SendClear:
            self.clear(now)

    def pause(self, now: float) -> None:
        """Keys are being collected from ``now``: the caller's channel silent until ``resume``."""
        if not self.paused:
            self.paused = True
            self._pauses.append([self.sample(now), None])

    def resume(self, now: float) -> None:
        """The key collection ended at ``now``."""
        if self.paused:
            self.paused = False
            self._pauses[-1][1] = max(self.sample(now), self._pauses[-1][0])

    def collecting(self, collecting: bool, now: float) -> None:
        """``Call.collecting`` at ``now``: pause or resume to match."""
        if collecting:
            self.pause(now)
        else:
            self.resume(now)

    # --- What is final -------------------------------------------------------------------------

    def take(self, now: float) -> Chunk | None:
        """The audio that is final at ``now`` and not taken yet (None if there is none)."""
        return self._cut(self.sample(now) - SETTLE_MS * SAMPLES_PER_MS)

    def finish(self, now: float) -> Chunk | None:
        """The call ended at ``now``: the rest. Agent audio queued past ``now`` was never heard."""
        self.resume(now)
        end = self.sample(now)
        # The last caller frame may end a hair after ``now`` on this clock: keep it whole.
        end = max(end, min(self._base + len(self._caller), end + 20 * SAMPLES_PER_MS))
        self.clear(now)
        self.finished = True
        return self._cut(end)

    def _cut(self, end: int) -> Chunk | None:
        n = end - self._base
        if n <= 0:
            return None
        caller, agent = self._caller, self._agent
        if len(caller) < n:
            caller += SILENCE * (n - len(caller))
        if len(agent) < n:
            agent += SILENCE * (n - len(agent))
            self._agent_end = end
        left, right = caller[:n], agent[:n]
        del caller[:n], agent[:n]
        offset, self._base = self._base, end
        self._silence_pauses(offset, left, right)
        if len(caller) > MAX_PENDING_MS * SAMPLES_PER_MS:
            excess = len(caller) - MAX_PENDING_MS * SAMPLES_PER_MS
            del caller[-excess:]
            self.caller_dropped += excess
        return Chunk(offset, left, right)

    def _silence_pauses(self, offset: int, left: bytearray, right: bytearray) -> None:
        """Silence the caller in the paused stretches within ``[offset, offset + len(left))``;
        forget the pauses over by then."""
        end = offset + len(left)
        tail = KEY_TONE_TAIL_MS * SAMPLES_PER_MS
        kept = []
        for pause in self._pauses:
            first, last = pause
            stop = None if last is None else last + tail
            a = max(first, offset) - offset
            b = (end if stop is None else min(stop, end)) - offset
            if b > a:
                left[a:b] = SILENCE * (b - a)
            if last is None or last + tail > end:
                kept.append(pause)
        self._pauses = kept
