"""The call chart (``gateway.demo.chart``) and its canvas (``gateway.demo.raster``), checked by
decoding the PNG they write with a small decoder of our own."""

from __future__ import annotations

import itertools
import struct
import time
import zlib

import numpy as np
import pytest

from gateway.demo import raster
from gateway.demo.chart import (
    AGENT,
    CALLER,
    CLEAR,
    MARK,
    SAMPLE_RATE,
    TOOL,
    layout,
    render_png,
)
from gateway.demo.raster import Canvas, encode_png, font, text_width
from gateway.demo.timeline import CallTimeline, Marker, Span

# ---------------------------------------------------------------------------------------------
# A realistic call, built by hand


def _speech(duration: float, spans: list[Span], freq: float, seed: int) -> bytes:
    """PCM16 8 kHz: exact silence, except noise-modulated tones (syllable-like bursts) in
    each span."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(duration * SAMPLE_RATE), np.float64)
    for s in spans:
        a, b = int(s.start * SAMPLE_RATE), int(s.end * SAMPLE_RATE)
        t = np.arange(b - a) / SAMPLE_RATE
        syllables = np.abs(np.sin(np.pi * 3.7 * t + rng.uniform(0, np.pi))) ** 0.7
        wobble = 0.6 + 0.4 * rng.random(len(t) // 400 + 2).repeat(400)[: len(t)]
        tone = np.sin(2 * np.pi * freq * t) + 0.5 * np.sin(2 * np.pi * 2.1 * freq * t)
        out[a:b] = 9000 * syllables * wobble * (tone + 0.3 * rng.standard_normal(len(t)))
    return np.clip(out, -32767, 32767).astype("<i2").tobytes()


def sample_timeline() -> CallTimeline:
    """About 32 s: greeting, a question, a reply cut by a barge-in, digits collected by a
    tool, an order looked up, thanks, goodbye, hang-up."""
    duration = 32.0
    agent = [
        Span(0.4, 4.2, "Hello, thanks for calling Acme Deliveries. How can I help you today?"),
        Span(
            8.0, 11.2, "I'm sorry to hear that. Orders usually ship within two business days, and"
        ),
        Span(
            13.6, 17.0, "Of course. Please type your order number on the keypad, then press hash."
        ),
        Span(20.6, 26.0, "Thanks. Order 1234 shipped yesterday and should arrive on Friday."),
        Span(28.5, 31.0, "You're welcome. Goodbye!"),
    ]
    caller = [
        Span(4.8, 7.5, "Hi, I'm calling about my order. It hasn't arrived yet."),
        Span(10.8, 13.0, "Sorry, can you just check where it is?"),
        Span(26.6, 28.0, "Great, thank you!"),
    ]
    cut = [Span(11.2, 19.0, "...then our courier partner delivers within a week.")]
    markers = [
        Marker(t, "mark")
        for s in agent
        for t in np.arange(s.start + 0.1, s.end + 1e-9, 0.1).round(2).tolist()
    ]
    markers += [Marker(11.1, "mark_cleared", str(i)) for i in range(3)]
    markers += [
        Marker(10.9, "speech_started"),
        Marker(11.1, "clear"),
        Marker(11.2, "truncate", "truncated at 3.20 s"),
        Marker(17.0, "tool_start", "collect_digits(max=8, end='#')"),
        *(Marker(18.0 + 0.5 * i, "dtmf", key) for i, key in enumerate("1234#")),
        Marker(20.1, "tool_end", "'1234'"),
        Marker(20.2, "tool_start", "lookup_order(order_id='1234')"),
        Marker(20.3, "tool_end", "shipped, arrives Friday"),
        Marker(31.0, "tool_start", "hang_up()"),
        Marker(31.3, "hangup", "the agent hung up"),
    ]
    return CallTimeline(
        duration=duration,
        caller_audio=_speech(duration, caller, 170.0, seed=1),
        agent_audio=_speech(duration, agent, 230.0, seed=2),
        caller_speech=caller,
        agent_speech=agent,
        cut_audio=cut,
        markers=markers,
        title="Offline demo call: order status, with a barge-in and keypad digits",
        summary=[
            "First agent audio 0.40 s after the call started; 5 replies heard, 1 cut short.",
            (
                "Barge-in: the model heard the caller at 10.90 s; the gateway sent clear 0.20 s "
                "later, and the model was told the caller heard 3.20 s of that reply."
            ),
            (
                "Tools: collect_digits 3.10 s (keys 1234#), lookup_order 0.10 s, hang_up. "
                "Marks: 151 echoed after play, 3 cleared."
            ),
        ],
    )


@pytest.fixture
def sample() -> CallTimeline:
    return sample_timeline()


# ---------------------------------------------------------------------------------------------
# A minimal PNG decoder (8-bit RGB, filters None/Sub/Up, which is what encode_png writes)


def decode_png(data: bytes) -> np.ndarray:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "PNG signature"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body), f"CRC of {kind!r}"
        chunks.append((kind, body))
        pos += 12 + length
    assert pos == len(data)
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    w, h, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour, compression, filtering, interlace) == (8, 2, 0, 0, 0)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    rows = np.frombuffer(raw, np.uint8).reshape(h, 1 + w * 3)
    out = np.zeros((h, w * 3), np.uint8)
    for y in range(h):
        kind, line = rows[y, 0], rows[y, 1:]
        if kind == 0:
            out[y] = line
        elif kind == 1:  # Sub: add the byte 3 to the left (one pixel), running
            out[y] = np.cumsum(line.reshape(w, 3), axis=0, dtype=np.uint8).reshape(-1)
        elif kind == 2:  # Up
            out[y] = line + (out[y - 1] if y else 0)
        else:
            raise AssertionError(f"filter type {kind} not expected")
    return out.reshape(h, w, 3)


def _png_size(data: bytes) -> tuple[int, int]:
    return struct.unpack(">II", data[16:24])


# ---------------------------------------------------------------------------------------------
# raster


def test_png_round_trip_of_random_pixels() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    pixels[10:20] = 128  # flat rows, where a filter other than None wins
    pixels[:, 30:] = pixels[:, 30:31]  # vertical stripes: Up wins
    png = encode_png(pixels)
    assert _png_size(png) == (53, 37)
    assert np.array_equal(decode_png(png), pixels)
    filters = set(zlib.decompress(_idat(png))[:: 1 + 53 * 3])
    assert filters <= {0, 1, 2} and len(filters) >= 2


def _idat(png: bytes) -> bytes:
    (length,) = struct.unpack(">I", png[33:37])
    assert png[37:41] == b"IDAT"
    return png[41 : 41 + length]


def test_a_corrupted_png_fails_the_crc_check() -> None:
    png = bytearray(Canvas(4, 3, (10, 20, 30)).to_png())
    assert np.all(decode_png(bytes(png)) == (10, 20, 30))
    png[20] ^= 1  # a byte of IHDR's height
    with pytest.raises(AssertionError, match="CRC"):
        decode_png(bytes(png))


def test_rects_lines_and_blending() -> None:
    c = Canvas(40, 30, (255, 255, 255))
    c.fill_rect(-5, -5, 10, 4, (255, 0, 0))  # clipped at the corner
    assert np.all(c.pixels[:4, :10] == (255, 0, 0)) and np.all(c.pixels[4:, :] == 255)
    assert np.all(c.pixels[:, 10:] == 255)
    c.blend_rect(20, 10, 30, 20, (0, 0, 0), 0.5)
    assert np.all(c.pixels[10:20, 20:30] == 128) and np.all(c.pixels[9, 20:30] == 255)
    c.hline(0, 40, 25, (0, 0, 255), dash=(3, 2))
    row = c.pixels[25, :, 0] == 0
    assert row.tolist() == ([True] * 3 + [False] * 2) * 8
    c.vline(35, 0, 30, (0, 255, 0), thickness=2)
    assert np.all(c.pixels[:, 35:37] == (0, 255, 0)) and not np.any(
        np.all(c.pixels[:, 34] == (0, 255, 0), axis=1)
    )
    c.vline(100, 0, 30, (0, 0, 0))  # off the canvas: nothing, no error
    c.fill_rect(50, 50, 60, 60, (0, 0, 0))


def _ink(pixels: np.ndarray) -> np.ndarray:
    return np.any(pixels != 255, axis=-1)


@pytest.mark.parametrize("size,bold", [(11, False), (14, False), (14, True), (18, True)])
def test_text_puts_ink_inside_its_box_and_nowhere_else(size: int, bold: bool) -> None:
    c = Canvas(300, 60)
    s = "Hello, caller 42!"
    w = c.text(20, 10, s, (0, 0, 0), size, bold)
    f = font(size, bold)
    assert w == text_width(s, size, bold) > 8 * len(s) // 2
    ink = _ink(c.pixels)
    inside = np.zeros_like(ink)
    inside[10 : 10 + f.line_height, 19 : 20 + w + 1] = True
    assert ink[inside].sum() > 40 * len(s.replace(" ", "")) // 4
    assert not ink[~inside].any()
    # Anti-aliased: partial coverage next to full ink.
    values = set(c.pixels[ink][:, 0].tolist())
    assert 0 in values and len(values) > 10
    # Each glyph lands where the pen is: ink in the first and in the last eighth of the box.
    assert ink[:, 20 : 20 + w // 8].any() and ink[:, 20 + w - w // 8 : 21 + w].any()


def test_text_fallbacks_and_ellipsis() -> None:
    f = font(11)
    assert f.clean("caf\u00e9 \u2603\n\u4e2d") == "cafe ? ?"
    assert text_width("\u4e2d") == text_width("?")
    long = "a rather long transcript that cannot possibly fit"
    short = f.fit(long, 100)
    assert short.endswith("\u2026") and f.width(short) <= 100 and len(short) > 5
    assert f.fit("fits", 100) == "fits" and f.fit(long, 3) == ""
    c = Canvas(100, 20)
    assert c.text(0, 0, "", (0, 0, 0)) == 0 and not _ink(c.pixels).any()
    c.text(-500, -500, "off the canvas", (0, 0, 0))
    assert not _ink(c.pixels).any()


# ---------------------------------------------------------------------------------------------
# chart


def test_sample_is_a_valid_png_of_the_requested_width(sample: CallTimeline) -> None:
    png = render_png(sample)
    g = layout(sample)
    assert _png_size(png) == (1600, g.height)
    image = decode_png(png)
    assert image.shape == (g.height, 1600, 3)
    assert 350 < g.height < 800
    assert _png_size(render_png(sample, width=900))[0] == 900


def _has(region: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    return np.all(region == color, axis=-1)


def test_clear_is_a_red_line_at_its_time_through_every_lane(sample: CallTimeline) -> None:
    image = decode_png(render_png(sample))
    g = layout(sample)
    x = g.x_of(11.1)
    assert x == g.x0 + round(11.1 / 32.0 * (g.x1 - g.x0))
    for top, bottom in (g.caller_wave, g.agent_wave):
        red = _has(image[top:bottom, g.x0 : g.x1 + 1], CLEAR)
        columns = np.flatnonzero(red.all(axis=0)) + g.x0  # red top to bottom
        assert columns.tolist() == [x - 1, x, x + 1]
    # Nowhere else in the lanes is there a solid red column.
    lanes = image[g.caller[0] : g.events[1], g.x0 : g.x1 + 1]
    assert (np.flatnonzero(_has(lanes, CLEAR).sum(axis=0) > 100) + g.x0).tolist() == [
        x - 1,
        x,
        x + 1,
    ]


def _active_columns(audio: bytes, g) -> np.ndarray:
    """Per plot column: does the audio under it have any non-zero sample?"""
    samples = np.frombuffer(audio, "<i2")
    n_cols = g.x1 - g.x0
    edges = np.floor(np.arange(n_cols + 1) * (g.duration * SAMPLE_RATE / n_cols)).astype(int)
    return np.array([np.any(samples[a : max(b, a + 1)]) for a, b in itertools.pairwise(edges)])


@pytest.mark.parametrize("lane", ["caller", "agent"])
def test_waveform_colour_only_where_the_audio_is_not_silent(
    sample: CallTimeline, lane: str
) -> None:
    image = decode_png(render_png(sample))
    g = layout(sample)
    top, bottom = getattr(g, f"{lane}_wave")
    colour = CALLER if lane == "caller" else AGENT
    audio = sample.caller_audio if lane == "caller" else sample.agent_audio
    drawn = _has(image[top:bottom, g.x0 : g.x1], colour).any(axis=0)
    active = _active_columns(audio, g)
    assert active.sum() > 200
    # The clear line (3 px) and, in the caller lane, the speech-started line (2 px) are drawn
    # over the waveform.
    hidden = np.zeros_like(active)
    hidden[g.x_of(11.1) - 1 - g.x0 : g.x_of(11.1) + 2 - g.x0] = True
    if lane == "caller":
        hidden[g.x_of(10.9) - g.x0 : g.x_of(10.9) + 2 - g.x0] = True
    assert np.array_equal(drawn[~hidden], active[~hidden])
    assert drawn[~hidden].sum() > 200
    # And that colour is nowhere else in the other lane.
    other = g.agent_wave if lane == "caller" else g.caller_wave
    assert not _has(image[other[0] : other[1]], colour).any()


def test_labels_put_ink_above_their_span_only() -> None:
    no_label = CallTimeline(duration=32.0, caller_speech=[Span(4.8, 7.5)])
    labelled = CallTimeline(duration=32.0, caller_speech=[Span(4.8, 7.5, "Hello there")])
    g = layout(labelled)
    assert layout(no_label) == g
    text_colour_ink = []
    for tl in (no_label, labelled):
        image = decode_png(render_png(tl))
        # The label area above the waveform, the whole plot width. Ink = dark (text); the
        # band and the lane background are light.
        area = image[g.caller[0] + 2 : g.caller_wave[0], g.x0 : g.x1 + 1]
        text_colour_ink.append(int((area.min(axis=-1) < 150).sum()))
    assert text_colour_ink[0] == 0
    assert text_colour_ink[1] > 30
    # The text sits at the span's start: the label's left end is within a few pixels of it.
    image = decode_png(render_png(labelled))
    area = image[g.caller[0] + 2 : g.caller_wave[0], g.x0 :]
    cols = np.flatnonzero((area.min(axis=-1) < 150).any(axis=0)) + g.x0
    assert g.x_of(4.8) <= cols[0] <= g.x_of(4.8) + 6
    assert cols[-1] - cols[0] == pytest.approx(text_width("Hello there"), abs=3)


def test_long_labels_are_ellipsized_before_the_next_span() -> None:
    words = "word " * 200
    tl = CallTimeline(
        duration=10.0,
        caller_speech=[Span(1.0, 2.0, words), Span(3.0, 4.0, "next")],
    )
    g = layout(tl)
    image = decode_png(render_png(tl))
    dark = image[g.caller[0] + 2 : g.caller_wave[0]].min(axis=-1) < 150
    cols = np.flatnonzero(dark.any(axis=0))
    first = cols[cols < g.x_of(3.0)]
    assert first.size and first[-1] < g.x_of(3.0) - 2  # stops before the next span
    assert np.flatnonzero(dark[:, g.x_of(3.0) :].any(axis=0)).size  # "next" is drawn


def test_marks_are_ticks_under_the_agent_wave(sample: CallTimeline) -> None:
    image = decode_png(render_png(sample))
    g = layout(sample)
    ticks = _has(image[g.agent_marks[0] : g.agent_marks[1], g.x0 : g.x1 + 1], MARK).any(axis=0)
    expected = {g.x_of(m.t) - g.x0 for m in sample.markers if m.kind == "mark"}
    expected -= {g.x_of(11.1) - g.x0 + d for d in (-1, 0, 1)}  # under the clear line
    assert len(expected) > 140
    assert set(np.flatnonzero(ticks).tolist()) == expected


def test_event_labels_do_not_overlap(sample: CallTimeline) -> None:
    g = layout(sample)
    f = font(11)
    boxes = []
    for p in g._events:
        if p.text:
            boxes.append((p.row, p.text_x, p.text_x + f.width(p.text)))
    assert len(boxes) >= 8
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert a[0] != b[0] or a[2] <= b[1] or b[2] <= a[1], (a, b)
    # The three barge-in events, 0.1 s apart, land on three different rows.
    rows = {p.kind: p.row for p in g._events if p.kind in ("speech_started", "clear", "truncate")}
    assert len(set(rows.values())) == 3
    # Tool glyphs are drawn in the Events lane.
    image = decode_png(render_png(sample))
    assert _has(image[g.events[0] : g.events[1]], TOOL).sum() > 4 * 20


# ---------------------------------------------------------------------------------------------
# Robustness


@pytest.mark.parametrize(
    "timeline",
    [
        CallTimeline(duration=0.0),
        CallTimeline(duration=-3.0, caller_audio=b"\x01"),
        CallTimeline(duration=float("nan"), markers=[Marker(float("inf"), "clear")]),
        CallTimeline(duration=1e-6, caller_audio=b"\x10\x00" * 10),
        CallTimeline(duration=0.0, agent_speech=[Span(2.0, 1.0, "backwards")]),
        CallTimeline(
            duration=5.0,
            markers=[
                Marker(-2.0, "clear"),
                Marker(99.0, "hangup", "late"),
                Marker(1.0, "bogus", "?"),
            ],
            caller_speech=[Span(-1.0, 99.0, "everything"), Span(float("nan"), 1.0)],
            cut_audio=[Span(6.0, 7.0)],
        ),
        CallTimeline(duration=3.0, caller_audio=b"\x00\x80" * 80000, title="\u2603" * 500),
        CallTimeline(
            duration=60.0,
            markers=[Marker(i * 0.01, "tool_start", f"tool {i}" * 5) for i in range(3000)]
            + [Marker(i * 0.01, "mark") for i in range(6000)],
            agent_speech=[Span(i * 0.05, i * 0.05 + 0.04, f"utterance {i}") for i in range(1200)],
            summary=[f"line {i}" for i in range(500)],
        ),
    ],
    ids=["empty", "negative", "nan", "tiny", "backwards", "outside", "loud", "huge"],
)
def test_never_raises(timeline: CallTimeline) -> None:
    png = render_png(timeline)
    image = decode_png(png)
    assert image.shape[1] == 1600 and 200 < image.shape[0] < 3000
    assert (image != 255).any()


def test_markers_outside_the_call_are_drawn_at_its_edges() -> None:
    tl = CallTimeline(duration=5.0, markers=[Marker(-2.0, "clear"), Marker(9.0, "clear")])
    g = layout(tl)
    image = decode_png(render_png(tl))
    red = _has(image[g.caller_wave[0] : g.caller_wave[1]], CLEAR).all(axis=0)
    assert np.flatnonzero(red).tolist() == [g.x0 - 1, g.x0, g.x0 + 1, g.x1 - 1, g.x1, g.x1 + 1]


def test_width_is_clamped_and_height_grows_with_the_summary(sample: CallTimeline) -> None:
    assert _png_size(render_png(CallTimeline(duration=1.0), width=10))[0] == 480
    short = layout(CallTimeline(duration=1.0, summary=["a"]))
    long = layout(CallTimeline(duration=1.0, summary=["a"] * 10))
    assert long.height - short.height == 9 * 18


def test_a_60_second_call_renders_well_under_a_second() -> None:
    tl = sample_timeline()
    tl.duration = 60.0
    tl.caller_audio = _speech(60.0, [Span(t, t + 2.5, "") for t in range(0, 58, 6)], 170.0, 3)
    tl.agent_audio = _speech(60.0, [Span(t + 3, t + 5.5, "") for t in range(0, 55, 6)], 230.0, 4)
    render_png(tl)  # warm up: font atlas load
    start = time.perf_counter()
    png = render_png(tl)
    elapsed = time.perf_counter() - start
    assert decode_png(png).shape[1] == 1600
    assert elapsed < 0.5, elapsed


def test_font_atlas_is_package_data() -> None:
    from importlib import resources

    files = resources.files("gateway.demo")
    assert files.joinpath("font_atlas.npz").is_file()
    assert "Bitstream" in files.joinpath("FONT-LICENSE.txt").read_text()
    assert raster.font(11).line_height < raster.font(14).line_height
