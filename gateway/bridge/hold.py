"""``Hold``: what the caller hears while the model is not there to speak, sans-I/O.

On a phone, two seconds of dead air make people hang up. So when the model goes missing (the
first connection is slow, the connection dropped and is being made again, a session rollover
takes long), ``after_s`` later the caller hears the hold message, then a soft tone every few
seconds (``gateway.audio.hold``), until the agent speaks again or the fallback runs.

Twilio plays what we send at real time from a queue and echoes a ``mark`` once the audio before
it has played (https://www.twilio.com/docs/voice/media-streams/websocket-messages). So the
message and one tone period go out at once, each closed by a mark named ``hold:<n>``; each echo
queues one more tone period, so one is always waiting and the tone has no gaps. The hold marks
are this object's own: ``Playback`` never sees them, so hold audio is never agent speech (not
for truncation, not for the silence clock). When the agent's audio starts, ``stop`` clears
whatever hold audio is queued before the agent's first frame goes out.
"""

from __future__ import annotations

from gateway.audio import hold as audio
from gateway.bridge.actions import Action, SendClear, SendMark, SendMedia

MARK_PREFIX = "hold:"


class Hold:
    def __init__(self, after_s: float) -> None:
        self.after_s = after_s
        self.since: float | None = None  # the model has been missing since then
        self.started = False  # hold audio went out during this absence
        self.playing = False  # hold audio is queued at Twilio (or playing)
        self._sent = 0  # marks sent (hold:1, hold:2, ...), numbered across the whole call
        self._message_mark = 0  # the mark after this hold's message
        self._message_done = False

    def away(self, now: float) -> None:
        """The model is not there to speak from ``now`` (kept if it already was not)."""
        if self.since is None:
            self.since = now
            self.started = False

    def back(self) -> list[Action]:
        """The model is back: no more tone. A tone already queued is cleared; the message is
        left to finish (cut mid-word it would sound broken), and the agent's first audio
        clears it then."""
        self.since = None
        if self.playing and self._message_done:
            self.playing = False
            return [SendClear()]
        return []

    def deadline(self) -> float | None:
        if self.since is None or self.started or not self.after_s:
            return None
        return self.since + self.after_s

    def due(self, now: float) -> bool:
        deadline = self.deadline()
        return deadline is not None and now >= deadline

    def start(self) -> list[Action]:
        """The message, then a tone period, each closed by a mark."""
        self.started = True
        self.playing = True
        self._message_done = False
        out: list[Action] = [SendMedia(frame) for frame in audio.frames("message")]
        out.append(self._mark())
        self._message_mark = self._sent
        return out + self._tone()

    def echoed(self, name: str) -> list[Action]:
        """A hold mark came back: that part has played (or was cleared)."""
        if not self.playing:
            return []  # cleared: nothing more
        number = name[len(MARK_PREFIX):]
        if number == str(self._message_mark):
            self._message_done = True
        if self.since is not None and number == str(self._sent - 1):
            return self._tone()  # keep one tone period queued ahead
        if number == str(self._sent):
            self.playing = False  # the last of it has played
        return []

    def stop(self) -> list[Action]:
        """The agent speaks: clear the hold audio first, if any is queued."""
        self.since = None
        if not self.playing:
            return []
        self.playing = False
        return [SendClear()]

    def _tone(self) -> list[Action]:
        out: list[Action] = [SendMedia(frame) for frame in audio.frames("tone")]
        out.append(self._mark())
        return out

    def _mark(self) -> SendMark:
        self._sent += 1
        return SendMark(f"{MARK_PREFIX}{self._sent}")


def is_hold_mark(name: str) -> bool:
    return name.startswith(MARK_PREFIX)
