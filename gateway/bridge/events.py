"""The gateway's own call events: what happened on a call, as data.

Each is a small frozen dataclass with a ``type`` literal, as ``agents.realtime.events`` does
for the SDK's session events. The sans-I/O call (``gateway.bridge.call.Call``) emits them;
``CallRecord`` is built from them; metrics, storage and a console can consume the same
stream. ``t`` is seconds since the call's stream connected, on the call's own clock.

``as_dict()`` is the JSON form kept in ``CallRecord.events``: ``{"t": ..., "event": type,
**fields}``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Union

from gateway.bridge.ending import EndReason


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class _Event:
    t: float

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"t": round(self.t, 3), "event": self.type}  # type: ignore[attr-defined]
        for field in dataclasses.fields(self):
            if field.name not in ("t", "type"):
                out[field.name] = getattr(self, field.name)
        return out


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CallStarted(_Event):
    """The stream's ``start`` arrived with a valid call token."""

    call_sid: str
    stream_sid: str
    from_: str
    to: str
    direction: Literal["inbound", "outbound"]
    type: Literal["call_started"] = "call_started"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AgentChosen(_Event):
    """The agent answering the call (at start, and after each handoff)."""

    agent: str
    type: Literal["agent_chosen"] = "agent_chosen"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DigitPressed(_Event):
    """A keypress; ``collected`` if ``collect_digits`` or the application's hook took it (then
    the model was not told)."""

    digit: str
    collected: bool
    type: Literal["dtmf"] = "dtmf"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class BargeIn(_Event):
    """The caller talked over the agent: playback cleared after ``heard_ms`` of the item."""

    item_id: str
    heard_ms: int
    #: From the model's ``speech_started`` reaching the gateway (the raw server message, before
    #: the SDK handles it) to Twilio's ``clear`` (None: no ``speech_started`` just before, e.g.
    #: a guardrail).
    clear_ms: float | None = None
    type: Literal["interrupted"] = "interrupted"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class GuardrailTripped(_Event):
    guardrails: list[str]
    message: str
    type: Literal["guardrail_tripped"] = "guardrail_tripped"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AgentTurn(_Event):
    """A response of the agent ended (at ``t``), ``seconds`` after it began."""

    agent: str
    seconds: float
    type: Literal["agent_turn"] = "agent_turn"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ToolCalled(_Event):
    tool: str
    arguments: str
    type: Literal["tool_start"] = "tool_start"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ToolReturned(_Event):
    tool: str
    output: str
    type: Literal["tool_end"] = "tool_end"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ToolApproval(_Event):
    tool: str
    decision: str  # "approve" or "reject" (GATEWAY_TOOL_APPROVAL)
    type: Literal["tool_approval"] = "tool_approval"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HandedOff(_Event):
    from_agent: str
    to_agent: str
    type: Literal["handoff"] = "handoff"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ModelError(_Event):
    error: str
    type: Literal["error"] = "error"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioTimeout(_Event):
    type: Literal["input_audio_timeout"] = "input_audio_timeout"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SilenceCheckIn(_Event):
    type: Literal["silence_check_in"] = "silence_check_in"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AnsweredBy(_Event):
    """Twilio's answering-machine detection result (outbound calls)."""

    answered_by: str
    type: Literal["answered_by"] = "answered_by"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TwilioStatus(_Event):
    """A Twilio call-status callback for this call."""

    status: str
    type: Literal["twilio_status"] = "twilio_status"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HungUp(_Event):
    """The gateway ended the call (the agent's ``hang_up``, silence, the maximum duration)."""

    reason: str
    type: Literal["hang_up"] = "hang_up"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Transferred(_Event):
    """The call was handed to a person: ``target`` is what Twilio dials."""

    target: str
    type: Literal["transfer"] = "transfer"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TransferRefused(_Event):
    target: str
    type: Literal["transfer_refused"] = "transfer_refused"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SessionRolledOver(_Event):
    """The call moved to a fresh model session (the session lifetime limit)."""

    seconds: float
    type: Literal["session_rollover"] = "session_rollover"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ModelConnected(_Event):
    """The call's first model session is connected, after ``seconds`` (retries included)."""

    seconds: float
    type: Literal["model_connected"] = "model_connected"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FirstAudio(_Event):
    """The agent's first audio went to Twilio, ``seconds`` after the stream's ``start``."""

    seconds: float
    type: Literal["first_audio"] = "first_audio"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ModelReconnected(_Event):
    """The model's connection failed mid-call and a new session took over."""

    seconds: float
    type: Literal["model_reconnected"] = "model_reconnected"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HoldStarted(_Event):
    """The model was not there to speak for ``GATEWAY_HOLD_AFTER_S``: hold audio began."""

    type: Literal["hold_started"] = "hold_started"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HoldEnded(_Event):
    """The model is back (or the agent speaks): the hold audio ended after ``seconds``."""

    seconds: float
    type: Literal["hold_ended"] = "hold_ended"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ReplyResumed(_Event):
    """After a model drop, the agent was asked to go on: ``what`` is ``reply`` (it was cut
    mid-reply, after ``heard_ms`` of item ``item_id``) or ``answer`` (an answer was due)."""

    what: Literal["reply", "answer"]
    item_id: str
    heard_ms: int
    type: Literal["reply_resumed"] = "reply_resumed"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded(_Event):
    reason: EndReason
    type: Literal["call_ended"] = "call_ended"


CallEvent = Union[
    CallStarted, AgentChosen, DigitPressed, BargeIn, GuardrailTripped, AgentTurn, ToolCalled, ToolReturned,
    ToolApproval, HandedOff, ModelError, InputAudioTimeout, SilenceCheckIn, AnsweredBy,
    TwilioStatus, HungUp, Transferred, TransferRefused, SessionRolledOver, ModelConnected, FirstAudio,
    ModelReconnected, HoldStarted, HoldEnded, ReplyResumed, CallEnded,
]

#: Events that change the call itself: also written into the transcript, where they happened
#: in the conversation.
CALL_CONTROL = (HungUp, Transferred, TransferRefused, SessionRolledOver, ModelReconnected)
