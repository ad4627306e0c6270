"""The deployment under test and the roll, as one object: HAProxy in front of three gateway
instances, the Realtime server behind them, the fake Twilio and the load generator in front.

``async with Deployment(...) as deployment:`` starts everything and stops everything, whatever
happens (HAProxy, the instances, the harness processes: no process outlives the test). In
between, the test starts the load, rolls each slot and stops the load; the records of every
process are then on the object for ``tests.rolling.report``.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import gc
import json
import os
import pickle
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from gateway.testing.twilio_api import FakeTwilio
from tests.rolling import load
from tests.rolling.fleet import ROOT, Instance, quiet_ports
from tests.rolling.haproxy import HAProxy
from tests.rolling.stalls import Stalls

__all__ = ["ACCOUNT_SID", "ANSWERED_BY", "Deployment", "Roll"]

AUTH_TOKEN = "rolling-test-token"
ACCOUNT_SID = "AC" + "3" * 32
API_KEY = "rolling-test-key"
#: The answering-machine result, as Twilio posts it a moment after the answer.
ANSWERED_BY = "machine_end_beep"
AMD_AFTER_S = 1.5


def gateway_env(lb_url: str, model_url: str, twilio_url: str, data_dir: Path) -> dict[str, str]:
    """Every instance's settings: the same for all (Twilio's URLs point at the balancer), but
    its own GATEWAY_INSTANCE_URL (``Instance.start``)."""
    return {
        "PUBLIC_URL": lb_url,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_BASE_URL": twilio_url,
        "OPENAI_REALTIME_URL": model_url,
        "OPENAI_API_KEY": "",
        "GATEWAY_DATA_DIR": str(data_dir),
        "GATEWAY_API_KEY": API_KEY,
        "GATEWAY_AMD": "true",
        "GATEWAY_CALLER_ID": "+15550009999",
        "GATEWAY_DRAIN_REDIRECT_URL": lb_url + "/twilio/voice",
        # The benchmark's agent: the built-in one, tagged with its call SID for the model's records.
        "GATEWAY_AGENT": "bench.agent:for_call",
        # The callers are silent and the agent never stops: no check-ins.
        "GATEWAY_SILENCE_CHECK_IN_S": "0",
        "GATEWAY_SILENCE_GIVE_UP_S": "0",
        "GATEWAY_LOG_LEVEL": "INFO",
        "PYTHONPATH": _pythonpath(),
    }


def _pythonpath() -> str:
    return os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))


class Roll:
    """One slot's replacement: the old instance, the new one, what the old one held."""

    def __init__(self, slot: int, old: Instance, new: Instance) -> None:
        self.slot, self.old, self.new = slot, old, new
        self.to_drain = 0  # calls the old one held at its SIGTERM
        self.down_s = 0.0  # from its SIGTERM until HAProxy saw it down
        self.exit_status: int | None = None


class Deployment:
    def __init__(self, haproxy: str, workdir: Path, calls: list[load.PlannedCall], *, slots: int,
                 ready_timeout_s: float, drain_timeout_s: float) -> None:
        self.haproxy_binary = haproxy
        self.workdir = workdir
        self.calls = calls
        self.slots = slots
        self.ready_timeout_s = ready_timeout_s  # a new instance is up within this
        self.drain_timeout_s = drain_timeout_s  # an old one exits within this of its SIGTERM
        self.data_dir = workdir / "data"
        self.inbound = [c for c in calls if c.direction == "inbound"]
        self.outbound = [load.Outbound(c) for c in calls if c.direction == "outbound"]
        self.stop_file = workdir / "stop"  # once it exists, no new incoming call starts (bench/caller.py)
        self.no_more_calls = asyncio.Event()  # the same, for the outbound calls
        self.instances: list[Instance] = []
        self.current: list[Instance] = []  # each slot's instance taking calls
        self.rolls: list[Roll] = []
        self.stalls = Stalls()
        self.lag, self.lag_t = array.array("d"), array.array("d")  # this process's loop probe
        self.base = 0.0  # the load's time zero (monotonic)
        self.began = time.monotonic()
        self.started_s = 0.0  # how long starting everything took
        self.rolled = 0.0  # the last old instance exited (monotonic)
        self.stopped = 0.0  # the load stopped (monotonic)
        self.stopped_all = 0.0  # everyone stopped (monotonic)
        self.final_exits: list[int | None] = []
        self.haproxy_stat: dict[str, dict[str, str]] = {}
        self.caller_record: dict[str, Any] = {}
        self.model_record: dict[str, Any] = {}
        self._stack = contextlib.AsyncExitStack()
        self._drains: list[asyncio.Task[int | None]] = []

    # --- Start and stop ----------------------------------------------------------------------------

    async def __aenter__(self) -> Deployment:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._stack.aclose()

    async def _start(self) -> None:
        stack = self._stack
        # This process carries the outbound calls' callees: keep its (pytest's) start-up heap
        # out of the collector's sight, or a full collection stalls them (the gateway does the
        # same: gateway.serving.freeze_startup_heap).
        gc.collect()
        gc.freeze()
        stack.callback(gc.unfreeze)
        stack.callback(self.stop_file.touch)  # whatever happens, the load stops
        stack.callback(self.no_more_calls.set)
        model_port, lb_port, *slot_ports = quiet_ports(2 + 2 * self.slots)
        env = {**os.environ, "PYTHONPATH": _pythonpath()}
        self.model = await load.spawn(
            "model", load.model_argv(model_port, 60, self.workdir / "model.pickle"), self.workdir, env)
        stack.push_async_callback(_end, self.model)
        self.twilio = await stack.enter_async_context(FakeTwilio(
            ACCOUNT_SID, AUTH_TOKEN, answer_after_s=0.3, answered_by=ANSWERED_BY, amd_after_s=AMD_AFTER_S))
        names = [f"slot{s}{side}" for s in range(1, self.slots + 1) for side in "ab"]
        self.ports = dict(zip(names, slot_ports))
        self.lb = HAProxy(self.haproxy_binary, self.workdir, lb_port, self.ports)
        stack.callback(self.lb.stop)
        await self.lb.start()
        # The load generator starts now (its imports take a while) and begins when told.
        plan = self.workdir / "plan.json"
        plan.write_text(json.dumps(load.caller_plan(self.inbound, self.lb.url + "/twilio/voice", AUTH_TOKEN,
                                                    ACCOUNT_SID, self.stop_file)))
        self.caller = await load.spawn("caller", load.caller_argv(plan, self.workdir / "caller.pickle"),
                                       self.workdir, env, stdin=True)
        stack.push_async_callback(_end, self.caller)
        model_url = (await load.first_line(self.model, "bench/model.py", 60))["url"]
        self.settings = gateway_env(self.lb.url, model_url, self.twilio.base_url, self.data_dir)
        self.current = [self._instance(f"slot{s}a") for s in range(1, self.slots + 1)]
        for instance in self.current:
            instance.start()
        for instance in self.current:
            await self.until_up(instance)
        for s in range(1, self.slots + 1):  # the spare ports are down before anyone calls
            await self.lb.wait_status(f"slot{s}b", "DOWN", 5)
        self.client = await stack.enter_async_context(httpx.AsyncClient())
        self.started_s = time.monotonic() - self.began

    def _instance(self, name: str) -> Instance:
        instance = Instance(name, self.ports[name], self.workdir / f"{name}.log", self.settings)
        self.instances.append(instance)
        self._stack.callback(instance.kill)
        return instance

    async def until_up(self, instance: Instance) -> None:
        """Until HAProxy's checks see the instance up (failing at once if it died)."""
        deadline = time.monotonic() + self.ready_timeout_s
        while (await self.lb.status()).get(instance.name) != "UP":
            assert instance.alive(), f"{instance.name} exited:\n{instance.log()[-3000:]}"
            assert time.monotonic() < deadline, \
                f"{instance.name} not up after {self.ready_timeout_s} s:\n{instance.log()[-3000:]}"
            await asyncio.sleep(0.02)
        instance.ready = time.monotonic()

    # --- The load ----------------------------------------------------------------------------------

    async def start_load(self) -> None:
        """Go: the load generator's plan and the outbound calls start now (``base``)."""
        stack = self._stack
        assert self.caller.stdin is not None
        self.caller.stdin.write(b"go\n")
        await self.caller.stdin.drain()
        self.base = (await load.first_line(self.caller, "bench/caller.py", 30))["base"]
        probe_stop = asyncio.Event()
        probe = asyncio.create_task(load.lag_probe(self.lag, self.lag_t, probe_stop))
        stack.push_async_callback(_cancel, probe)
        stack.callback(probe_stop.set)
        sampler = asyncio.create_task(self.stalls.sample_forever(lambda: {
            "haproxy": self.lb.pid, **{i.url: i.pid for i in self.instances if i.alive()}}))
        stack.push_async_callback(_cancel, sampler)
        placing = asyncio.gather(*(load.run_outbound(o, self.base, self.client, self.lb.url, API_KEY, self.twilio,
                                                     self.no_more_calls) for o in self.outbound))
        self._placing = asyncio.ensure_future(placing)
        stack.push_async_callback(_cancel, self._placing)  # done by then, unless the test failed

    async def at(self, seconds: float) -> None:
        """Sleep until ``seconds`` after the load began."""
        await asyncio.sleep(max(0.0, self.base + seconds - time.monotonic()))

    async def stop_load(self, timeout: float) -> None:
        """No new calls; wait for those in progress to end (and the load generator to exit)."""
        self.stop_file.touch()
        self.no_more_calls.set()
        self.stopped = time.monotonic()
        await asyncio.wait_for(self._placing, timeout)
        await asyncio.wait_for(self.caller.wait(), timeout)

    # --- The roll ----------------------------------------------------------------------------------

    async def roll(self, slot: int) -> Roll:
        """Replace the slot's instance: start the new one on the slot's other port, wait until
        HAProxy sees it up, SIGTERM the old one (which drains in the background)."""
        old = self.current[slot]
        new = self._instance(old.name[:-1] + ("b" if old.name.endswith("a") else "a"))
        roll = Roll(slot + 1, old, new)
        self.rolls.append(roll)
        new.start()
        await self.until_up(new)
        async with httpx.AsyncClient() as client:
            roll.to_drain = (await client.get(old.url + "/healthz", timeout=5)).json()["active_calls"]
        old.terminate()
        roll.down_s = await self.lb.wait_status(old.name, "DOWN", 5)
        self._drains.append(asyncio.create_task(old.wait_exit(self.drain_timeout_s)))
        self.current[slot] = new
        return roll

    async def drained(self) -> list[int | None]:
        """Until every old instance has exited; their exit statuses (None: still running)."""
        statuses = await asyncio.gather(*self._drains)
        for roll, status in zip(self.rolls, statuses):
            roll.exit_status = status
        self.rolled = time.monotonic()
        return list(statuses)

    # --- The end -----------------------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop the new instances (no calls left: they drain at once) and the Realtime server
        (it writes its records), and read every process's records."""
        self.haproxy_stat = await self.lb.stat()
        for instance in self.current:
            instance.terminate()
        self.final_exits = [await instance.wait_exit(15) for instance in self.current]
        self.model.terminate()
        await asyncio.wait_for(self.model.wait(), 30)
        self.caller_record = pickle.loads((self.workdir / "caller.pickle").read_bytes())
        self.model_record = pickle.loads((self.workdir / "model.pickle").read_bytes())
        self.stopped_all = time.monotonic()

    def logs(self) -> dict[str, str]:
        """Each instance's log, by its URL."""
        return {instance.url: instance.log() for instance in self.instances}


async def _cancel(task: asyncio.Future[Any]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _end(process: asyncio.subprocess.Process) -> None:
    """Cleanup, whatever happened: a harness process still running is killed."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(process.wait(), 10)
