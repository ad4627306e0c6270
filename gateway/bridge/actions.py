"""What the sans-I/O call (``gateway.bridge.call.Call``) asks its edges to do.

The call decides; the edges act: ``gateway.bridge.runner`` takes these from ``Call.actions()``
after every input and carries each out, in order. Each action is a small frozen dataclass.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Union

# --- To Twilio (the Media Stream) -------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class SendMedia:
    """20 ms of agent audio, mu-law, for the caller."""

    payload: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class SendMark:
    """A mark after the media sent so far: Twilio echoes it once that audio has played."""

    name: str


@dataclasses.dataclass(frozen=True, slots=True)
class SendClear:
    """Drop the audio Twilio has queued (barge-in)."""


@dataclasses.dataclass(frozen=True, slots=True)
class CloseStream:
    """Close the Media Stream now, with ``code``: Twilio then runs the TwiML after
    ``<Connect>`` (the fallback), or hangs up if there is none."""

    code: int


# --- To the model (the realtime session) -------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class SendAudio:
    """Caller audio, already in the model's format."""

    audio: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class TellModel:
    """A user message for the model (a keypress, who answered the phone)."""

    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class Ask:
    """Have the agent speak now (greeting, check-in, goodbye): a ``response.create`` whose
    instructions are the agent's own plus ``request``, with no fake user message."""

    request: str


@dataclasses.dataclass(frozen=True, slots=True)
class DecideTool:
    """Answer a tool approval request at once (nobody can click "approve" on a phone)."""

    call_id: str
    approve: bool
    message: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class RollOver:
    """Move the call to a fresh model session now (the conversation is at a pause); report
    back with ``Call.rolled_over``."""


# --- To the application and the gateway's tools -----------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class OfferDigit:
    """Offer a keypress to the application's ``on_digit`` hook; report back with
    ``Call.digit_handled``."""

    digit: str


@dataclasses.dataclass(frozen=True, slots=True)
class HangUp:
    """End the live call through Twilio's REST API; if that cannot be done, close the stream
    (with nothing after ``<Connect>``, Twilio hangs up). Then ``reply`` (if any) is answered."""

    reason: str
    reply: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Transfer:
    """Redirect the live call to ``twiml`` (a ``<Dial>``); close the stream if that cannot be
    done. Then ``reply`` is answered with ``text``."""

    twiml: str
    reply: int | None
    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    """The answer to a tool's request (``Call.request_*`` returned ``waiter``)."""

    waiter: int
    value: Any


Action = Union[
    SendMedia, SendMark, SendClear, CloseStream, SendAudio, TellModel, Ask, DecideTool, RollOver,
    OfferDigit, HangUp, Transfer, Reply,
]
