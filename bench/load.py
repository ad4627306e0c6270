"""Load and cost: concurrent phone calls through one gateway process, beside a bare relay.

    python bench/load.py                  # ramp in both audio modes, then gateway vs relay (<= ~10 min)
    python bench/load.py --quick          # ~1 min: 20 calls, both modes, gateway vs relay
    python bench/load.py --mode pcm16 --calls 20,40,60 --seconds 30
    python bench/load.py --burst          # 30 call set-ups a second on top of calls in progress
    python bench/load.py --profile        # where the gateway's CPU goes (cProfile, under load)
    python bench/load.py --observability 80   # metrics, call store and recording: on vs off

Each step starts fresh processes: the gateway (`gateway serve`, the real app, the real Agents
SDK) alone on core 0; the local Realtime server (bench/model.py) and the simulated Twilio
calls (bench/caller.py) on core 1, talking to it over real sockets at real-time pace. The bare
relay (bench/relay.py) is measured the same way, in the same run: it only forwards frames (G.711
passed through, no SDK), so it is the floor the gateway's cost is a ratio to. See
bench/README.md for what every figure means and how it is measured.

Targets (from the issue), printed with PASS/FAIL:

- at least 250 concurrent calls on one core with no late frame (a frame is late when it
  reaches the other side more than 40 ms after its due time);
- p99 latency added by the gateway under 5 ms in each direction;
- CPU per call-second at most 1.2x the bare relay's in g711_ulaw mode, 1.5x in pcm16 mode;
- memory under 0.5 MB per call;
- a burst of 30 call set-ups a second never delays other calls' frames by more than 20 ms.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import analysis, profiles  # noqa: E402
from bench.harness import Step, pin_self_to_load_core, run_step  # noqa: E402
from gateway.settings import COMPRESSIONS, Settings  # noqa: E402

MODES = ("g711_ulaw", "pcm16")
CPU_RATIO_TARGET = {"g711_ulaw": 1.2, "pcm16": 1.5}
ADDED_P99_TARGET_MS = 5.0
MEMORY_TARGET_MB = 0.5
CALLS_TARGET = 250
BURST_TARGET_MS = 20.0
#: Metrics, the call store and recording together may cost this much CPU per call-second.
OBSERVABILITY_TARGET = 0.05
#: The gateway with all three on, and with all three off (GATEWAY_* settings).
OBSERVABILITY = {
    "on": {"GATEWAY_METRICS": "true", "GATEWAY_STORE_CALLS": "true", "GATEWAY_RECORD": "true"},
    "off": {"GATEWAY_METRICS": "false", "GATEWAY_STORE_CALLS": "false", "GATEWAY_RECORD": "false"},
}
#: Work of other processes above these fractions of a core makes a step "disturbed": it is
#: run again (the machine may be shared; their CPU would be measured as the gateway's).
DISTURBED_FOREIGN, DISTURBED_STEAL = 0.05, 0.10
#: Seconds a step costs beyond its ramp and hold (processes, warm-up, teardown), for budgets.
STEP_OVERHEAD_S = 16.0


def start_seed(args: argparse.Namespace) -> int | None:
    """The plan's seed for random call starts (``Step.start_seed``); None with --even-starts."""
    return None if args.even_starts else 1


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="gateway-load-"))
        self.out.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()
        self.summaries: list[dict[str, Any]] = []
        self._count = 0
        self.modes_left = 0  # ramps still to run after the current one

    def log(self, text: str) -> None:
        print(text, flush=True)

    def remaining(self) -> float:
        return self.args.budget * 60 - (time.monotonic() - self.started)

    def cost(self, calls: int) -> float:
        return STEP_OVERHEAD_S + calls / self.args.rate + self.args.seconds + 1

    def step(self, target: str, mode: str, calls: int, retries: int | None = None, **options: Any) -> dict[str, Any]:
        """Run a step (again if other work on the machine disturbed it) and summarise it: the
        least disturbed of its attempts."""
        options.setdefault("model_compression", self.args.model_compression)
        if target == "sdk-relay":  # how it converts PCM16 (sdk_relay.py; "both": ratecv unless told)
            convert = "ratecv" if self.args.sdk_relay_convert == "both" else self.args.sdk_relay_convert
            options.setdefault("extra_env", {"SDK_RELAY_CONVERT": convert})
        step = Step(target, mode, calls=calls, rate=self.args.rate, hold=self.args.seconds,
                    chunk_ms=self.args.chunk_ms, start_seed=start_seed(self.args), **options)
        attempts: list[dict[str, Any]] = []
        retries = self.args.retries if retries is None else retries
        for attempt in range(retries + 1):
            self._count += 1
            run_dir = self.out / f"{self._count:02d}-{target}-{mode if target != 'relay' else 'g711'}-{calls}"
            result = run_step(step, run_dir, log=self.log, quiet=not self.args.no_wait)
            summary = analysis.summarise(result)
            summary.update(target=target, mode=mode, run_dir=str(run_dir), result=result)
            summary["disturbed"] = disturbed = disturbance(summary)
            self.log("    " + one_line(summary) + (f"  [disturbed: {disturbed}]" if disturbed else ""))
            attempts.append(summary)
            if not disturbed or attempt == retries:
                chosen = analysis.least_disturbed(attempts) if len(attempts) > 1 else summary
                self.summaries.append(chosen)
                return chosen
            self.log("    run again: other work on the machine would be measured as ours")
        raise AssertionError("unreachable")

    # --- the parts ----------------------------------------------------------------------------

    def compare(self, modes: tuple[str, ...], calls: int, repeats: int) -> dict[str, dict[str, Any]]:
        """The relay and the gateway in each mode at the same call count, ``repeats`` times
        each, interleaved (relay, modes..., relay, modes...), so that a slow spell of the
        machine hits every configuration alike. Each configuration's figures are those of its
        least disturbed run (``analysis.least_disturbed``)."""
        runs: dict[str, list[dict[str, Any]]] = {"relay": [], **{m: [] for m in modes}}
        if self.args.sdk_relay:
            runs.update({f"sdk-relay {m}": [] for m in modes})
        polyphase_too = self.args.sdk_relay and self.args.sdk_relay_convert == "both" and "pcm16" in modes
        if polyphase_too:
            runs[POLYPHASE_SDK_RELAY] = []
        for _ in range(repeats):
            runs["relay"].append(self.step("relay", "g711_ulaw", calls))
            for mode in modes:
                if self.args.sdk_relay:
                    runs[f"sdk-relay {mode}"].append(self.step("sdk-relay", mode, calls))
                if polyphase_too and mode == "pcm16":
                    runs[POLYPHASE_SDK_RELAY].append(
                        self.step("sdk-relay", mode, calls, extra_env={"SDK_RELAY_CONVERT": "polyphase"}))
                runs[mode].append(self.step("gateway", mode, calls))
        return {name: analysis.least_disturbed(steps) for name, steps in runs.items()}

    def observability(self, modes: tuple[str, ...], calls: int, repeats: int) -> dict[str, dict[str, Any]]:
        """The gateway with metrics, store and recording all off, then all on, in each mode,
        interleaved ``repeats`` times; each configuration's least disturbed run."""
        runs: dict[str, list[dict[str, Any]]] = {f"{m} {k}": [] for m in modes for k in OBSERVABILITY}
        for _ in range(repeats):
            for mode in modes:
                for key, env in OBSERVABILITY.items():
                    self.log(f"  {mode}, metrics/store/recording {key}:")
                    runs[f"{mode} {key}"].append(self.step("gateway", mode, calls, extra_env=env))
        return {name: analysis.least_disturbed(steps) for name, steps in runs.items()}

    def compression(self, modes: tuple[str, ...], calls: int, repeats: int) -> dict[str, dict[str, Any]]:
        """The relay, the SDK relay with --sdk-relay, and the gateway in each mode, each with its
        model connection compressed and not, in pairs run back to back (which goes first
        alternates), ``repeats`` times; each configuration's least disturbed run."""
        targets = [("relay", "g711_ulaw", "relay")] + [
            t for mode in modes for t in ((("sdk-relay", mode, f"sdk-relay {mode}"),) if self.args.sdk_relay else ())
            + (("gateway", mode, mode),)]
        runs: dict[str, list[dict[str, Any]]] = {f"{name} {c}": [] for _, _, name in targets for c in COMPRESSIONS}
        for repeat in range(repeats):
            for target, mode, name in targets:
                for c in COMPRESSIONS if repeat % 2 == 0 else COMPRESSIONS[::-1]:
                    self.log(f"  {name}, model connection compression {c}:")
                    runs[f"{name} {c}"].append(self.step(target, mode, calls, model_compression=c))
        return {name: analysis.least_disturbed(steps) for name, steps in runs.items()}

    def ramp(self, mode: str, calls: list[int] | None, known: dict[str, Any] | None = None,
             target: str = "gateway") -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """Steps of ``target`` at growing call counts until one has late frames (or the budget
        runs out); then one step between the last good and the first bad count. Returns every
        step and the largest that had no late frame. ``known``: a summary already measured (the
        comparison's), counted as a step of the ramp."""
        args = self.args
        rows: list[dict[str, Any]] = [known] if known else []
        best: dict[str, Any] | None = None
        bad: dict[str, Any] | None = None
        counts = list(calls) if calls else None
        n = args.ramp_start
        if known is not None and counts is None:
            if analysis.sustained(known, args.late_tolerance):
                best = known
                n = max(n, next_count(known["calls"], args.growth))
            else:
                bad = known
                n = max(5, known["calls"] // 2)  # look below it once
        while True:
            if counts is not None:
                if not counts:
                    break
                n = counts.pop(0)
            elif n > args.max_calls:
                break
            if self.remaining() < self.cost(n) + self._reserve():
                self.log(f"  (time budget: {mode} stops before {n} calls)")
                break
            s = self.step(target, mode, n)
            rows.append(s)
            if analysis.sustained(s, self.args.late_tolerance):
                best = s if best is None or s["calls"] > best["calls"] else best
            else:
                bad = s if bad is None or s["calls"] < bad["calls"] else bad
                if counts is None:
                    break
            if counts is None and bad is not None and n < bad["calls"]:
                break  # looked below a bad count: done
            n = next_count(n, args.growth)
        if counts is None and best is not None and bad is not None:
            gap = bad["calls"] - best["calls"]
            middle = int(round((best["calls"] + bad["calls"]) / 2 / 5) * 5)
            if gap > max(5, 0.15 * best["calls"]) and best["calls"] < middle < bad["calls"] \
                    and self.remaining() > self.cost(middle) + self._reserve():
                s = self.step(target, mode, middle)
                rows.append(s)
                if analysis.sustained(s, self.args.late_tolerance):
                    best = s
        return sorted(rows, key=lambda r: r["calls"]), best

    def _reserve(self) -> float:
        """Time kept for what must still run after this ramp: the next ramps' first steps."""
        return self.cost(self.args.ramp_start) * self.modes_left

    def burst(self, target: str, mode: str, profile: Path | None = None) -> dict[str, Any]:
        args = self.args
        burst_calls = round(args.burst_rate * args.burst_seconds)
        step = Step(target, mode, calls=args.burst_base, rate=args.rate, hold=max(args.seconds, 12.0),
                    chunk_ms=args.chunk_ms, model_compression=args.model_compression, start_seed=start_seed(args),
                    burst_calls=burst_calls,
                    burst_rate=args.burst_rate, burst_stay=args.burst_stay, profile=profile)
        self._count += 1
        run_dir = self.out / f"{self._count:02d}-burst-{target}-{mode}"
        result = run_step(step, run_dir, log=self.log, quiet=not args.no_wait)
        summary = analysis.burst_summary(result)
        disturbed = disturbance(analysis.summarise(result))
        summary.update(target=target, mode=mode, run_dir=str(run_dir), profile=profile and str(profile),
                       disturbed=disturbed)
        note = f"  [disturbed: {disturbed}]" if disturbed else ""
        self.log(f"    extra delay of calls in progress: in max {summary['inbound']['extra_max']:.1f} ms, "
                 f"out max {summary['outbound']['extra_max']:.1f} ms{note}")
        return summary

    def profile(self, mode: str) -> dict[str, Any]:
        """A step under cProfile, and the same step without it (for the CPU it really takes)."""
        n = self.args.profile_calls
        reference = next((s for s in self.summaries if s["target"] == "gateway" and s["mode"] == mode
                          and s["calls"] == n and "profile" not in s), None)
        if reference is None or reference.get("gc") is None:
            reference = self.step("gateway", mode, n, gc_log=True)  # and its garbage collections
        path = self.out / f"gateway-{mode}.prof"
        s = self.step("gateway", mode, n, profile=path, retries=0)  # only the shares are used
        s["profile"] = str(path)
        return {"mode": mode, "path": path, "summary": s, "reference": reference}


def next_count(n: int, growth: float) -> int:
    """The ramp's next call count: ``n * growth``, rounded to 5, at least 5 more."""
    return max(n + 5, int(round(n * growth / 5) * 5))


# --- judging and printing ----------------------------------------------------------------------


def disturbance(s: dict[str, Any]) -> str:
    problems = []
    if s["foreign_sut_core"] > DISTURBED_FOREIGN:
        problems.append(f"other processes used {100 * s['foreign_sut_core']:.0f}% of the gateway's core")
    if s["foreign_load_core"] > 2 * DISTURBED_FOREIGN:
        problems.append(f"other processes used {100 * s['foreign_load_core']:.0f}% of the load core")
    if s["steal"] > DISTURBED_STEAL:
        problems.append(f"the hypervisor stole {100 * s['steal']:.0f}% of a core")
    return "; ".join(problems)


def one_line(s: dict[str, Any]) -> str:
    i, o = s["inbound"], s["outbound"]
    verdict = (f"late in {i['late']} out {o['late']} (path-late {i['late_path']}/{o['late_path']})"
               + (f", {len(s['failures'])} FAILED" if s["failures"] else ""))
    return (f"core {100 * s['cpu_util']:.0f}%, {s['cpu_per_call_s_ms']:.1f} ms CPU/call-s, "
            f"p99 in {i['p99']:.1f} out {o['p99']:.1f} ms, {verdict}; load core {100 * s['load_core_util']:.0f}%, "
            f"steal {100 * s['steal']:.0f}%")


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def table(headers: list[str], rows: list[list[str]], first: int = 0) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    first = first or widths[0]
    lines = []
    for r in [headers, *rows]:
        cells = [f"{r[0]:<{first}}"] + [f"{c!s:>{w}}" for c, w in zip(r[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("PASS" if ok else "FAIL")


def comparison(mode: str, gw: dict[str, Any], relay: dict[str, Any], best: dict[str, Any] | None,
               ramp_ran: bool) -> str:
    ratio = gw["cpu_per_call_s_ms"] / relay["cpu_per_call_s_ms"]
    target_ratio = CPU_RATIO_TARGET[mode]
    cpu_runs = ""
    if len(gw.get("cpu_per_call_s_ms_runs", [])) > 1:
        cpu_runs = (" (all runs: " + ", ".join(f"{x:.1f}" for x in gw["cpu_per_call_s_ms_runs"]) + " / "
                    + ", ".join(f"{x:.1f}" for x in relay["cpu_per_call_s_ms_runs"]) + ")")
    rows: list[list[str]] = [
        ["CPU per call-minute (s)", fmt(gw["cpu_per_call_min_s"], 2), fmt(relay["cpu_per_call_min_s"], 2),
         f"{ratio:.2f}x", "", ""],
        ["CPU per call-second (ms)", fmt(gw["cpu_per_call_s_ms"], 2), fmt(relay["cpu_per_call_s_ms"], 2),
         f"{ratio:.2f}x", f"<= {target_ratio}x relay", verdict(ratio <= target_ratio)],
    ]
    for direction, name in (("inbound", "caller -> model"), ("outbound", "model -> caller")):
        g, r = gw[direction], relay[direction]
        rows.append([f"{name} latency p50 (ms)", fmt(g["p50"]), fmt(r["p50"]), f"{g['p50'] - r['p50']:+.1f}", "", ""])
        added = g["p99"] - r["p99"]
        rows.append([f"{name} latency p99 (ms)", fmt(g["p99"]), fmt(r["p99"]), f"{added:+.1f}",
                     f"added < {ADDED_P99_TARGET_MS:g}", verdict(added < ADDED_P99_TARGET_MS)])
    late_g = gw["inbound"]["late"] + gw["outbound"]["late"]
    late_r = relay["inbound"]["late"] + relay["outbound"]["late"]
    path_g = gw["inbound"]["late_path"] + gw["outbound"]["late_path"]
    path_r = relay["inbound"]["late_path"] + relay["outbound"]["late_path"]
    rows.append(["late frames (> 40 ms after due)", str(late_g), str(late_r), "", "", ""])
    rows.append(["  of which > 40 ms from when actually sent", str(path_g), str(path_r), "", "0", verdict(path_g == 0)])
    mem_ratio = gw["mem_per_call_mb"] / relay["mem_per_call_mb"] if relay["mem_per_call_mb"] > 0 else float("nan")
    rows.append(["memory per call (MB)", fmt(gw["mem_per_call_mb"], 3), fmt(relay["mem_per_call_mb"], 3),
                 f"{mem_ratio:.1f}x", f"< {MEMORY_TARGET_MB}", verdict(gw["mem_per_call_mb"] < MEMORY_TARGET_MB)])
    gs, rs = gw["setup"], relay["setup"]
    rows.append(["start -> first greeting audio p50 (ms)", fmt(gs["p50"], 0), fmt(rs["p50"], 0),
                 f"{gs['p50'] - rs['p50']:+.0f}", "", ""])
    rows.append(["start -> first greeting audio p99 (ms)", fmt(gs["p99"], 0), fmt(rs["p99"], 0),
                 f"{gs['p99'] - rs['p99']:+.0f}", "", ""])
    if ramp_ran:
        n = best["calls"] if best else 0
        rows.append(["largest N with no path-late frame (one core)", str(n) if best else "none", "", "",
                     f">= {CALLS_TARGET}", verdict(n >= CALLS_TARGET)])
    rows.append(["CPU ceiling: calls filling one core", fmt(1000 / gw["cpu_per_call_s_ms"], 0),
                 fmt(1000 / relay["cpu_per_call_s_ms"], 0), "", f">= {CALLS_TARGET}",
                 verdict(1000 / gw["cpu_per_call_s_ms"] >= CALLS_TARGET)])
    rows.append(["gateway core busy (%)", fmt(100 * gw["cpu_util"], 0), fmt(100 * relay["cpu_util"], 0), "", "", ""])
    rows.append(["harness: load core busy (%)", fmt(100 * gw["load_core_util"], 0),
                 fmt(100 * relay["load_core_util"], 0), "", "", ""])
    rows.append(["harness: caller frames sent late, max (ms)", fmt(gw["inbound"]["harness_max"]),
                 fmt(relay["inbound"]["harness_max"]), "", "", ""])
    rows.append(["harness: model deltas sent late, max (ms)", fmt(gw["outbound"]["harness_max"]),
                 fmt(relay["outbound"]["harness_max"]), "", "", ""])
    rows.append(["machine: hypervisor steal, busiest core (%)", fmt(100 * gw["steal"], 0), fmt(100 * relay["steal"], 0),
                 "", "", ""])
    head = f"gateway ({mode})"
    runs = gw.get("repeats", 1)
    title = (f"\n== {mode}: gateway vs bare relay, {gw['calls']} concurrent calls, {gw['wall_s']:.0f} s measured"
             + (f"; each the least disturbed of {runs} runs ==" if runs > 1 else " =="))
    return title + "\n" + table(["", head, "bare relay", "ratio", "target", "verdict"], rows) + (
        f"\nCPU per call-second of every run, gateway / relay (ms){cpu_runs[1:]}" if cpu_runs else "")


#: The comparison's name for the SDK relay converting PCM16 with the gateway's transcoders.
POLYPHASE_SDK_RELAY = "sdk-relay pcm16 polyphase"


def sdk_floor(modes: tuple[str, ...], compared: dict[str, dict[str, Any]]) -> str:
    """The relay, the relay on the Agents SDK (``sdk_relay.py``) and the gateway, CPU per
    call-second from the same comparison: what the SDK costs any bridge, and what the gateway
    costs beyond that. Runs of one configuration spread by 10-15% on a shared machine: the
    median of each configuration's runs is given beside its least disturbed one."""
    def cpu(name: str) -> tuple[float, float]:
        s = compared[name]
        return s["cpu_per_call_s_ms"], statistics.median(s.get("cpu_per_call_s_ms_runs") or [s["cpu_per_call_s_ms"]])

    relay = cpu("relay")
    rows = [["bare relay (websockets, G.711)", fmt(relay[0], 2), fmt(relay[1], 2), "1.00x", ""]]
    for mode in modes:
        sdk, gw = cpu(f"sdk-relay {mode}"), cpu(mode)
        rows.append([f"bare relay on the Agents SDK ({mode})", fmt(sdk[0], 2), fmt(sdk[1], 2),
                     f"{sdk[1] / relay[1]:.2f}x", ""])
        if mode == "pcm16" and POLYPHASE_SDK_RELAY in compared:
            poly = cpu(POLYPHASE_SDK_RELAY)
            rows.append(["  the same with the gateway's transcoders", fmt(poly[0], 2), fmt(poly[1], 2),
                         f"{poly[1] / relay[1]:.2f}x", f"{poly[1] / sdk[1]:.2f}x"])
        rows.append([f"gateway ({mode})", fmt(gw[0], 2), fmt(gw[1], 2), f"{gw[1] / relay[1]:.2f}x",
                     f"{gw[1] / sdk[1]:.2f}x"])
    n = compared["relay"]["calls"]
    return (f"\n== the SDK's floor: CPU per call-second at {n} calls (ms); ratios of the medians ==\n"
            + table(["", "least disturbed", "median", "vs relay", "vs SDK relay, same mode"], rows))


def median_change(before: list[float], after: list[float]) -> float:
    """The median of the pairs' relative changes (run k of ``after`` against run k of
    ``before``): robust to a slow spell that moves one pair."""
    return statistics.median(b / a - 1 for a, b in zip(before, after))


def observability_table(modes: tuple[str, ...], runs: dict[str, dict[str, Any]], calls: int) -> str:
    """Metrics, store and recording: CPU per call-second with them off and on, side by side.
    Runs of one configuration differ by a few per cent from one step to the next (the machine,
    not the code), so the cost is the median of the interleaved pairs' differences (repeat k of
    "on" against repeat k of "off"), and every run is printed."""
    rows, notes = [], []
    for mode in modes:
        off, on = runs[f"{mode} off"], runs[f"{mode} on"]
        offs, ons = off["cpu_per_call_s_ms_runs"], on["cpu_per_call_s_ms_runs"]
        cost = median_change(offs, ons)
        rows.append([mode, fmt(statistics.median(offs), 3), fmt(statistics.median(ons), 3), f"{100 * cost:+.1f}%",
                     f"< {100 * OBSERVABILITY_TARGET:.0f}%", verdict(cost < OBSERVABILITY_TARGET),
                     f"{100 * off['steal']:.0f}% / {100 * on['steal']:.0f}%",
                     f"{off['outbound']['late']} / {on['outbound']['late']}"])
        notes.append(f"  {mode} runs, off: " + ", ".join(f"{x:.2f}" for x in offs)
                     + "; on: " + ", ".join(f"{x:.2f}" for x in ons))
    return (f"\nmetrics + call store + recording, {calls} calls (CPU per call-second, ms; medians):\n"
            + table(["mode", "off", "on", "cost", "target", "", "steal off/on", "late off/on"], rows)
            + "\n" + "\n".join(notes))


def compression_table(runs: dict[str, dict[str, Any]], calls: int) -> str:
    """CPU per call-second with the model connection uncompressed and compressed, for each
    bridge: medians, and what deflate costs as the median of the back-to-back pairs' ratios."""
    rows, notes = [], []
    for name in dict.fromkeys(key.rsplit(" ", 1)[0] for key in runs):
        none, deflate = (runs[f"{name} {c}"]["cpu_per_call_s_ms_runs"] for c in ("none", "deflate"))
        cost = median_change(none, deflate)
        rows.append([name, fmt(statistics.median(none), 2), fmt(statistics.median(deflate), 2), f"{100 * cost:+.1f}%",
                     f"{100 * max(runs[f'{name} {c}']['steal'] for c in COMPRESSIONS):.0f}%"])
        notes.append(f"  {name}: none " + ", ".join(f"{x:.2f}" for x in none)
                     + "; deflate " + ", ".join(f"{x:.2f}" for x in deflate))
    return (f"\nthe model connection uncompressed and with permessage-deflate, {calls} calls "
            "(CPU per call-second, ms; medians; cost: median of the pairs):\n"
            + table(["", "none", "deflate", "deflate's cost", "steal"], rows) + "\n" + "\n".join(notes))


def ramp_table(mode: str, rows: list[dict[str, Any]], name: str = "gateway") -> str:
    body = []
    for s in rows:
        i, o = s["inbound"], s["outbound"]
        state = "ok" if analysis.sustained(s) else ("late (harness?)" if analysis.harness_bound(s) else "late")
        if s["failures"]:
            state += f", {len(s['failures'])} failed"
        if s.get("disturbed"):
            state += " (disturbed)"
        body.append([str(s["calls"]), fmt(100 * s["cpu_util"], 0), fmt(s["cpu_per_call_s_ms"], 2),
                     fmt(i["p50"]), fmt(i["p99"]), fmt(i["max"]), fmt(o["p50"]), fmt(o["p99"]), fmt(o["max"]),
                     f"{i['late']}/{o['late']}", f"{i['late_path']}/{o['late_path']}", str(s.get("late_in_steal", "-")),
                     fmt(max(i["harness_max"], o["harness_max"])),
                     fmt(100 * s["load_core_util"], 0), fmt(s["mem_per_call_mb"], 3), state])
    head = ["calls", "core %", "ms CPU/call-s", "in p50", "in p99", "in max", "out p50", "out p99", "out max",
            "late in/out", "path-late in/out", "late in steal", "harness late max", "load core %", "MB/call", ""]
    return (f"\n== {mode}: {name} ramp (latency in ms; late: > 40 ms after due; path-late: > 40 ms after "
            "actually sent; in steal: due while the hypervisor stole > 10% of a core) ==\n" + table(head, body))


def burst_table(results: list[dict[str, Any]]) -> str:
    rows = []
    for b in results:
        label = f"gateway ({b['mode']})" if b["target"] == "gateway" else "bare relay"
        worst = max(b["inbound"]["extra_max"], b["outbound"]["extra_max"])
        rows.append([label, str(b["base_calls"]), f"{b['burst_calls']} in {b['burst_s']:.1f} s",
                     fmt(b["inbound"]["extra_p99"]), fmt(b["inbound"]["extra_max"]),
                     fmt(b["outbound"]["extra_p99"]), fmt(b["outbound"]["extra_max"]),
                     fmt(b["setup"]["p50"], 0), fmt(b["setup"]["p99"], 0),
                     fmt(b.get("cpu_per_setup_ms"), 1), fmt(100 * b.get("cpu_util_burst", float("nan")), 0),
                     f"{len(b['failures'])}", f"<= {BURST_TARGET_MS:g}" if b["target"] == "gateway" else "",
                     (verdict(worst <= BURST_TARGET_MS) if b["target"] == "gateway" else "")
                     + (" (disturbed)" if b.get("disturbed") else "")])
    head = ["", "calls up", "set-ups", "in +p99", "in +max", "out +p99", "out +max", "setup p50", "setup p99",
            "ms CPU/set-up", "core % in burst", "failed", "target", "verdict"]
    return ("\n== burst: extra delay (ms) of the frames of calls in progress while new calls set up ==\n"
            + table(head, rows))


def profile_report(p: dict[str, Any], reference: dict[str, Any]) -> str:
    """The profile, grouped; shares of the unprofiled CPU per call-second of ``reference`` (a
    step at the same call count without the profiler, whose overhead inflates small functions)."""
    stats = profiles.load(p["path"])
    total = profiles.total(stats)
    s = p["summary"]
    cpu = reference["cpu_per_call_s_ms"]
    lines = [(f"\n== profile: gateway ({p['mode']}), {s['calls']} calls, {s['wall_s']:.0f} s measured: "
              f"{total:.1f} s CPU under cProfile; {cpu:.2f} ms per call-second without it ==")]
    rows = []
    for group, seconds in profiles.grouped(stats):
        share = seconds / total
        rows.append([group, f"{100 * share:.1f}%", fmt(share * cpu * 1000, 0)])
    lines.append(table(["own time by group", "share", "us per call-s"], rows))
    gc = reference.get("gc")
    if gc:
        lines.append(f"\ngarbage collection (unprofiled run): {gc['full']} full collections in {gc['wall_s']:.0f} s "
                     f"(longest {gc['full_max_ms']:.1f} ms), {gc['over_10ms']} collections of 10 ms or more, "
                     f"longest of all {gc['max_ms']:.1f} ms; {gc['ms_per_s']:.2f} ms of collection per second")
    lines.append("\ntop functions by own time:")
    rows = [[label[:90], str(n), f"{100 * own / total:.1f}%", fmt(own / total * cpu * 1000, 0)]
            for label, n, own, _ in profiles.top(stats, "tottime", 20)]
    lines.append(table(["function", "calls", "share", "us per call-s"], rows))
    lines.append("\ntop functions by cumulative time (event-loop plumbing left out):")
    lines.append(cumulative_table(stats, total, 20))
    return "\n".join(lines)


#: Event-loop and server plumbing, left out of cumulative listings (it contains everything).
PLUMBING = ("base_events.py", "events.py:", "_contextvars", "selector_events.py", "asyncio/runners.py",
            "uvicorn/server.py", "uvicorn/main.py", "gateway/cli.py", "serve_profiled", "asyncio/tasks.py")


def cumulative_table(stats: Any, total: float, n: int) -> str:
    rows = [[label[:90], str(calls), f"{100 * cum / total:.1f}%"]
            for label, calls, _, cum in profiles.top(stats, "cumtime", n, PLUMBING)]
    return table(["function", "calls", "share"], rows)


def setup_profile_report(path: Path, mode: str) -> str:
    stats = profiles.load(path)
    total = profiles.total(stats)
    return (f"\n== profile of the burst: gateway ({mode}), calls in progress plus the set-ups "
            f"({total:.1f} s CPU under cProfile); top functions by cumulative time ==\n"
            + cumulative_table(stats, total, 30))


def strip(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k != "result"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--mode", choices=[*MODES, "both"], default="both", help="gateway audio mode(s) (default both)")
    parser.add_argument("--calls", help="comma-separated call counts to run, instead of the automatic ramp")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per step (default 15)")
    parser.add_argument("--rate", type=float, default=25.0,
                        help="call set-ups per second while ramping up (default 25)")
    parser.add_argument("--ramp-start", type=int, default=30,
                        help="first call count of the ramp after the comparison's (default 30)")
    parser.add_argument("--growth", type=float, default=1.5, help="call count factor between ramp steps (default 1.5)")
    parser.add_argument("--max-calls", type=int, default=400, help="the ramp stops here (default 400)")
    parser.add_argument("--late-tolerance", type=float, default=0.0,
                        help="fraction of late frames the ramp tolerates (default 0: none, as the target says); "
                             "for machines whose hypervisor stalls now and then")
    parser.add_argument("--compare-calls", type=int,
                        help="call count of the comparison with the relay (default 20, or the smallest of --calls)")
    parser.add_argument("--repeat", type=int, default=2,
                        help="runs of each configuration in the comparison, interleaved; the least disturbed "
                             "is shown (default 2)")
    parser.add_argument("--quick", action="store_true",
                        help="about a minute: the comparison only, once, 8 s (20 calls, both modes)")
    parser.add_argument("--burst", action="store_true", help="run the burst test (30 set-ups/s during load)")
    parser.add_argument("--burst-base", type=int, default=10, help="calls in progress during the burst (default 10)")
    parser.add_argument("--burst-rate", type=float, default=30.0, help="set-ups per second in the burst (default 30)")
    parser.add_argument("--burst-seconds", type=float, default=1.0, help="length of the burst (default 1 s)")
    parser.add_argument("--burst-stay", type=float, default=0.3,
                        help="burst calls hang up this many seconds after their greeting starts (default 0.3), "
                             "so that the load is the set-ups, not more calls in progress")
    parser.add_argument("--profile", action="store_true", help="profile the gateway under load (cProfile)")
    parser.add_argument("--profile-calls", type=int, default=20, help="calls during the profile (default 20)")
    parser.add_argument("--observability", type=int, metavar="CALLS",
                        help="the CPU cost of metrics, call store and recording: the gateway with them all on "
                             "beside the same with them off, at CALLS calls (--repeat times, interleaved)")
    parser.add_argument("--compression-ab", type=int, metavar="CALLS",
                        help="what permessage-deflate on the model connection costs: the relay, the gateway (and "
                             "with --sdk-relay the SDK relay) with it and without, in pairs, at CALLS calls "
                             "(--repeat times)")
    parser.add_argument("--chunk-ms", type=int, default=100, help="model audio per delta (default 100 ms)")
    parser.add_argument("--even-starts", action="store_true",
                        help="start calls evenly spaced (their frames then line up) instead of at random instants")
    parser.add_argument("--model-compression", choices=COMPRESSIONS, default=Settings.model_compression,
                        help="what the bridges' model connection offers (GATEWAY_MODEL_COMPRESSION; the relays "
                             f"alike): permessage-deflate or none (default {Settings.model_compression}, the gateway's)")
    parser.add_argument("--sdk-relay", action="store_true",
                        help="the comparison also runs the bare relay on the Agents SDK (sdk_relay.py): the floor "
                             "of any bridge built on the SDK")
    parser.add_argument("--sdk-relay-convert", choices=("ratecv", "polyphase", "both"), default="ratecv",
                        help="how the SDK relay converts PCM16: audioop.ratecv, the cheapest (default), or the "
                             "gateway's own resampler and codec (its audio quality); both: the comparison runs "
                             "the SDK relay in PCM16 both ways")
    parser.add_argument("--budget", type=float, default=10.0, help="minutes the ramps may take in all (default 10)")
    parser.add_argument("--retries", type=int, default=1, help="reruns of a step other work disturbed (default 1)")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for the machine to be quiet")
    parser.add_argument("--out", help="directory for logs and raw results (default: a new temporary one)")
    args = parser.parse_args(argv)

    if not pin_self_to_load_core():  # this process samples and sleeps: keep it off core 0
        print("warning: cores 0 and 1 are not both available; processes are not pinned", file=sys.stderr)
    modes = MODES if args.mode == "both" else (args.mode,)
    if args.quick:
        args.seconds, args.repeat = min(args.seconds, 8.0), 1
    calls = [int(c) for c in args.calls.split(",")] if args.calls else None
    only_extra = (args.burst or args.profile or args.observability or args.compression_ab) \
        and not (args.calls or args.quick)
    bench = Bench(args)
    bench.log(f"results in {bench.out}")
    report: list[str] = []
    saved: dict[str, Any] = {"args": vars(args), "modes": {}}

    if not only_extra:
        # 1. The gateway beside the relay, at one call count, interleaved and repeated.
        n = args.compare_calls or (min(calls) if calls else 20)
        bench.log(f"\ngateway vs bare relay, {n} calls, {args.repeat} time(s) each:")
        compared = bench.compare(modes, n, args.repeat)
        # 2. The largest call count in each mode (not in --quick).
        # With --sdk-relay, the SDK relay's ramps too: the largest N any bridge on the SDK carries.
        ramps: dict[str, tuple[list[dict[str, Any]], dict[str, Any] | None]] = {}
        targets = [("gateway", mode, mode) for mode in modes]
        if args.sdk_relay:
            targets += [("sdk-relay", mode, f"sdk-relay {mode}") for mode in modes]
        for index, (target, mode, name) in enumerate(targets):
            if args.quick:
                break
            bench.log(f"\n{name} ramp:")
            bench.modes_left = len(targets) - index - 1
            ramps[name] = bench.ramp(mode, calls, known=None if calls else compared[name], target=target)
        for mode in modes:
            rows, best = ramps.get(mode, ([], None))
            if rows:
                report.append(ramp_table(mode, rows))
            report.append(comparison(mode, compared[mode], compared["relay"], best, ramp_ran=bool(rows)))
            saved["modes"][mode] = {"ramp": [strip(r) for r in rows], "best": best and best["calls"],
                                    "gateway": strip(compared[mode]), "relay": strip(compared["relay"])}
        if args.sdk_relay:
            for mode in modes:
                rows, best = ramps.get(f"sdk-relay {mode}", ([], None))
                if rows:
                    report.append(ramp_table(mode, rows, "bare relay on the Agents SDK"))
                    report.append(f"largest N with no path-late frame, bare relay on the Agents SDK ({mode}): "
                                  + (str(best["calls"]) if best else "none"))
                saved["modes"][mode]["sdk_relay_ramp"] = [strip(r) for r in rows]
            report.append(sdk_floor(modes, compared))
    if args.observability:
        bench.log(f"\nmetrics, call store and recording on vs off, {args.observability} calls:")
        runs = bench.observability(modes, args.observability, args.repeat)
        report.append(observability_table(modes, runs, args.observability))
        saved["observability"] = {name: strip(s) for name, s in runs.items()}
    if args.compression_ab:
        bench.log(f"\nthe model connection with and without permessage-deflate, {args.compression_ab} calls:")
        runs = bench.compression(modes, args.compression_ab, args.repeat)
        report.append(compression_table(runs, args.compression_ab))
        saved["compression"] = {name: strip(s) for name, s in runs.items()}
    if args.burst:
        bench.log("\nburst:")
        results = [bench.burst("gateway", mode) for mode in modes] + [bench.burst("relay", "g711_ulaw")]
        report.append(burst_table(results))
        saved["burst"] = results
        if args.profile:  # where a set-up's CPU goes: the burst again, under the profiler
            path = bench.out / f"gateway-{modes[0]}-burst.prof"
            bench.burst("gateway", modes[0], profile=path)
            report.append(setup_profile_report(path, modes[0]))
    if args.profile:
        bench.log("\nprofile:")
        for mode in modes:
            p = bench.profile(mode)
            report.append(profile_report(p, p["reference"]))
            saved.setdefault("profiles", []).append(
                {"mode": mode, "path": str(p["path"]), "summary": strip(p["summary"])})

    print("\n".join(report))
    disturbed = [s for s in bench.summaries if s.get("disturbed")]
    if disturbed:
        print(f"\nnote: {len(disturbed)} step(s) ran while other work used the machine (marked 'disturbed').")
    print(f"\n(took {(time.monotonic() - bench.started) / 60:.1f} min; raw results and logs in {bench.out})")
    (bench.out / "summary.json").write_text(json.dumps(saved, indent=1, default=_json_default))
    return 0


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Callable):  # type: ignore[arg-type]
        return repr(value)
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
