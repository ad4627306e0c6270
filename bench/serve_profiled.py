"""Run the gateway (or the bare relay) under cProfile, with its garbage collections timed, or
with its memory traced.

    python bench/serve_profiled.py --profile gateway.prof -- serve --port 8080 --env-file /dev/null
    python bench/serve_profiled.py --gc-log gc.jsonl -- serve --port 8080 --env-file /dev/null
    python bench/serve_profiled.py --profile relay.prof -- relay --port 8081 --model-url ws://...

Everything after ``--`` is the ``gateway`` command line (``gateway.cli.main``), or, after
``relay``, ``bench/relay.py``'s. Nothing in the server changes; this only wraps it.

``--profile``: cProfile with a CPU-time clock (an event loop idling in epoll costs nothing). The
profiler starts disabled, so imports and start-up stay out of the profile: ``SIGUSR1`` enables
it, ``SIGUSR2`` disables it and writes the stats (``pstats`` format); if it is still enabled
when the server exits, the stats are written then. ``bench/load.py --profile`` sends the
signals around its measuring window. cProfile sees the main thread, where the event loop (so
every call) runs; its overhead inflates small Python functions more than C calls, so read the
profile for where the time goes, and take how much from an unprofiled run.

``--gc-log``: the garbage collections of the cyclic collector that matter (every full one, any
taking 2 ms or more), as JSON lines: ``{"t": monotonic start,
"ms": duration, "gen": generation, "collected": n}``, each as it ends. A collection stops the event loop, and so
every call, for its whole duration.

``--gc-census``: at ``SIGUSR2`` (the end of ``bench/load.py``'s measuring window), write what
a full collection would walk: the objects the collector tracks, by generation and by type (the
most numerous first), how many ``gc.freeze()`` keeps out of its sight, and the cyclic garbage
a collection would free then (calls that ended leaving reference cycles), by type. It answers
"what makes a full collection long"; the count is taken once, after the window.

``--slow-callbacks``: every event-loop callback that held the loop for ``SLOW_MS`` (5 ms) or
more, as JSON lines: ``{"t": monotonic start, "ms": duration, "what": the callback}`` (a task's
coroutine, where it stopped, or a transport's or timer's callback). While one runs, no other
call's frame moves: what it names is what a barge-in or a frame waited behind. Timing every
callback adds two clock reads to each.

``--tracemalloc``: trace allocations from the start (``tracemalloc``, 6 frames: slow), take a
snapshot at ``SIGUSR1`` and, at ``SIGUSR2`` (or at exit), write what grew since then: the
allocation sites holding the most more memory, with their call stacks. ``bench/soak.py
--tracemalloc`` signals at the end of its warm-up and at the end of the churn, so the file
lists what kept growing under steady churn.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import signal
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


class GcLog:
    """Times every collection with ``gc.callbacks``, each written to ``path`` as it ends (a
    collection worth logging is rare): the harness's second SIGTERM, which uvicorn re-raises
    once it has shut down, ends the process before anything written at exit."""

    def __init__(self, path: str) -> None:
        self._out = open(path, "w", buffering=1)  # noqa: SIM115 - open for the process's life
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        now = time.monotonic()
        if phase == "start":
            self._started = now
        else:
            ms = 1000 * (now - self._started)
            if info["generation"] == 2 or ms >= 2.0:  # the young collections are many and short
                self._out.write(json.dumps({"t": self._started, "ms": round(ms, 3), "gen": info["generation"],
                                            "collected": info["collected"]}) + "\n")


SLOW_MS = 5.0


def log_slow_callbacks(path: str, slow_ms: float = SLOW_MS) -> Callable[[], None]:
    """Wrap ``asyncio.Handle._run`` (every callback the loop runs: task steps, I/O readiness,
    timers) to log those that hold the loop ``slow_ms`` or more. Returns what undoes it."""
    out = open(path, "w", buffering=1)  # noqa: SIM115 - open for the process's life
    run = asyncio.events.Handle._run
    clock = time.monotonic
    limit = slow_ms / 1000

    def timed_run(handle: asyncio.events.Handle) -> None:
        started = clock()
        run(handle)
        took = clock() - started
        if took >= limit:
            out.write(json.dumps({"t": round(started, 6), "ms": round(1000 * took, 3),
                                  "what": describe(handle)}) + "\n")

    asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]

    def undo() -> None:
        asyncio.events.Handle._run = run  # type: ignore[method-assign]
        out.close()

    return undo


def describe(handle: Any) -> str:
    """A callback, named for a reader: a task by its coroutine and where it is now."""
    callback = getattr(handle, "_callback", None)
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        frame = getattr(coro, "cr_frame", None)
        where = f" at {Path(frame.f_code.co_filename).name}:{frame.f_lineno}" if frame is not None else " (done)"
        return f"task {getattr(coro, '__qualname__', coro)}{where}"
    name = getattr(callback, "__qualname__", None) or repr(callback)
    return f"{name} of {type(owner).__qualname__}" if owner is not None else str(name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", help="write a cProfile of the window between SIGUSR1 and SIGUSR2 here")
    parser.add_argument("--gc-log", help="write the garbage collections that matter here (JSON lines), as they end")
    parser.add_argument("--gc-threshold", help="the collector's thresholds, T0,T1,T2 (gc.set_threshold), to try")
    parser.add_argument("--gc-census", help="write the objects the collector tracks, by type, here at SIGUSR2")
    parser.add_argument("--slow-callbacks", help=f"log every loop callback taking {SLOW_MS:.0f} ms or more here (JSON lines)")
    parser.add_argument("--tracemalloc", help="write what memory grew after SIGUSR1 here, at exit")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the gateway (or relay) command line")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command

    profiler = cProfile.Profile(time.process_time)
    state = {"enabled": False}

    baseline: list[tracemalloc.Snapshot] = []

    def enable(signum: int, frame: object) -> None:
        if args.profile and not state["enabled"]:
            profiler.enable()
            state["enabled"] = True
        if args.tracemalloc and tracemalloc.is_tracing():
            baseline[:] = [tracemalloc.take_snapshot()]

    def dump(signum: int | None = None, frame: object = None) -> None:
        if state["enabled"]:
            profiler.disable()
            state["enabled"] = False
            profiler.dump_stats(args.profile)
        if args.tracemalloc and baseline:
            write_growth(baseline.pop(), tracemalloc.take_snapshot(), args.tracemalloc)
        if args.gc_census and signum is not None:
            write_census(args.gc_census)

    signal.signal(signal.SIGUSR1, enable)
    signal.signal(signal.SIGUSR2, dump)
    if args.gc_log:
        gc.callbacks.append(GcLog(args.gc_log))
    if args.slow_callbacks:
        log_slow_callbacks(args.slow_callbacks)
    if args.gc_threshold:
        gc.set_threshold(*(int(t) for t in args.gc_threshold.split(",")))
    if args.tracemalloc:
        tracemalloc.start(6)
    try:
        if command[:1] == ["relay"]:
            from bench import relay

            sys.argv = ["relay.py", *command[1:]]
            relay.main()
            return 0
        if command[:1] == ["sdk-relay"]:
            from bench import relay, sdk_relay

            sys.argv = ["sdk_relay.py", *command[1:]]
            relay.main(sdk_relay.SdkRelay, modes=sdk_relay.MODES)
            return 0
        from gateway.cli import main as gateway_main

        return gateway_main(command)
    finally:
        dump()


def write_census(path: str, top: int = 40) -> None:
    """The objects the cyclic collector tracks (frozen ones are out of its sight and not
    counted), by generation and by type."""
    by_type: dict[str, int] = {}
    sizes = []
    for generation in range(3):
        objects = gc.get_objects(generation)
        sizes.append(len(objects))
        count_by_type(objects, by_type)
        del objects
    # What a full collection would free now: cyclic garbage, kept aside to be counted.
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        garbage = count_by_type(gc.garbage, {})
        cyclic = len(gc.garbage)
        gc.garbage.clear()
    finally:
        gc.set_debug(0)
    with open(path, "w") as out:
        out.write(f"tracked: {sum(sizes)} (generations {sizes[0]}, {sizes[1]}, {sizes[2]}); "
                  f"frozen: {gc.get_freeze_count()}\n")
        for name, count in sorted(by_type.items(), key=lambda item: -item[1])[:top]:
            out.write(f"{count:>9}  {name}\n")
        out.write(f"\ncyclic garbage (freed only by a collection): {cyclic}\n")
        for name, count in sorted(garbage.items(), key=lambda item: -item[1])[:top]:
            out.write(f"{count:>9}  {name}\n")


def count_by_type(objects: list[Any], counts: dict[str, int]) -> dict[str, int]:
    """Add ``objects`` to ``counts``, by their type's qualified name."""
    for obj in objects:
        kind = type(obj)
        name = f"{kind.__module__}.{kind.__qualname__}"
        counts[name] = counts.get(name, 0) + 1
    return counts


def write_growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, path: str, top: int = 25) -> None:
    """The allocation sites whose live memory grew the most between two snapshots."""
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__),
              tracemalloc.Filter(False, "<frozen importlib._bootstrap>")]
    stats = after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "traceback")
    total = sum(s.size_diff for s in stats)
    with open(path, "w") as out:
        out.write(f"live memory traced: {total / 2**20:+.2f} MiB since the snapshot\n")
        for stat in stats[:top]:
            out.write(f"\n{stat.size_diff / 1024:+.1f} KiB in {stat.count_diff:+d} blocks "
                      f"(now {stat.size / 1024:.1f} KiB in {stat.count} blocks)\n")
            for line in stat.traceback.format(most_recent_first=True)[:16]:
                out.write(f"    {line}\n")


if __name__ == "__main__":
    sys.exit(main())
