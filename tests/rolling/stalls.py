"""What the machine, rather than the path under test, explains of an audio gap.

On a busy machine every process waits its turn for a CPU, and a gap in a call's audio may be
nothing but that: the gateway holding the call was ready to run and was not run, or the
harness that sends or records the audio was late. Those are measured, for the gap's interval:

- **CPU waits** of the gateway holding the call and of HAProxy: the time each was runnable but
  waiting for a CPU (``/proc/PID/schedstat``, the second field, nanoseconds spent on a run
  queue: https://docs.kernel.org/scheduler/sched-stats.html), sampled every 50 ms by this
  process;
- **stalls** of the harness processes at either end (the load generator or this process, and
  the Realtime server): their own probes of how late their event loop woke up, which count a
  CPU wait and anything else that held the loop (a garbage collection, say).

What remains of a gap once those are taken off is what the gateway or HAProxy did of their own
accord: a stall, a connection cut, a stream held back. That is the figure with a limit.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["Stalls"]


class Stalls:
    def __init__(self) -> None:
        #: Per process name: sample instants and its cumulative run-queue wait (s) by then.
        self.waits: dict[str, tuple[list[float], list[float]]] = {}
        #: Per process name: (instants, lateness) of its event loop's probe.
        self.lags: dict[str, tuple[Sequence[float], Sequence[float]]] = {}

    # --- Recording ---------------------------------------------------------------------------------

    def add_lag(self, name: str, t: Sequence[float], lag: Sequence[float]) -> None:
        self.lags[name] = (t, lag)

    def sample(self, processes: dict[str, int]) -> None:
        now = time.monotonic()
        for name, pid in processes.items():
            try:
                waited = int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
            except (OSError, IndexError, ValueError):  # gone, or no schedstat: no samples
                continue
            times, totals = self.waits.setdefault(name, ([], []))
            times.append(now)
            totals.append(waited)

    async def sample_forever(self, processes: Callable[[], dict[str, int]], every: float = 0.05) -> None:
        """Sample ``processes()`` (name -> pid) every ``every`` s, until cancelled."""
        while True:
            self.sample(processes())
            await asyncio.sleep(every)

    # --- Explaining --------------------------------------------------------------------------------

    def waited(self, name: str, start: float, end: float) -> float:
        """How long ``name`` waited for a CPU within [start, end] (interpolated between samples)."""
        if name not in self.waits:
            return 0.0
        times, totals = self.waits[name]
        return max(0.0, _at(times, totals, end) - _at(times, totals, start))

    def stalled(self, name: str, start: float, end: float) -> float:
        """The longest stretch of [start, end] during which ``name``'s event loop was held."""
        if name not in self.lags:
            return 0.0
        times, lags = self.lags[name]
        worst = 0.0
        for i in range(bisect.bisect_left(times, start), len(times)):
            woke, late = times[i], lags[i]
            held_from = woke - late  # the probe woke ``late`` after it should have
            if held_from > end:
                break
            worst = max(worst, min(end, woke) - max(start, held_from))
        return worst

    def explained(self, start: float, end: float, path: Sequence[str], harness: Sequence[str]) -> float:
        """What CPU waits of the ``path`` processes and stalls of the ``harness`` processes
        account for in [start, end]."""
        return (sum(self.waited(name, start, end) for name in path)
                + sum(self.stalled(name, start, end) for name in harness))


def _at(times: list[float], totals: list[float], t: float) -> float:
    """A cumulative total at ``t``, linear between samples, flat outside them."""
    if not times:
        return 0.0
    i = bisect.bisect_left(times, t)
    if i == 0:
        return totals[0]
    if i == len(times):
        return totals[-1]
    t0, t1, v0, v1 = times[i - 1], times[i], totals[i - 1], totals[i]
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0) if t1 > t0 else v1
