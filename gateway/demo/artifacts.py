"""The demo call's figures and artifacts, computed from what the simulators, the gateway and the
model recorded. Times are on the caller's clock (seconds since the stream's ``start``).

- ``call.wav``: stereo 8 kHz PCM16; left: the caller as they spoke, right: the agent as the
  caller heard it (the cut at the barge-in is audible: the reply stops mid-word).
- ``transcript.json``: the session's history as the gateway kept it, plus the call's facts.
- ``events.jsonl``: every session event (from the gateway's ``on_event`` hook) and every Twilio
  Media Streams message both ways (from the simulated Twilio), one JSON object a line, by time.
- ``timeline.png``: who spoke when, marks, the clear, the truncation, tools, keys.
"""

from __future__ import annotations

import json
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gateway.audio import AudioMode, ulaw_to_pcm16
from gateway.demo.chart import render_png
from gateway.demo.record import Recorder
from gateway.demo.timeline import CallTimeline, Marker, Span, short, tool_arguments
from gateway.testing.phone import PhoneCall
from gateway.twilio import Clear, OutboundMark, OutboundMedia

__all__ = ["Figures", "figures", "summarize", "write_artifacts"]

RATE = 8000


@dataclass
class Figures:
    """The numbers the demo's summary reports (None where a figure does not apply)."""

    duration_s: float
    replies_heard: int
    first_audio_ms: float | None
    barge_in_ms: float | None  # caller's first sound -> Twilio got clear
    vad_ms: float | None  # caller's first sound -> the model's speech_started reached the gateway
    clear_ms: float | None  # the gateway's part: audio_interrupted -> clear at Twilio
    told_heard_ms: float | None  # what the model was told the caller heard of the cut reply
    actually_heard_ms: float | None  # what the caller did hear of it (sample count)
    caller_frames_sent: int
    caller_frames_lost: int
    model_heard_ms: float | None  # caller audio the (local) model received
    agent_sent_ms: float | None  # agent audio the (local) model sent
    agent_heard_ms: float
    agent_cut_ms: float  # cleared at Twilio + dropped by the gateway after the barge-in
    agent_frames_lost: int | None

    @property
    def truncation_error_ms(self) -> float | None:
        if self.told_heard_ms is None or self.actually_heard_ms is None:
            return None
        return self.told_heard_ms - self.actually_heard_ms


def on_caller_clock(call: PhoneCall, monotonic: float) -> float:
    clock = call.caller.clock
    return (monotonic - clock.to_monotonic(0.0)) * clock.speed


def _bytes_per_ms(call: PhoneCall) -> int:
    return 48 if call.phone.app.settings.audio_mode is AudioMode.PCM16 else 8


def figures(call: PhoneCall, recorder: Recorder) -> Figures:
    caller = call.caller
    record = call.record
    duration = caller.closed_at if caller.closed_at is not None else caller.clock.now()
    segments = caller.heard_segments()
    first_clear = caller.clears[0] if caller.clears else None

    barge = vad = clear_ms = told = actual = None
    if first_clear is not None:
        talking = [u for u in caller.utterances if u.start is not None and u.start <= first_clear]
        if talking:
            barge = (first_clear - talking[-1].start) * 1000
            started = [on_caller_clock(call, e.at) for e in recorder.of("raw_model_event")
                       if e.fields.get("server_event") == "input_audio_buffer.speech_started"]
            started = [t for t in started if t >= talking[-1].start]
            if started:
                vad = (started[0] - talking[-1].start) * 1000
        interrupted = [t for t in (on_caller_clock(call, e.at) for e in recorder.of("audio_interrupted"))
                       if t <= first_clear]
        if interrupted:
            clear_ms = (first_clear - interrupted[-1]) * 1000
        # The reply playing when the clear came: it ends there (to within a sample).
        cut = [s for s in segments if s.start <= first_clear <= s.end + 0.002]
        if cut:
            actual = cut[-1].ms
        notes = [e for e in (record.events if record else []) if e["event"] == "interrupted"]
        if call.model is not None and call.model.truncations:
            told = float(call.model.truncations[0].audio_end_ms)
        elif notes:
            told = float(notes[0]["heard_ms"])

    received_ms = sum(len(r.message.payload) for r in caller.received
                      if isinstance(r.message, OutboundMedia)) / 8
    heard_ms = caller.heard_ms
    dropped_ms = (record.dropped_audio_bytes / _bytes_per_ms(call)) if record else 0.0
    cut_ms = received_ms - heard_ms + dropped_ms
    model_heard = agent_sent = agent_lost = None
    if call.model is not None:
        fmt_rate = 8000 if call.model.input_format.rate == 8000 else 24000
        model_heard = len(call.model.input_audio_pcm16(fmt_rate)) / 2 / fmt_rate * 1000
        agent_sent = sum(r.audio_ms for r in call.model.responses)
        agent_lost = round((agent_sent - heard_ms - cut_ms) / 20)
    frames_in = record.frames_in if record else 0
    return Figures(
        duration_s=duration,
        replies_heard=len(segments),
        first_audio_ms=segments[0].start * 1000 if segments else None,
        barge_in_ms=barge, vad_ms=vad, clear_ms=clear_ms,
        told_heard_ms=told, actually_heard_ms=actual,
        caller_frames_sent=caller.frames_sent,
        caller_frames_lost=caller.frames_sent - frames_in,
        model_heard_ms=model_heard, agent_sent_ms=agent_sent,
        agent_heard_ms=heard_ms, agent_cut_ms=cut_ms, agent_frames_lost=agent_lost,
    )


def summarize(call: PhoneCall, recorder: Recorder) -> list[str]:
    """The summary's lines: the figures that matter, in words."""
    f = figures(call, recorder)
    reason = call.end_reason.value if call.end_reason else "still running"
    lines = [f"Call: {f.duration_s:.1f} s; ended: {reason}; {f.replies_heard} agent replies heard."]
    if f.first_audio_ms is not None:
        lines.append(f"Time to first audio: {f.first_audio_ms:.0f} ms from the stream's start to the "
                     "greeting's first sound at the caller.")
    if f.barge_in_ms is not None:
        parts = []
        if f.vad_ms is not None:
            parts.append(f"the model's VAD heard speech after {f.vad_ms:.0f} ms")
        if f.clear_ms is not None:
            parts.append(f"the gateway sent clear {f.clear_ms:.1f} ms after the model said so")
        detail = f" ({'; '.join(parts)})" if parts else ""
        lines.append(f"Barge-in reaction: {f.barge_in_ms:.0f} ms from the caller's first word to "
                     f"Twilio's clear{detail}.")
    if f.truncation_error_ms is not None:
        lines.append(f"Truncation error: {f.truncation_error_ms:+.0f} ms (the model was told the caller "
                     f"heard {f.told_heard_ms:.0f} ms of the cut reply; they heard "
                     f"{f.actually_heard_ms:.0f} ms).")
    inbound = f"caller to model {f.caller_frames_lost} of {f.caller_frames_sent}"
    if f.agent_frames_lost is not None:
        outbound = (f"model to caller {f.agent_frames_lost} (sent {f.agent_sent_ms / 1000:.2f} s: "
                    f"{f.agent_heard_ms / 1000:.2f} s heard, {f.agent_cut_ms / 1000:.2f} s cut at the barge-in)")
    else:
        outbound = (f"model to caller: {f.agent_heard_ms / 1000:.2f} s heard, "
                    f"{f.agent_cut_ms / 1000:.2f} s cut at the barge-in")
    lines.append(f"Audio frames lost: {inbound}; {outbound}.")
    tools = [f"{u.name} -> {u.output!r}" if u.output is not None else f"{u.name} (the call ended first)"
             for u in call.tool_calls]
    if tools:
        lines.append("Tools: " + "; ".join(tools) + ".")
    return lines


# --- Artifacts ----------------------------------------------------------------------------------


def write_artifacts(out: Path, call: PhoneCall, recorder: Recorder, summary: list[str], *,
                    real: bool = False) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    timeline = call_timeline(call, recorder, summary, real=real)
    paths = [out / "call.wav", out / "transcript.json", out / "events.jsonl", out / "timeline.png"]
    _write_wav(paths[0], timeline)
    paths[1].write_text(json.dumps(transcript(call), indent=2, ensure_ascii=False) + "\n")
    with paths[2].open("w") as f:
        for event in events(call, recorder):
            f.write(json.dumps(event, ensure_ascii=False) + "\n")
    paths[3].write_bytes(render_png(timeline))
    return paths


def _write_wav(path: Path, timeline: CallTimeline) -> None:
    left = np.frombuffer(timeline.caller_audio, "<i2")
    right = np.frombuffer(timeline.agent_audio, "<i2")
    n = max(len(left), len(right))
    stereo = np.zeros((n, 2), "<i2")
    stereo[: len(left), 0] = left
    stereo[: len(right), 1] = right
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(stereo.tobytes())


def transcript(call: PhoneCall) -> dict[str, Any]:
    record = call.record
    return {
        "call_sid": call.call_sid,
        "agent": record.agent if record else None,
        "end_reason": call.end_reason.value if call.end_reason else None,
        "history": record.transcript if record else [],
        "caller_said": [{"start": round(u.start, 3), "end": round(u.end, 3)} for u in call.caller.utterances
                        if u.start is not None and u.end is not None],
    }


def events(call: PhoneCall, recorder: Recorder) -> list[dict[str, Any]]:
    """Every session event and every Media Streams message, by time (caller clock, seconds)."""
    caller = call.caller
    rows: list[dict[str, Any]] = []
    for e in recorder.events:
        rows.append({"t": on_caller_clock(call, e.at), "source": "session", "event": e.type, **e.fields})
    rows.append({"t": 0.0, "source": "twilio", "dir": "to_gateway", "event": "connected"})
    rows.append({"t": 0.0, "source": "twilio", "dir": "to_gateway", "event": "start",
                 "callSid": caller.call_sid, "streamSid": caller.stream_sid})
    for k in range(caller.frames_sent):
        rows.append({"t": (k + 1) * 0.02, "source": "twilio", "dir": "to_gateway", "event": "media",
                     "chunk": k + 1, "timestamp_ms": k * 20, "bytes": 160})
    for t, digit in caller.keypresses:
        rows.append({"t": t, "source": "twilio", "dir": "to_gateway", "event": "dtmf", "digit": digit})
    for echo in caller.marks_echoed:
        rows.append({"t": echo.time, "source": "twilio", "dir": "to_gateway", "event": "mark",
                     "name": echo.name, "cleared": echo.cleared})
    for r in caller.received:
        m = r.message
        row: dict[str, Any] = {"t": r.time, "source": "twilio", "dir": "from_gateway", "event": m.event}
        if isinstance(m, OutboundMedia):
            row["bytes"] = len(m.payload)
        elif isinstance(m, OutboundMark):
            row["name"] = m.name
        elif isinstance(m, Clear):
            pass
        rows.append(row)
    if caller.closed_at is not None:
        rows.append({"t": caller.closed_at, "source": "twilio", "event": "closed", "by": caller.closed_by,
                     "code": caller.close_code})
    rows.sort(key=lambda row: row["t"])
    for row in rows:
        row["t"] = round(row["t"], 4)
    return rows


def call_timeline(call: PhoneCall, recorder: Recorder, summary: list[str], *, real: bool = False) -> CallTimeline:
    caller = call.caller
    duration = caller.closed_at if caller.closed_at is not None else caller.clock.now()
    n = int(round(duration * RATE))
    spoken = np.zeros(n, "<i2")
    texts = _utterance_texts(call)
    caller_spans = []
    for u, text in zip(caller.utterances, texts):
        if u.start is None:
            continue
        pcm = np.frombuffer(ulaw_to_pcm16(u.audio), "<i2")
        i = int(round(u.start * RATE))
        if i < n:
            spoken[i: i + len(pcm)] = pcm[: n - i]
        caller_spans.append(Span(u.start, u.end if u.end is not None else duration, text))
    heard = ulaw_to_pcm16(caller.heard_timeline(until=duration))

    markers: list[Marker] = []
    for echo in caller.marks_echoed:
        markers.append(Marker(echo.time, "mark_cleared" if echo.cleared else "mark"))
    for t in caller.clears:
        markers.append(Marker(t, "clear"))
    for e in recorder.of("raw_model_event"):
        if e.fields.get("server_event") == "input_audio_buffer.speech_started":
            markers.append(Marker(on_caller_clock(call, e.at), "speech_started"))
    f = figures(call, recorder)
    if caller.clears and f.told_heard_ms is not None:
        markers.append(Marker(caller.clears[0], "truncate", f"truncated at {f.told_heard_ms / 1000:.2f} s"))
    for e in recorder.events:
        if e.type == "tool_start":
            markers.append(Marker(on_caller_clock(call, e.at), "tool_start",
                                  f"{e.fields['tool']}({tool_arguments(e.fields.get('arguments'))})"))
        elif e.type == "tool_end":
            markers.append(Marker(on_caller_clock(call, e.at), "tool_end", short(e.fields.get("output"), 60)))
        elif e.type == "handoff":
            markers.append(Marker(on_caller_clock(call, e.at), "handoff", e.fields["to_agent"]))
        elif e.type == "error":
            markers.append(Marker(on_caller_clock(call, e.at), "error", short(e.fields.get("error"), 60)))
    for t, digit in caller.keypresses:
        markers.append(Marker(t, "dtmf", digit))
    if caller.closed_at is not None:
        reason = call.end_reason.value if call.end_reason else f"closed by the {caller.closed_by}"
        markers.append(Marker(caller.closed_at, "hangup", reason))

    cut_audio = []
    if caller.clears:
        cut_audio.append(Span(caller.clears[0], min(duration, caller.clears[0] + f.agent_cut_ms / 1000)))
    model = "OpenAI Realtime (--real)" if real else "local Realtime server"
    return CallTimeline(
        duration=duration,
        caller_audio=spoken.tobytes(),
        agent_audio=heard,
        caller_speech=caller_spans,
        agent_speech=_agent_spans(call, recorder),
        cut_audio=cut_audio,
        markers=markers,
        title=f"gateway demo: a call to Ava at Acme Outfitters ({model})",
        summary=summary,
    )


def _utterance_texts(call: PhoneCall) -> list[str]:
    """What each utterance said: the user transcripts of the history, in order."""
    record = call.record
    said = [i.get("text") or "" for i in (record.transcript if record else [])
            if i.get("type") == "message" and i.get("role") == "user" and not (i.get("text") or "").startswith("[")]
    return said + [""] * (len(call.caller.utterances) - len(said))


def _agent_spans(call: PhoneCall, recorder: Recorder) -> list[Span]:
    """Each stretch of agent audio heard, labelled with the transcript of the reply it began:
    the item whose first audio reached the gateway last before the stretch started."""
    record = call.record
    texts = {i.get("item_id"): i.get("text") or "" for i in (record.transcript if record else [])}
    firsts: dict[str, float] = {}
    for e in recorder.of("audio"):
        firsts.setdefault(e.fields["item_id"], on_caller_clock(call, e.at))
    order = sorted(firsts.items(), key=lambda kv: kv[1])
    spans = []
    for segment in call.caller.heard_segments():
        began = [item for item, t in order if t <= segment.start + 0.005]
        label = texts.get(began[-1], "") if began else ""
        spans.append(Span(segment.start, segment.end, label))
    return spans
