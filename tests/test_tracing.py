"""gateway.tracing: a finished call as OpenTelemetry spans, timed by its events."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from gateway.bridge.ending import EndReason
from gateway.tools import hang_up
from gateway.tracing import CallSpans
from tests.bridge.test_call import (
    agent_end,
    agent_start,
    audio,
    interrupted,
    live,
    new_call,
    speech,
    start_frame,
    tool_start,
)


def spans_of(record):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    CallSpans(provider.get_tracer("test")).call_ended(record)
    return {span.name: span for span in exporter.get_finished_spans()}, exporter.get_finished_spans()


def test_a_call_becomes_a_trace_of_its_turns_tools_and_moments() -> None:
    from agents.realtime.events import RealtimeToolEnd

    from tests.bridge.test_call import AGENT, INFO

    call = live()  # started at 0.01
    call.session_event(agent_start(), 1.0)
    call.session_event(audio("item_a", 500), 1.0)
    call.session_event(speech(True), 1.2)
    call.session_event(interrupted("item_a"), 1.2)
    call.session_event(agent_end(), 1.5)
    call.session_event(tool_start(hang_up), 2.0)
    call.session_event(RealtimeToolEnd(agent=AGENT, tool=hang_up, arguments="{}", output="The call has ended.",
                                       info=INFO), 2.25)
    call.end(EndReason.CALLER_HUNG_UP, 3.0)
    record = call.finish(3.0)
    by_name, spans = spans_of(record)
    root, turn, tool = by_name["call"], by_name["agent turn"], by_name["tool hang_up"]
    assert root.attributes["call.sid"] == record.call_sid and root.attributes["call.end_reason"] == "caller hung up (stop)"
    base = record.started_at
    assert root.start_time == pytest.approx((base + 0.01) * 1e9, abs=1e3) and root.end_time == pytest.approx((base + 3.0) * 1e9, abs=1e3)
    assert (turn.end_time - turn.start_time) == pytest.approx(0.5e9, abs=1e3)
    assert (tool.end_time - tool.start_time) == pytest.approx(0.25e9, abs=1e3) and tool.attributes["tool.outcome"] == "ok"
    assert turn.parent.span_id == root.context.span_id == tool.parent.span_id
    assert [e.name for e in root.events] == ["interrupted"] and root.events[0].attributes["item_id"] == "item_a"
    assert root.status.status_code is not StatusCode.ERROR


def test_a_failed_call_is_an_error_span_and_a_refused_stream_no_trace() -> None:
    call = live()
    call.end(EndReason.MODEL_FAILED, 2.0)
    by_name, _ = spans_of(call.finish(2.0))
    assert by_name["call"].status.status_code is StatusCode.ERROR
    refused = new_call()
    refused.receive(start_frame(token=None), 0.01)  # no call token: refused before the call began
    assert refused.end_reason is EndReason.REFUSED
    assert spans_of(refused.finish(1.0))[1] == ()
