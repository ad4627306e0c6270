"""The demo's picture of a call, for any stored call: ``timeline_png(call)``.

``gateway demo`` draws its call from what its simulators saw (``gateway.demo.artifacts``). A
production call has less to go on: the stored call (``gateway.store.stored``: its typed events,
barge-ins, tools, keys and transcript) and, when it was recorded (``GATEWAY_RECORD``), its
recording: a stereo 8 kHz 16-bit WAV from the stream's start, the caller on the left, the agent
on the right as the caller heard it. ``call_timeline`` turns these into a ``CallTimeline``
(``gateway.demo.timeline``) and ``gateway.demo.chart`` draws it, as it draws the demo's.

Who spoke when:

- with a recording, the waveforms, and each side's speech where its channel has sound
  (``speech_spans``; while ``collect_digits`` takes keys the caller's side is silent, so no
  PIN is in a recording: the keys are drawn from their events);
- without one, from the events: the agent's speech is each response (``agent_turn``) from its
  start (not before the first audio), as long as its transcript takes to say, and a reply cut
  by a barge-in exactly what was heard of it (``heard_ms`` up to the ``clear``); the caller's
  is their turn, from the agent's reply before it to the answer. The summary says so.

The transcript labels them where they can be matched (the history has no times): the cut
reply of a barge-in by its item, a reply followed by a tool call by that tool's start, and the
rest in order between those, only where the count of replies and of spans agree; the caller's
words go to the speech in their turn. What cannot be matched is drawn without words rather
than with someone else's.

Drawing blocks (it reads the recording; numpy): about 50 ms for a minute of recorded call,
0.25 s for an hour, plus ~0.2 s for the font the first time in a process. Call it from a
thread, never on the event loop.
"""

from __future__ import annotations

import bisect
import datetime
import io
import math
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gateway.demo.chart import render_png
from gateway.demo.timeline import CallTimeline, Marker, Span, short, tool_arguments

__all__ = ["Recording", "RecordingError", "call_timeline", "read_recording",
           "speech_spans", "timeline_png"]

RATE = 8000  # the recordings' and the chart's sample rate

#: A 20 ms frame louder than this RMS (about -47 dBFS) may be speech, if it is also well above
#: the channel's own noise floor.
SPEECH_RMS = 150.0
#: Pauses shorter than this inside one side's speech do not split it: within an utterance
#: (the model's VAD waits ~500 ms of silence before it ends a turn), or within one reply.
CALLER_GAP_S = 0.6
AGENT_GAP_S = 0.7
#: A burst of energy shorter than this is a click or a key tone, not speech.
MIN_SPEECH_S = 0.12
#: A reply cut by a barge-in: the unheard rest is drawn as long as its transcript would take
#: to say at about this pace (a realtime voice speaks ~15 characters a second); the recording
#: has only what was heard, and the store keeps no length of what was cut.
MS_PER_CHARACTER = 65
#: The longest call drawn (seconds): a day (``GATEWAY_MAX_CALL_S`` at most) and an hour.
MAX_DURATION_S = 90_000.0
#: Seconds of slack when a moment (a tool's start, a barge-in) is matched to a span of speech.
SLACK_S = 0.5

#: Frames of audio measured at a time (~3 minutes of one channel).
_RMS_FRAMES = 10_000

#: User messages the gateway itself sends the model (``gateway.bridge.call``: a keypress the
#: model is told about, a call status note): not the caller's speech.
_GATEWAY_NOTES = ("The caller pressed the ", "(Call status:")


class RecordingError(ValueError):
    """The recording cannot be read as a stereo 16-bit WAV."""


@dataclass(frozen=True)
class Recording:
    """A call's recording, split: PCM16 mono 8 kHz, each from the stream's start."""

    caller: bytes
    agent: bytes

    @property
    def seconds(self) -> float:
        return max(len(self.caller), len(self.agent)) / 2 / RATE


def read_recording(wav: Path | str | bytes) -> Recording:
    """The two sides of a recording (a path or the WAV's bytes). Another sample rate is
    resampled to 8 kHz (linear: the picture needs no better). Raises ``RecordingError``."""
    try:
        source = io.BytesIO(wav) if isinstance(wav, (bytes, bytearray)) else open(wav, "rb")  # noqa: SIM115
    except OSError as exc:
        raise RecordingError(f"cannot open the recording: {exc}") from exc
    try:
        with source, wave.open(source, "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            if channels != 2 or width != 2 or rate <= 0:
                raise RecordingError(f"expected a stereo 16-bit WAV, got {channels} channel(s) of {8 * width} bits "
                                     f"at {rate} Hz")
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError, OSError) as exc:
        raise RecordingError(f"not a readable WAV: {exc}") from exc
    stereo = np.frombuffer(frames, "<i2", count=len(frames) // 4 * 2).reshape(-1, 2)
    if rate != RATE and len(stereo):
        n = int(round(len(stereo) * RATE / rate))
        at = np.arange(n) * (rate / RATE)
        stereo = np.stack([np.interp(at, np.arange(len(stereo)), stereo[:, c]) for c in (0, 1)], axis=1)
        stereo = np.rint(stereo).astype("<i2")
    return Recording(stereo[:, 0].tobytes(), stereo[:, 1].tobytes())


def speech_spans(pcm: bytes, *, gap_s: float = CALLER_GAP_S, min_s: float = MIN_SPEECH_S, frame_ms: int = 20,
                 splits: Sequence[float] = ()) -> list[tuple[float, float]]:
    """Where PCM16 mono 8 kHz audio has speech: (start, end) seconds. A frame is speech when
    its RMS is above ``SPEECH_RMS`` and 12 dB above the channel's noise floor (its 10th
    percentile frame); runs closer than ``gap_s`` merge unless one of the ``splits`` (times
    where a turn changed hands) falls between them; runs shorter than ``min_s`` are dropped."""
    frame = RATE * frame_ms // 1000
    n = len(pcm) // 2 // frame
    if n == 0:
        return []
    samples = np.frombuffer(pcm, "<i2", count=n * frame).reshape(n, frame)
    rms = np.empty(n, np.float32)
    for i in range(0, n, _RMS_FRAMES):  # in pieces: an hour's call would take ~100 MB at once
        x = samples[i:i + _RMS_FRAMES].astype(np.float32)
        rms[i:i + _RMS_FRAMES] = np.sqrt(np.mean(x * x, axis=1))
    floor = float(np.percentile(rms, 10))
    threshold = max(SPEECH_RMS, min(4.0 * floor, 0.3 * float(rms.max())))
    edges = np.diff(np.concatenate(([0], (rms > threshold).astype(np.int8), [0])))
    runs = zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1))
    cuts = sorted(splits)
    spans: list[list[float]] = []
    for a, b in runs:
        start, end = a * frame_ms / 1000, b * frame_ms / 1000
        if spans and start - spans[-1][1] < gap_s and bisect.bisect_left(cuts, start) == bisect.bisect_right(
                cuts, spans[-1][1]):
            spans[-1][1] = end
        else:
            spans.append([start, end])
    return [(float(a), float(b)) for a, b in spans if b - a >= min_s]


# ---------------------------------------------------------------------------------------------
# The stored call, read


@dataclass(frozen=True)
class _Message:
    index: int  # in the transcript
    role: str  # "user" or "assistant"
    item_id: str | None
    text: str


def _messages(transcript: Sequence[dict[str, Any]]) -> list[_Message]:
    """The conversation's spoken turns in order (the gateway's own notes to the model left out)."""
    out = []
    for i, item in enumerate(transcript):
        role, text = item.get("role"), str(item.get("text") or "")
        if item.get("type") != "message" or role not in ("user", "assistant"):
            continue
        if role == "user" and text.startswith(_GATEWAY_NOTES):
            continue
        out.append(_Message(i, role, _id(item.get("item_id")), text))
    return out


def _num(value: Any) -> float | None:
    """A finite number, or None: a stored call may have been written by anyone with the store."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _rows(value: Any) -> list[dict[str, Any]]:
    """A stored list of objects (events, barge-ins, ...), without what is not an object."""
    return [row for row in value if isinstance(row, dict)] if isinstance(value, list) else []


def _id(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _clean(call: Any) -> dict[str, Any]:
    """The stored call with its lists as lists of objects and its figures an object: what the
    drawing reads, whatever the store held (no input makes it raise, like the chart)."""
    call = dict(call) if isinstance(call, dict) else {}
    for key in ("events", "transcript", "barge_ins", "tool_calls", "keypresses"):
        call[key] = _rows(call.get(key))
    call["figures"] = call["figures"] if isinstance(call.get("figures"), dict) else {}
    return call


def _events(call: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted((e for e in call["events"] if _num(e.get("t")) is not None),
                  key=lambda e: e["t"])


def _duration(call: dict[str, Any], events: list[dict[str, Any]], recording: Recording | None) -> float:
    """The x axis: the call's length, or its last event or audio if later; at most a day and
    a bit (``GATEWAY_MAX_CALL_S`` allows a day), so a wild time cannot stretch it."""
    ends = [_num(call.get("duration_s")) or 0.0, *(e["t"] for e in events)]
    if recording is not None:
        ends.append(recording.seconds)
    return min(max(ends), MAX_DURATION_S)


# ---------------------------------------------------------------------------------------------
# Agent speech without a recording: the responses


def _function_calls(transcript: Sequence[dict[str, Any]], events: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """Each function call in the transcript (its index) with its tool's start time: the n-th
    call of a tool is the n-th ``tool_start`` of that tool."""
    starts: dict[str, list[float]] = {}
    for e in events:
        if e.get("event") == "tool_start":
            starts.setdefault(str(e.get("tool")), []).append(e["t"])
    out = []
    for i, item in enumerate(transcript):
        if item.get("type") == "function_call" and starts.get(str(item.get("name"))):
            out.append((i, starts[str(item.get("name"))].pop(0)))
    return out


def _turn_changes(events: list[dict[str, Any]]) -> list[float]:
    """Times at which the floor changed hands: a response began, a tool returned, a key was
    pressed, a barge-in. Speech on either side of one is two turns, however short the pause."""
    out = []
    for e in events:
        kind = e.get("event")
        if kind == "agent_turn" and (seconds := _num(e.get("seconds"))) is not None:
            out.append(e["t"] - seconds)
        elif kind in ("tool_end", "dtmf", "interrupted"):
            out.append(e["t"])
    return out


def _responses(events: list[dict[str, Any]], transcript: Sequence[dict[str, Any]], calls: list[tuple[int, float]],
               barge_ins: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """The agent's speech, without a recording: each response (``agent_turn``: it ended at
    ``t``, ``seconds`` after it began), from the first audio on; a reply cut by a barge-in, what
    was heard of it (``heard_ms`` up to the clear: exact). A response that only called a tool
    (no reply before that function call in the history) said nothing and is left out."""
    first_audio = next((e["t"] for e in events if e.get("event") == "first_audio"), None)
    spans = []
    for e in events:
        seconds = _num(e.get("seconds"))
        if e.get("event") != "agent_turn" or seconds is None:
            continue
        start, end = e["t"] - seconds, e["t"]
        if first_audio is not None:
            if end < first_audio:
                continue
            start = max(start, first_audio)
        spans.append((start, end))

    def called(t: float) -> int | None:  # the response that called a tool started at t
        ended = [k for k, (_, end) in enumerate(spans) if end <= t + 0.001]
        return ended[-1] if ended else None

    spoke = {i for i, item in enumerate(transcript)
             if item.get("type") == "message" and item.get("role") == "assistant"}
    speaking = {called(t) for i, t in calls if i - 1 in spoke}
    silent = {called(t) for i, t in calls if i - 1 not in spoke} - speaking
    spans = [s for k, s in enumerate(spans) if k not in silent]
    for b in barge_ins:
        t, heard = _num(b.get("t")), _num(b.get("heard_ms"))
        if t is None or heard is None:
            continue
        cut = (max(0.0, t - heard / 1000), t)
        playing = [k for k, (a, _) in enumerate(spans) if a <= t + 0.001]  # the reply cut: the last begun
        if playing:
            spans[playing[-1]] = cut
        else:
            spans.append(cut)
    return sorted(spans)


def _spoken_length(spans: list[tuple[float, float]], estimated: set[int], labels: dict[int, int],
                   replies: list[_Message], barge_ins: list[dict[str, Any]],
                   duration: float) -> list[tuple[float, float]]:
    """The ``estimated`` spans (responses, from the events) as long as they were heard: a model
    streams its audio faster than it plays, so a response ends (``agent_turn``) long before its
    last word is heard. A reply whose transcript is known lasts as long as saying it takes
    (``MS_PER_CHARACTER``), up to the next span or the call's end; a cut reply ends at its
    barge-in, as it did."""
    cut = {_num(b.get("t")) for b in barge_ins}
    out = []
    for k, (a, b) in enumerate(spans):
        if k in estimated and k in labels and b not in cut:
            said = len(replies[labels[k]].text) * MS_PER_CHARACTER / 1000
            b = max(b, min([a + said, duration, *(s for s, _ in spans[k + 1:k + 2])]))
        out.append((a, b))
    return out


# ---------------------------------------------------------------------------------------------
# Matching the transcript to the spans


def _pair(n_spans: int, n_items: int, pins: list[tuple[int, int]]) -> dict[int, int]:
    """span -> item, in order. ``pins`` fix some (span, item) pairs; between two pins the spans
    and items are paired one to one only where there are as many of each. Pins out of order
    with the others are ignored."""
    out: dict[int, int] = {}
    last_s = last_i = -1
    for s, i in sorted(set(pins)) + [(n_spans, n_items)]:
        if s <= last_s or i <= last_i:
            continue  # out of order (or a second pin on one span)
        if s - last_s == i - last_i:
            out.update({last_s + k: last_i + k for k in range(1, s - last_s)})
        if s < n_spans:
            out[s] = i
        last_s, last_i = s, i
    return out


def _span_at(spans: list[tuple[float, float]], t: float) -> int | None:
    """The span that began last at or before ``t`` (give or take ``SLACK_S``), if ``t`` is not
    far past its end."""
    began = [k for k, (a, _) in enumerate(spans) if a <= t + SLACK_S]
    if began and t <= spans[began[-1]][1] + 2 * SLACK_S:
        return began[-1]
    return None


def _agent_labels(spans: list[tuple[float, float]], replies: list[_Message],
                  barge_ins: list[dict[str, Any]], calls: list[tuple[int, float]]) -> dict[int, int]:
    """Agent span -> index in ``replies``."""
    pins = []
    by_item = {m.item_id: k for k, m in enumerate(replies) if m.item_id}
    for b in barge_ins:
        k, t = by_item.get(_id(b.get("item_id"))), _num(b.get("t"))
        if k is not None and t is not None and (s := _span_at(spans, t)) is not None:
            pins.append((s, k))
    at_index = {m.index: k for k, m in enumerate(replies)}
    for i, t in calls:
        # The reply just before a function call in the history is the response that called it:
        # the SDK starts the tool once all that response's audio is sent.
        k = at_index.get(i - 1)
        if k is not None and (s := _span_at(spans, t)) is not None:
            pins.append((s, k))
    return _pair(len(spans), len(replies), pins)


def _caller_spans(messages: list[_Message], replies: list[_Message], agent_spans: list[tuple[float, float]],
                  agent_of: dict[int, int], heard: list[tuple[float, float]], barge_ins: list[dict[str, Any]],
                  duration: float, *, recorded: bool) -> list[Span]:
    """The caller's speech, labelled. The caller's words in the transcript come between two
    of the agent's replies; where both are placed, that is the caller's turn: from the end of
    the one (or, at a barge-in, from the caller's speech starting) to the start of the other.
    With a recording, the speech found in a turn gets its words (as many spans as messages, or
    one message for the first span of a turn said with pauses); without one, the turn itself
    is drawn."""
    span_of = {k: s for s, k in agent_of.items()}
    index = {id(m): k for k, m in enumerate(replies)}
    speech_started = {}
    for b in barge_ins:
        t, clear_ms = _num(b.get("t")), _num(b.get("clear_ms")) or 0.0
        if t is not None:
            speech_started[_id(b.get("item_id"))] = t - clear_ms / 1000
    turns: list[tuple[float, float, list[_Message]]] = []
    before: _Message | None = None
    said: list[_Message] = []
    for m in [*messages, None]:
        if m is not None and m.role == "user":
            said.append(m)
            continue
        if said:
            start = end = None
            if before is None:
                start = 0.0
            elif before.item_id in speech_started:
                start = speech_started[before.item_id]
            elif (s := span_of.get(index[id(before)])) is not None:
                start = agent_spans[s][1]
            if m is None:
                end = duration
            elif (s := span_of.get(index[id(m)])) is not None:
                end = agent_spans[s][0]
            if start is not None and end is not None and end > start:
                turns.append((start, end, said))
        before, said = m, []
    if not recorded:
        return [Span(a, b, " / ".join(w.text for w in words if w.text)) for a, b, words in turns]
    labels: dict[int, str] = {}
    for start, end, words in turns:
        # At a barge-in, the caller's voice began a little before the model's VAD heard it.
        early = 1.5 if any(abs(start - t) < 1e-9 for t in speech_started.values()) else 0.1
        inside = [k for k, (a, _) in enumerate(heard) if start - early <= a < end]
        if len(inside) == len(words):
            labels.update({k: w.text for k, w in zip(inside, words)})
        elif inside and len(words) == 1:
            labels[inside[0]] = words[0].text
    return [Span(a, b, labels.get(k, "")) for k, (a, b) in enumerate(heard)]


def _cut_audio(barge_ins: list[dict[str, Any]], replies: list[_Message], agent_spans: list[tuple[float, float]],
               duration: float) -> list[Span]:
    """Where each reply cut by a barge-in would have gone on: from the clear, as long as the
    rest of its transcript takes to say (``MS_PER_CHARACTER``), not past the agent's next
    speech nor the call's end; a short stub when its text is unknown."""
    out = []
    for b in barge_ins:
        t, heard_ms = _num(b.get("t")), _num(b.get("heard_ms")) or 0.0
        if t is None:
            continue
        text = next((m.text for m in replies if m.item_id is not None and m.item_id == b.get("item_id")), "")
        rest = max(len(text) * MS_PER_CHARACTER - heard_ms, 0.0) / 1000
        later = [a for a, _ in agent_spans if a > t + 0.05]
        end = min([t + max(rest, 0.3), duration, *later[:1]])
        out.append(Span(t, end, f"~{rest:.0f} s" if rest >= 0.5 else ""))
    return out


# ---------------------------------------------------------------------------------------------
# Markers


def _ms(ms: float) -> str:
    return f"{ms:.1f} ms" if ms < 10 else f"{ms:.0f} ms"


def _markers(call: dict[str, Any], events: list[dict[str, Any]], duration: float) -> list[Marker]:
    markers: list[Marker] = []
    for e in events:
        t, kind = e["t"], e.get("event")
        if kind == "interrupted":
            clear_ms = _num(e.get("clear_ms"))
            markers.append(Marker(t, "clear", f"{_ms(clear_ms)} after speech started" if clear_ms is not None else ""))
            heard = _num(e.get("heard_ms"))
            cut = f"truncated at {heard / 1000:.2f} s heard" if heard is not None else ""
            markers.append(Marker(t, "truncate", cut))
        elif kind == "guardrail_tripped":
            names = e.get("guardrails")
            markers.append(Marker(t, "clear", "guardrail: " + (", ".join(map(str, names)) if isinstance(names, list)
                                                               else str(names))))
        elif kind == "tool_start":
            markers.append(Marker(t, "tool_start", f"{e.get('tool')}({tool_arguments(e.get('arguments'))})"))
        elif kind == "tool_end":
            markers.append(Marker(t, "tool_end", short(e.get("output"), 60)))
        elif kind == "dtmf":
            markers.append(Marker(t, "dtmf", str(e.get("digit") or "?")))
        elif kind == "handoff":
            markers.append(Marker(t, "handoff", f"{e.get('from_agent')} \u2192 {e.get('to_agent')}"))
        elif kind == "transfer":
            markers.append(Marker(t, "handoff", f"transfer to {e.get('target')}"))
        elif kind == "error":
            markers.append(Marker(t, "error", short(e.get("error"), 60)))
        elif kind == "transfer_refused":
            markers.append(Marker(t, "error", f"transfer to {e.get('target')} refused"))
        elif kind == "model_reconnected":
            markers.append(Marker(t, "error", f"model lost; reconnected in {_num(e.get('seconds')) or 0:.1f} s"))
    ended = next((e["t"] for e in events if e.get("event") == "call_ended"), duration)
    markers.append(Marker(ended, "hangup", str(call.get("end_reason") or "")))
    return markers


# ---------------------------------------------------------------------------------------------
# Title and summary


def _when(started_at: Any) -> str:
    t = _num(started_at)
    try:
        return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError, OverflowError, OSError):  # None, or out of the platform's range
        return "?"


def _title(call: dict[str, Any]) -> str:
    return (f"{call.get('from') or '?'} \u2192 {call.get('to') or '?'} \u00b7 agent {call.get('agent') or '?'}"
            f" \u00b7 {_when(call.get('started_at'))} \u00b7 {call.get('call_sid') or '?'}")


def _summary(call: dict[str, Any], duration: float, recording_note: str) -> list[str]:
    f = call["figures"]
    lines = [f"{str(call.get('direction') or 'inbound').capitalize()} call of {duration:.1f} s; "
             f"ended: {call.get('end_reason') or 'unknown'}."]
    timing = []
    if (first := _num(f.get("first_audio_s"))) is not None:
        timing.append(f"first audio {first * 1000:.0f} ms after the stream's start")
    if (connect := _num(f.get("model_connect_s"))) is not None:
        timing.append(f"model connected in {connect * 1000:.0f} ms")
    if timing:
        lines.append("Time: " + "; ".join(timing) + ".")
    barge_ins = call["barge_ins"]
    if barge_ins:
        parts = []
        for b in barge_ins:
            heard, clear = _num(b.get("heard_ms")), _num(b.get("clear_ms"))
            part = f"at {_num(b.get('t')) or 0:.1f} s"
            if heard is not None:
                part += f", {heard / 1000:.2f} s of the reply heard"
            parts.append(part + (f", clear {_ms(clear)} after speech started" if clear is not None else ""))
        lines.append(f"Barge-ins: {len(barge_ins)} ({'; '.join(parts)}); truncated replies: "
                     f"{f.get('truncations', len(barge_ins))}.")
    lines.append(f"Audio frames: {f.get('frames_in', 0)} from the caller, {f.get('frames_out', 0)} to the caller; "
                 f"{f.get('dropped_audio_bytes', 0)} bytes of cut agent audio never sent; "
                 f"model reconnects {f.get('reconnects', 0)}, rollovers {f.get('rollovers', 0)}.")
    tools = [f"{c.get('tool')} \u2192 {short(c.get('output'), 50)!r}" if c.get("output") is not None
             else f"{c.get('tool')} (no result)" for c in call["tool_calls"]]
    if tools:
        lines.append("Tools: " + "; ".join(tools) + ".")
    keys = "".join(str(k.get("digit", "?")) for k in call["keypresses"])
    if keys:
        lines.append(f"Keys pressed: {keys} (digits taken by collect_digits are stored as *).")
    lines.append(recording_note)
    return lines


# ---------------------------------------------------------------------------------------------
# The timeline


def call_timeline(call: dict[str, Any], wav: Path | str | bytes | None = None) -> CallTimeline:
    """The stored call (``gateway.store.stored``) as a ``CallTimeline``, with its recording
    (a path or the WAV's bytes) if given. A recording that cannot be read is noted in the
    summary and the call drawn from its events: a missing file never costs the picture."""
    call = _clean(call)
    recording, problem = None, None
    if wav is not None:
        try:
            recording = read_recording(wav)
        except RecordingError as exc:
            problem = str(exc)
    if recording is not None:
        note = f"Recording: {call.get('recording') or 'given'} (caller left, agent right, as heard)."
    else:
        note = "No recording" if problem is None else f"Recording {call.get('recording') or ''} unreadable ({problem})"
        note += (": speech drawn from the events (the agent's responses, as long as their transcripts take to say;"
                 " the caller's turns between them).")
    events = _events(call)
    duration = _duration(call, events, recording)
    transcript, barge_ins = call["transcript"], call["barge_ins"]
    unheard = {_id(b.get("item_id")) for b in barge_ins if _num(b.get("heard_ms")) == 0}
    # A reply cut before any of it was heard was never spoken.
    messages = [m for m in _messages(transcript) if not (m.role == "assistant" and m.item_id in unheard)]
    replies = [m for m in messages if m.role == "assistant"]
    calls = _function_calls(transcript, events)

    estimated: set[int] = set()  # agent spans from the events, not the audio
    if recording is not None:
        turns = _turn_changes(events)
        agent_spans = speech_spans(recording.agent, gap_s=AGENT_GAP_S, splits=turns)
        heard = speech_spans(recording.caller, gap_s=CALLER_GAP_S, splits=turns)
    else:
        agent_spans = _responses(events, transcript, calls, barge_ins)
        estimated = set(range(len(agent_spans)))
        heard = []
    agent_of = _agent_labels(agent_spans, replies, barge_ins, calls)
    agent_spans = _spoken_length(agent_spans, estimated, agent_of, replies, barge_ins, duration)
    caller = _caller_spans(messages, replies, agent_spans, agent_of, heard, barge_ins, duration,
                           recorded=recording is not None)
    agent = [Span(a, b, replies[agent_of[s]].text if s in agent_of else "") for s, (a, b) in enumerate(agent_spans)]

    cut_audio = _cut_audio(barge_ins, replies, agent_spans, duration)
    return CallTimeline(
        duration=duration,
        caller_audio=recording.caller if recording else b"",
        agent_audio=recording.agent if recording else b"",
        caller_speech=caller,
        agent_speech=agent,
        cut_audio=cut_audio,
        markers=_markers(call, events, duration),
        title=_title(call),
        summary=_summary(call, duration, note),
    )


def timeline_png(call: dict[str, Any], wav_path: Path | None = None, *, width: int = 1600) -> bytes:
    """The stored call's picture, as PNG bytes (see ``call_timeline``). Blocking (it reads the
    recording and draws with numpy): call it from a thread."""
    return render_png(call_timeline(call, wav_path), width)
