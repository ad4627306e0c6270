"""Draw a ``CallTimeline`` as a PNG: who spoke when, what was cut, and what the gateway did.

One picture, top to bottom: the title and a legend; the **Caller** lane (the caller's audio
as a waveform, each utterance as a light blue band with its transcript); the **Agent** lane
(the agent audio the caller actually heard, in green; the Twilio ``mark`` echoes as ticks
under it; audio that was sent but dropped by a barge-in as a hatched "cut" strip); the
**Events** lane (tool calls, DTMF keys, clears, hang-up... staggered onto rows so no two
labels overlap); a time axis in seconds; and the summary lines.

Only numpy: the pixels are drawn by ``gateway.demo.raster``. Nothing in the input makes
``render_png`` raise: empty or silent audio, a zero duration, times outside the call (drawn
at its edge) or not numbers (skipped), and any number of labels (those that would overlap
are shortened or left out).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from gateway.demo.raster import Canvas, Color, Font, font
from gateway.demo.timeline import CallTimeline, Marker, Span

__all__ = ["ChartGeometry", "layout", "render_png"]

SAMPLE_RATE = 8000  # CallTimeline audio: PCM16 mono 8 kHz

# Colours.
BACKGROUND: Color = (255, 255, 255)
INK: Color = (33, 37, 41)
MUTED: Color = (108, 117, 125)
GRID: Color = (230, 232, 236)
FRAME: Color = (196, 201, 207)
LANE_BG: Color = (250, 250, 251)
CALLER: Color = (31, 100, 190)
CALLER_BAND: Color = (219, 232, 250)
CALLER_TEXT: Color = (18, 60, 130)
AGENT: Color = (38, 145, 60)
AGENT_BAND: Color = (218, 241, 223)
AGENT_TEXT: Color = (20, 90, 36)
CUT_BG: Color = (236, 236, 236)
CUT_HATCH: Color = (168, 168, 168)
CUT_TEXT: Color = (80, 80, 80)
MARK: Color = (24, 110, 45)
MARK_CLEARED: Color = (160, 160, 160)
CLEAR: Color = (220, 30, 40)
SPEECH_STARTED: Color = (240, 130, 10)
TRUNCATE: Color = (40, 40, 40)
TOOL: Color = (128, 70, 190)
DTMF: Color = (55, 65, 90)
HANDOFF: Color = (0, 140, 150)
HANGUP: Color = (0, 0, 0)
ERROR: Color = (200, 0, 0)

# Sizes in pixels.
MIN_WIDTH, MAX_WIDTH = 480, 8192
MARGIN = 16
LEFT = 132  # the lane-name column: x of t = 0
RIGHT = 30  # right margin: x of t = duration is width - RIGHT
TEXT = 11  # small font (labels, legend, axis)
LABEL_LINES = 2  # lines of transcript above a waveform
LABEL_RUN = 280  # how far a transcript may run, past a shorter band
WAVE_H = 64
MARKS_H = 10
CUT_H = 18
EVENT_ROW_H = 20
MAX_EVENT_ROWS = 8
MAX_EVENT_LABEL = 380
MAX_SUMMARY_LINES = 60
GLYPH_R = 5  # radius of an event glyph

# Marker kinds drawn as ticks under the agent waveform rather than in the Events lane.
TICK_KINDS = ("mark", "mark_cleared")


@dataclass
class ChartGeometry:
    """Where things are in the picture ``render_png`` draws (y ranges are ``top, bottom``,
    bottom exclusive)."""

    width: int
    height: int
    duration: float  # seconds shown: the x axis runs from 0 to this
    x0: int  # pixel column of t = 0
    x1: int  # pixel column of t = duration
    caller: tuple[int, int]  # the whole Caller lane
    caller_wave: tuple[int, int]  # its waveform area
    agent: tuple[int, int]
    agent_wave: tuple[int, int]
    agent_marks: tuple[int, int]  # the strip of mark ticks
    agent_cut: tuple[int, int] | None  # the strip of cut audio (None when nothing was cut)
    events: tuple[int, int]
    event_rows: int
    _events: list[_Placed] = field(default_factory=list, repr=False, compare=False)
    _legend: list[tuple[int, int, _LegendEntry]] = field(
        default_factory=list, repr=False, compare=False
    )
    _axis_y: int = 0
    _summary_y: int = 0

    def x_of(self, t: float) -> int:
        """Pixel column of time ``t`` (clamped to the chart)."""
        t = min(max(float(t), 0.0), self.duration)
        return self.x0 + round(t / self.duration * (self.x1 - self.x0))


# ---------------------------------------------------------------------------------------------
# Input hygiene


def _num(value: object) -> float | None:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return v if math.isfinite(v) else None


def _duration(tl: CallTimeline) -> float:
    d = _num(tl.duration)
    if d is not None and d > 0:
        return d
    ends = [len(a) / 2 / SAMPLE_RATE for a in (tl.caller_audio, tl.agent_audio) if a]
    for s in [*tl.caller_speech, *tl.agent_speech, *tl.cut_audio]:
        ends += [v for v in (_num(s.start), _num(s.end)) if v is not None]
    ends += [v for m in tl.markers if (v := _num(m.t)) is not None]
    return max([e for e in ends if e > 0], default=1.0)


def _spans(spans: Iterable[Span], duration: float) -> list[tuple[float, float, str]]:
    """(start, end, label) clamped to the chart, sorted; spans without numbers, or wholly
    outside the call, are dropped."""
    out = []
    for s in spans:
        a, b = _num(s.start), _num(s.end)
        if a is None or b is None:
            continue
        if max(a, b) < 0 or min(a, b) > duration:
            continue  # wholly outside the call
        a, b = sorted((min(max(a, 0.0), duration), min(max(b, 0.0), duration)))
        out.append((a, b, str(s.label or "")))
    return sorted(out, key=lambda s: s[:2])


def _markers(markers: Iterable[Marker], duration: float) -> list[tuple[float, str, str]]:
    """(t, kind, label) clamped to the chart, in time order; markers without a time dropped."""
    out = []
    for m in markers:
        t = _num(m.t)
        if t is not None:
            out.append((min(max(t, 0.0), duration), str(m.kind), str(m.label or "")))
    return sorted(out, key=lambda m: m[0])


# ---------------------------------------------------------------------------------------------
# Glyphs


def _mask(r: float, inside: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """Anti-aliased coverage (0..1) of a shape ``inside(x, y)`` in a (2r+1)-pixel square
    centred on 0, from 4x4 supersampling."""
    n = 2 * math.ceil(r) + 1
    sub = (np.arange(n * 4) + 0.5) / 4 - n / 2
    y, x = np.meshgrid(sub, sub, indexing="ij")
    return inside(x, y).reshape(n, 4, n, 4).mean(axis=(1, 3)).astype(np.float32)


_R = GLYPH_R + 0.5
_SHAPES = {
    "diamond": _mask(_R, lambda x, y: abs(x) + abs(y) <= _R),
    "ring_diamond": _mask(_R, lambda x, y: (abs(x) + abs(y) <= _R) & (abs(x) + abs(y) >= _R - 2.2)),
    "circle": _mask(_R, lambda x, y: x * x + y * y <= (_R - 0.5) ** 2),
    "ring": _mask(
        _R, lambda x, y: (x * x + y * y <= (_R - 0.5) ** 2) & (x * x + y * y >= (_R - 2.5) ** 2)
    ),
    "square": _mask(_R, lambda x, y: (abs(x) <= _R - 1) & (abs(y) <= _R - 1)),
    "tri_down": _mask(_R, lambda x, y: (y >= -0.75 * _R) & (abs(x) <= (0.9 * _R - y) * 0.62)),
    "tri_up": _mask(_R, lambda x, y: (y <= 0.75 * _R) & (abs(x) <= (0.9 * _R + y) * 0.62)),
}

#: Marker kind -> (shape, colour, default label) in the Events lane.
_EVENT_STYLE: dict[str, tuple[str, Color, str]] = {
    "speech_started": ("tri_up", SPEECH_STARTED, "speech started (VAD)"),
    "clear": ("square", CLEAR, "clear (barge-in)"),
    "truncate": ("tri_down", TRUNCATE, "truncated"),
    "tool_start": ("diamond", TOOL, "tool call"),
    "tool_end": ("ring_diamond", TOOL, "tool done"),
    "dtmf": ("key", DTMF, "?"),
    "handoff": ("ring", HANDOFF, "handoff"),
    "hangup": ("circle", HANGUP, "hang-up"),
    "error": ("circle", ERROR, "error"),
}
_UNKNOWN_STYLE = ("circle", MUTED, "")


def _event_text(kind: str, label: str) -> str:
    """What the Events lane writes: the label alone where it says it all (tool calls, the
    truncation point), else what the kind is, then the label."""
    if kind not in _EVENT_STYLE:
        return f"{kind}: {label}" if label else kind
    default = _EVENT_STYLE[kind][2]
    if not label:
        return default
    if kind == "tool_end":
        return "\u2192 " + label
    return label if kind in ("tool_start", "truncate") else f"{default}: {label}"


def _key_text(label: str) -> str:
    return font(TEXT, bold=True).fit(label.strip() or "?", 40)


def _glyph_width(kind: str, label: str) -> int:
    if kind == "dtmf":
        return max(14, font(TEXT, bold=True).width(_key_text(label)) + 6)
    return 2 * GLYPH_R + 1


def _draw_glyph(c: Canvas, kind: str, label: str, cx: int, cy: int) -> None:
    shape, color, _ = _EVENT_STYLE.get(kind, _UNKNOWN_STYLE)
    if shape == "key":  # a key cap with the digit on it
        key = _key_text(label)
        w, f = _glyph_width(kind, label), font(TEXT, bold=True)
        x, y = cx - w // 2, cy - 8
        c.fill_rect(x + 1, y, x + w - 1, y + 16, color)
        c.fill_rect(x, y + 1, x + w, y + 15, color)
        c.text(x + (w - f.width(key)) // 2, y + 1, key, (255, 255, 255), TEXT, bold=True)
        return
    m = _SHAPES[shape]
    c.blend(cx - m.shape[1] // 2, cy - m.shape[0] // 2, m, color)


# ---------------------------------------------------------------------------------------------
# Layout


@dataclass
class _Placed:
    x: int  # the glyph's centre
    row: int
    kind: str
    label: str  # the marker's own label
    text: str  # what to write ("" for none)
    text_x: int


@dataclass
class _LegendEntry:
    draw: Callable[[Canvas, int, int], None]  # sample at (x, centre y), 18 px wide
    text: str


def _legend_entries(kinds: set[str], cut: bool) -> list[_LegendEntry]:
    """The key: the lanes' colours, then a sample of each kind of marker in the call."""

    def wave(band: Color, color: Color) -> Callable[[Canvas, int, int], None]:
        def draw(c: Canvas, x: int, y: int) -> None:
            c.fill_rect(x, y - 7, x + 18, y + 8, band)
            for i, h in enumerate((2, 5, 3, 6, 4, 2, 5, 3)):
                c.vline(x + 1 + 2 * i, y - h, y + h + 1, color)

        return draw

    def hatch(c: Canvas, x: int, y: int) -> None:
        c.fill_rect(x, y - 6, x + 18, y + 7, CUT_BG)
        c.hatch_rect(x, y - 6, x + 18, y + 7, CUT_HATCH)

    def ticks(color: Color, h: int) -> Callable[[Canvas, int, int], None]:
        def draw(c: Canvas, x: int, y: int) -> None:
            for i in range(0, 18, 4):
                c.vline(x + i, y - 4, y - 4 + h, color)

        return draw

    def line_and(
        kind: str, color: Color, thickness: int, dash: tuple[int, int] | None = None
    ) -> Callable[[Canvas, int, int], None]:
        def draw(c: Canvas, x: int, y: int) -> None:
            c.vline(x + 3, y - 8, y + 9, color, thickness, dash)
            _draw_glyph(c, kind, "", x + 13, y)

        return draw

    def glyph(kind: str, label: str = "") -> Callable[[Canvas, int, int], None]:
        return lambda c, x, y: _draw_glyph(c, kind, label, x + 9, y)

    entries = [
        _LegendEntry(wave(CALLER_BAND, CALLER), "caller speech"),
        _LegendEntry(wave(AGENT_BAND, AGENT), "agent speech, as the caller heard it"),
    ]
    if cut:
        entries.append(_LegendEntry(hatch, "agent audio cut: sent, never heard"))
    optional = [
        ("mark", ticks(MARK, 6), "mark echoed: that audio was played"),
        ("mark_cleared", ticks(MARK_CLEARED, 9), "mark cleared: never played"),
        (
            "speech_started",
            line_and("speech_started", SPEECH_STARTED, 2),
            "speech started: the model hears the caller",
        ),
        ("clear", line_and("clear", CLEAR, 3), "clear: queued agent audio dropped"),
        ("truncate", glyph("truncate"), "reply cut where the caller stopped hearing it"),
        ("tool_start", glyph("tool_start"), "tool call"),
        ("tool_end", glyph("tool_end"), "tool result"),
        ("dtmf", glyph("dtmf", "5"), "key pressed"),
        ("handoff", glyph("handoff"), "handoff"),
        ("hangup", line_and("hangup", HANGUP, 1, (4, 3)), "hang-up"),
        ("error", glyph("error"), "error"),
    ]
    entries += [_LegendEntry(draw, text) for kind, draw, text in optional if kind in kinds]
    return entries


def _place_events(
    items: list[tuple[float, str, str]],
    x_of: Callable[[float], int],
    right: int,
    lines: list[int],
) -> tuple[list[_Placed], int]:
    """Greedy rows: each event goes on the first row where its glyph and label fit after what
    is already there; failing that, its glyph alone; failing that, it is left out. A label
    goes right of its glyph, or left of it near the right edge or when it would cross one of
    the vertical ``lines`` (clear, hang-up) that the other side avoids."""
    f = font(TEXT)
    ends: list[int] = []  # per row, the rightmost pixel used
    placed: list[_Placed] = []
    for t, kind, label in items:
        x = x_of(t)
        half = _glyph_width(kind, label) // 2
        text = "" if kind == "dtmf" else f.fit(_event_text(kind, label), MAX_EVENT_LABEL)
        tw = f.width(text)
        options = []
        if text:
            on_right = (x - half - 3, x + half + 4 + tw + 8, x + half + 4)
            on_left = (x - half - 4 - tw - 8, x + half + 3, x - half - 4 - tw)

            def crosses(lo: int, hi: int, x: int = x) -> bool:
                return any(lo < v < hi and abs(v - x) > 2 for v in lines)

            if x + half + 4 + tw > right or (
                crosses(on_right[0], on_right[1] - 8)
                and not crosses(on_left[0] + 8, on_left[1])
                and on_left[0] > MARGIN
            ):
                options.append(on_left)
            else:
                options.append(on_right)
        options.append((x - half - 2, x + half + 2, None))
        for lo, hi, text_x in options:
            row = next((r for r, end in enumerate(ends) if lo > end), None)
            if row is None and len(ends) < MAX_EVENT_ROWS:
                row = len(ends)
                ends.append(-(10**9))
            if row is not None:
                ends[row] = hi
                placed.append(
                    _Placed(x, row, kind, label, text if text_x is not None else "", text_x or 0)
                )
                break
    return placed, len(ends)


def _wrap_legend(
    entries: list[_LegendEntry], left: int, right: int
) -> list[tuple[int, int, _LegendEntry]]:
    f = font(TEXT)
    out, x, row = [], left, 0
    for e in entries:
        w = 24 + f.width(e.text)
        if x > left and x + w > right:
            x, row = left, row + 1
        out.append((x, row, e))
        x += w + 20
    return out


def _lane_heights() -> tuple[int, int]:
    label_h = LABEL_LINES * font(TEXT).line_height + 6
    return label_h, label_h + WAVE_H


def layout(timeline: CallTimeline, width: int = 1600) -> ChartGeometry:
    """Where ``render_png(timeline, width)`` puts everything (its pixel columns and rows)."""
    w = min(max(int(_num(width) or 0), MIN_WIDTH), MAX_WIDTH)
    duration = _duration(timeline)
    x0, x1 = LEFT, w - RIGHT
    markers = _markers(timeline.markers, duration)
    kinds = {k for _, k, _ in markers}
    cut = bool(_spans(timeline.cut_audio, duration))

    def x_of(t: float) -> int:
        return x0 + round(min(max(t, 0.0), duration) / duration * (x1 - x0))

    lines = sorted({x_of(t) for t, k, _ in markers if k in ("clear", "hangup")})
    events, rows = _place_events([m for m in markers if m[1] not in TICK_KINDS], x_of, w - 4, lines)
    legend = _wrap_legend(_legend_entries(kinds, cut), MARGIN, w - MARGIN)
    legend_rows = 1 + max((r for _, r, _ in legend), default=0)

    y = 14 + font(18, bold=True).line_height + 8  # title
    legend_y = y
    y += legend_rows * 20 + 12
    label_h, lane_h = _lane_heights()
    caller = (y, y + lane_h)
    caller_wave = (y + label_h, y + lane_h)
    y = caller[1] + 1
    agent_wave = (y + label_h, y + label_h + WAVE_H)
    agent_marks = (agent_wave[1], agent_wave[1] + MARKS_H)
    agent_cut = (agent_marks[1] + 2, agent_marks[1] + 2 + CUT_H) if cut else None
    agent = (y, (agent_cut or agent_marks)[1] + 3)
    y = agent[1] + 1
    events_lane = (y, y + 6 + max(rows, 2) * EVENT_ROW_H + 4)  # room for the lane's name
    axis_y = events_lane[1]
    summary_y = axis_y + 26
    n_summary = min(len(timeline.summary), MAX_SUMMARY_LINES + 1)
    height = summary_y + (n_summary * 18 + 10 if n_summary else 0) + 6
    return ChartGeometry(
        width=w,
        height=height,
        duration=duration,
        x0=x0,
        x1=x1,
        caller=caller,
        caller_wave=caller_wave,
        agent=agent,
        agent_wave=agent_wave,
        agent_marks=agent_marks,
        agent_cut=agent_cut,
        events=events_lane,
        event_rows=rows,
        _events=events,
        _legend=[(x, legend_y + 20 * r, e) for x, r, e in legend],
        _axis_y=axis_y,
        _summary_y=summary_y,
    )


# ---------------------------------------------------------------------------------------------
# Drawing


def _tick_step(duration: float, plot_width: int) -> float:
    """A round step giving at most 20 ticks, at least ~55 px apart (so ~10-20 on a wide chart)."""
    most = max(min(20.0, plot_width / 55), 2.0)
    steps = [b * 10.0**e for e in range(-3, 7) for b in (1, 2, 5)]
    steps += [15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0]
    return next((s for s in sorted(steps) if duration / s <= most), duration / 10)


def _tick_label(v: float, step: float) -> str:
    decimals = 0 if step >= 1 else 1 if step >= 0.1 else 2 if step >= 0.01 else 3
    return f"{v:.{decimals}f} s"


def _envelope(audio: bytes, duration: float, columns: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Per pixel column, the min and max sample (int32) of the audio under it; columns past
    the end of the audio are left off (so the arrays may be shorter than ``columns``)."""
    n = len(audio) // 2
    if n == 0 or columns <= 0:
        return None
    samples = np.frombuffer(audio, "<i2", count=n)
    edges = np.floor(np.arange(columns + 1) * (duration * SAMPLE_RATE / columns)).astype(np.int64)
    m = int(np.searchsorted(edges[:-1], n, side="left"))  # columns starting inside the audio
    if m == 0:
        return None
    starts = edges[:m]
    seg = samples[: max(min(n, int(edges[m])), int(starts[-1]) + 1)]
    lo = np.minimum.reduceat(seg, starts).astype(np.int32)
    hi = np.maximum.reduceat(seg, starts).astype(np.int32)
    return lo, hi


def _draw_wave(
    c: Canvas, g: ChartGeometry, audio: bytes, wave: tuple[int, int], color: Color
) -> None:
    env = _envelope(audio, g.duration, g.x1 - g.x0)
    if env is None:
        return
    lo, hi = env
    top_y, bottom_y = wave
    centre = (top_y + bottom_y) // 2
    half = (bottom_y - top_y) // 2 - 3
    scale = max(int(hi.max()), -int(lo.min()), 1024)
    top = centre - np.rint(hi / scale * half).astype(np.int64)
    bottom = centre - np.rint(lo / scale * half).astype(np.int64) + 1
    bottom = np.maximum(bottom, top + 1)
    sounding = (hi != 0) | (lo != 0)
    rows = np.arange(top_y, bottom_y)[:, None]
    mask = (rows >= top) & (rows < bottom) & sounding
    region = c.pixels[top_y:bottom_y, g.x0 : g.x0 + len(lo)]
    region[mask[:, : region.shape[1]]] = color


def _wrap(f: Font, s: str, width: int, lines: int = LABEL_LINES) -> list[str]:
    """``s`` word-wrapped into at most ``lines`` lines of ``width`` px, the last ellipsized."""
    s = " ".join(f.clean(s).split())
    if not s or width <= 0:
        return []
    if f.width(s) <= width:
        return [s]
    words, out, i = s.split(" "), [], 0
    while i < len(words) and len(out) < lines - 1 and f.width(words[i]) <= width:
        line, i = words[i], i + 1
        while i < len(words) and f.width(line + " " + words[i]) <= width:
            line, i = line + " " + words[i], i + 1
        out.append(line)
    last = f.fit(" ".join(words[i:]), width) if i < len(words) else ""
    return out + [last] if last else out


def _halo_text(c: Canvas, x: int, y: int, s: str, color: Color, size: int = TEXT) -> None:
    """Text on a translucent white patch, so lines behind it don't cut through the letters."""
    f = font(size)
    c.blend_rect(x - 2, y + 1, x + f.width(s) + 2, y + f.line_height - 1, BACKGROUND, 0.8)
    c.text(x, y, s, color, size)


def _draw_speech(
    c: Canvas,
    g: ChartGeometry,
    spans: list[tuple[float, float, str]],
    lane: tuple[int, int],
    wave: tuple[int, int],
    band: Color,
    color: Color,
    lines: list[int],
) -> list[tuple[int, int, str]]:
    """Bands of the utterances; returns their labels to draw later (x, width, text). A label
    may run past its band, up to ``LABEL_RUN`` px, but not into the next band nor across one
    of the vertical ``lines`` (clear, hang-up) after its first few pixels."""
    labels = []
    starts = [g.x_of(a) for a, _, _ in spans]
    for a, b, label in spans:
        xa, xb = g.x_of(a), max(g.x_of(b), g.x_of(a) + 1)
        c.fill_rect(xa, lane[0] + 2, xb, wave[1], band)
        c.fill_rect(xa, wave[0], xb, wave[0] + 2, color)
        stops = starts[bisect.bisect_right(starts, xa) :][:1]  # the next band
        stops += lines[bisect.bisect_right(lines, xa + 30) :][:1]
        end = min([*stops, xa + max(xb - xa, LABEL_RUN), g.width - 4])
        labels.append((xa, end - 6 - xa, label))
    return labels


def _draw_labels(c: Canvas, labels: list[tuple[int, int, str]], top: int, color: Color) -> None:
    f = font(TEXT)
    for x, width, label in labels:
        for n, line in enumerate(_wrap(f, label, width - 4)):
            _halo_text(c, x + 3, top + 3 + n * f.line_height, line, color)


def _draw_lane_name(c: Canvas, lane: tuple[int, int], name: str, notes: list[str]) -> None:
    y = (lane[0] + lane[1]) // 2 - (
        font(14, True).line_height + len(notes) * font(TEXT).line_height
    ) // 2
    c.text(MARGIN, y, name, INK, 14, bold=True)
    y += font(14, True).line_height
    for note in notes:
        c.text(MARGIN, y, font(TEXT).fit(note, LEFT - MARGIN - 8), MUTED, TEXT)
        y += font(TEXT).line_height


def render_png(timeline: CallTimeline, width: int = 1600) -> bytes:
    """The call as a PNG image ``width`` pixels wide (480..8192); its height follows the
    content (about 450 px plus the summary for a typical call)."""
    return _render(timeline, width)[0].to_png()


def _render(timeline: CallTimeline, width: int = 1600) -> tuple[Canvas, ChartGeometry]:
    g = layout(timeline, width)
    c = Canvas(g.width, g.height, BACKGROUND)
    f = font(TEXT)
    d = g.duration
    markers = _markers(timeline.markers, d)
    caller_spans = _spans(timeline.caller_speech, d)
    agent_spans = _spans(timeline.agent_speech, d)
    cut_spans = _spans(timeline.cut_audio, d)

    # Title and legend.
    right_note = f"call length {d:.1f} s"
    c.text(g.width - MARGIN - f.width(right_note), 20, right_note, MUTED, TEXT)
    title = font(18, True).fit(
        timeline.title or "Call timeline", g.width - 2 * MARGIN - f.width(right_note) - 20
    )
    c.text(MARGIN, 14, title, INK, 18, bold=True)
    for x, y, e in g._legend:
        e.draw(c, x, y + 8)
        c.text(x + 24, y + 1, e.text, INK, TEXT)

    # Lanes: backgrounds, names, grid.
    lanes = [g.caller, g.agent, g.events]
    for top, bottom in lanes:
        c.fill_rect(g.x0, top, g.x1 + 1, bottom, LANE_BG)
    step = _tick_step(d, g.x1 - g.x0)
    ticks = [i * step for i in range(int(d / step + 1e-9) + 1)]
    for t in ticks:
        c.vline(g.x_of(t), g.caller[0], g.events[1], GRID)
    for wave in (g.caller_wave, g.agent_wave):
        c.hline(g.x0, g.x1 + 1, (wave[0] + wave[1]) // 2, FRAME)
    for top, bottom in lanes:
        c.hline(MARGIN, g.x1 + 1, top, FRAME)
    c.hline(MARGIN, g.x1 + 1, g.events[1], FRAME)
    _draw_lane_name(c, g.caller, "Caller", ["the person", "on the phone"])
    _draw_lane_name(c, g.agent, "Agent", ["its audio, as the", "caller heard it"])
    _draw_lane_name(c, g.events, "Events", ["gateway, model", "and tools"])

    # Speech bands, cut strips, waveforms.
    lines = sorted({g.x_of(t) for t, k, _ in markers if k in ("clear", "hangup")})
    caller_labels = _draw_speech(
        c, g, caller_spans, g.caller, g.caller_wave, CALLER_BAND, CALLER, lines
    )
    agent_labels = _draw_speech(c, g, agent_spans, g.agent, g.agent_wave, AGENT_BAND, AGENT, lines)
    if g.agent_cut:
        top, bottom = g.agent_cut
        for a, b, label in cut_spans:
            xa, xb = g.x_of(a), max(g.x_of(b), g.x_of(a) + 1)
            c.fill_rect(xa, top, xb, bottom, CUT_BG)
            c.hatch_rect(xa, top, xb, bottom, CUT_HATCH)
            c.vline(xa, top, bottom, CUT_TEXT)
            text = f.fit("cut (not heard)" + (f": {label}" if label else ""), xb - xa - 8)
            if text:
                _halo_text(c, xa + 5, top + (CUT_H - f.line_height) // 2, text, CUT_TEXT)
    _draw_wave(c, g, timeline.caller_audio, g.caller_wave, CALLER)
    _draw_wave(c, g, timeline.agent_audio, g.agent_wave, AGENT)

    # Mark echoes: ticks under the agent waveform.
    def mark_ticks(kind: str, color: Color, h: int) -> None:
        xs = np.array([g.x_of(t) for t, k, _ in markers if k == kind], np.int64)
        if xs.size:
            c.pixels[g.agent_marks[0] + 1 : g.agent_marks[0] + h, xs] = color

    mark_ticks("mark", MARK, 7)

    # Lines for the moments that matter across lanes.
    for t, kind, _ in markers:
        x = g.x_of(t)
        if kind == "speech_started":
            c.vline(x, g.caller_wave[0], g.caller_wave[1], SPEECH_STARTED, 2)
        elif kind == "truncate":
            c.vline(x, g.agent_wave[0], g.agent[1], TRUNCATE, 1, dash=(2, 2))
            m = _SHAPES["tri_down"]
            c.blend(x - m.shape[1] // 2, g.agent_wave[0] + 1, m, TRUNCATE)
        elif kind == "hangup":
            c.vline(x, g.caller[0], g.events[1], HANGUP, 1, dash=(4, 3))
        elif kind == "error":
            c.vline(x, g.caller[0], g.events[1], ERROR, 1, dash=(2, 2))
    for t, kind, _ in markers:  # on top of everything else
        if kind == "clear":
            c.vline(g.x_of(t) - 1, g.caller[0], g.events[1], CLEAR, 3)
    mark_ticks("mark_cleared", MARK_CLEARED, MARKS_H)  # echoed at the clear: visible on its line

    _draw_labels(c, caller_labels, g.caller[0], CALLER_TEXT)
    _draw_labels(c, agent_labels, g.agent[0], AGENT_TEXT)

    # Events lane.
    for p in g._events:
        cy = g.events[0] + 6 + p.row * EVENT_ROW_H + EVENT_ROW_H // 2
        _draw_glyph(c, p.kind, p.label, p.x, cy)
        if p.text:
            _halo_text(
                c, p.text_x, cy - f.line_height // 2, p.text, ERROR if p.kind == "error" else INK
            )

    # Time axis.
    last_right = -(10**9)
    for t in ticks:
        x = g.x_of(t)
        c.vline(x, g._axis_y, g._axis_y + 5, MUTED)
        label = _tick_label(t, step)
        lx = x - f.width(label) // 2
        if lx > last_right + 6 and lx + f.width(label) <= g.width - 2:
            c.text(lx, g._axis_y + 6, label, MUTED, TEXT)
            last_right = lx + f.width(label)
    c.text(MARGIN, g._axis_y + 6, "time", MUTED, TEXT)

    # Summary.
    summary = [str(s) for s in timeline.summary[:MAX_SUMMARY_LINES]]
    if len(timeline.summary) > MAX_SUMMARY_LINES:
        summary.append(f"\u2026 and {len(timeline.summary) - MAX_SUMMARY_LINES} more lines")
    for i, line in enumerate(summary):
        c.text(MARGIN, g._summary_y + i * 18, font(14).fit(line, g.width - 2 * MARGIN), INK, 14)
    return c, g
