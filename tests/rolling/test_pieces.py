"""The rolling-deploy test's measuring pieces, on inputs whose answers are known (no HAProxy
needed): a figure that is wrong would pass or fail that test for the wrong reason."""

from __future__ import annotations

import array

import pytest

from bench.caller import redirect_target
from tests.rolling.figures import caller_gaps, silences
from tests.rolling.stalls import Stalls


def test_the_load_generator_follows_a_redirect_as_twilio_does() -> None:
    redirect = ('<?xml version="1.0" encoding="UTF-8"?>'
                '<Response><Redirect method="POST">/twilio/voice</Redirect></Response>')
    assert redirect_target(redirect, "http://127.0.0.1:9/old/voice") == "http://127.0.0.1:9/twilio/voice"
    stream = '<Response><Connect><Stream url="ws://127.0.0.1:9/twilio/media"/></Connect></Response>'
    assert redirect_target(stream, "http://127.0.0.1:9/twilio/voice") is None
    with pytest.raises(ValueError, match="only POST"):
        redirect_target('<Response><Redirect method="GET">/x</Redirect></Response>', "http://127.0.0.1:9/")


def test_a_silence_is_audio_arriving_after_the_queue_ran_dry() -> None:
    # 100 ms pieces (800 mu-law bytes) every 100 ms: continuous; then one 300 ms late.
    arrivals = [(0.0, 800), (0.1, 800), (0.2, 800), (0.6, 800), (0.65, 800), (0.7, 800)]
    worst, noted = silences(arrivals)
    assert worst == pytest.approx(0.3)
    assert noted == [pytest.approx((0.3, 0.6))]
    # Early audio queues up: no silence.
    assert silences([(0.0, 800), (0.05, 800), (0.15, 800)]) == (0.0, [])


def test_a_caller_gap_counts_frames_by_bytes_at_the_model() -> None:
    # G.711 at the model: 160 bytes a frame, one append a frame every 20 ms, one 100 ms late.
    times = [1.0 + 0.02 * k for k in range(10)] + [1.0 + 0.02 * 10 + 0.1]
    conn = {"app_t": array.array("d", times), "app_bytes": array.array("q", [160 * (k + 1) for k in range(11)]),
            "delta_t": array.array("d", [1.0]), "input_type": "audio/pcmu"}
    worst, noted = caller_gaps(conn)
    assert worst == pytest.approx(0.1)
    assert noted == [pytest.approx((1.18 + 0.02, 1.3))]


def test_the_machine_explains_cpu_waits_and_harness_stalls_not_the_rest() -> None:
    stalls = Stalls()
    # The gateway waited 200 ms for a CPU between 10.0 and 10.5; the model's loop was held
    # for 50 ms up to 10.3.
    stalls.waits["gw"] = ([9.5, 10.0, 10.5, 11.0], [1.0, 1.0, 1.2, 1.2])
    stalls.add_lag("model", array.array("d", [10.1, 10.3, 10.31]), array.array("d", [0.0, 0.05, 0.0]))
    assert stalls.waited("gw", 10.0, 10.5) == pytest.approx(0.2)
    assert stalls.waited("gw", 10.0, 10.25) == pytest.approx(0.1)  # between samples: linear
    assert stalls.stalled("model", 10.0, 10.5) == pytest.approx(0.05)
    assert stalls.stalled("model", 10.28, 10.5) == pytest.approx(0.02)  # only the part inside
    assert stalls.explained(10.0, 10.5, ["gw", "haproxy"], ["model"]) == pytest.approx(0.25)
    assert stalls.explained(11.0, 12.0, ["gw"], ["model"]) == 0.0  # a stall of the path's own
