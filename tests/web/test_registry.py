"""The call registry: calls in progress, bounded records of finished calls, Twilio's statuses
and early answering-machine results. Plain unit tests, with stand-in calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from gateway.web.registry import RECENT_CALLS, CallRegistry


@dataclass
class Record:
    stream_sid: str
    call_sid: str
    from_: str = "+15550001111"
    to: str = "+15550002222"
    agent: str = "Assistant"
    direction: str = "inbound"
    started_at: float = 1000.0
    notes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def note(self, kind: str, **fields: Any) -> None:
        self.notes.append((kind, fields))


class StandInCall:
    """What the registry uses of a call: its SIDs, its record, what it is told."""

    def __init__(self, n: int) -> None:
        self.call_sid = f"CA{n}"
        self.record = Record(stream_sid=f"MZ{n}", call_sid=self.call_sid)
        self.told: list[str] = []
        self.speaking = "agent"

    def answered_by(self, answered_by: str) -> None:
        self.told.append(answered_by)

    def twilio_status(self, status: str) -> None:
        self.record.note("twilio_status", status=status)


def test_a_call_is_in_progress_from_its_start_then_its_record_is_kept() -> None:
    registry, call = CallRegistry(), StandInCall(1)
    registry.started(call)  # type: ignore[arg-type]
    assert registry.calls == {"MZ1": call} and registry.find("CA1") is call
    registry.ended(call)  # type: ignore[arg-type]
    assert registry.calls == {} and registry.find("CA1") is None
    assert list(registry.finished) == [call.record]


def test_a_call_refused_before_its_start_leaves_a_record_too() -> None:
    registry, call = CallRegistry(), StandInCall(1)
    call.record.stream_sid = ""
    registry.ended(call)  # type: ignore[arg-type]
    assert list(registry.finished) == [call.record] and registry.calls == {}


def test_only_the_most_recent_finished_records_are_kept() -> None:
    assert CallRegistry().recent == RECENT_CALLS == 200
    registry = CallRegistry(recent=3)
    for n in range(5):
        call = StandInCall(n)
        registry.started(call)  # type: ignore[arg-type]
        registry.ended(call)  # type: ignore[arg-type]
    assert [r.call_sid for r in registry.finished] == ["CA2", "CA3", "CA4"]


def test_a_status_is_kept_and_noted_in_the_record_of_the_call_in_progress() -> None:
    registry, call = CallRegistry(), StandInCall(1)
    registry.started(call)  # type: ignore[arg-type]
    registry.twilio_status("CA1", "in-progress")
    registry.twilio_status("CA1", "completed", duration_s="42")
    assert [(s["status"], s.get("duration_s")) for s in registry.statuses["CA1"]] == [
        ("in-progress", None), ("completed", "42")]
    assert all(float(s["at"]) > 0 for s in registry.statuses["CA1"])
    assert call.record.notes == [("twilio_status", {"status": "in-progress"}),
                                 ("twilio_status", {"status": "completed"})]


def test_statuses_keep_the_most_recently_touched_calls() -> None:
    registry = CallRegistry(recent=2)
    registry.twilio_status("CA1", "ringing")
    registry.twilio_status("CA2", "ringing")
    registry.twilio_status("CA1", "in-progress")  # CA1 is now the most recent
    registry.twilio_status("CA3", "ringing")
    assert list(registry.statuses) == ["CA1", "CA3"]
    assert [s["status"] for s in registry.statuses["CA1"]] == ["ringing", "in-progress"]


def test_an_amd_result_goes_to_the_call_in_progress() -> None:
    registry, call = CallRegistry(), StandInCall(1)
    registry.started(call)  # type: ignore[arg-type]
    registry.answered_by("CA1", "machine_end_beep")
    assert call.told == ["machine_end_beep"] and registry.early_amd == {}


def test_an_amd_result_before_the_stream_starts_waits_for_it() -> None:
    registry, call = CallRegistry(), StandInCall(1)
    registry.answered_by("CA1", "human")
    assert registry.early_amd == {"CA1": "human"} and call.told == []
    registry.started(call)  # type: ignore[arg-type]
    assert call.told == ["human"] and registry.early_amd == {}


def test_early_amd_results_are_bounded() -> None:
    registry = CallRegistry(recent=2)
    for n in range(4):
        registry.answered_by(f"CA{n}", "human")
    assert list(registry.early_amd) == ["CA2", "CA3"]


def test_the_calls_in_progress_as_get_calls_lists_them() -> None:
    registry, call = CallRegistry(), StandInCall(1)
    registry.started(call)  # type: ignore[arg-type]
    assert registry.in_progress(now=1012.34) == [{
        "call_sid": "CA1", "stream_sid": "MZ1", "from": "+15550001111", "to": "+15550002222",
        "agent": "Assistant", "direction": "inbound", "duration_s": pytest.approx(12.3),
        "speaking": "agent",
    }]


def test_a_failing_listener_of_finished_calls_costs_no_record(caplog) -> None:
    from types import SimpleNamespace

    from gateway.bridge.record import CallRecord
    from gateway.web.registry import CallRegistry

    def broken(record) -> None:
        raise RuntimeError("exporter down")

    registry = CallRegistry(on_ended=broken)
    call = SimpleNamespace(record=CallRecord(call_sid="CA1", stream_sid="MZ1"))
    registry.calls["MZ1"] = call
    with caplog.at_level("ERROR", logger="gateway.app"):
        registry.ended(call)
    assert registry.calls == {} and list(registry.finished) == [call.record]
    assert "[call=CA1] metrics or traces of the finished call failed" in caplog.text
