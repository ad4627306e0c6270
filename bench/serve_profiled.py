"""Run the gateway (or the bare relay) under cProfile, or with its garbage collections timed.

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
taking 2 ms or more), as JSON lines written when the server exits: ``{"t": monotonic start,
"ms": duration, "gen": generation, "collected": n}``. A collection stops the event loop, and so
every call, for its whole duration.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


class GcLog:
    """Times every collection with ``gc.callbacks``."""

    def __init__(self) -> None:
        self.entries: list[tuple[float, float, int, int]] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        now = time.monotonic()
        if phase == "start":
            self._started = now
        else:
            ms = 1000 * (now - self._started)
            if info["generation"] == 2 or ms >= 2.0:  # the young collections are many and short
                self.entries.append((self._started, ms, info["generation"], info["collected"]))

    def write(self, path: str) -> None:
        with open(path, "w") as out:
            for t, ms, gen, collected in self.entries:
                out.write(json.dumps({"t": t, "ms": round(ms, 3), "gen": gen, "collected": collected}) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", help="write a cProfile of the window between SIGUSR1 and SIGUSR2 here")
    parser.add_argument("--gc-log", help="write every garbage collection here (JSON lines) at exit")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the gateway (or relay) command line")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command

    profiler = cProfile.Profile(time.process_time)
    state = {"enabled": False}

    def enable(signum: int, frame: object) -> None:
        if args.profile and not state["enabled"]:
            profiler.enable()
            state["enabled"] = True

    def dump(signum: int | None = None, frame: object = None) -> None:
        if state["enabled"]:
            profiler.disable()
            state["enabled"] = False
            profiler.dump_stats(args.profile)

    signal.signal(signal.SIGUSR1, enable)
    signal.signal(signal.SIGUSR2, dump)
    gc_log = GcLog()
    if args.gc_log:
        gc.callbacks.append(gc_log)
    try:
        if command[:1] == ["relay"]:
            from bench import relay

            sys.argv = ["relay.py", *command[1:]]
            relay.main()
            return 0
        from gateway.cli import main as gateway_main

        return gateway_main(command)
    finally:
        dump()
        if args.gc_log:
            gc_log.write(args.gc_log)


if __name__ == "__main__":
    sys.exit(main())
