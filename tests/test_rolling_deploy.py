"""A rolling deploy under load, on this machine, with a real load balancer.

HAProxy (Debian's package, run by the test with its own configuration: tests/rolling/haproxy.py)
health-checks ``/readyz`` in front of three ``gateway serve`` instances on 127.0.0.1 that share
one call store. Calls arrive at 2 a second and last 10 to 20 s, so about 30 are in progress:
incoming calls from the benchmark's load generator (bench/caller.py), outbound calls placed
with ``POST /calls`` and answered by an answering machine in the fake Twilio, and the
benchmark's Realtime server (bench/model.py) talking in every call without a pause. Twilio's
URLs all point at the balancer, so a call's webhook, its stream and its callbacks may each
reach a different instance.

Then every instance is replaced in turn, as a deploy does: its replacement starts on the slot's
other port, and once HAProxy sees it up the old one gets SIGTERM and drains in the background
(its calls go on; it exits 0 after the last one). New calls keep coming until the last old
instance has exited. It passes when no call was dropped, no new call was refused, every call's
audio was continuous both ways, and every outbound call's answering-machine result reached its
agent, some of them having landed on an instance other than the one holding the call. The
figures are printed at the end (even without -s); tests/rolling/ says how each is measured.

Without ``haproxy`` the test is skipped, unless ``GATEWAY_TEST_REQUIRE_HAPROXY=1`` (CI), where it
fails. It takes 70 to 90 s.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.rolling import load
from tests.rolling.deployment import Deployment
from tests.rolling.haproxy import find_haproxy
from tests.rolling.report import Report

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="one CLOCK_MONOTONIC shared by processes: Linux")

#: The load: a call every half second, 10-20 s long (about 30 in progress), every tenth one
#: outbound. The roll begins once the calls in progress have built up; new calls keep coming
#: until the last old instance has exited (and at most ARRIVALS_MAX_S).
RATE = 2.0
SHORTEST_S, LONGEST_S = 10.0, 20.0
OUTBOUND_EVERY = 10
ROLL_AT_S = 16.0
ARRIVALS_MAX_S = 150.0
SLOTS = 3
#: A new instance is up within this (it starts in 2 to 4 s; more on a busy machine).
READY_TIMEOUT_S = 45.0
#: An old instance exits within this of its SIGTERM: its longest call, and margin.
DRAIN_TIMEOUT_S = LONGEST_S + 25.0
#: Audio continuity: the longest gap allowed, each way, of what the machine does not explain
#: (tests/rolling/stalls.py). A healthy path's gaps are its jitter, tens of ms; a call that is
#: dropped and set up again, or an instance or the balancer holding its calls back, leaves one of
#: hundreds of ms or more (an instance stopped for 400 ms mid-roll, tried once: 373 ms left).
MAX_GAP_S = 0.250
#: Every stored call ends as its caller hung up (a ``stop`` read after the socket closed too:
#: tests/callflow/test_lifecycle.py).
ENDED_BY_CALLER = {"caller_hung_up"}


def haproxy_or_skip() -> str:
    binary = find_haproxy()
    if binary is not None:
        return binary
    why = "haproxy is not installed (Debian: apt-get install haproxy)"
    if os.environ.get("GATEWAY_TEST_REQUIRE_HAPROXY") == "1":
        pytest.fail(f"GATEWAY_TEST_REQUIRE_HAPROXY=1 but {why}")
    pytest.skip(why)


async def test_a_rolling_deploy_under_load_drops_no_call(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    binary = haproxy_or_skip()
    calls = load.plan(ARRIVALS_MAX_S, RATE, SHORTEST_S, LONGEST_S, OUTBOUND_EVERY)
    async with Deployment(binary, tmp_path, calls, slots=SLOTS, ready_timeout_s=READY_TIMEOUT_S,
                          drain_timeout_s=DRAIN_TIMEOUT_S) as deployment:
        await deployment.start_load()
        await deployment.at(ROLL_AT_S)
        for slot in range(SLOTS):
            await deployment.roll(slot)
        old_exits = await deployment.drained()
        await deployment.stop_load(timeout=LONGEST_S + 30)
        await deployment.stop()
    report = Report(deployment)
    summary = report.summary()
    with capsys.disabled():  # the figures, in every run's output
        print("\n" + summary)

    assert old_exits == [0] * SLOTS, f"the old instances' exit statuses: {old_exits}\n{summary}"
    assert deployment.final_exits == [0] * SLOTS, f"the new ones': {deployment.final_exits}\n{summary}"
    assert all(log.count("drained: no calls in progress") == 1 for log in report.logs.values()), summary
    # The roll meant something: calls in progress everywhere, new ones all along.
    assert min(r.to_drain for r in deployment.rolls) >= 3, f"an instance stopped with few calls\n{summary}"
    assert min(report.in_progress) >= 20, f"too few calls in progress at a SIGTERM\n{summary}"
    assert report.during_drains >= 10, f"too few new calls during the drains\n{summary}"
    # No call dropped, none refused, each one's record written by the instance that carried it.
    assert not report.refused, f"refused: {report.detail(report.refused)}\n{summary}"
    assert not report.dropped, f"dropped: {report.detail(report.dropped)}\n{summary}"
    assert set(report.end_reasons) <= ENDED_BY_CALLER, f"stored end reasons: {report.end_reasons}\n{summary}"
    assert not report.reconnected, f"model connections re-established: {report.reconnected[:5]}\n{summary}"
    # Audio continuous both ways.
    assert report.out_left.seconds <= MAX_GAP_S and report.in_left.seconds <= MAX_GAP_S, \
        f"an audio gap that the machine does not explain, over {1000 * MAX_GAP_S:.0f} ms\n{summary}"
    # Every answering-machine result reached its agent, wherever it landed.
    outbound = report.outbound
    assert report.amd_answers == [[204]] * len(outbound), f"AMD callbacks answered {report.amd_answers}\n{summary}"
    assert sorted(report.told) == sorted(o.call_sid for o in outbound), \
        f"agents never told: {set(o.call_sid for o in outbound) - set(report.told)}\n{summary}"
    assert report.elsewhere, f"no AMD result landed away from its call's holder: {report.amd_outcomes}\n{summary}"
