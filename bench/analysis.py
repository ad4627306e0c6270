"""From what the processes recorded to the figures: per-frame latency, lateness, CPU, memory.

Every time is ``time.monotonic()`` in some process; CLOCK_MONOTONIC is one clock for the whole
machine, so a time taken in one process minus one taken in another is a real interval.

**Caller -> model.** The caller recorded when each 20 ms frame actually went out; its *due*
time is its slot on the stream's grid, ``t0 + (k + 1) * 20 ms``. The Realtime server recorded
when it handled each ``input_audio_buffer.append`` and the input bytes received so far. Bridges
forward in order, so frame ``k`` has reached the model once ``(k + 1) * F - H`` bytes have:
``F`` is a frame's size in the model's input format (160 bytes of G.711, or 480 PCM16 samples
at 24 kHz = 960 bytes) and ``H`` what the gateway's resampler holds back (its 1.875 ms delay,
15 samples at 8 kHz = 90 bytes at 24 kHz; nothing in G.711). Latency = reached - sent.

**Model -> caller.** The server recorded when it sent each ``response.output_audio.delta`` and
the output bytes sent so far; at ``pace=1.0`` a delta is *due* at the first delta's time plus
the audio before it. The caller recorded each ``media`` message's arrival and the bytes
received so far. Caller frame ``j`` is complete once ``160 * (j + 1)`` bytes have arrived, and
it comes from the delta holding model audio up to ``(j + 1) * 20 ms + L``, where ``L`` is the
resampler's look-ahead in PCM16 mode (1.875 ms: the last 20 ms frame of a delta needs the
first samples of the next one) and 0 in G.711. Latency = arrived - that delta sent.

**Late** (the issue's definition): a frame that reaches the other side more than 40 ms after
its due time. The due time includes the harness's own lateness (a caller frame sent late, a
delta the server sent late), so each lateness is split: the *path* (reached - actually sent:
the system under test plus the sockets) and the *harness* (actually sent - due). A late frame
whose path took at most 40 ms is the harness's, not the gateway's.

Frames are counted on established calls only: from the call's first greeting audio on (before
it the gateway may hold caller audio while the model connects, by design; the set-up is
measured separately, as time to first audio), and within the step's measuring window.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from bench.harness import LOAD_CORE, SUT_CORE
from gateway.audio.resample import DELAY_SAMPLES_8K

FRAME_S = 0.020
LATE_S = 0.040
ULAW_FRAME = 160
#: Bytes per ms and per 20 ms frame of each model-side format.
BYTES_PER_MS = {"audio/pcmu": 8, "audio/pcm": 48}
#: What a transcoding bridge's resampler holds back (caller -> model, bytes at 24 kHz) and looks
#: ahead (model -> caller, ms); a pass-through one holds nothing.
HOLDBACK_BYTES = {"audio/pcmu": 0, "audio/pcm": DELAY_SAMPLES_8K * 3 * 2}
LOOKAHEAD_MS = {"audio/pcmu": 0.0, "audio/pcm": DELAY_SAMPLES_8K / 8}


@dataclasses.dataclass
class Frames:
    """Per-frame timings of one direction, all calls together (seconds)."""

    t: np.ndarray  # when the frame was due (to select windows)
    path: np.ndarray  # reached - actually sent
    total: np.ndarray  # reached - due
    harness: np.ndarray  # actually sent - due
    call: np.ndarray  # index of the call in the step's list

    @classmethod
    def empty(cls) -> Frames:
        z = np.zeros(0)
        return cls(z, z, z, z, np.zeros(0, dtype=int))

    @classmethod
    def join(cls, parts: Sequence[Frames]) -> Frames:
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(cls)))

    def select(self, mask: np.ndarray) -> Frames:
        return Frames(self.t[mask], self.path[mask], self.total[mask], self.harness[mask], self.call[mask])

    def window(self, start: float, end: float) -> Frames:
        return self.select((self.t >= start) & (self.t < end))

    def __len__(self) -> int:
        return len(self.t)


def inbound(call: Any, conn: dict[str, Any], index: int) -> Frames:
    """Caller -> model timings of one call."""
    sent = np.frombuffer(call.sent, dtype=float) if len(call.sent) else np.zeros(0)
    app_t = np.frombuffer(conn["app_t"], dtype=float) if len(conn["app_t"]) else np.zeros(0)
    if not len(sent) or not len(app_t) or call.t0 is None:
        return Frames.empty()
    app_bytes = np.frombuffer(conn["app_bytes"], dtype=np.int64)
    fmt = conn["input_type"]
    frame_bytes = BYTES_PER_MS[fmt] * 20
    k = np.arange(len(sent))
    due = call.t0 + (k + 1) * FRAME_S
    idx = np.searchsorted(app_bytes, (k + 1) * frame_bytes - HOLDBACK_BYTES[fmt], side="left")
    ok = idx < len(app_t)
    if call.first_audio is not None:
        ok &= sent >= call.first_audio  # established: no frames held while the model connected
    else:
        ok &= False
    reached = app_t[idx[ok]]
    return Frames(due[ok], reached - sent[ok], reached - due[ok], sent[ok] - due[ok], np.full(ok.sum(), index))


def outbound(call: Any, conn: dict[str, Any], index: int) -> Frames:
    """Model -> caller timings of one call."""
    if not len(call.rx_t) or not len(conn["delta_t"]):
        return Frames.empty()
    rx_t = np.frombuffer(call.rx_t, dtype=float)
    rx_bytes = np.frombuffer(call.rx_bytes, dtype=np.int64)
    delta_t = np.frombuffer(conn["delta_t"], dtype=float)
    fmt = conn["output_type"]
    audio_ms = np.frombuffer(conn["delta_bytes"], dtype=np.int64) / BYTES_PER_MS[fmt]  # after each delta
    before_ms = np.concatenate([[0.0], audio_ms[:-1]])
    delta_due = delta_t[0] + before_ms / 1000
    j = np.arange(int(rx_bytes[-1]) // ULAW_FRAME)
    arrived = rx_t[np.searchsorted(rx_bytes, (j + 1) * ULAW_FRAME, side="left")]
    source = np.searchsorted(audio_ms, (j + 1) * 20 + LOOKAHEAD_MS[fmt] - 1e-6, side="left")
    ok = source < len(delta_t)
    arrived, source = arrived[ok], source[ok]
    sent, due = delta_t[source], delta_due[source]
    return Frames(due, arrived - sent, arrived - due, sent - due, np.full(len(source), index))


@dataclasses.dataclass
class Directions:
    inbound: Frames
    outbound: Frames

    def window(self, start: float, end: float) -> Directions:
        return Directions(self.inbound.window(start, end), self.outbound.window(start, end))

    def of_calls(self, indices: Iterable[int]) -> Directions:
        wanted = np.array(sorted(indices), dtype=int)
        return Directions(self.inbound.select(np.isin(self.inbound.call, wanted)),
                          self.outbound.select(np.isin(self.outbound.call, wanted)))


def frames(calls: Sequence[Any], connections: Sequence[dict[str, Any]]) -> Directions:
    """Every frame of every call that the Realtime server saw, both directions."""
    by_sid = {c["call_sid"]: c for c in connections if c.get("call_sid")}
    ins, outs = [], []
    for i, call in enumerate(calls):
        conn = by_sid.get(call.call_sid)
        if conn is None:
            continue
        ins.append(inbound(call, conn, i))
        outs.append(outbound(call, conn, i))
    return Directions(Frames.join(ins), Frames.join(outs))


# --- summaries -------------------------------------------------------------------------------------


def pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def latency_summary(f: Frames) -> dict[str, float]:
    """Milliseconds, and counts."""
    return {
        "frames": len(f),
        "p50": 1000 * pct(f.path, 50),
        "p99": 1000 * pct(f.path, 99),
        "max": 1000 * float(f.path.max()) if len(f) else float("nan"),
        "late": int((f.total > LATE_S).sum()),
        "late_path": int((f.path > LATE_S).sum()),
        "harness_p99": 1000 * pct(f.harness, 99),
        "harness_max": 1000 * float(f.harness.max()) if len(f) else float("nan"),
    }


def lag_summary(lag: Any, lag_t: Any, start: float, end: float) -> dict[str, float]:
    lag = np.frombuffer(lag, dtype=float) if len(lag) else np.zeros(0)
    t = np.frombuffer(lag_t, dtype=float) if len(lag_t) else np.zeros(0)
    sel = lag[(t >= start) & (t < end)]
    return {"p99": 1000 * pct(sel, 99), "max": 1000 * float(sel.max()) if len(sel) else float("nan")}


def setup_summary(calls: Sequence[Any], group: str) -> dict[str, float]:
    """Time from ``start`` to the first greeting audio, ms."""
    times = np.array([c.first_audio - c.t0 for c in calls
                      if c.group == group and c.first_audio is not None and c.t0 is not None])
    return {"n": len(times), "p50": 1000 * pct(times, 50), "p99": 1000 * pct(times, 99),
            "max": 1000 * float(times.max()) if len(times) else float("nan")}


def failures(calls: Sequence[Any], groups: Sequence[str]) -> list[str]:
    """Calls that did not run as planned: an error, closed by the far side, no audio."""
    problems = []
    for c in calls:
        if c.group not in groups:
            continue
        if c.error:
            problems.append(f"{c.call_sid}: {c.error}")
        elif c.closed_by != "caller":
            problems.append(f"{c.call_sid}: closed by the {c.closed_by} (code {c.close_code})")
        elif c.first_audio is None:
            problems.append(f"{c.call_sid}: no agent audio")
    return problems


def summarise(result: Any) -> dict[str, Any]:
    """The figures of one load step (``bench.harness.StepResult``), measured in its hold window."""
    step, s = result.step, result.samples
    hold = s["hold"]
    wall = hold["t1"] - hold["t0"]
    n = step.calls
    cpu = hold["cpu1"] - hold["cpu0"]
    directions = frames(result.calls, result.connections).of_calls(
        i for i, c in enumerate(result.calls) if c.group == "load").window(hold["t0"], hold["t1"])
    spells = steal_spells(s)
    return {
        "label": step.label,
        # Late frames due while the hypervisor was stealing >10% of a core (see steal_spells).
        "late_in_steal": late_during(directions.inbound, spells) + late_during(directions.outbound, spells),
        "calls": n,
        **machine_summary(result),
        "cpu_per_call_s_ms": 1000 * cpu / (n * wall),
        "cpu_per_call_min_s": 60 * cpu / (n * wall),
        "rss_mb": hold["rss"] / 2**20,
        "mem_per_call_mb": (hold["rss"] - s["baseline"]["rss"]) / n / 2**20,
        "inbound": latency_summary(directions.inbound),
        "outbound": latency_summary(directions.outbound),
        "setup": setup_summary(result.calls, "load"),
        "caller_lag": lag_summary(result.caller_lag, result.caller_lag_t, hold["t0"], hold["t1"]),
        "model_lag": lag_summary(result.model_lag, result.model_lag_t, hold["t0"], hold["t1"]),
        "failures": failures(result.calls, ("load", "burst")),
        "gc": gc_summary(result),
        "slow_callbacks": slow_callbacks(result),
        "tasks": hold["health"].get("tasks"),
        "fds": hold["fds"],
        "idle": s["idle"],
        "baseline": s["baseline"],
    }


def in_window(result: Any, name: str) -> list[dict[str, Any]] | None:
    """The entries of a JSON-lines log of the step (each with its monotonic start ``t``) that
    fall in the measuring window; None if the step wrote no such log."""
    path = result.run_dir / name
    if not path.exists():
        return None
    hold = result.samples["hold"]
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in entries if hold["t0"] <= e["t"] < hold["t1"]]


def gc_summary(result: Any) -> dict[str, Any] | None:
    """The system under test's garbage collections in the measuring window (``Step.gc_log``)."""
    window = in_window(result, "gc.jsonl")
    if window is None:
        return None
    hold = result.samples["hold"]
    full = [e["ms"] for e in window if e["gen"] == 2]
    long = [e["ms"] for e in window if e["ms"] >= 10]
    wall = hold["t1"] - hold["t0"]
    return {"full": len(full), "full_max_ms": max(full, default=0.0),
            "full_mean_ms": float(np.mean(full)) if full else 0.0,
            "over_10ms": len(long), "max_ms": max((e["ms"] for e in window), default=0.0),
            "ms_per_s": sum(e["ms"] for e in window) / wall, "wall_s": wall}


def slow_callbacks(result: Any, top: int = 3) -> dict[str, Any] | None:
    """The system under test's event-loop callbacks of 5 ms or more in the measuring window
    (``Step.slow_callbacks``): how many, and the longest, each with what it was."""
    window = in_window(result, "slow_callbacks.jsonl")
    if window is None:
        return None
    return {"count": len(window), "longest": sorted(window, key=lambda e: -e["ms"])[:top]}


def steal_spells(samples: dict[str, Any], limit: float = 0.10) -> list[tuple[float, float]]:
    """The sampled intervals (about a second each) in which the hypervisor stole more than
    ``limit`` of either core: a stalled virtual CPU delays frames, whoever's they are."""
    series = samples.get("cores", [])
    spells = []
    for (t0, a), (t1, b) in zip(series, series[1:], strict=False):
        stolen = max(b[c]["steal"] - a[c]["steal"] for c in b if c in a) / (t1 - t0)
        if stolen > limit:
            spells.append((t0, t1))
    return spells


def late_during(f: Frames, spells: list[tuple[float, float]]) -> int:
    """Late frames due within one of ``spells`` (or within 0.2 s after it)."""
    late = f.t[f.total > LATE_S]
    return int(sum(((late >= a) & (late < b + 0.2)).sum() for a, b in spells))


def _core_delta(hold: dict[str, Any], core: int, what: str) -> float:
    try:
        return hold["cores1"][core][what] - hold["cores0"][core][what]
    except KeyError:
        return float("nan")


def sustained(summary: dict[str, Any], tolerance: float = 0.0) -> bool:
    """Every call ran as planned, and no frame was late in either direction through the path
    (more than 40 ms from when it was actually sent: lateness of the harness's own sending is
    not the system under test's), or at most the fraction ``tolerance`` of them, for machines
    whose hypervisor stalls now and then."""
    return not summary["failures"] and all(
        summary[d]["late_path"] <= tolerance * summary[d]["frames"] for d in ("inbound", "outbound"))


def harness_bound(summary: dict[str, Any], limit_ms: float = 20.0) -> bool:
    """The load generator or the Realtime server (sharing the load core) fell behind: lateness
    measured there, not in the system under test."""
    return (summary["inbound"]["harness_max"] > limit_ms or summary["outbound"]["harness_max"] > limit_ms
            or summary["load_core_util"] > 0.95)


def burst_summary(result: Any) -> dict[str, Any]:
    """How much a burst of set-ups delayed the frames of the calls already up.

    The established calls' path latency (reached - sent) in the burst window (from the first
    burst set-up until every burst call has its greeting audio, plus half a second) against
    their own median before the burst, per direction.
    """
    tl, calls = result.timeline, result.calls
    base_calls = [i for i, c in enumerate(calls) if c.group == "load"]
    burst_calls = [c for c in calls if c.group == "burst"]
    up = [c.first_audio for c in burst_calls if c.first_audio is not None]
    end = max([tl.burst_end + 2.0, *(t + 0.5 for t in up)])
    directions = frames(calls, result.connections).of_calls(base_calls)
    out: dict[str, Any] = {"base_calls": len(base_calls), "burst_calls": len(burst_calls),
                           "burst_s": tl.burst_end - tl.burst_start, "window_s": end - tl.burst_start}
    for name in ("inbound", "outbound"):
        f: Frames = getattr(directions, name)
        before = f.window(result.samples["hold"]["t0"], tl.burst_start)
        during = f.window(tl.burst_start, end)
        baseline = pct(before.path, 50)
        out[name] = {
            "baseline_p50": 1000 * baseline,
            "extra_p99": 1000 * (pct(during.path, 99) - baseline),
            "extra_max": 1000 * (float(during.path.max()) - baseline) if len(during) else float("nan"),
            "late": int((during.total > LATE_S).sum()),
            "frames": len(during),
        }
    out["setup"] = setup_summary(calls, "burst")
    # CPU a set-up costs: the burst window's CPU beyond the steady rate before it, per set-up.
    cpu_at, hold = result.samples.get("cpu_at", {}), result.samples["hold"]
    if "burst_start" in cpu_at and "burst_end" in cpu_at:
        (t0, c0), (t1, c1) = cpu_at["burst_start"], cpu_at["burst_end"]
        steady = (c0 - hold["cpu0"]) / (t0 - hold["t0"]) if t0 > hold["t0"] else float("nan")
        out["cpu_per_setup_ms"] = 1000 * ((c1 - c0) - steady * (t1 - t0)) / max(1, len(burst_calls))
        out["cpu_util_burst"] = (c1 - c0) / (t1 - t0)
    out["failures"] = failures(calls, ("load", "burst"))
    out["caller_lag"] = lag_summary(result.caller_lag, result.caller_lag_t, tl.burst_start, end)
    out["model_lag"] = lag_summary(result.model_lag, result.model_lag_t, tl.burst_start, end)
    return out


def least_disturbed(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Of several runs of the same configuration, the one the rest of the machine disturbed
    least (the least CPU taken by the hypervisor and by other processes): on a shared machine
    a stall from outside lands on some runs and not others, and the least disturbed run is
    the closest to what the system under test itself does (as ``timeit`` keeps the minimum).
    ``repeats`` says how many runs there were, ``cpu_per_call_s_ms_runs`` their CPU figures."""
    def disturbance(s: dict[str, Any]) -> float:
        return s["steal"] + max(0.0, s["foreign_sut_core"]) + max(0.0, s["foreign_load_core"])

    best = min(summaries, key=disturbance)
    return {**best, "repeats": len(summaries), "cpu_per_call_s_ms_runs": [s["cpu_per_call_s_ms"] for s in summaries]}


# --- barge-in (bench/bargein.py) -------------------------------------------------------------------


def machine_summary(result: Any) -> dict[str, float]:
    """The system under test's CPU (``cpu_util``: of its core) and the machine's state over a
    step's hold window, for steps with or without background calls: the work of other
    processes on each core (the machine may be shared) and the time the hypervisor took, both
    of which would be measured as ours."""
    hold = result.samples["hold"]
    wall = hold["t1"] - hold["t0"]
    cpu = hold["cpu1"] - hold["cpu0"]
    load = hold["load_cpu1"] - hold["load_cpu0"]
    return {
        "wall_s": wall,
        "cpu_util": cpu / wall,
        "load_core_util": load / wall,
        "foreign_sut_core": _core_delta(hold, SUT_CORE, "busy") / wall - cpu / wall,
        "foreign_load_core": (_core_delta(hold, LOAD_CORE, "busy") - load) / wall,
        "steal": max(_core_delta(hold, c, "steal") for c in (SUT_CORE, LOAD_CORE)) / wall,
        "steal_spells": len(steal_spells(result.samples)),
    }


def barge_in_records(calls: Sequence[Any], connections: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per barge-in call (group ``bargein``), from both sides (plain values, for JSON):

    - ``clear_ms``: the caller's receipt of the first ``clear`` minus the model server's send
      of ``speech_started`` (handed to the socket);
    - ``played_ms``: the agent audio the caller had played when the ``clear`` arrived;
      ``audio_end_ms``: the first ``conversation.item.truncate`` the server received after its
      ``speech_started``; ``truncation_error_ms`` = ``audio_end_ms - played_ms`` (negative: the
      model thinks the caller heard less than they did);
    - ``after_clear_frames`` / ``after_clear_ms``: agent ``media`` received after the clear (the
      clear and a frame read in the same packet share a time, so they are told apart by order:
      the bytes received before the clear);
    - ``problem``: why a figure is missing (None if none is).
    """
    by_sid = {c["call_sid"]: c for c in connections if c.get("call_sid")}
    records = []
    for call in calls:
        if call.group != "bargein":
            continue
        conn = by_sid.get(call.call_sid, {})
        sent, clear = conn.get("speech_sent"), call.t_clear
        truncation = next(((item, end, t) for item, end, t in conn.get("truncations", [])
                           if conn.get("speech_queued") is not None and t >= conn["speech_queued"]), None)
        rx_bytes = np.frombuffer(call.rx_bytes, dtype=np.int64) if len(call.rx_bytes) else np.zeros(0, dtype=np.int64)
        after_frames = after_ms = None
        if call.rx_bytes_at_clear is not None:
            after = rx_bytes[np.searchsorted(rx_bytes, call.rx_bytes_at_clear, side="right"):]
            after_frames = len(after)
            after_ms = (int(after[-1]) - call.rx_bytes_at_clear) / 8 if len(after) else 0.0
        record = {
            "call_sid": call.call_sid,
            "barge_in_s": call.barge_in,
            "barge_at": conn.get("barge_at"),
            "speech_queued": conn.get("speech_queued"),
            "speech_sent": sent,
            "t_clear": clear,
            "clears": call.clears,
            "clear_ms": 1000 * (clear - sent) if clear is not None and sent is not None else None,
            "received_ms": call.rx_bytes_at_clear / 8 if call.rx_bytes_at_clear is not None else None,
            "played_ms": call.played_ms_at_clear,
            # Greeting time the caller's playback stood still before the clear (its audio came
            # late): from the first audio to the clear, minus what played.
            "starved_ms": (1000 * (clear - call.first_audio) - call.played_ms_at_clear
                           if clear is not None and call.first_audio is not None
                           and call.played_ms_at_clear is not None else None),
            "item_ms_at_barge": conn.get("item_ms_at_barge"),
            "item_id": conn.get("item_id"),
            "truncate_item_id": truncation[0] if truncation else None,
            "audio_end_ms": truncation[1] if truncation else None,
            "truncate_ms": 1000 * (truncation[2] - sent) if truncation and sent is not None else None,
            "truncation_error_ms": (truncation[1] - call.played_ms_at_clear
                                    if truncation and call.played_ms_at_clear is not None else None),
            # How late the caller sent its last mark echo before the clear (harness): the
            # gateway counts from an echo's arrival, so this much error is the caller's.
            "echo_late_ms": (1000 * (echo[1] - echo[0]) if (echo := getattr(call, "last_echo_at_clear", None))
                             else None),
            "after_clear_frames": after_frames,
            "after_clear_ms": after_ms,
            "response_status": conn.get("response_status"),
            "error": call.error,
            "closed_by": call.closed_by,
        }
        record["problem"] = barge_in_problem(record, conn)
        records.append(record)
    return records


def barge_in_problem(r: dict[str, Any], conn: dict[str, Any]) -> str | None:
    if not conn:
        return "the model server never saw the call"
    if r["speech_sent"] is None:
        return "no speech_started sent (the call ended before its barge-in?)"
    if r["t_clear"] is None:
        return "no clear" + (f" ({r['error']})" if r["error"] else "")
    if r["audio_end_ms"] is None:
        return "no conversation.item.truncate"
    if r["truncate_item_id"] != r["item_id"]:
        return f"truncated {r['truncate_item_id']}, not the greeting's item {r['item_id']}"
    if r["error"]:
        return r["error"]
    if r["closed_by"] != "caller":
        return f"closed by the {r['closed_by']}"
    return None


def barge_in_summary(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The figures of a step's barge-ins (ms): clear latency and |truncation error| at p50, p99
    and max, the worst signed error, the agent audio after the clears, and what went wrong."""
    clear = np.array([r["clear_ms"] for r in records if r["clear_ms"] is not None], dtype=float)
    error = np.array([r["truncation_error_ms"] for r in records if r["truncation_error_ms"] is not None
                      and r["problem"] is None], dtype=float)
    worst = float(error[np.argmax(np.abs(error))]) if len(error) else float("nan")
    measured = [r for r in records if r["after_clear_frames"] is not None]
    starved = np.array([r["starved_ms"] for r in records if r.get("starved_ms") is not None], dtype=float)
    return {
        "n": len(records),
        "ok": sum(r["problem"] is None for r in records),
        "problems": [f"{r['call_sid']}: {r['problem']}" for r in records if r["problem"]],
        "clear": {"n": len(clear), "p50": pct(clear, 50), "p99": pct(clear, 99),
                  "max": float(clear.max()) if len(clear) else float("nan")},
        "error": {"n": len(error), "p50": pct(np.abs(error), 50), "p99": pct(np.abs(error), 99),
                  "max": float(np.abs(error).max()) if len(error) else float("nan"), "worst": worst,
                  "mean": float(error.mean()) if len(error) else float("nan")},
        "after_clear": {"frames": sum(r["after_clear_frames"] for r in measured),
                        "ms": sum(r["after_clear_ms"] for r in measured),
                        "calls": sum(1 for r in measured if r["after_clear_frames"])},
        "extra_clears": sum(max(0, r["clears"] - 1) for r in records),
        "starved": {"p50": pct(starved, 50), "max": float(starved.max()) if len(starved) else float("nan")},
        "echo_late_max": max((r["echo_late_ms"] for r in records if r.get("echo_late_ms") is not None),
                             default=float("nan")),
    }
