"""Barge-in under load: how fast the caller's playback is cleared, and how exactly the model is
told what the caller heard, while other calls are in progress on the same gateway process.

    python bench/bargein.py                  # both modes: K=120 barge-ins idle, then beside 150 calls (~5 min)
    python bench/bargein.py --quick          # ~1.5 min: 30 barge-ins, idle and beside 30 calls
    python bench/bargein.py --mode pcm16 --calls 100 --barge-ins 200 --seconds 60

Each step is a load step of bench/load.py (bench/harness.py: the gateway alone on core 0, the
local Realtime server and the simulated calls on core 1, fresh processes, a quiet machine
first) with ``--barge-ins`` extra calls set up across its measuring window, ``--rate-barge-ins``
a second. On each of those, once the greeting has streamed a random 0.8 to 2.5 s (seeded: the
same barge-ins in every step), the Realtime server sends ``input_audio_buffer.speech_started``
as the model's VAD would (and cancels the greeting, as the real API does with
``interrupt_response``); the gateway clears Twilio's queue and the Agents SDK truncates the
greeting's item at what the caller heard (the gateway's answer, from Twilio's mark echoes).
The caller stays a random 0.5 to 1 s after the ``clear``, then hangs up. Each mode runs an idle
step (no other calls) and a loaded one (``--calls`` other calls, silent callers, the agent
talking all the time), with the same barge-ins.

Figures (see bench/README.md, "Barge-in"), from the barge-in calls:

- clear latency: the caller's receipt of ``clear`` minus the server's send of ``speech_started``;
- truncation error: the ``audio_end_ms`` of the ``conversation.item.truncate`` the server
  received, minus the greeting audio the caller had played when the ``clear`` arrived;
- agent audio after the clear: ``media`` the caller received after it (frames and ms);
- the gateway's CPU and the hypervisor's steal over the window.

Targets (from the issue), printed with PASS/FAIL for the loaded step: clear p99 <= 5 ms,
|truncation error| p99 <= 5 ms, no agent audio after a clear, beside 150 calls, in each mode.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import analysis  # noqa: E402
from bench.harness import Step, pin_self_to_load_core, run_step  # noqa: E402
from bench.load import MODES, disturbance, fmt, one_line, start_seed, table, verdict  # noqa: E402
from gateway.settings import COMPRESSIONS, Settings  # noqa: E402

CLEAR_P99_TARGET_MS = 5.0
ERROR_P99_TARGET_MS = 5.0
CALLS_TARGET = 150


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="gateway-bargein-"))
        self.out.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()
        self._count = 0

    def log(self, text: str) -> None:
        print(text, flush=True)

    def step(self, mode: str, calls: int) -> dict[str, Any]:
        """One step (run again once if other work on the machine disturbed it; the least
        disturbed attempt is kept), with its barge-in records and figures."""
        args = self.args
        step = Step("gateway", mode, calls=calls, rate=args.rate, hold=args.seconds, chunk_ms=args.chunk_ms,
                    model_compression=args.model_compression, start_seed=start_seed(args), barge_ins=args.barge_ins,
                    barge_in_rate=args.barge_ins / args.seconds, barge_in_seed=args.seed,
                    gc_log=True,  # the gateway's garbage collections: a collection stops every call
                    gc_threshold=args.gc_threshold, gc_census=args.gc_census, slow_callbacks=args.slow_callbacks)
        attempts = []
        for attempt in range(args.retries + 1):
            self._count += 1
            run_dir = self.out / f"{self._count:02d}-{mode}-{calls}"
            result = run_step(step, run_dir, log=self.log, quiet=not args.no_wait)
            summary = summarise(result)
            summary.update(mode=mode, calls=calls, run_dir=str(run_dir))
            (run_dir / "bargeins.json").write_text(json.dumps(summary["records"], indent=1))
            summary["disturbed"] = disturbed = disturbance(summary)
            self.log("    " + step_line(summary) + (f"  [disturbed: {disturbed}]" if disturbed else ""))
            attempts.append(summary)
            if not disturbed or attempt == args.retries:
                break
            self.log("    run again: other work on the machine would be measured as ours")
        # An undisturbed attempt if there is one, else the least disturbed.
        return min(attempts, key=lambda s: (bool(s["disturbed"]), s["steal"] + max(0.0, s["foreign_sut_core"])
                                            + max(0.0, s["foreign_load_core"])))


def summarise(result: Any) -> dict[str, Any]:
    """A step's barge-in figures, the machine's state over its window and, with other calls in
    progress, their figures as load.py reports them."""
    records = analysis.barge_in_records(result.calls, result.connections)
    summary: dict[str, Any] = {**analysis.machine_summary(result), **analysis.barge_in_summary(records),
                               "records": records}
    hold = result.samples["hold"]
    summary["gc"] = analysis.gc_summary(result)
    summary["slow_callbacks"] = analysis.slow_callbacks(result)
    summary["caller_lag"] = analysis.lag_summary(result.caller_lag, result.caller_lag_t, hold["t0"], hold["t1"])
    summary["model_lag"] = analysis.lag_summary(result.model_lag, result.model_lag_t, hold["t0"], hold["t1"])
    # The server's lateness in sending speech_started (harness, not gateway): planned -> written.
    late = np.array([r["speech_sent"] - r["barge_at"] for r in records
                     if r["speech_sent"] is not None and r["barge_at"] is not None])
    summary["speech_late"] = {"p99": 1000 * analysis.pct(late, 99),
                              "max": 1000 * float(late.max()) if len(late) else float("nan")}
    if result.step.calls:
        background = analysis.summarise(result)
        summary["background"] = {k: background[k] for k in ("inbound", "outbound", "failures", "cpu_per_call_s_ms",
                                                              "setup", "late_in_steal")}
        summary["background_line"] = one_line(background)
    return summary


def step_line(s: dict[str, Any]) -> str:
    c, e, a = s["clear"], s["error"], s["after_clear"]
    problems = f", {len(s['problems'])} with a problem" if s["problems"] else ""
    return (f"{s['n']} barge-ins{problems}: clear p50 {fmt(c['p50'])} p99 {fmt(c['p99'])} max {fmt(c['max'])} ms, "
            f"|truncation error| p99 {fmt(e['p99'])} worst {fmt(e['worst'], 1)} ms, "
            f"{a['frames']} frames after clears; gateway core {100 * s['cpu_util']:.0f}%, "
            f"steal {100 * s['steal']:.0f}%")


def report(mode: str, idle: dict[str, Any], loaded: dict[str, Any]) -> str:
    rows = []
    for name, s in (("idle (N=0)", idle), (f"N={loaded['calls']}", loaded)):
        c, e, a = s["clear"], s["error"], s["after_clear"]
        rows.append([name, f"{s['ok']}/{s['n']}", fmt(c["p50"], 2), fmt(c["p99"], 2), fmt(c["max"], 2),
                     fmt(e["p50"], 2), fmt(e["p99"], 2), fmt(e["max"], 2), fmt(e["worst"], 2),
                     f"{a['frames']} / {a['ms']:.0f}", fmt(100 * s["cpu_util"], 0), fmt(100 * s["steal"], 1),
                     fmt(100 * max(0.0, s["foreign_sut_core"], s["foreign_load_core"]), 0),
                     "yes" if s.get("disturbed") else "no"])
    head = ["other calls", "ok", "clear p50", "p99", "max", "|trunc err| p50", "p99", "max", "worst signed",
            "frames / ms after clear", "gateway CPU %", "steal %", "others' CPU %", "disturbed"]
    c, e, a = loaded["clear"], loaded["error"], loaded["after_clear"]
    at = f"beside {loaded['calls']} calls" + ("" if loaded["calls"] >= CALLS_TARGET else f" (target: {CALLS_TARGET})")
    checks = [
        [f"clear latency p99 (ms), {at}", fmt(c["p99"], 2), f"<= {CLEAR_P99_TARGET_MS:g}",
         verdict(c["n"] == loaded["n"] and c["p99"] <= CLEAR_P99_TARGET_MS)],
        [f"|truncation error| p99 (ms), {at}", fmt(e["p99"], 2), f"<= {ERROR_P99_TARGET_MS:g}",
         verdict(e["n"] == loaded["n"] and e["p99"] <= ERROR_P99_TARGET_MS)],
        [f"agent audio after a clear (frames), {at}", str(a["frames"]), "0",
         verdict(a["frames"] == 0 and idle["after_clear"]["frames"] == 0)],
    ]
    lines = [f"\n== {mode}: {loaded['n']} barge-ins, idle and beside {loaded['calls']} other calls "
             f"({loaded['wall_s']:.0f} s windows; times in ms) ==",
             table(head, rows), "", table(["target", "measured", "target", "verdict"], checks)]
    for name, s in (("idle", idle), ("loaded", loaded)):
        truncate = np.array([r["truncate_ms"] for r in s["records"] if r["truncate_ms"] is not None])
        lines.append(f"{name}: speech_started -> truncate received p50 {fmt(analysis.pct(truncate, 50))} ms; "
                     f"mean signed truncation error {fmt(s['error']['mean'], 2)} ms; extra clears {s['extra_clears']}; "
                     f"caller's playback stood still before the clear (audio late) p50 {fmt(s['starved']['p50'])} "
                     f"max {fmt(s['starved']['max'])} ms; "
                     f"harness: server sent speech_started late by max {fmt(s['speech_late']['max'])} ms, "
                     f"caller's last mark echo before the clear late by max {fmt(s['echo_late_max'])} ms, "
                     f"caller loop lag p99 {fmt(s['caller_lag']['p99'])} max {fmt(s['caller_lag']['max'])} ms, "
                     f"model loop lag max {fmt(s['model_lag']['max'])} ms, load core {100 * s['load_core_util']:.0f}%")
        gc = s.get("gc")
        if gc is not None:
            lines.append(f"  the gateway's garbage collections: {gc['full']} full (longest {fmt(gc['full_max_ms'])} ms), "
                         f"{gc['over_10ms']} of 10 ms or more, longest of all {fmt(gc['max_ms'])} ms, "
                         f"{fmt(gc['ms_per_s'], 2)} ms of collection per second")
        slow = s.get("slow_callbacks")
        if slow is not None:
            longest = "; ".join(f"{e['ms']:.1f} ms {e['what']}" for e in slow["longest"])
            lines.append(f"  loop callbacks of 5 ms or more: {slow['count']}" + (f", longest: {longest}" if longest else ""))
        for problem in s["problems"][:5]:
            lines.append(f"  problem: {problem}")
        if len(s["problems"]) > 5:
            lines.append(f"  ... and {len(s['problems']) - 5} more (bargeins.json in {s['run_dir']})")
    if "background_line" in loaded:
        b = loaded["background"]
        lines.append(f"other calls: {loaded['background_line']}"
                     + (f"; {len(b['failures'])} failed" if b["failures"] else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--mode", choices=[*MODES, "both"], default="both", help="gateway audio mode(s) (default both)")
    parser.add_argument("--calls", type=int, help=f"other calls in progress (default {CALLS_TARGET}; 30 with --quick)")
    parser.add_argument("--barge-ins", type=int, help="barge-ins per step (default 120; 30 with --quick)")
    parser.add_argument("--rate-barge-ins", type=float, default=2.5,
                        help="barge-in calls set up per second (default 2.5); sets the window unless --seconds")
    parser.add_argument("--seconds", type=float, help="window the barge-in calls are spread over (default: "
                        "barge-ins / rate; the step lasts about 4 s more for the last one)")
    parser.add_argument("--rate", type=float, default=25.0, help="set-ups per second of the other calls (default 25)")
    parser.add_argument("--seed", type=int, default=15, help="seed of the barge-in instants and stays (default 15)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 30 barge-ins, idle and beside 30 calls")
    parser.add_argument("--chunk-ms", type=int, default=100, help="model audio per delta (default 100 ms)")
    parser.add_argument("--gc-threshold", metavar="T0,T1,T2",
                        help="run the gateway with these garbage collector thresholds (gc.set_threshold), to try")
    parser.add_argument("--gc-census", action="store_true",
                        help="count the objects the gateway's collector tracks at the window's end (gc_census.txt)")
    parser.add_argument("--slow-callbacks", action="store_true",
                        help="log the gateway's event-loop callbacks of 5 ms or more, by name (slow_callbacks.jsonl)")
    parser.add_argument("--even-starts", action="store_true",
                        help="start calls evenly spaced (their frames then line up) instead of at random instants")
    parser.add_argument("--model-compression", choices=COMPRESSIONS, default=Settings.model_compression,
                        help="what the bridges' model connection offers (GATEWAY_MODEL_COMPRESSION; the relays "
                             f"alike): permessage-deflate or none (default {Settings.model_compression}, the gateway's)")
    parser.add_argument("--retries", type=int, default=1, help="reruns of a step other work disturbed (default 1)")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for the machine to be quiet")
    parser.add_argument("--out", help="directory for logs and raw results (default: a new temporary one)")
    args = parser.parse_args(argv)
    if args.calls is None:
        args.calls = 30 if args.quick else CALLS_TARGET
    if args.barge_ins is None:
        args.barge_ins = 30 if args.quick else 120
    if args.barge_ins < 1:
        parser.error("--barge-ins must be at least 1")
    if args.seconds is None:
        args.seconds = args.barge_ins / args.rate_barge_ins

    if not pin_self_to_load_core():
        print("warning: cores 0 and 1 are not both available; processes are not pinned", file=sys.stderr)
    modes = MODES if args.mode == "both" else (args.mode,)
    bench = Bench(args)
    bench.log(f"results in {bench.out}")
    reports, saved = [], {"args": vars(args), "modes": {}}
    for mode in modes:
        bench.log(f"\n{mode}: {args.barge_ins} barge-ins over {args.seconds:.0f} s, idle, "
                  f"then beside {args.calls} calls:")
        idle = bench.step(mode, 0)
        loaded = bench.step(mode, args.calls)
        reports.append(report(mode, idle, loaded))
        saved["modes"][mode] = {"idle": idle, "loaded": loaded}
    print("\n".join(reports))
    print(f"\n(took {(time.monotonic() - bench.started) / 60:.1f} min; raw results and logs in {bench.out}: "
          "bargeins.json per step, summary.json)")
    (bench.out / "summary.json").write_text(json.dumps(saved, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
