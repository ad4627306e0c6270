"""From what every process recorded to the figures of the roll: per call, whether it was set up
and ended as planned, and how continuous its audio was both ways.

**Set up**: an incoming call's webhook answered TwiML with a stream (after following any
``<Redirect>``), the stream was accepted and the agent's audio arrived; an outbound call's
``POST /calls`` answered 201, the stream was accepted and the agent's audio arrived. A call
that is not set up was **refused**.

**Ended as planned**: the caller hung up at its planned time (``stop``, then a normal close),
the gateway never closed the stream, nothing failed. A call set up that did not end as planned
was **dropped**.

**Agent -> caller gap**: the caller plays the agent's audio as Twilio does, queued at real
time; a gap is a stretch of silence inside the agent's speech: a frame that arrives after the
audio queued before it has finished playing. The model speaks for longer than every call, so
from its first audio to the hang-up every silence is a gap. (The model sends its audio in
100 ms pieces at real-time pace, each just as the one before has played: the gaps of a healthy
path are the jitter of the path, a few ms.)

**Caller -> model gap**: the caller sends a 20 ms frame every 20 ms; the gap is the longest
time between two consecutive frames reaching the model (the Realtime server's record of its
input bytes, frame ``k`` complete once ``(k + 1) * F - H`` bytes have arrived, as
bench/analysis.py counts them), less the 20 ms cadence. Counted from the model's first audio
of the call on (before it the gateway holds the caller's audio while the model connects, by
design).

Both gaps are as measured: they include what the machine adds (a process waiting for a CPU, the
harness sending late). ``tests.rolling.stalls`` says how much of each gap that explains.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.audio.resample import DELAY_SAMPLES_8K
from gateway.twilio import OutboundMedia

__all__ = ["CallFigures", "Gap", "amd_lines", "caller_gaps", "holders", "inbound_figures", "outbound_figures",
           "silences"]

FRAME_S = 0.020
ULAW_BYTES_PER_S = 8000.0
#: A 20 ms frame at the model, and what the gateway's resampler holds back (bench/analysis.py).
FRAME_BYTES = {"audio/pcmu": 160, "audio/pcm": 960}
HOLDBACK_BYTES = {"audio/pcmu": 0, "audio/pcm": DELAY_SAMPLES_8K * 3 * 2}
#: A hang-up within this of its planned time is on time (the caller's scheduler, a busy core).
ON_TIME_S = 1.0
CALL_STARTED = re.compile(r"\[call=(CA[0-9a-f]{32}) stream=MZ[0-9a-f]{32}\] call started")
AMD_LINE = re.compile(r"\[call=(CA[0-9a-f]{32})\] answered by: (\S+) \((.*)\)\s*$")


#: Gaps shorter than this are not kept one by one (only the longest of each call is).
NOTED_S = 0.030
Gap = tuple[float, float]  # (start, end), monotonic seconds


@dataclass
class CallFigures:
    index: int
    direction: str
    call_sid: str | None
    refused: str | None  # why it was not set up (None: it was)
    dropped: str | None  # why it did not end as planned (None: it did)
    out_gap_s: float | None  # longest silence in the agent's audio at the caller
    in_gap_s: float | None  # longest gap between caller frames at the model, beyond 20 ms
    stream_open: float | None  # monotonic: stream accepted
    stream_end: float | None  # monotonic: hung up (or closed)
    redirects: int = 0
    model_connections: int = 0
    out_gaps: list[Gap] = field(default_factory=list)  # each silence of NOTED_S or more
    in_gaps: list[Gap] = field(default_factory=list)


def silences(arrivals: Iterable[tuple[float, int]]) -> tuple[float, list[Gap]]:
    """The silences inside audio played at real time as it arrives: ``arrivals`` are (time,
    mu-law bytes) in order; a piece that comes after the audio before it has played leaves a
    silence. The longest, and each one of NOTED_S or more."""
    worst, queue_end, noted = 0.0, None, []
    for t, n in arrivals:
        if queue_end is not None and t > queue_end:
            worst = max(worst, t - queue_end)
            if t - queue_end >= NOTED_S:
                noted.append((queue_end, t))
        queue_end = max(t if queue_end is None else queue_end, t) + n / ULAW_BYTES_PER_S
    return worst, noted


def caller_gaps(conn: dict[str, Any] | None) -> tuple[float | None, list[Gap]]:
    """The gaps between consecutive caller frames reaching the model, beyond 20 ms, from the
    model's first audio of the call on: the longest, and each one of NOTED_S or more."""
    if conn is None or not len(conn["app_t"]) or not len(conn["delta_t"]):
        return None, []
    app_t, app_bytes = conn["app_t"], conn["app_bytes"]
    fmt = conn["input_type"]
    frame, holdback = FRAME_BYTES[fmt], HOLDBACK_BYTES[fmt]
    established = conn["delta_t"][0]
    worst, noted, previous, k, i = 0.0, [], None, 0, 0
    while True:
        need = (k + 1) * frame - holdback
        while i < len(app_bytes) and app_bytes[i] < need:
            i += 1
        if i == len(app_bytes):
            return worst, noted
        reached = app_t[i]
        if reached >= established:
            if previous is not None:
                gap = reached - previous - FRAME_S
                worst = max(worst, gap)
                if gap >= NOTED_S:
                    noted.append((previous + FRAME_S, reached))
            previous = reached
        k += 1


def inbound_figures(record: Any, planned_index: int, conns: list[dict[str, Any]]) -> CallFigures:
    """An incoming call, from bench/caller.py's record and the model's connections for it."""
    refused = dropped = None
    if record.t_open is None:
        refused = record.error or "no stream"
    elif record.first_audio is None:
        refused = f"no agent audio ({record.error or record.closed_by or 'no error'})"
    elif record.error is not None:
        dropped = record.error
    elif record.closed_by != "caller":
        dropped = f"closed by the {record.closed_by} (code {record.close_code})"
    elif record.close_code != 1000:
        dropped = f"closed with code {record.close_code}"
    elif record.t_end < record.planned_end - ON_TIME_S:
        dropped = f"ended {record.planned_end - record.t_end:.1f} s early"
    if refused is None and dropped is None and len(conns) != 1:
        dropped = f"{len(conns)} model connections (re-established)" if conns else "no model connection"
    out_gap, out_gaps = None, []
    if record.first_audio is not None:
        end = record.t_end or float("inf")
        sizes = [b - a for a, b in zip([0, *record.rx_bytes], record.rx_bytes)]
        out_gap, out_gaps = silences((t, n) for t, n in zip(record.rx_t, sizes) if t <= end)
    in_gap, in_gaps = caller_gaps(conns[0]) if len(conns) == 1 else (None, [])
    return CallFigures(planned_index, "inbound", record.call_sid, refused, dropped, out_gap, in_gap, record.t_open,
                       record.t_end, record.redirects, len(conns), out_gaps, in_gaps)


def outbound_figures(outbound: Any, conns: list[dict[str, Any]]) -> CallFigures:
    """An outbound call, from the test's record of it (``load.Outbound``) and its callee."""
    refused = dropped = None
    call = outbound.call
    caller = call.caller if call is not None else None
    if outbound.status != 201:
        refused = outbound.error or f"POST /calls answered {outbound.status}"
    elif caller is None:
        refused = f"no stream ({outbound.error or '; '.join(call.errors if call else [])})"
    elif outbound.heard is None:
        refused = f"no agent audio ({outbound.error})"
    elif outbound.error is not None:
        dropped = outbound.error
    elif outbound.closed_before_hang_up:
        dropped = f"closed by the gateway before the hang-up ({caller.close_code} {caller.close_reason})"
    elif caller.closed_by != "caller" or caller.close_code != 1000:
        dropped = f"closed by the {caller.closed_by} (code {caller.close_code})"
    elif call.errors:
        dropped = "; ".join(call.errors)
    if refused is None and dropped is None and len(conns) != 1:
        dropped = f"{len(conns)} model connections (re-established)" if conns else "no model connection"
    out_gap, out_gaps = None, []
    if caller is not None and caller.clock.started:
        at = caller.clock.to_monotonic  # the caller's clock: seconds since its stream started
        end = outbound.hung_up if outbound.hung_up is not None else float("inf")
        out_gap, out_gaps = silences((at(r.time), len(r.message.payload)) for r in caller.received
                                     if isinstance(r.message, OutboundMedia) and at(r.time) <= end)
    in_gap, in_gaps = caller_gaps(conns[0]) if len(conns) == 1 else (None, [])
    return CallFigures(outbound.planned.index, "outbound", outbound.call_sid, refused, dropped, out_gap, in_gap,
                       outbound.streaming, outbound.hung_up, 0, len(conns), out_gaps, in_gaps)


def holders(logs: dict[str, str]) -> dict[str, str]:
    """Per call SID, the instance that held its stream (the one whose log says it started)."""
    found = {}
    for instance, text in logs.items():
        for match in CALL_STARTED.finditer(text):
            found[match.group(1)] = instance
    return found


def amd_lines(logs: dict[str, str]) -> dict[str, list[tuple[str, str, str]]]:
    """Per call SID, each instance's line saying where an answering-machine result went:
    (instance, answered_by, outcome)."""
    found: dict[str, list[tuple[str, str, str]]] = {}
    for instance, text in logs.items():
        for line in text.splitlines():
            match = AMD_LINE.search(line)
            if match:
                found.setdefault(match.group(1), []).append((instance, match.group(2), match.group(3)))
    return found
