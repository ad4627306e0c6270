"""What the local Realtime server says and hears: scripts as data.

A ``Script`` reads like the script of a phone call::

    Script([
        Reply("Thanks for calling. How can I help?"),       # the greeting
        Heard("What's the weather in Paris?"),               # the caller's first turn
        ToolCall("get_weather", {"city": "Paris"}),          # the model calls a tool
        Reply("It's sunny in Paris."),                       # and answers with its output
    ])

Three kinds of lines; the first two are consumed independently and in order, per connection:

- **turns** (``Reply``, ``ToolCall``, or a tuple of them spoken as one response) are what the
  model produces: each response (a client ``response.create``, or the end of a user turn when
  ``turn_detection.create_response`` is on) takes the next turn; when they run out, every
  further response plays ``Script.default``.
- **``Heard``** lines are the transcripts the server reports for the caller's speech turns, in
  order (the server cannot recognise speech; it reports what the script says it heard). Once
  they run out, a turn is reported as ``"<speech N ms>"``.
- **``When``** lines are rules, not steps: when the caller has just said (or typed, or keyed)
  something that matches, the response plays the rule's turn instead of the next one in order::

      When("refund", ToolCall("issue_refund", {"order": "4271"}))   # substring, any case
      When(re.compile(r"bye|that's all"), (Reply("Goodbye!"), ToolCall("hang_up")))

  A rule matches only fresh input: the first response after a caller turn or user message, not
  the one the SDK asks for after a tool's output. Rules are tried in order; ``once=True``
  retires a rule after it fired.

Model audio is PCM16 mono at 24 kHz, the rate the real model speaks; the server converts it to
the session's output format (``audio/pcm`` 24 kHz or ``audio/pcmu`` 8 kHz). A ``Reply`` without
audio gets a synthesized "voice": a soft harmonic tone (fundamental ``tone_hz``, default 440 Hz,
with two weaker overtones) whose length follows the transcript. It is audible on a phone, and a
test can find it with ``gateway.audio.measure.amplitude_at(samples, rate, tone_hz)``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Union

import numpy as np

if TYPE_CHECKING:
    from gateway.testing.realtime.connection import RealtimeConnection

__all__ = [
    "DEFAULT_TONE_HZ",
    "MS_PER_CHARACTER",
    "MODEL_RATE",
    "Heard",
    "Line",
    "OnTurn",
    "Reply",
    "Script",
    "ScriptCursor",
    "ToolCall",
    "Trigger",
    "Turn",
    "When",
    "synthesize_voice",
    "turn_items",
]

#: Model audio (what ``Reply.audio`` holds): PCM16 mono little-endian at this rate.
MODEL_RATE = 24000
#: Fundamental of the synthesized voice when neither the reply nor the server sets one.
DEFAULT_TONE_HZ = 440.0
#: A synthesized reply lasts this long per character of its transcript (about 16 characters a
#: second, a calm speaking rate), and at least ``MIN_SYNTH_MS``.
MS_PER_CHARACTER = 60
MIN_SYNTH_MS = 200
#: Peak level of the synthesized voice's fundamental (about -15 dBFS): "soft" but far above any
#: VAD threshold, and with the overtones still well below clipping.
_FUNDAMENTAL = 6000.0
_OVERTONES = ((2, 0.35), (3, 0.15))  # (harmonic, level relative to the fundamental)
_FADE_MS = 5  # raised-cosine fade in and out: no click at either end


@functools.lru_cache(maxsize=64)  # scripts repeat their replies; a long one costs ~1 ms/s
def synthesize_voice(duration_ms: int, tone_hz: float = DEFAULT_TONE_HZ,
                     rate: int = MODEL_RATE) -> bytes:
    """PCM16 of a soft voiced-like tone: ``tone_hz`` plus overtones, faded in and out."""
    n = int(round(duration_ms * rate / 1000))
    t = np.arange(n) / rate
    x = _FUNDAMENTAL * np.sin(2 * np.pi * tone_hz * t)
    for harmonic, level in _OVERTONES:
        if harmonic * tone_hz < rate / 2:
            x += _FUNDAMENTAL * level * np.sin(2 * np.pi * harmonic * tone_hz * t)
    fade = min(n // 2, int(rate * _FADE_MS / 1000))
    if fade:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
        x[:fade] *= ramp
        x[n - fade:] *= ramp[::-1]
    return np.rint(x).astype("<i2").tobytes()


@dataclass(frozen=True)
class Reply:
    """The model speaks: one assistant message with audio and its transcript.

    ``audio`` is PCM16 mono 24 kHz; without it the server synthesizes ``duration_ms`` of voice
    (default: ``MS_PER_CHARACTER`` per character of ``transcript``) at ``tone_hz`` (default:
    the server's ``tone_hz``).
    """

    transcript: str
    audio: bytes | None = None
    duration_ms: int | None = None
    tone_hz: float | None = None

    def __post_init__(self) -> None:
        if self.audio is not None:
            if self.duration_ms is not None or self.tone_hz is not None:
                raise ValueError("give Reply either audio or duration_ms/tone_hz, not both")
            if len(self.audio) % 2:
                raise ValueError("Reply.audio must be PCM16: an even number of bytes")
        if self.duration_ms is not None and self.duration_ms < 0:
            raise ValueError("Reply.duration_ms must not be negative")
        if self.tone_hz is not None and not (0 < self.tone_hz < MODEL_RATE / 2):
            raise ValueError("Reply.tone_hz must be between 0 and 12000 Hz")

    @property
    def synthesized_ms(self) -> int:
        """How long the synthesized voice lasts (when ``audio`` is not given)."""
        if self.duration_ms is not None:
            return self.duration_ms
        return max(MIN_SYNTH_MS, MS_PER_CHARACTER * len(self.transcript))

    def pcm16(self, default_tone_hz: float = DEFAULT_TONE_HZ) -> bytes:
        """The reply's audio as PCM16 24 kHz."""
        if self.audio is not None:
            return self.audio
        return synthesize_voice(self.synthesized_ms, self.tone_hz or default_tone_hz)


@dataclass(frozen=True)
class ToolCall:
    """The model calls a function tool: one ``function_call`` item.

    The SDK runs the tool, sends its output (``conversation.item.create`` of a
    ``function_call_output``) and a ``response.create``, which plays the next turn.
    ``call_id`` defaults to a fresh ``call_...`` id.
    """

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    call_id: str | None = None

    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(dict(self.arguments), separators=(",", ":"))


@dataclass(frozen=True)
class Heard:
    """What the server reports the caller said in their next speech turn."""

    transcript: str


@dataclass(frozen=True)
class When:
    """A rule: when the caller's fresh input matches ``heard``, respond with ``then``.

    ``heard``: a string (a case-insensitive substring), a compiled regular expression
    (``search``) or a predicate on the text. ``then``: a turn, as for any line.
    """

    heard: str | re.Pattern[str] | Callable[[str], bool]
    then: Any  # a Turn (checked in __post_init__; the alias is defined below)
    once: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.then, list):
            object.__setattr__(self, "then", tuple(self.then))
        turn_items(self.then)
        if not (isinstance(self.heard, (str, re.Pattern)) or callable(self.heard)):
            raise TypeError(f"When.heard is a string, a compiled pattern or a predicate, not {self.heard!r}")

    def matches(self, text: str) -> bool:
        if isinstance(self.heard, str):
            return self.heard.casefold() in text.casefold()
        if isinstance(self.heard, re.Pattern):
            return self.heard.search(text) is not None
        return bool(self.heard(text))


#: One response: a single output item, or several spoken in order as one response (for
#: example ``(Reply("One moment."), ToolCall("lookup", {...}))``).
Turn = Union[Reply, ToolCall, tuple[Union[Reply, ToolCall], ...]]
Line = Union[Reply, ToolCall, Heard, When, tuple[Union[Reply, ToolCall], ...]]


def turn_items(turn: Turn) -> tuple[Reply | ToolCall, ...]:
    """The output items of a turn, checked."""
    items = tuple(turn) if isinstance(turn, (tuple, list)) else (turn,)
    for item in items:
        if not isinstance(item, (Reply, ToolCall)):
            raise TypeError(f"a turn holds Reply and ToolCall items, not {item!r}")
    return items


@dataclass(frozen=True)
class Script:
    """The ordered lines of a conversation (see the module docstring). Each connection plays
    its own copy from the start."""

    lines: Sequence[Line] = ()
    default: Turn = Reply("Okay.")

    def __post_init__(self) -> None:
        lines = tuple(tuple(x) if isinstance(x, list) else x for x in self.lines)
        for line in lines:
            if not isinstance(line, (Heard, When)):
                turn_items(line)
        turn_items(self.default)
        object.__setattr__(self, "lines", lines)

    @classmethod
    def coerce(cls, script: Script | Sequence[Line] | None) -> Script:
        if script is None:
            return cls()
        if isinstance(script, Script):
            return script
        return cls(tuple(script))


class ScriptCursor:
    """One connection's place in a ``Script``: turns and ``Heard`` lines advance separately;
    ``When`` rules are checked first against fresh caller input."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self._turn = 0
        self._heard = 0
        self._rules = [line for line in script.lines if isinstance(line, When)]

    def next_turn(self, fresh_input: str | None = None) -> Turn:
        """The turn to play: the first ``When`` rule matching ``fresh_input`` (the caller's
        input since the previous response, if any), else the next turn in order, else the
        default."""
        if fresh_input is not None:
            for rule in self._rules:
                if rule.matches(fresh_input):
                    if rule.once:
                        self._rules.remove(rule)
                    return rule.then
        lines = self.script.lines
        while self._turn < len(lines):
            line = lines[self._turn]
            self._turn += 1
            if not isinstance(line, (Heard, When)):
                return line
        return self.script.default

    def next_heard(self) -> str | None:
        lines = self.script.lines
        while self._heard < len(lines):
            line = lines[self._heard]
            self._heard += 1
            if isinstance(line, Heard):
                return line.transcript
        return None

    @property
    def turns_left(self) -> int:
        return sum(not isinstance(x, (Heard, When)) for x in self.script.lines[self._turn:])


@dataclass(frozen=True)
class Trigger:
    """Why a response is starting, as passed to an ``on_turn`` hook.

    ``source`` is ``"response.create"`` (the client asked; ``event`` is its event),
    ``"turn_detection"`` (the end of a caller's turn, with ``create_response`` on) or
    ``"server"`` (a test called ``RealtimeConnection.start_response``). ``user_text`` is the
    latest thing the user said: a text message or the transcript of a speech turn.
    """

    source: Literal["response.create", "turn_detection", "server"]
    event: Mapping[str, Any] | None = None
    user_text: str | None = None


#: ``on_turn(conn, trigger)`` decides a response dynamically; returning None plays the script.
OnTurn = Callable[["RealtimeConnection", Trigger], Union[Turn, None, Awaitable[Union[Turn, None]]]]

