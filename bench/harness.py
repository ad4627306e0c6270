"""Running one load step: the processes, their cores, the plan, the samples.

A step is one configuration under load, with fresh processes::

    core 0:  the system under test: `gateway serve` (or bench/serve_profiled.py), or bench/relay.py
    core 1:  bench/model.py (the local Realtime server), bench/caller.py (the simulated calls),
             and this orchestrator (it sleeps; it samples /proc a few times a second at most)

The caller runs a plan of calls, all timed on CLOCK_MONOTONIC (shared by every process):
two warm-up calls (the first calls of a process import and build things lazily), then the
measured calls, started at ``rate`` a second (the ramp; each at a random instant of its
1 / ``rate`` slot, ``Step.start_seed``, so their 20 ms frame clocks have random phases, as
real calls' do), then ``settle`` seconds, then the
``hold`` window in which everything is measured, then every call hangs up at once. An
optional burst starts more calls at ``burst_rate`` a second in the middle of the hold.

The orchestrator samples the system under test from /proc (CPU: utime + stime of
``/proc/PID/stat``; memory: ``VmRSS`` of ``/proc/PID/status``; descriptors: ``/proc/PID/fd``) and
its ``/healthz`` (tasks), at the planned instants. Nothing here needs psutil.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pickle
import random
import select
import signal
import socket
import subprocess
import sys
import time
import types
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
AUTH_TOKEN = "bench-auth-token"
ACCOUNT_SID = "AC" + "0" * 32

#: After the last set-up of a burst, the calls are given this long to be up (greeting heard).
BURST_TAIL_S = 2.0
#: Cores: the system under test alone on one, everything else on the other.
SUT_CORE, LOAD_CORE = 0, 1


try:
    #: The cores this process may use when the harness is imported (before the orchestrator
    #: pins itself to the load core: its children are pinned from this set).
    _CORES: set[int] = set(os.sched_getaffinity(0))
except AttributeError:  # not Linux
    _CORES = set()


def cores_available() -> bool:
    return {SUT_CORE, LOAD_CORE} <= _CORES


def pin_self_to_load_core() -> bool:
    """Pin the calling process (the orchestrator) to the load core, off the gateway's core."""
    if not cores_available():
        return False
    os.sched_setaffinity(0, {LOAD_CORE})
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A child process pinned to one core, with its vital signs from /proc."""

    def __init__(self, name: str, argv: list[str], *, core: int | None, env: dict[str, str] | None = None,
                 log: Path, stdout_pipe: bool = False, stdin_pipe: bool = False) -> None:
        self.name, self.log_path = name, log
        self._log = open(log, "wb")
        self.popen = subprocess.Popen(
            argv, cwd=ROOT, env={**os.environ, **(env or {})},
            stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else self._log, stderr=self._log)
        self.pid = self.popen.pid
        if core is not None and cores_available():
            # Pinned as it starts (its interpreter is still loading: no thread to miss yet);
            # unlike a preexec_fn, this is safe when several steps start from threads.
            os.sched_setaffinity(self.pid, {core})

    def readline(self, timeout: float) -> str:
        """The next line of stdout (started with ``stdout_pipe``), or TimeoutError."""
        assert self.popen.stdout is not None
        ready, _, _ = select.select([self.popen.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError(f"{self.name}: no output in {timeout} s (log: {self.log_path})")
        line = self.popen.stdout.readline().decode()
        if not line:
            raise RuntimeError(f"{self.name} exited ({self.popen.poll()}); log: {self.log_path}")
        return line

    def tell(self, line: str) -> None:
        """Write a line to its stdin (started with ``stdin_pipe``)."""
        assert self.popen.stdin is not None
        self.popen.stdin.write(line.encode() + b"\n")
        self.popen.stdin.flush()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def cpu(self) -> float:
        """CPU seconds used so far (user + system, all threads)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss(self) -> int:
        """Resident memory, bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def signal(self, sig: int) -> None:
        if self.alive():
            self.popen.send_signal(sig)

    def terminate(self) -> None:
        """Ask it to exit (SIGTERM): servers write what they measured, then exit."""
        self.signal(signal.SIGTERM)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited in ``timeout`` s."""
        self.terminate()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)
        self._log.close()
        if self.popen.stdin is not None:
            self.popen.stdin.close()
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        return self.popen.returncode

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)


def get_json(url: str, timeout: float = 2.0) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def wait_healthy(proc: Proc, url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}; log: {proc.log_path}")
        with contextlib.suppress(OSError, ValueError):
            get_json(url, timeout=1.0)
            return
        time.sleep(0.1)
    raise TimeoutError(f"{proc.name} not healthy after {timeout} s; log: {proc.log_path}")


def sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)


@dataclasses.dataclass
class Step:
    """One configuration under load."""

    target: str  # "gateway", "relay" or "sdk-relay"
    mode: str = "g711_ulaw"  # the gateway's GATEWAY_AUDIO_MODE (the relay always passes G.711)
    calls: int = 10
    rate: float = 25.0  # set-ups per second during the ramp
    # Each call's set-up instant is drawn at random within its slot (1 / rate wide), from this
    # seed, so that calls' 20 ms frame clocks have random phases, as real calls' do (Twilio
    # paces each stream from its own start). None: evenly spaced starts, which at 25 a second
    # (40 ms apart) put every call's frames within a few ms of each other's, 50 times a second.
    start_seed: int | None = 1
    settle: float = 2.0  # after the last set-up, before the hold window
    hold: float = 20.0  # the measured window
    burst_calls: int = 0  # calls started in a burst in the middle of the hold
    burst_rate: float = 30.0
    burst_stay: float | None = None  # burst calls hang up this long after their first audio (None: stay)
    profile: Path | None = None  # write a cProfile of the hold window here
    harness_profile: bool = False  # profile the model server and the caller too (whole run)
    gc_log: bool = False  # time the system under test's garbage collections (gc.jsonl)
    gc_threshold: str | None = None  # "T0,T1,T2": the system under test's collector thresholds, to try
    tracemalloc: bool = False  # trace its memory; SIGUSR1 takes the baseline (tracemalloc.txt)
    slow_callbacks: bool = False  # log its event-loop callbacks of 5 ms or more (slow_callbacks.jsonl)
    gc_census: bool = False  # count the objects its collector tracks, by type, at the window's end (gc_census.txt)
    chunk_ms: int = 100  # model audio per delta
    # What the bridge's model connection offers (the gateway's GATEWAY_MODEL_COMPRESSION, the
    # relays' --compression): "none" (the gateway's default) or "deflate". The model server
    # takes up what is offered.
    model_compression: str = "none"
    warmup_calls: int = 2
    # Barge-in calls (bench/bargein.py): this many calls set up at ``barge_in_rate`` a second
    # across the hold; the model server sends ``speech_started`` on each once it has streamed a
    # random ``barge_in_after`` (min, max) seconds of its greeting, and the caller hangs up a
    # random ``barge_in_stay`` seconds after the ``clear``. Random per call, from ``barge_in_seed``.
    barge_ins: int = 0
    barge_in_rate: float = 2.5
    barge_in_after: tuple[float, float] = (0.8, 2.5)
    barge_in_stay: tuple[float, float] = (0.5, 1.0)
    barge_in_seed: int = 15
    python: str = sys.executable
    extra_env: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def label(self) -> str:
        mode = self.mode if self.target != "relay" else "g711 passthrough"
        return f"{self.target} ({mode}), {self.calls} calls"


@dataclasses.dataclass
class Timeline:
    """The plan's instants (monotonic seconds)."""

    warmup: float
    ramp: float  # first measured call starts
    hold_start: float
    burst_start: float | None
    burst_end: float | None
    hold_end: float  # every call hangs up


@dataclasses.dataclass
class StepResult:
    step: Step
    timeline: Timeline
    calls: list[Any]  # bench.caller.CallRecord fields, as attributes
    caller_lag: Any
    caller_lag_t: Any
    connections: list[dict[str, Any]]  # bench.model harvests
    model_lag: Any
    model_lag_t: Any
    samples: dict[str, Any]  # what the orchestrator sampled
    run_dir: Path


def gateway_env(step: Step, port: int, model_url: str, data_dir: Path) -> dict[str, str]:
    """The gateway's settings for the bench: production defaults except where noted."""
    return {
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "OPENAI_REALTIME_URL": model_url,
        "OPENAI_API_KEY": "",
        "GATEWAY_AUDIO_MODE": step.mode,
        # The built-in assistant, tagged with the call SID (see bench/agent.py).
        "GATEWAY_AGENT": "bench.agent:for_call",
        "GATEWAY_GREETING": "Greet the caller warmly in one short sentence and ask how you can help.",
        # The callers are silent and the agent never stops talking: no check-ins to disturb it.
        "GATEWAY_SILENCE_CHECK_IN_S": "0",
        "GATEWAY_SILENCE_GIVE_UP_S": "0",
        "GATEWAY_LOG_LEVEL": "INFO",
        "GATEWAY_MODEL_COMPRESSION": step.model_compression,
        # The call store (SQLite, on by default) and recordings (if a step turns them on) of
        # the run, not of the working directory.
        "GATEWAY_DATA_DIR": str(data_dir),
        "PYTHONPATH": str(ROOT),
        **step.extra_env,
    }


def plan_calls(step: Step, base: float) -> tuple[list[dict[str, Any]], Timeline]:
    warmup = base
    ramp = warmup + (3.0 if step.warmup_calls else 0.0)  # 2-second warm-up calls, then a second of quiet
    hold_start = ramp + step.calls / step.rate + step.settle
    burst_start = burst_end = None
    hold_end = hold_start + step.hold
    if step.burst_calls:
        burst_start = hold_start + step.hold / 3
        burst_end = burst_start + step.burst_calls / step.burst_rate
        hold_end = max(hold_end, burst_end + 5.0)
    if step.barge_ins:
        # The last barge-in call: its barge-in, its stay, and a second for its set-up.
        hold_end = max(hold_end, hold_start + 0.5 + step.barge_ins / step.barge_in_rate
                       + step.barge_in_after[1] + step.barge_in_stay[1] + 1.0)
    phase = (lambda: 0.0) if step.start_seed is None else random.Random(step.start_seed).random
    calls = [{"start": warmup + 0.2 * i, "end": warmup + 2.0, "group": "warmup"} for i in range(step.warmup_calls)]
    calls += [{"start": ramp + (i + phase()) / step.rate, "end": hold_end, "group": "load"} for i in range(step.calls)]
    if step.burst_calls:
        starts = [burst_start + (i + phase()) / step.burst_rate for i in range(step.burst_calls)]
        calls += [{"start": t, "end": hold_end, "group": "burst", "after_audio": step.burst_stay} for t in starts]
    calls += barge_in_calls(step, hold_start + 0.5, hold_end, phase)
    return calls, Timeline(warmup, ramp, hold_start, burst_start, burst_end, hold_end)


def barge_in_calls(step: Step, first: float, hold_end: float,
                   phase: Callable[[], float] = lambda: 0.0) -> list[dict[str, Any]]:
    """The barge-in calls of a step: set up at ``barge_in_rate`` a second from ``first`` (each
    at ``phase()`` of its slot), each
    with its call SID (the model server is told which calls to interrupt, and when), the
    seconds of greeting after which the model server sends ``speech_started`` (``barge_in``),
    and how long the caller stays after the ``clear`` (``after_clear``). Drawn from
    ``barge_in_seed``: every step with the same seed gets the same barge-ins (SIDs included)."""
    rng = random.Random(step.barge_in_seed)
    calls = []
    for i in range(step.barge_ins):
        after, stay = rng.uniform(*step.barge_in_after), rng.uniform(*step.barge_in_stay)
        start = first + (i + phase()) / step.barge_in_rate
        calls.append({"start": start, "end": min(hold_end, start + after + stay + 5.0), "group": "bargein",
                      "call_sid": "CA%032x" % rng.getrandbits(128), "barge_in": after, "after_clear": stay})
    return calls


def core_times() -> dict[int, dict[str, float]]:
    """Per core, seconds spent busy and stolen by the hypervisor so far (/proc/stat)."""
    times = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in values[:8])
            times[int(name[3:])] = {"busy": (user + nice + system + irq + softirq) / CLK_TCK,
                                    "steal": steal / CLK_TCK}
    return times


def wait_for_quiet(limit: float = 0.10, timeout: float = 120.0, *, log: Any = None) -> float:
    """Wait (at most ``timeout`` s) until neither core is busier than ``limit`` over a second:
    other work on the machine would be measured as ours. Returns the last busy fraction seen."""
    deadline = time.monotonic() + timeout
    told = False
    while True:
        before = core_times()
        time.sleep(1.0)
        after = core_times()
        busy = max(after[c]["busy"] - before[c]["busy"] for c in after)
        if busy <= limit or time.monotonic() >= deadline:
            return busy
        if not told and log is not None:
            log(f"  (waiting for the machine to quiet down: a core is {100 * busy:.0f}% busy with other work)")
            told = True


class Rig:
    """The processes of one run: the Realtime server and the caller on the load core, the
    system under test on its own core. A context manager: on exit every process is asked to
    stop (the servers then write what they measured) and the measurements are read back.

    ``calls`` is the caller's plan: ``{"start", "end", "group"}`` per call, in seconds from
    ``base`` (known once ``start()`` returns: the caller picks it when told to go).
    """

    def __init__(self, step: Step, run_dir: Path, calls: list[dict[str, Any]], reply_s: float) -> None:
        self.step, self.run_dir, self.calls, self.reply_s = step, run_dir, calls, reply_s
        self.procs: list[Proc] = []
        self.base = 0.0
        self.health_url = ""
        self.result: dict[str, Any] = {}

    def start(self) -> Rig:
        step, run_dir, py = self.step, self.run_dir, self.step.python
        run_dir.mkdir(parents=True, exist_ok=True)
        # Every process starts at once (imports take seconds); the caller waits for a "go".
        model_port, port = free_port(), free_port()
        model_url = f"ws://127.0.0.1:{model_port}/v1/realtime"
        barge_ins = {c["call_sid"]: c["barge_in"] for c in self.calls if c.get("barge_in") is not None}
        model_options: list[str] = []
        if barge_ins:  # which calls the model server interrupts, and after how much of the greeting
            (run_dir / "barge_ins.json").write_text(json.dumps(barge_ins))
            model_options = ["--barge-ins", str(run_dir / "barge_ins.json")]
        self.model = self._spawn("model", [py, str(BENCH / "model.py"), "--port", str(model_port),
                                           "--reply-seconds", f"{self.reply_s:.0f}", "--chunk-ms", str(step.chunk_ms),
                                           "--gc-freeze",
                                           "--out", str(run_dir / "model.pickle"), *model_options],
                                 core=LOAD_CORE, stdout_pipe=True, env=self._profile_env("model"))
        if step.target == "gateway":
            # One process, the one measured (--workers would default to one per core it sees).
            command = ["serve", "--port", str(port), "--workers", "1", "--env-file", "/dev/null"]
            env = gateway_env(step, port, model_url, run_dir / "data")
        else:
            command = [step.target, "--port", str(port), "--model-url", model_url,
                       "--compression", step.model_compression]
            if step.target == "sdk-relay":
                command += ["--mode", step.mode]
            env = {"PYTHONPATH": str(ROOT), **step.extra_env}
        if step.profile is not None or step.gc_log or step.tracemalloc or step.gc_threshold or step.gc_census \
                or step.slow_callbacks:
            argv = [py, str(BENCH / "serve_profiled.py"),
                    *(["--profile", str(step.profile)] if step.profile is not None else []),
                    *(["--gc-log", str(run_dir / "gc.jsonl")] if step.gc_log else []),
                    *(["--gc-threshold", step.gc_threshold] if step.gc_threshold else []),
                    *(["--tracemalloc", str(run_dir / "tracemalloc.txt")] if step.tracemalloc else []),
                    *(["--gc-census", str(run_dir / "gc_census.txt")] if step.gc_census else []),
                    *(["--slow-callbacks", str(run_dir / "slow_callbacks.jsonl")] if step.slow_callbacks else []),
                    "--", *command]
        elif step.target == "gateway":
            argv = [py, "-m", "gateway", *command]
        else:  # "relay", or "sdk-relay": the relay on the Agents SDK
            argv = [py, str(BENCH / ("sdk_relay.py" if step.target == "sdk-relay" else "relay.py")), *command[1:]]
        self.sut = self._spawn(step.target, argv, core=SUT_CORE, env=env)
        plan = {"webhook": f"http://127.0.0.1:{port}/twilio/voice", "auth_token": AUTH_TOKEN,
                "account_sid": ACCOUNT_SID, "base_offset": 0.5, "calls": self.calls,
                "gc_freeze": True}  # the harness's start-up heap out of its collector's sight, as the gateway's
        plan_path = run_dir / "plan.json"
        plan_path.write_text(json.dumps(plan))
        self.caller = self._spawn("caller", [py, str(BENCH / "caller.py"), str(plan_path),
                                             str(run_dir / "caller.pickle")],
                                  core=LOAD_CORE, stdout_pipe=True, stdin_pipe=True, env=self._profile_env("caller"))
        self.model.readline(60)  # listening
        self.health_url = f"http://127.0.0.1:{port}/healthz"
        wait_healthy(self.sut, self.health_url)
        self.caller.tell("go")
        self.base = json.loads(self.caller.readline(60))["base"]
        return self

    def _spawn(self, name: str, argv: list[str], **options: Any) -> Proc:
        proc = Proc(name, argv, log=self.run_dir / f"{name}.log", **options)
        self.procs.append(proc)
        return proc

    def _profile_env(self, name: str) -> dict[str, str]:
        return {"BENCH_PROFILE": str(self.run_dir / f"{name}.prof")} if self.step.harness_profile else {}

    def health(self) -> dict[str, Any]:
        try:
            return get_json(self.health_url, timeout=5.0)
        except (OSError, ValueError) as exc:
            return {"error": repr(exc)}

    def vitals(self) -> dict[str, Any]:
        """The system under test now: CPU, memory, descriptors, its /healthz."""
        return {"t": time.monotonic(), "cpu": self.sut.cpu(), "rss": self.sut.rss(), "fds": self.sut.fds(),
                "health": self.health()}

    def load_cpu(self) -> float:
        """CPU seconds used on the load core so far: the model server, the caller, this process."""
        t = os.times()
        return self.model.cpu() + self.caller.cpu() + t.user + t.system

    def wait_caller(self, timeout: float) -> None:
        self.caller.wait(timeout)

    def __enter__(self) -> Rig:
        try:
            return self.start()
        except BaseException:
            self._stop()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self._stop()
        if exc_type is not None:
            return  # the error says more than missing measurements would
        caller = pickle.loads((self.run_dir / "caller.pickle").read_bytes())
        model = pickle.loads((self.run_dir / "model.pickle").read_bytes())
        self.result = {
            "calls": [types.SimpleNamespace(**c) for c in caller["calls"]],
            "caller_lag": caller["lag"], "caller_lag_t": caller["lag_t"],
            "connections": model["connections"], "model_lag": model["lag"], "model_lag_t": model["lag_t"],
        }

    def _stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.stop()


def run_step(step: Step, run_dir: Path, *, log: Any = None, quiet: bool = True) -> StepResult:
    """Run one step with fresh processes and return everything measured."""
    say = log or (lambda text: None)
    samples: dict[str, Any] = {"rss": [], "hold": {}, "idle": {}}
    if quiet:
        samples["busy_before"] = wait_for_quiet(log=say)
    calls, rel = plan_calls(step, 0.0)
    # The reply lasts longer than the longest call, with margin for a slow set-up.
    reply_s = rel.hold_end + 30
    with Rig(step, run_dir, calls, reply_s) as rig:
        timeline = Timeline(*(None if v is None else rig.base + v for v in dataclasses.astuple(rel)))
        hold_s = timeline.hold_end - timeline.hold_start
        say(f"  {step.label}: ramp {step.calls / step.rate:.0f} s, hold {hold_s:.0f} s")
        # Idle, after the warm-up calls: the memory baseline.
        sleep_until(timeline.ramp - 0.3)
        samples["baseline"] = rig.vitals()
        sleep_until(timeline.hold_start)
        if step.profile is not None:
            rig.sut.signal(signal.SIGUSR1)  # profile the hold window only
        hold = samples["hold"]
        hold["t0"], hold["cpu0"], hold["cores0"], hold["load_cpu0"] = (
            time.monotonic(), rig.sut.cpu(), core_times(), rig.load_cpu())
        # Memory every second; CPU also at the burst's edges (for the CPU a set-up costs).
        marks = {} if timeline.burst_start is None else {
            "burst_start": timeline.burst_start, "burst_end": timeline.burst_end + BURST_TAIL_S}
        samples["cpu_at"], samples["cores"] = {}, []
        while time.monotonic() < timeline.hold_end - 0.6:
            now = time.monotonic()
            samples["cores"].append((now, core_times()))  # steal, second by second
            for name, at in list(marks.items()):
                if now >= at:
                    samples["cpu_at"][name] = (now, rig.sut.cpu())
                    del marks[name]
            samples["rss"].append((now, rig.sut.rss()))
            wake = min([now + 1.0, timeline.hold_end - 0.6, *marks.values()])
            time.sleep(max(0.0, wake - time.monotonic()))
        hold["t1"], hold["cpu1"], hold["cores1"], hold["load_cpu1"] = (
            time.monotonic(), rig.sut.cpu(), core_times(), rig.load_cpu())
        end = rig.vitals()
        hold["rss"], hold["fds"], hold["health"] = end["rss"], end["fds"], end["health"]
        if step.profile is not None or step.gc_census:
            rig.sut.signal(signal.SIGUSR2)  # stop profiling and write the stats; count the objects
        rig.wait_caller(timeout=max(60.0, step.calls / 10))
        time.sleep(step.settle / 2)  # let the calls' ends settle
        samples["idle"] = rig.vitals()
    r = rig.result
    return StepResult(step, timeline, r["calls"], r["caller_lag"], r["caller_lag_t"], r["connections"],
                      r["model_lag"], r["model_lag_t"], samples, run_dir)
