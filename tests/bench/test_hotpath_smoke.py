"""Smoke test of bench/hotpath.py: both ways of each measure run on the real server, the real
SDK model and ``GatewayModel``, against peers in processes of their own, and every figure is a
CPU time; nothing is asserted about which way is cheaper (CI machines are noisy)."""

from __future__ import annotations

import math

from bench import hotpath


async def test_every_measure_runs_both_ways() -> None:
    results = [await hotpath.twilio_delta(count=40, repeats=1),
               await hotpath.model_audio(160, count=40, repeats=1),
               await hotpath.model_audio(960, count=40, repeats=1)]
    for cpu in results:
        assert set(cpu) == {"plain", "gateway"}
        assert all(math.isfinite(us) and us > 0 for us in cpu.values()), cpu
