"""Smoke test of the load benchmark's harness (bench/): two calls for two seconds through the
gateway and through the bare relay, with every process of a real run (the Realtime server and
the simulated calls in processes of their own, real sockets, the real SDK). It checks that
frames flowed both ways, that every figure of the report is a number, and that the report
prints; it asserts nothing about timing (CI machines are noisy). Both steps run at once, to
keep it short."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

from bench import analysis, load
from bench.harness import Step, run_step


def test_two_calls_through_the_gateway_and_the_relay(tmp_path):
    def run(target: str) -> dict:
        # pcm16: the gateway transcodes both ways (the relay always passes G.711 through).
        step = Step(target, "pcm16", calls=2, rate=20.0, settle=0.5, hold=2.0, warmup_calls=0)
        return analysis.summarise(run_step(step, tmp_path / target, quiet=False))

    with ThreadPoolExecutor(2) as pool:
        gateway, relay = pool.map(run, ("gateway", "relay"))

    for target, summary in (("gateway", gateway), ("relay", relay)):
        assert summary["failures"] == [], (target, summary["failures"])
        for direction in ("inbound", "outbound"):
            figures = summary[direction]
            assert figures["frames"] >= 50, (target, direction, figures)  # 2 calls, ~2 s, 50 frames/s each
            for key in ("p50", "p99", "max", "harness_max"):
                assert math.isfinite(figures[key]), (target, direction, key, figures)
        assert summary["cpu_per_call_s_ms"] > 0
        assert math.isfinite(summary["mem_per_call_mb"])
        assert summary["setup"]["n"] == 2 and math.isfinite(summary["setup"]["p50"])

    text = load.comparison("pcm16", gateway, relay, None, ramp_ran=False)
    assert "CPU per call-second" in text and "bare relay" in text
    assert "nan" not in text


def test_two_calls_through_the_sdk_relay_with_either_pcm16_conversion(tmp_path):
    """The SDK relay (the floor of a bridge on the Agents SDK) in PCM16, converting with
    ``audioop.ratecv`` and with the gateway's own transcoders (``--sdk-relay-convert``)."""
    conversions = ("ratecv", "polyphase")

    def run(convert: str) -> dict:
        step = Step("sdk-relay", "pcm16", calls=2, rate=20.0, settle=0.5, hold=2.0, warmup_calls=0,
                    extra_env={"SDK_RELAY_CONVERT": convert})
        return analysis.summarise(run_step(step, tmp_path / convert, quiet=False))

    with ThreadPoolExecutor(2) as pool:
        summaries = dict(zip(conversions, pool.map(run, conversions)))

    for convert, summary in summaries.items():
        assert summary["failures"] == [], (convert, summary["failures"])
        for direction in ("inbound", "outbound"):
            assert summary[direction]["frames"] >= 50, (convert, direction, summary[direction])
        assert summary["cpu_per_call_s_ms"] > 0
