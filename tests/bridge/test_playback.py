"""Playback: frames, marks, echoes and barge-in, driven with explicit timestamps."""

from __future__ import annotations

import pytest

from gateway.audio import AudioMode, OutboundTranscoder
from gateway.bridge.playback import Heard, Playback, Played, SendClear, SendMark, SendMedia


def make(interval: int = 100) -> Playback:
    return Playback(OutboundTranscoder(AudioMode.G711_ULAW), mark_interval_ms=interval)


def media(actions) -> list[bytes]:
    return [a.payload for a in actions if isinstance(a, SendMedia)]


def marks(actions) -> list[str]:
    return [a.name for a in actions if isinstance(a, SendMark)]


def ms(n: int) -> bytes:
    """n ms of mu-law."""
    return b"\x55" * (8 * n)


def test_audio_is_framed_and_marked_every_interval() -> None:
    p = make(100)
    actions = p.audio("item_a", 0, ms(250), now=0.0)
    # 240 ms in whole frames (10 ms held), one message up to each mark, a mark right after the
    # frame that completes its interval: 100 ms, mark, 100 ms, mark, 40 ms.
    assert [len(f) for f in media(actions)] == [800, 800, 320]
    assert [type(a) for a in actions] == [SendMedia, SendMark, SendMedia, SendMark, SendMedia]
    assert marks(actions) == ["g0:item_a:0:800", "g0:item_a:0:1600"]
    # The next delta's first frame completes the third interval: its mark comes after it.
    more = p.audio("item_a", 0, ms(70), now=0.0)  # 10 held + 70 = 80 ms: 80 ms in whole frames
    assert [len(f) for f in media(more)] == [480, 160] and marks(more) == ["g0:item_a:0:2400"]
    assert [type(a) for a in more] == [SendMedia, SendMark, SendMedia]
    end = p.audio_end("item_a", 0, now=0.0)
    assert media(end) == []  # nothing held: 320 ms sent in all
    assert marks(end) == ["g0:item_a:0:2560"]
    assert p.audio_end("item_a", 0, now=0.0) == []  # idempotent


def test_an_items_last_bytes_go_out_unpadded_with_the_final_mark() -> None:
    p = make(100)
    assert [len(f) for f in media(p.audio("item_a", 0, ms(25), now=0.0))] == [160]  # 5 ms held
    end = p.audio_end("item_a", 0, now=0.0)
    assert [type(a) for a in end] == [SendMedia, SendMark]
    assert [len(f) for f in media(end)] == [40] and marks(end) == ["g0:item_a:0:200"]


def test_pcm16_durations_survive_transcoding_into_marks() -> None:
    p = Playback(OutboundTranscoder(AudioMode.PCM16), mark_interval_ms=100)
    actions = []
    for _ in range(10):  # 1 s of 24 kHz PCM16 in 100 ms deltas
        actions += p.audio("item_a", 0, bytes(4800), now=0.0)
    actions += p.audio_end("item_a", 0, now=0.0)
    assert sum(map(len, media(actions))) == 8000  # exactly 1 s at 8 kHz
    assert marks(actions)[-1] == "g0:item_a:0:8000"


def test_echoes_report_exactly_what_played() -> None:
    p = make(100)
    first, second = marks(p.audio("item_a", 0, ms(200), now=0.0))
    assert p.mark_echoed(first, now=0.1) == Played("item_a", 0, ms=100.0, heard_ms=100.0)
    assert p.mark_echoed(second, now=0.2) == Played("item_a", 0, ms=100.0, heard_ms=200.0)
    assert p.mark_echoed(second, now=0.2) is None  # duplicate echo counts nothing


def test_heard_interpolates_between_echoes_and_is_capped() -> None:
    p = make(100)
    assert p.heard(now=0.0) is None
    names = marks(p.audio("item_a", 0, ms(300), now=10.0))
    # Nothing queued ahead: playback starts with the first frame.
    assert p.heard(now=10.05) == Heard("item_a", 0, pytest.approx(50.0))
    p.mark_echoed(names[0], now=10.1)
    assert p.heard(now=10.13).ms == pytest.approx(130.0)
    # A late echo means playback stalled: never more than one interval past the last echo.
    assert p.heard(now=11.0).ms == pytest.approx(200.0)
    p.mark_echoed(names[1], now=10.2)
    p.mark_echoed(names[2], now=10.3)
    # Never more than was sent.
    assert p.heard(now=12.0).ms == pytest.approx(300.0)


def test_audio_sent_late_plays_late_and_heard_waits_for_it() -> None:
    """The model streams at real time and a delta comes 50 ms late: Twilio's queue ran dry and
    the caller heard nothing meanwhile. What was heard counts from when the audio was sent,
    not straight on from the last echo (which would run 50 ms ahead of the caller's ears)."""
    p = make(100)
    first = marks(p.audio("item_a", 0, ms(100), now=10.0))
    p.mark_echoed(first[0], now=10.1)  # the first 100 ms played by 10.1
    late = p.audio("item_a", 0, ms(100), now=10.15)  # the next 100 ms, sent 50 ms after it ran dry
    assert p.heard(now=10.14).ms == pytest.approx(100.0)  # waiting: nothing to play yet
    assert p.heard(now=10.2).ms == pytest.approx(150.0)  # playing since 10.15, not since 10.1
    assert p.heard(now=10.25).ms == pytest.approx(200.0)  # all that was sent by then
    # Audio sent in time plays on without a gap: the echo's anchor, then real time.
    more = p.audio("item_a", 0, ms(300), now=10.25)
    p.mark_echoed(marks(late)[0], now=10.25)
    assert p.heard(now=10.3).ms == pytest.approx(250.0)
    assert len(marks(more)) == 3


def test_next_item_starts_playing_when_the_previous_final_mark_echoes() -> None:
    p = make(100)
    a = marks(p.audio("item_a", 0, ms(100), now=0.0)) + marks(p.audio_end("item_a", 0, now=0.0))
    b = marks(p.audio("item_b", 0, ms(100), now=0.01))  # queued behind item_a
    assert p.heard(now=0.05).item_id == "item_a"
    assert a == ["g0:item_a:0:800"]  # the interval mark doubles as the final one
    p.mark_echoed(a[0], now=0.1)
    assert p.heard(now=0.14) == Heard("item_b", 0, pytest.approx(40.0))
    assert p.mark_echoed(b[0], now=0.2) == Played("item_b", 0, 100.0, 100.0)


def test_barge_in_clears_and_makes_pending_echoes_stale() -> None:
    p = make(100)
    names = marks(p.audio("item_a", 0, ms(500), now=0.0))
    p.mark_echoed(names[0], now=0.1)
    actions = p.interrupt("item_a")
    assert actions == [SendClear()]
    assert p.generation == 1
    # Twilio echoes every pending mark at once after a clear: none of them counts as played.
    assert all(p.mark_echoed(n, now=0.15) is None for n in names[1:])
    assert p.stale_echoes == len(names) - 1
    # Late audio of the interrupted item is dropped; a new item plays in the new generation.
    assert p.audio("item_a", 0, ms(100), now=0.2) == []
    assert p.dropped_bytes == 800
    fresh = p.audio("item_b", 0, ms(100), now=0.3)
    assert marks(fresh) == ["g1:item_b:0:800"]
    assert [len(f) for f in media(fresh)] == [800]


def test_interrupt_drops_held_back_audio() -> None:
    p = Playback(OutboundTranscoder(AudioMode.PCM16), mark_interval_ms=100)
    p.audio("item_a", 0, bytes(4810), now=0.0)  # leaves a partial frame and resampler tail
    p.interrupt()
    assert media(p.audio("item_b", 0, bytes(4800), now=0.1))  # new item starts clean
    # Nothing of item_a leaked into item_b: exactly 100 ms minus the 1.875 ms fill-up, framed.
    end = p.audio_end("item_b", 0, now=0.1)
    assert marks(end) == ["g1:item_b:0:800"]


def test_an_item_changing_without_audio_end_is_closed_first() -> None:
    p = make(100)
    p.audio("item_a", 0, ms(30), now=0.0)
    actions = p.audio("item_b", 0, ms(20), now=0.0)
    assert marks(actions)[0] == "g0:item_a:0:240"  # item_a's final mark precedes item_b's audio
    assert media(actions)[0] == ms(30)[160:]


def test_speaking_and_queued() -> None:
    p = make(100)
    assert not p.speaking
    names = marks(p.audio("item_a", 0, ms(100), now=0.0)) + marks(p.audio_end("item_a", 0, now=0.0))
    assert p.speaking and p.queued_ms == 100
    for n in names:
        p.mark_echoed(n, now=0.1)
    assert not p.speaking and p.queued_ms == 0


def test_only_unheard_or_streaming_audio_is_interruptible() -> None:
    p = make(100)
    assert not p.interruptible  # nothing said yet
    names = marks(p.audio("item_a", 0, ms(150), now=0.0))  # 100 ms marked, 50 ms held back
    assert p.interruptible  # sent, not heard, still streaming
    for n in names:
        p.mark_echoed(n, now=0.1)
    assert p.interruptible  # all sent was heard, but the model has not finished the item
    names = marks(p.audio_end("item_a", 0, now=0.1))
    assert names and p.interruptible  # the last 50 ms are sent, their mark not echoed
    for n in names:
        p.mark_echoed(n, now=0.2)
    assert not p.interruptible  # heard in full: speech now cuts nothing
    p.audio("item_b", 0, ms(100), now=0.3)
    p.interrupt()
    assert not p.interruptible  # already cut
