"""The load: calls arriving at a steady rate, each lasting 10 to 20 s, both directions.

- **Incoming calls** come from the benchmark's load generator, ``bench/caller.py``, a process
  of its own that runs many calls at real-time pace and records when every frame went out and
  when every agent frame arrived (CLOCK_MONOTONIC, which every process on the machine shares).
  It rings the balancer's voice webhook, follows a ``<Redirect>`` as Twilio does, and opens
  the Media Stream the TwiML names: the balancer again.
- **Outbound calls** are placed by this process, ``POST /calls`` through the balancer, with the
  fake Twilio (``gateway.testing.twilio_api.FakeTwilio``) here as the phone network: it answers
  with an answering machine, connects the stream to the URL in the TwiML (the balancer) and,
  a moment later, posts the answering-machine result to the callback URL (the balancer too:
  it may land on any instance).
- **The model** is the benchmark's Realtime server, ``bench/model.py``, talking without a pause
  at real-time pace for longer than any call, and recording, per call, when each piece of
  caller audio reached it and when each piece of its own audio went out.

Every caller is silent, so the agent never stops talking: audio flows both ways for the whole
of every call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.model import lag_probe  # the model server's probe: this process is probed the same way
from gateway.testing.twilio_api import FakeTwilio
from gateway.testing.twilio_api.call import FakeCall

__all__ = ["Outbound", "PlannedCall", "caller_plan", "lag_probe", "plan", "run_outbound", "spawn"]

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
#: The golden ratio's fraction: spreads the calls' lengths evenly over their range, in no order.
_SPREAD = 0.6180339887


@dataclass(frozen=True)
class PlannedCall:
    index: int
    direction: str  # "inbound" or "outbound"
    start: float  # seconds from the plan's base
    seconds: float  # how long the caller stays on the line


def plan(arrivals_s: float, rate: float, shortest_s: float, longest_s: float, outbound_every: int) -> list[PlannedCall]:
    """Calls arriving every ``1 / rate`` s for at most ``arrivals_s`` s (the test stops them
    sooner: ``stop_file``); every ``outbound_every``-th one is an outbound call; lengths spread
    evenly between ``shortest_s`` and ``longest_s``."""
    calls = []
    for i in range(int(arrivals_s * rate)):
        direction = "outbound" if i % outbound_every == outbound_every // 2 else "inbound"
        seconds = shortest_s + (longest_s - shortest_s) * ((i * _SPREAD) % 1.0)
        calls.append(PlannedCall(i, direction, i / rate, round(seconds, 3)))
    return calls


def caller_plan(calls: list[PlannedCall], webhook: str, auth_token: str, account_sid: str,
                stop_file: Path) -> dict[str, Any]:
    """``bench/caller.py``'s plan for the incoming calls (in ``calls``' order): no call starts
    once ``stop_file`` exists."""
    return {"webhook": webhook, "auth_token": auth_token, "account_sid": account_sid, "base_offset": 1.0,
            "stop_file": str(stop_file), "gc_freeze": True,
            "calls": [{"start": c.start, "end": c.start + c.seconds, "group": str(c.index)}
                      for c in calls if c.direction == "inbound"]}


async def spawn(name: str, argv: list[str], workdir: Path, env: dict[str, str],
                stdin: bool = False) -> asyncio.subprocess.Process:
    """A harness process; its stderr in ``workdir/<name>.log``, its stdout piped (each prints
    one line of JSON when it is ready)."""
    log = open(workdir / f"{name}.log", "wb")
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable, *argv, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=log,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL)
    finally:
        log.close()


async def first_line(process: asyncio.subprocess.Process, what: str, timeout: float) -> dict[str, Any]:
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), timeout)
    except TimeoutError:
        raise AssertionError(f"{what}: nothing said in {timeout} s") from None
    assert line, f"{what} exited ({await process.wait()}) before it was ready"
    return json.loads(line)


def model_argv(port: int, reply_s: float, out: Path) -> list[str]:
    return [str(BENCH / "model.py"), "--port", str(port), "--reply-seconds", f"{reply_s:.0f}", "--out", str(out),
            "--gc-freeze"]


def caller_argv(plan_path: Path, out: Path) -> list[str]:
    return [str(BENCH / "caller.py"), str(plan_path), str(out)]


@dataclass
class Outbound:
    """One outbound call placed by the test, and what happened to it (monotonic seconds)."""

    planned: PlannedCall
    skipped: bool = False  # not placed: the load had stopped by its start time
    status: int | None = None  # POST /calls through the balancer
    error: str | None = None  # why it did not go as planned
    call_sid: str | None = None
    posted: float | None = None
    streaming: float | None = None  # the stream's `start` went out
    heard: float | None = None  # 100 ms of the agent's audio had played
    hung_up: float | None = None  # the callee hung up, as planned
    closed_before_hang_up: bool = False
    call: FakeCall | None = field(default=None, repr=False)


async def run_outbound(outbound: Outbound, base: float, client: httpx.AsyncClient, lb_url: str, api_key: str,
                       twilio: FakeTwilio, stop: asyncio.Event) -> None:
    """Place the call at its planned time (unless the load has stopped by then), wait for its
    stream and the agent's first audio, hang up after its planned length. Failures are
    recorded, never raised."""
    planned = outbound.planned
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max(0.0, base + planned.start - time.monotonic()))
    if stop.is_set():
        outbound.skipped = True
        return
    outbound.posted = time.monotonic()
    try:
        response = await client.post(lb_url + "/calls", headers={"Authorization": f"Bearer {api_key}"},
                                     json={"to": f"+1555{7000000 + planned.index:07d}"}, timeout=15)
        outbound.status = response.status_code
        if response.status_code != 201:
            outbound.error = f"POST /calls answered {response.status_code}: {response.text[:200]}"
            return
        outbound.call_sid = response.json()["call_sid"]
        call = outbound.call = twilio.calls[outbound.call_sid]
        caller = await call.wait_caller(timeout=15)
        outbound.streaming = caller.clock.to_monotonic(0.0)
        await caller.wait_heard(100, timeout=15)
        outbound.heard = time.monotonic()
        await asyncio.sleep(max(0.0, outbound.posted + planned.seconds - time.monotonic()))
        outbound.closed_before_hang_up = caller.closed
        outbound.hung_up = time.monotonic()
        await call.hang_up()
    except Exception as exc:  # noqa: BLE001  recorded: one call's failure is a figure, not the end of the run
        outbound.error = f"{type(exc).__name__}: {exc}"
