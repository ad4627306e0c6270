"""gateway.metrics: the figures a finished call adds, and GET /metrics on a live gateway."""

from __future__ import annotations

import asyncio

import pytest

from prometheus_client.parser import text_string_to_metric_families

from gateway.audio import AudioMode
from gateway.bridge.ending import EndReason
from gateway.bridge.agents import tool_outcome
from gateway.metrics import LoopLag, Metrics
from tests.bridge.test_call import agent_start, audio, interrupted, live, speech, started


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.text().decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_a_finished_call_adds_its_figures() -> None:
    metrics = Metrics(AudioMode.G711_ULAW, active=lambda: 3, draining=lambda: True)
    call = live()
    call.model_connected(0.25, 0.3)
    call.session_event(agent_start(), 1.0)
    call.session_event(audio("item_a", 500), 1.0)
    call.session_event(speech(True), 1.149)
    call.session_event(interrupted("item_a"), 1.15)
    call.session_event(audio("item_a", 100), 1.2)  # late audio of the cut item: dropped
    call.end(EndReason.CALLER_HUNG_UP, 30.0)
    metrics.call_ended(call.finish(30.01))
    got = samples(metrics)
    assert got[("gateway_active_calls", ())] == 3 and got[("gateway_draining", ())] == 1
    assert got[("gateway_calls_total", (("direction", "inbound"), ("end_reason", "caller_hung_up")))] == 1
    assert got[("gateway_call_duration_seconds_count", ())] == 1
    assert got[("gateway_call_duration_seconds_sum", ())] == 30.0  # from the start (0.01) to the end
    assert got[("gateway_time_to_first_audio_seconds_count", ())] == 1
    assert got[("gateway_barge_in_clear_seconds_bucket", (("le", "0.001"),))] == 1  # 1 ms
    assert got[("gateway_model_connect_seconds_sum", ())] == 0.25
    assert got[("gateway_frames_dropped_total", (("direction", "out"),))] == 5  # 100 ms of G.711
    assert ("gateway_stream_errors_total", (("close_code", "1000"),)) not in got


def test_a_refused_stream_is_a_stream_error_not_a_call() -> None:
    metrics = Metrics(AudioMode.PCM16, active=lambda: 0, draining=lambda: False)
    call = started()
    call.end(EndReason.PROTOCOL_ERROR, 1.0)
    refused = live()
    refused.end(EndReason.REFUSED, 1.0)
    for record in (call.finish(1.0), refused.finish(1.0)):
        metrics.call_ended(record)
    got = samples(metrics)
    assert got[("gateway_stream_errors_total", (("close_code", "1007"),))] == 1
    assert got[("gateway_stream_errors_total", (("close_code", "1008"),))] == 1


def test_tool_outcomes_from_what_the_model_was_told() -> None:
    assert tool_outcome("Order 4271 ships Tuesday.") == "ok"
    assert tool_outcome("The tool lookup failed (RuntimeError: down). Tell the caller ...") == "error"
    assert tool_outcome("An error occurred while running the tool. Please try again.") == "error"
    assert tool_outcome("The tool lookup did not finish within 20 s and was stopped. ...") == "timeout"


async def test_the_loop_lag_probe_observes_a_blocked_loop() -> None:
    metrics = Metrics(AudioMode.PCM16, active=lambda: 0, draining=lambda: False)
    probe = asyncio.create_task(LoopLag(metrics, every_s=0.01).run())
    await asyncio.sleep(0.005)
    import time

    time.sleep(0.06)  # the loop is blocked for 60 ms: the probe's timer fires ~50 ms late
    await asyncio.sleep(0.03)
    probe.cancel()
    got = samples(metrics)
    assert got[("gateway_event_loop_lag_seconds_count", ())] >= 1
    assert got[("gateway_event_loop_lag_seconds_bucket", (("le", "0.02"),))] < got[
        ("gateway_event_loop_lag_seconds_count", ())]


def test_workers_metrics_merge_into_one_report() -> None:
    from gateway.metrics import merge

    a = Metrics(AudioMode.PCM16, active=lambda: 2, draining=lambda: False)
    b = Metrics(AudioMode.PCM16, active=lambda: 3, draining=lambda: True)
    a.clear.observe(0.004)
    b.clear.observe(0.004)
    b.clear.observe(0.2)
    a.calls.labels("inbound", "hangup").inc()
    b.calls.labels("inbound", "hangup").inc(2)
    b.calls.labels("outbound", "transferred").inc()
    merged: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    created = {}
    for family in text_string_to_metric_families(merge([a.text(), b.text()]).decode()):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in merged  # one sample per name and labels
            merged[key] = sample.value
            if sample.name.endswith("_created"):
                created[key] = sample.value
    mine, theirs = samples(a), samples(b)
    assert merged[("gateway_active_calls", ())] == 5
    assert merged[("gateway_draining", ())] == 1  # the largest, not the sum
    assert merged[("gateway_workers_answering", ())] == 2
    assert merged[("gateway_calls_total", (("direction", "inbound"), ("end_reason", "hangup")))] == 3
    assert merged[("gateway_calls_total", (("direction", "outbound"), ("end_reason", "transferred")))] == 1
    assert merged[("gateway_barge_in_clear_seconds_count", ())] == 3
    assert merged[("gateway_barge_in_clear_seconds_bucket", (("le", "0.005"),))] == 2
    assert merged[("gateway_barge_in_clear_seconds_bucket", (("le", "+Inf"),))] == 3
    assert merged[("gateway_barge_in_clear_seconds_sum", ())] == pytest.approx(0.208)
    key = ("gateway_calls_created", (("direction", "inbound"), ("end_reason", "hangup")))
    assert created[key] == min(mine[key], theirs[key])  # the earliest, not a sum of times
