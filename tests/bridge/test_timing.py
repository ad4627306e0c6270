"""Silence and keypad timing, with explicit timestamps (no clocks, no sleeps)."""

import pytest

from gateway.bridge.timing import DigitCollector, DigitsResult, MessageRate, SilenceAction, SilenceMonitor


def test_silence_checks_in_then_gives_up() -> None:
    m = SilenceMonitor(check_in_s=8, give_up_s=10, now=0.0)
    assert m.deadline() == 8.0
    assert m.due(7.9) is None
    assert m.due(8.0) is SilenceAction.CHECK_IN
    assert m.deadline() == 18.0  # the give-up stage counts from the check-in
    assert m.due(17.9) is None
    assert m.due(18.0) is SilenceAction.GIVE_UP
    assert m.deadline() is None and m.due(100.0) is None


def test_agent_speech_pauses_the_count_and_it_restarts_when_the_agent_is_heard_out() -> None:
    m = SilenceMonitor(check_in_s=8, give_up_s=10, now=0.0)
    m.agent_speech(True, now=1.0)
    assert m.deadline() is None and m.due(50.0) is None
    m.agent_speech(False, now=60.0)
    assert m.deadline() == 68.0


def test_caller_speech_resets_a_check_in() -> None:
    m = SilenceMonitor(check_in_s=8, give_up_s=10, now=0.0)
    assert m.due(8.0) is SilenceAction.CHECK_IN
    m.caller_speech(True, now=9.0)
    assert m.due(30.0) is None  # the caller is talking
    m.caller_speech(False, now=31.0)
    assert m.deadline() == 39.0  # a fresh check-in stage, not give-up
    assert m.due(39.0) is SilenceAction.CHECK_IN


def test_agent_stopping_while_caller_talks_does_not_start_the_count() -> None:
    m = SilenceMonitor(check_in_s=8, give_up_s=10, now=0.0)
    m.agent_speech(True, now=0.5)
    m.caller_speech(True, now=1.0)
    m.agent_speech(False, now=1.1)  # barge-in: the agent stops, the caller is speaking
    assert m.deadline() is None


@pytest.mark.parametrize(("check_in", "give_up", "first"), [(0, 10, SilenceAction.GIVE_UP), (8, 0, SilenceAction.CHECK_IN)])
def test_a_stage_can_be_disabled(check_in, give_up, first) -> None:
    m = SilenceMonitor(check_in_s=check_in, give_up_s=give_up, now=0.0)
    assert m.due(max(check_in, give_up)) is first
    assert m.due(1000.0) is None


def test_digits_by_count_terminator_and_timeout() -> None:
    pin = DigitCollector(count=4, terminator="#", timeout_s=5, now=0.0)
    assert [pin.feed(d, t) for d, t in (("1", 1), ("2", 2), ("3", 3))] == [None, None, None]
    assert pin.feed("4", 4) == DigitsResult("1234", "count")
    short = DigitCollector(count=6, terminator="#", timeout_s=5, now=0.0)
    short.feed("9", 1)
    assert short.feed("#", 2) == DigitsResult("9", "terminator")
    slow = DigitCollector(count=None, terminator="#", timeout_s=5, now=0.0)
    slow.feed("7", 3.0)
    assert slow.expired(7.9) is None  # the timer restarts with each digit
    assert slow.expired(8.0) == DigitsResult("7", "timeout")


def test_digit_collector_needs_an_end() -> None:
    with pytest.raises(ValueError):
        DigitCollector(count=None, terminator=None, timeout_s=5, now=0)
    with pytest.raises(ValueError):
        DigitCollector(count=0, terminator=None, timeout_s=5, now=0)


def test_message_rate_allows_twilio_pace_and_a_backlog_burst_but_not_a_flood() -> None:
    rate = MessageRate(rate=100, burst=200, now=0.0)
    # Twilio's pace (50 media frames a second plus marks) for a minute: never refused.
    assert all(rate.allow(k * 0.015) for k in range(4000))
    # A stall, then its backlog delivered at once: up to the burst, still fine.
    t = 60.0 + 3.0
    assert all(rate.allow(t) for _ in range(200))
    # A flood: refused once the bucket is empty, and it refills at the rate.
    assert not rate.allow(t)
    assert rate.allow(t + 0.0101) and not rate.allow(t + 0.0101)  # a token back after 10 ms
    assert not rate.allow(t - 5)  # a clock that goes backwards earns nothing


def test_message_rate_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        MessageRate(rate=0, burst=10, now=0)
    with pytest.raises(ValueError):
        MessageRate(rate=10, burst=0, now=0)
