"""The barge-in benchmark's figures (bench/analysis.py, bench/bargein.py), from hand-made
records of the caller and the Realtime server: no processes, no timing."""

from __future__ import annotations

import array
import math
import types

import pytest

from bench import analysis


def call(sid: str, *, t_clear: float | None, rx: list[int], at_clear: int | None, played: float | None,
         group: str = "bargein", clears: int = 1, echo_late: float = 0.0,
         first_audio: float | None = None) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        call_sid=sid, group=group, barge_in=1.0, t_clear=t_clear, clears=clears, first_audio=first_audio,
        rx_t=array.array("d", [float(i) for i in range(len(rx))]), rx_bytes=array.array("q", rx),
        rx_bytes_at_clear=at_clear, played_ms_at_clear=played, error=None, closed_by="caller",
        last_echo_at_clear=None if t_clear is None else (t_clear - 0.05, t_clear - 0.05 + echo_late))


def conn(sid: str, *, sent: float | None, truncations: list[tuple[str, int, float]]) -> dict:
    return {"call_sid": sid, "barge_at": 9.999, "speech_queued": 9.9995 if sent is not None else None,
            "speech_sent": sent, "item_ms_at_barge": 1300.0, "item_id": "item_1",
            "truncations": truncations, "response_status": "cancelled"}


def test_records_and_summary_from_both_sides():
    calls = [
        # Cleared 2 ms after the server sent speech_started; 1200 ms played; truncated at 1203.
        call("CA1", t_clear=10.002, rx=[160, 320, 9600], at_clear=9600, played=1200.0, first_audio=8.792),
        # Cleared 4 ms after; two frames (320 bytes, 40 ms) arrived after the clear; truncated short.
        call("CA2", t_clear=20.004, rx=[8000, 8160, 8320], at_clear=8000, played=990.5, echo_late=0.003),
        # Never cleared.
        call("CA3", t_clear=None, rx=[160], at_clear=None, played=None, clears=0),
        # A background call: not a barge-in, left out.
        call("CA4", t_clear=None, rx=[160], at_clear=None, played=None, group="load"),
    ]
    connections = [
        conn("CA1", sent=10.0, truncations=[("item_1", 1203, 10.010)]),
        # A truncation from before this barge-in is not its answer.
        conn("CA2", sent=20.0, truncations=[("item_1", 5, 1.0), ("item_1", 985, 20.012)]),
        conn("CA3", sent=30.0, truncations=[]),
    ]
    records = analysis.barge_in_records(calls, connections)
    assert [r["call_sid"] for r in records] == ["CA1", "CA2", "CA3"]
    one, two, three = records
    assert one["clear_ms"] == pytest.approx(2.0)
    assert one["truncation_error_ms"] == pytest.approx(3.0)
    assert one["after_clear_frames"] == 0 and one["after_clear_ms"] == 0
    assert one["truncate_ms"] == pytest.approx(10.0)
    assert one["problem"] is None
    assert two["audio_end_ms"] == 985
    assert two["truncation_error_ms"] == pytest.approx(-5.5)
    assert two["after_clear_frames"] == 2 and two["after_clear_ms"] == pytest.approx(40.0)
    assert three["clear_ms"] is None and three["problem"] == "no clear"

    s = analysis.barge_in_summary(records)
    assert s["n"] == 3 and s["ok"] == 2
    assert s["problems"] == ["CA3: no clear"]
    assert s["clear"]["n"] == 2 and s["clear"]["max"] == pytest.approx(4.0)
    assert s["clear"]["p50"] == pytest.approx(3.0)
    assert s["error"]["max"] == pytest.approx(5.5)
    assert s["error"]["worst"] == pytest.approx(-5.5)  # signed: the model thinks the caller heard less
    assert s["error"]["p50"] == pytest.approx(4.25)
    assert s["after_clear"] == {"frames": 2, "ms": pytest.approx(40.0), "calls": 1}
    assert s["extra_clears"] == 0
    assert one["starved_ms"] == pytest.approx(10.0) and two["starved_ms"] is None
    assert s["starved"]["max"] == pytest.approx(10.0)
    assert two["echo_late_ms"] == pytest.approx(3.0) and s["echo_late_max"] == pytest.approx(3.0)


def test_a_truncation_of_another_item_is_a_problem_and_not_counted():
    calls = [call("CA1", t_clear=10.002, rx=[9600], at_clear=9600, played=1200.0)]
    records = analysis.barge_in_records(calls, [conn("CA1", sent=10.0, truncations=[("item_9", 1200, 10.01)])])
    assert records[0]["problem"].startswith("truncated item_9")
    s = analysis.barge_in_summary(records)
    assert s["error"]["n"] == 0 and math.isnan(s["error"]["p99"])
    assert s["clear"]["n"] == 1  # the clear itself was measured


def test_the_plan_places_seeded_barge_ins_in_the_window():
    from bench.harness import Step, plan_calls

    step = Step("gateway", "pcm16", calls=3, hold=10.0, barge_ins=25, barge_in_rate=2.5, barge_in_seed=7)
    calls, timeline = plan_calls(step, 0.0)
    barge = [c for c in calls if c["group"] == "bargein"]
    assert len(barge) == 25 and len([c for c in calls if c["group"] == "load"]) == 3
    assert all(0.8 <= c["barge_in"] <= 2.5 and 0.5 <= c["after_clear"] <= 1.0 for c in barge)
    assert all(timeline.hold_start <= c["start"] and c["start"] + c["barge_in"] + c["after_clear"] < timeline.hold_end
               for c in barge)
    assert len({c["call_sid"] for c in barge}) == 25
    assert len({round(c["barge_in"], 3) for c in barge}) == 25  # varied offsets
    again, _ = plan_calls(step, 0.0)
    assert [c["call_sid"] for c in again if c["group"] == "bargein"] == [c["call_sid"] for c in barge]
    assert not [c for c in plan_calls(Step("gateway", calls=3), 0.0)[0] if c["group"] == "bargein"]


def test_the_plan_gives_calls_random_frame_phases_at_the_same_rate():
    """Real calls start at random instants, so their 20 ms frame clocks have random phases;
    evenly spaced starts (40 ms apart at 25 a second) would line every call's frames up."""
    import numpy as np

    from bench.harness import Step, plan_calls

    def load_starts(seed):
        calls, _ = plan_calls(Step("gateway", calls=200, rate=25.0, start_seed=seed), 0.0)
        return np.array([c["start"] for c in calls if c["group"] == "load"])

    even, jittered = load_starts(None), load_starts(1)
    phases = lambda starts: np.mod(starts - even[0] + 0.010, 0.020)  # noqa: E731 (even spacing: all 10 ms)
    assert np.ptp(phases(even)) < 1e-6  # every call on the same frame phase
    assert np.histogram(phases(jittered), bins=4, range=(0, 0.020))[0].min() >= 30  # spread over the period
    assert np.all(np.floor((jittered - even[0]) * 25.0) == np.arange(200))  # one start in each 40 ms slot
    assert np.array_equal(jittered, load_starts(1))  # seeded: every run the same
