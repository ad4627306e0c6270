"""Soak: calls of random length starting and ending for minutes; memory, tasks, fds stay flat.

    python bench/soak.py                       # 14 minutes, ~30 calls at a time, g711_ulaw
    python bench/soak.py --minutes 3 --calls 20 --mode pcm16

The same processes and cores as bench/load.py (the gateway alone on core 0; the Realtime
server and the simulated calls on core 1). Calls arrive at random instants (uniformly over the
run) and last a random 5-30 s (``--min-call``/``--max-call``), so that about ``--calls`` are in
progress at any moment and thousands start and end. The agent talks all through each call; the
caller hangs up (``stop``).

Every ``--sample`` seconds the gateway's resident memory (``VmRSS``), open descriptors
(``/proc/PID/fd``), asyncio tasks and calls in progress (its ``/healthz``) are sampled. A leak
shows as a level that keeps rising under the same load, so the verdict compares like with like:

- *during the churn*: the mean over the last minute against the mean over the first minute
  after the warm-up (``--warmup``, 8 minutes: the gateway keeps records of its last 200 calls,
  and its resident memory climbs for about 800 calls, ~35 MB, while the allocators reach their
  working size; traced Python memory grows by under 3 MB meanwhile, ``--tracemalloc``). The load is the same on average;
  memory may rise by at most 5% (+2 MB), tasks and descriptors, normalised by the calls in
  progress, by at most 10%;
- *idle*: before the first call (after two warm-up calls) and after the last one has ended,
  tasks and descriptors must be back where they were (+-2), memory within 5% (+2 MB) of the
  post-warm-up level.

Per-frame latency over the whole soak is summarised too (late frames, p99 per direction), with
the same definitions as bench/load.py, and the *stalls*: spells in which frames took over
100 ms from when they were sent (a garbage collection or a blocked event loop delays every call
at once). Every sample is written to ``samples.json``.

If memory rises: ``--tracemalloc`` lists the allocation sites that grew after the warm-up, and
``--env`` passes settings to the gateway's process (allocator settings, for instance), to tell a
leak from allocator behaviour.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import analysis  # noqa: E402
from bench.harness import Rig, Step, pin_self_to_load_core, sleep_until, wait_for_quiet  # noqa: E402
from bench.load import fmt, table  # noqa: E402

RSS_TOLERANCE, RSS_SLACK_MB = 0.05, 2.0
PER_CALL_TOLERANCE = 0.10
IDLE_SLACK = 2


def plan(args: argparse.Namespace, seed: int) -> tuple[list[dict[str, Any]], float]:
    """Warm-up calls, then the churn: (calls, end of churn) in seconds from the base."""
    rng = random.Random(seed)
    start = 4.0  # two warm-up calls first, as in every load step
    length = args.minutes * 60
    mean_call = (args.min_call + args.max_call) / 2
    count = round(args.calls * length / mean_call)
    calls = [{"start": 0.2 * i, "end": 2.0 + 0.2 * i, "group": "warmup"} for i in range(2)]
    for _ in range(count):
        t = start + rng.uniform(0, length - args.min_call)
        end = min(t + rng.uniform(args.min_call, args.max_call), start + length)
        calls.append({"start": t, "end": end, "group": "load"})
    calls.sort(key=lambda c: c["start"])
    return calls, start + length


def level(samples: list[dict[str, Any]], start: float, end: float, key: str, per_call: bool = False) -> float:
    values = []
    for s in samples:
        if start <= s["t"] < end and isinstance(s.get(key), (int, float)):
            active = s.get("active_calls") or 0
            if per_call and not active:
                continue
            values.append(s[key] / active if per_call else s[key])
    return float(np.mean(values)) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--minutes", type=float, default=14.0, help="length of the churn (default 14)")
    parser.add_argument("--calls", type=int, default=30, help="calls in progress on average (default 30)")
    parser.add_argument("--min-call", type=float, default=5.0, help="shortest call, s (default 5)")
    parser.add_argument("--max-call", type=float, default=30.0, help="longest call, s (default 30)")
    parser.add_argument("--mode", choices=["g711_ulaw", "pcm16"], default="g711_ulaw")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples (default 5)")
    parser.add_argument("--warmup", type=float, default=8.0, help="minutes before the level is taken (default 8)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for the gateway (repeatable), e.g. an allocator "
                             "setting such as MALLOC_MMAP_THRESHOLD_=131072")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="trace the gateway's memory (slow) and write what grew after the warm-up "
                             "to tracemalloc.txt in the results directory")
    parser.add_argument("--out", help="directory for logs and raw results (default: a new temporary one)")
    args = parser.parse_args(argv)
    if args.warmup + 1 >= args.minutes:
        parser.error("--minutes must leave at least a minute after --warmup")
    pin_self_to_load_core()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="gateway-soak-"))
    print(f"results in {out}", flush=True)
    wait_for_quiet(timeout=60, log=print)

    calls, churn_end = plan(args, args.seed)
    env = dict(item.split("=", 1) for item in args.env)
    step = Step("gateway", args.mode, calls=args.calls, tracemalloc=args.tracemalloc, extra_env=env)
    samples: list[dict[str, Any]] = []
    with Rig(step, out, calls, args.max_call + 60) as rig:
        base = rig.base
        print(f"{sum(c['group'] == 'load' for c in calls)} calls over {args.minutes:g} min, "
              f"~{args.calls} at a time, {args.mode}", flush=True)
        sleep_until(base + 3.5)
        idle_before = rig.vitals()
        t = base + 4.0
        next_report = base + 4.0 + 60
        baseline_at = base + 4.0 + args.warmup * 60  # the tracemalloc baseline, if tracing
        while t <= base + churn_end:
            sleep_until(t)
            if args.tracemalloc and baseline_at is not None and time.monotonic() >= baseline_at:
                rig.sut.signal(signal.SIGUSR1)
                baseline_at = None
            v = rig.vitals()
            h = v["health"]
            samples.append({"t": v["t"] - base - 4.0, "rss": v["rss"] / 2**20, "fds": v["fds"], "cpu": v["cpu"],
                            "tasks": h.get("tasks"), "active_calls": h.get("active_calls"),
                            "finished_calls": h.get("finished_calls")})
            if v["t"] >= next_report:
                s = samples[-1]
                print(f"  {s['t'] / 60:4.1f} min: {s['active_calls']} calls, {s['rss']:.1f} MB, "
                      f"{s['tasks']} tasks, {s['fds']} fds", flush=True)
                next_report += 60
            t += args.sample
        rig.wait_caller(timeout=args.max_call + 60)
        time.sleep(3.0)
        idle_after = rig.vitals()
        if args.tracemalloc:  # what grew since the warm-up: written now, before the stop
            rig.sut.signal(signal.SIGUSR2)
            deadline = time.monotonic() + 120
            while not (out / "tracemalloc.txt").exists() and time.monotonic() < deadline:
                time.sleep(1.0)
            time.sleep(2.0)
    result = rig.result
    (out / "samples.json").write_text(json.dumps({"samples": samples, "idle_before": idle_before,
                                                  "idle_after": idle_after}, indent=1))

    # --- the verdict ---------------------------------------------------------------------------
    length = churn_end - 4.0
    w = args.warmup * 60
    first = (w, w + 60)
    last = (length - 60, length + 1)
    rows, ok = [], True
    for key, label, per_call in (("rss", "memory (MB)", False), ("tasks", "asyncio tasks per call", True),
                                 ("fds", "descriptors per call", True)):
        a, b = level(samples, *first, key, per_call), level(samples, *last, key, per_call)
        peak = max((s[key] / (s["active_calls"] or 1) if per_call else s[key])
                   for s in samples if isinstance(s.get(key), (int, float)))
        if key == "rss":
            flat = b <= a * (1 + RSS_TOLERANCE) + RSS_SLACK_MB
            limit = f"<= {100 * RSS_TOLERANCE:g}% + {RSS_SLACK_MB:g} MB"
        else:
            flat = b <= a * (1 + PER_CALL_TOLERANCE)
            limit = f"<= {100 * PER_CALL_TOLERANCE:g}%"
        ok &= flat
        rows.append([label, fmt(a, 2), fmt(b, 2), fmt(peak, 2), f"{100 * (b - a) / a:+.1f}%", limit,
                     "flat" if flat else "RISING"])
    print(f"\n== soak: gateway ({args.mode}), {args.minutes:g} min of churn, "
          f"{sum(c.group == 'load' for c in result['calls'])} calls ==")
    print(table(["during the churn", f"minute {args.warmup:g}-{args.warmup + 1:g}", "last minute", "max",
                 "change", "allowed", "verdict"], rows))

    idle_rows = []
    for key, label in (("tasks", "asyncio tasks"), ("fds", "descriptors"), ("rss", "memory (MB)")):
        a = idle_before["health"].get(key) if key == "tasks" else idle_before[key]
        b = idle_after["health"].get(key) if key == "tasks" else idle_after[key]
        if key == "rss":
            a, b = a / 2**20, b / 2**20
            post_warmup = level(samples, *first, "rss")
            flat = b <= post_warmup * (1 + RSS_TOLERANCE) + RSS_SLACK_MB
            idle_rows.append([label, fmt(a, 1), fmt(b, 1), f"<= {fmt(post_warmup, 1)} + 5%",
                              "flat" if flat else "RISING"])
        else:
            flat = isinstance(a, int) and isinstance(b, int) and abs(b - a) <= IDLE_SLACK
            idle_rows.append([label, str(a), str(b), f"+-{IDLE_SLACK}", "flat" if flat else "RISING"])
        ok &= flat
    print()
    print(table(["idle (no call in progress)", "before", "after", "allowed", "verdict"], idle_rows))

    minutes = [["minute", "calls (mean)", "MB (mean)", "tasks (mean)", "fds (mean)"]]
    for m in range(int(np.ceil(length / 60))):
        span = (60 * m, 60 * (m + 1))
        minutes.append([f"{m}-{m + 1}", *(fmt(level(samples, *span, key), 1)
                                          for key in ("active_calls", "rss", "tasks", "fds"))])
    print()
    print(table(minutes[0], minutes[1:]))

    d = analysis.frames(result["calls"], result["connections"]).of_calls(
        i for i, c in enumerate(result["calls"]) if c.group == "load")
    lat = [["", "frames", "p50 (ms)", "p99 (ms)", "max (ms)", "late", "stalls > 100 ms"]]
    for name, label in (("inbound", "caller -> model"), ("outbound", "model -> caller")):
        frames = getattr(d, name)
        s = analysis.latency_summary(frames)
        lat.append([label, str(s["frames"]), fmt(s["p50"]), fmt(s["p99"]), fmt(s["max"]), str(s["late"]),
                    str(len(stalls(frames)))])
    print()
    print(table(lat[0], lat[1:]))
    failed = analysis.failures(result["calls"], ("load",))
    if failed:
        print(f"\n{len(failed)} call(s) did not run as planned, e.g. {failed[0]}")
    if args.tracemalloc and (out / "tracemalloc.txt").exists():
        print(f"\nwhat grew after the warm-up (tracemalloc): {out / 'tracemalloc.txt'}")
    print(f"\nverdict: {'FLAT' if ok else 'NOT FLAT'} (samples every {args.sample:g} s; raw results in {out})")
    return 0 if ok else 1


def stalls(frames: analysis.Frames, limit_s: float = 0.100, gap_s: float = 1.0) -> list[tuple[float, float]]:
    """Spells in which frames took more than ``limit_s`` from when they were sent, joined when
    less than ``gap_s`` apart: a garbage collection or a blocked event loop delays every call
    at once, and shows as one such spell."""
    spells: list[tuple[float, float]] = []
    for t in np.sort(frames.t[frames.path > limit_s]):
        if spells and t - spells[-1][1] < gap_s:
            spells[-1] = (spells[-1][0], t)
        else:
            spells.append((t, t))
    return spells


if __name__ == "__main__":
    sys.exit(main())
