"""Sans-I/O timing of a call: silence, keypad collection, the rate of incoming messages.

Each object is fed what happened and when (explicit timestamps, in seconds) and says what is
due; the ``Call`` owns the clock and the timer task. So every policy is a plain unit test.
"""

from __future__ import annotations

import dataclasses
import enum


class SilenceAction(enum.Enum):
    CHECK_IN = "check_in"  # "are you still there?"
    GIVE_UP = "give_up"  # say goodbye and hang up


class SilenceMonitor:
    """After ``check_in_s`` with nobody speaking, check in; after ``give_up_s`` more, give up.

    Silence is counted from the later of: the caller's last speech, and the moment the agent
    stopped being heard. Speech by either side restarts it. ``0`` disables a stage.
    """

    def __init__(self, check_in_s: float, give_up_s: float, now: float) -> None:
        self.check_in_s = check_in_s
        self.give_up_s = give_up_s
        self._quiet_since: float | None = now
        self._caller_speaking = False
        self._agent_speaking = False
        self._checked_in = False

    @property
    def caller_speaking(self) -> bool:
        return self._caller_speaking

    def caller_speech(self, started: bool, now: float) -> None:
        self._caller_speaking = started
        self._checked_in = False  # the caller answered: start over
        self._quiet_since = None if started else now

    def agent_speech(self, speaking: bool, now: float) -> None:
        if speaking == self._agent_speaking:
            return
        self._agent_speaking = speaking
        if speaking:
            self._quiet_since = None
        elif not self._caller_speaking:
            self._quiet_since = now

    def deadline(self) -> float | None:
        """When the next action falls due (None: nothing is counting)."""
        if self._quiet_since is None:
            return None
        if not self._checked_in:
            return self._quiet_since + self.check_in_s if self.check_in_s else (
                self._quiet_since + self.give_up_s if self.give_up_s else None
            )
        return self._quiet_since + self.give_up_s if self.give_up_s else None

    def due(self, now: float) -> SilenceAction | None:
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return None
        if not self._checked_in and self.check_in_s:
            self._checked_in = True
            self._quiet_since = now  # the give-up stage counts from the check-in
            return SilenceAction.CHECK_IN
        self._quiet_since = None
        return SilenceAction.GIVE_UP


@dataclasses.dataclass(frozen=True)
class DigitsResult:
    digits: str
    #: "count" (enough digits), "terminator" (e.g. # pressed) or "timeout".
    ended_by: str


class DigitCollector:
    """Collects keypresses for a menu choice or a PIN: ``count`` digits, or up to the
    ``terminator`` (not included), or whatever arrived when ``timeout_s`` passes without a
    keypress (the timer restarts with each digit, as IVRs do)."""

    def __init__(self, count: int | None, terminator: str | None, timeout_s: float, now: float) -> None:
        if count is None and terminator is None:
            raise ValueError("collect a number of digits, or up to a terminator, or both")
        if count is not None and count < 1:
            raise ValueError("count must be at least 1")
        self.count, self.terminator, self.timeout_s = count, terminator, timeout_s
        self._digits = ""
        self._last = now

    def feed(self, digit: str, now: float) -> DigitsResult | None:
        self._last = now
        if self.terminator is not None and digit == self.terminator:
            return DigitsResult(self._digits, "terminator")
        self._digits += digit
        if self.count is not None and len(self._digits) >= self.count:
            return DigitsResult(self._digits, "count")
        return None

    def deadline(self) -> float:
        return self._last + self.timeout_s

    def expired(self, now: float) -> DigitsResult | None:
        return DigitsResult(self._digits, "timeout") if now >= self.deadline() else None


class MessageRate:
    """A token bucket over one WebSocket's incoming messages: ``rate`` a second on average,
    bursts of up to ``burst`` (Twilio delivers a backlog at once after a network stall: 50
    media frames a second of stall). ``allow(now)`` takes one token; False means the peer is
    sending faster than any Twilio stream does."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._at = now

    def allow(self, now: float) -> bool:
        elapsed = max(0.0, now - self._at)
        self._at = max(self._at, now)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
