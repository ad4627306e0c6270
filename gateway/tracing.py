"""OpenTelemetry spans for each call, from its record (``opentelemetry-api``).

When the application configures an OpenTelemetry SDK (a tracer provider and an exporter), every
call that started becomes a trace:
- a ``call`` span from the stream's ``start`` to the end, with the call's attributes;
- inside it, one ``agent turn`` span per response of the agent and one ``tool <name>`` span per
  tool run, with its outcome;
- barge-ins, hang-ups, transfers, reconnects and hold audio as events on the call span.

With nothing configured, the API's tracer is a no-op. The spans are made when the call ends,
from its typed events (``gateway.bridge.events``) and their times, so a call's audio never
waits on tracing. Times are wall-clock: the record's start plus each event's ``t``.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode, Tracer

from gateway.bridge.agents import tool_outcome
from gateway.bridge.ending import EndReason
from gateway.bridge.events import (
    AgentTurn,
    BargeIn,
    CallEnded,
    CallStarted,
    HoldStarted,
    HungUp,
    ModelReconnected,
    ToolCalled,
    ToolReturned,
    Transferred,
)
from gateway.bridge.record import CallRecord

__all__ = ["CallSpans"]

#: Ends that are not failures of the call.
_OK_ENDS = {EndReason.CALLER_HUNG_UP, EndReason.AGENT_HUNG_UP, EndReason.TRANSFERRED}
#: Events that become span events on the call span.
_MOMENTS = (BargeIn, HungUp, Transferred, ModelReconnected, HoldStarted)


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


class CallSpans:
    def __init__(self, tracer: Tracer | None = None) -> None:
        self.tracer = tracer or trace.get_tracer("twilio-realtime-gateway")

    def call_ended(self, record: CallRecord) -> None:
        started = record.first(CallStarted)
        ended = record.last(CallEnded)
        if started is None or ended is None:
            return  # refused before start: no call
        base = record.started_at
        at = lambda t: _ns(base + t)  # noqa: E731
        span = self.tracer.start_span("call", start_time=at(started.t), attributes={
            "call.sid": record.call_sid, "call.stream_sid": record.stream_sid, "call.direction": record.direction,
            "call.from": record.from_, "call.to": record.to, "call.agent": record.agent,
            "call.end_reason": record.end_reason.value if record.end_reason else "",
        })
        context = trace.set_span_in_context(span)
        tools: dict[str, list[ToolCalled]] = {}
        for event in record.timeline:
            if isinstance(event, AgentTurn):
                turn = self.tracer.start_span("agent turn", context=context, start_time=at(event.t - event.seconds),
                                              attributes={"agent.name": event.agent})
                turn.end(end_time=at(event.t))
            elif isinstance(event, ToolCalled):
                tools.setdefault(event.tool, []).append(event)
            elif isinstance(event, ToolReturned) and tools.get(event.tool):
                called = tools[event.tool].pop(0)
                outcome = tool_outcome(event.output)
                tool = self.tracer.start_span(f"tool {event.tool}", context=context, start_time=at(called.t),
                                              attributes={"tool.name": event.tool, "tool.outcome": outcome})
                if outcome != "ok":
                    tool.set_status(Status(StatusCode.ERROR, outcome))
                tool.end(end_time=at(event.t))
            elif isinstance(event, _MOMENTS):
                fields = {k: v for k, v in event.as_dict().items() if k not in ("t", "event") and v is not None}
                span.add_event(event.type, attributes=fields, timestamp=at(event.t))
        if record.end_reason not in _OK_ENDS:
            span.set_status(Status(StatusCode.ERROR, record.end_reason.value if record.end_reason else "unknown"))
        span.end(end_time=at(ended.t))
