"""The sans-I/O call: every policy decision, fed with explicit timestamps, no sockets."""

from __future__ import annotations

import pytest
from agents.realtime import RealtimeAgent
from agents.realtime.events import (
    RealtimeAgentEndEvent,
    RealtimeAgentStartEvent,
    RealtimeAudio,
    RealtimeAudioEnd,
    RealtimeAudioInterrupted,
    RealtimeEventInfo,
    RealtimeRawModelEvent,
    RealtimeToolStart,
)
from agents.realtime.model_events import RealtimeModelAudioEvent, RealtimeModelRawServerEvent

from gateway.bridge.actions import (
    Ask,
    HangUp,
    OfferDigit,
    Reply,
    RollOver,
    SendAudio,
    SendClear,
    SendMark,
    SendMedia,
    TellModel,
    Transfer,
)
from gateway.bridge.call import CHECK_IN_REQUEST, HEARD_TIMEOUT_S, ROLLOVER_QUIET_WAIT_S, Call, Phase
from gateway.bridge.ending import EndReason, close_code
from gateway.bridge.model import PlaybackTracker
from gateway.bridge.events import BargeIn, CallEnded, CallStarted, DigitPressed, HungUp, Transferred
from gateway.bridge.timing import DigitsResult
from gateway.security import TOKEN_PARAMETER, CallTokens
from gateway.settings import Settings
from gateway.tools import hang_up, transfer_call
from tests.twilio import frames

AUTH_TOKEN = "secret"
WALL = 1_800_000_000.0
INFO = RealtimeEventInfo(context=None)
AGENT = RealtimeAgent(name="Agent")
FRAME = b"\x55" * 160  # 20 ms of mu-law


def settings(**overrides: str) -> Settings:
    env = {
        "PUBLIC_URL": "https://gw.example.com",
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "OPENAI_REALTIME_URL": "ws://127.0.0.1:1/v1/realtime",
        "GATEWAY_AUDIO_MODE": "g711_ulaw",  # frames pass through: sizes are easy to follow
        "GATEWAY_SILENCE_CHECK_IN_S": "0",
        "GATEWAY_SILENCE_GIVE_UP_S": "0",
        "GATEWAY_MAX_CALL_S": "0",
        "GATEWAY_SESSION_ROLLOVER_S": "0",
        "GATEWAY_GREETING": "",
        **overrides,
    }
    return Settings.from_mapping(env)


def start_frame(token: str | None = "valid", **extra: str) -> str:
    params = {"callSid": frames.CALL_SID, "from": "+15550001111", "to": "+15550002222", **extra}
    if token == "valid":
        token = CallTokens.derived_from(AUTH_TOKEN).issue(frames.CALL_SID, params, now=WALL, ttl_s=60)
    if token is not None:
        params[TOKEN_PARAMETER] = token
    return frames.text(frames.start(**params))


def new_call(*, hook: bool = False, **overrides: str) -> Call:
    return Call(settings(**overrides), CallTokens.derived_from(AUTH_TOKEN), now=0.0, wall=WALL, has_digit_hook=hook)


def started(**overrides: str) -> Call:
    call = new_call(**overrides)
    assert call.receive(start_frame(), 0.01) == []
    return call


def live(**overrides: str) -> Call:
    call = started(**overrides)
    while call.phase is Phase.CONNECTING:
        call.flush(0.02)
    return call


def media(seq: int = 2) -> str:
    return frames.text(frames.media(seq=str(seq), payload=FRAME))


def mark(name: str, seq: int = 9) -> str:
    return frames.text(frames.mark(seq=str(seq), name=name))


def dtmf(digit: str, seq: int = 9) -> str:
    return frames.text(frames.dtmf(seq=str(seq), digit=digit))


def audio(item: str, ms: int) -> RealtimeAudio:
    data = b"\x55" * (8 * ms)
    return RealtimeAudio(audio=RealtimeModelAudioEvent(data=data, response_id="r", item_id=item, content_index=0),
                         item_id=item, content_index=0, info=INFO)


def audio_end(item: str) -> RealtimeAudioEnd:
    return RealtimeAudioEnd(info=INFO, item_id=item, content_index=0)


def interrupted(item: str) -> RealtimeAudioInterrupted:
    return RealtimeAudioInterrupted(info=INFO, item_id=item, content_index=0)


def agent_start() -> RealtimeAgentStartEvent:
    return RealtimeAgentStartEvent(agent=AGENT, info=INFO)


def agent_end() -> RealtimeAgentEndEvent:
    return RealtimeAgentEndEvent(agent=AGENT, info=INFO)


def tool_start(tool) -> RealtimeToolStart:
    return RealtimeToolStart(agent=AGENT, tool=tool, arguments="{}", info=INFO)


def speech(started_: bool) -> RealtimeRawModelEvent:
    kind = "input_audio_buffer.speech_started" if started_ else "input_audio_buffer.speech_stopped"
    return RealtimeRawModelEvent(data=RealtimeModelRawServerEvent(data={"type": kind}), info=INFO)


def marks(actions) -> list[str]:
    return [a.name for a in actions if isinstance(a, SendMark)]


def say(call: Call, item: str, ms: int, now: float) -> list[str]:
    """The agent says ``ms`` of audio in one response, all sent at ``now``: the marks sent."""
    call.session_event(agent_start(), now)
    sent = marks(call.session_event(audio(item, ms), now) + call.session_event(audio_end(item), now))
    call.session_event(agent_end(), now)
    return sent


# --- Start -----------------------------------------------------------------------------------------


def test_a_valid_start_starts_the_call() -> None:
    call = new_call()
    assert call.receive(frames.text(frames.connected()), 0.0) == []
    assert call.receive(start_frame(), 0.01) == []
    assert call.phase is Phase.CONNECTING
    (event,) = call.record.timeline
    assert isinstance(event, CallStarted) and event.call_sid == frames.CALL_SID and event.from_ == "+15550001111"
    assert call.record.call_sid == frames.CALL_SID and call.record.direction == "inbound"


@pytest.mark.parametrize("token", [None, "v1.1.forged"])
def test_a_start_without_a_valid_token_is_refused(token: str | None) -> None:
    call = new_call()
    assert call.receive(start_frame(token), 0.01) == []
    assert call.finished and call.end_reason is EndReason.REFUSED and call.info is None
    assert close_code(call.end_reason) == 1008


def test_a_token_is_checked_against_the_wall_clock() -> None:
    call = Call(settings(), CallTokens.derived_from(AUTH_TOKEN), now=0.0, wall=WALL + 61)  # the token's ttl is 60 s
    call.receive(start_frame(), 0.0)
    assert call.end_reason is EndReason.REFUSED


def test_no_start_in_time_is_refused_at_the_deadline() -> None:
    call = new_call(GATEWAY_START_TIMEOUT_S="5")
    assert call.next_deadline() == 5.0
    assert call.tick(4.99) == [] and not call.finished
    call.tick(5.0)
    assert call.end_reason is EndReason.REFUSED


def test_media_before_start_is_a_protocol_error() -> None:
    call = new_call()
    call.receive(media(), 0.0)
    assert call.end_reason is EndReason.PROTOCOL_ERROR and close_code(call.end_reason) == 1007


def test_too_many_messages_end_the_call() -> None:
    call = started(GATEWAY_MAX_MESSAGE_RATE="60", GATEWAY_MAX_MESSAGE_BURST="100")
    for seq in range(2, 101):  # the start took one token of the burst
        call.receive(media(seq), 0.02)
    assert not call.finished
    call.receive(media(101), 0.02)
    assert call.end_reason is EndReason.RATE_LIMITED and close_code(call.end_reason) == 1008


# --- Buffering until the model is ready -------------------------------------------------------------


def test_caller_audio_waits_for_the_model_then_goes_in_order() -> None:
    call = started()
    for seq in range(2, 5):
        assert call.receive(frames.text(frames.media(seq=str(seq), payload=bytes([seq]) * 160)), 0.02 * seq) == []
    first = call.flush(0.1)
    assert [a.audio[0] for a in first] == [2, 3, 4]
    # A frame that arrives while the edge sends those joins the buffer...
    assert call.receive(frames.text(frames.media(seq="5", payload=bytes([5]) * 160)), 0.11) == []
    # ... and goes next; only when nothing is left does the call go live.
    assert [a.audio[0] for a in call.flush(0.12)] == [5]
    assert call.phase is Phase.CONNECTING
    assert call.flush(0.13) == [] and call.phase is Phase.LIVE
    assert call.record.buffered_frames == 4
    assert call.receive(frames.text(frames.media(seq="6", payload=bytes([6]) * 160)), 0.14) == [SendAudio(bytes([6]) * 160)]


def test_the_buffer_keeps_the_latest_audio() -> None:
    call = started(GATEWAY_INBOUND_BUFFER_MS="40")  # two frames
    for seq in range(2, 6):
        call.receive(frames.text(frames.media(seq=str(seq), payload=bytes([seq]) * 160)), 0.02)
    assert [a.audio[0] for a in call.flush(0.1)] == [4, 5]
    assert call.record.buffered_dropped == 2


def test_the_greeting_is_asked_for_once_when_the_call_goes_live() -> None:
    call = started(GATEWAY_GREETING="Say hello.")
    assert call.flush(0.1) == [Ask("Say hello.")]
    call.model_lost(1.0)
    call.model_reconnected(0.2, 1.2)
    assert call.flush(1.2) == []  # a reconnect does not greet again
    assert call.live and call.record.reconnects == 1


def test_audio_that_could_not_be_sent_is_kept_for_the_next_session() -> None:
    call = live()
    (sent,) = call.receive(media(2), 1.0)
    call.audio_not_sent(sent.audio, 1.0)
    assert not call.live
    call.receive(media(3), 1.02)
    assert len(call.flush(1.5)) == 2


# --- Barge-in -----------------------------------------------------------------------------------------


def test_barge_in_clears_once_and_tells_what_was_heard() -> None:
    call = live()
    call.session_event(agent_start(), 1.0)
    sent = call.session_event(audio("item_a", 500), 1.0)
    # 500 ms: five messages of 100 ms, each followed by its mark.
    assert [len(a.payload) for a in sent if isinstance(a, SendMedia)] == [800] * 5 and len(marks(sent)) == 5
    call.receive(mark(marks(sent)[0]), 1.1)  # 100 ms played
    # The caller speaks 150 ms into the reply: 100 ms echoed, 50 ms since.
    actions = call.session_event(interrupted("item_a"), 1.15)
    assert actions == [SendClear()]
    (barge,) = [e for e in call.record.timeline if isinstance(e, BargeIn)]
    assert barge.item_id == "item_a" and barge.heard_ms == 150
    # Twilio echoes the cleared marks at once: they count as cleared, not played.
    for name in marks(sent)[1:]:
        call.receive(mark(name), 1.16)
    assert call.playback.stale_echoes == 4 and not call.playback.speaking
    # Late audio of the interrupted item is dropped.
    assert call.session_event(audio("item_a", 100), 1.2) == []


def test_the_clear_goes_out_when_speech_started_arrives_and_the_truncation_is_what_was_heard_then() -> None:
    """The model edge hands over speech_started the moment it arrives, before the SDK handles
    it and before the session's queue (which still holds audio the model sent earlier)."""
    call = live()
    call.session_event(agent_start(), 1.0)
    sent = call.session_event(audio("item_a", 500), 1.0)
    call.receive(mark(marks(sent)[0]), 1.1)  # 100 ms played
    # speech_started arrives 150 ms into the reply, and is handed over 0.2 ms later.
    assert call.speech_started(received=1.15, now=1.1502) == [SendClear()]
    (barge,) = [e for e in call.record.timeline if isinstance(e, BargeIn)]
    assert barge.item_id == "item_a" and barge.heard_ms == 150 and barge.clear_ms == pytest.approx(0.2)
    # The SDK asks what was heard after it has parsed the event, later: the answer is what the
    # caller had heard when the clear went out, not what they would have heard by then.
    tracker = PlaybackTracker(call.playback, clock=lambda: 1.2)
    state = tracker.get_state()
    assert state["current_item_id"] == "item_a" and state["elapsed_ms"] == pytest.approx(150.2)
    tracker.on_interrupted()  # the SDK truncated
    assert call.playback.cut is None and tracker.get_state()["current_item_id"] is None
    # The queue delivers what the model sent before speech_started: cleared, never sent.
    assert call.session_event(audio("item_b", 200), 1.2) == []
    assert call.session_event(speech(True), 1.2) == []
    # Then the SDK's audio_interrupted: the clear is out already; no second one, one barge-in.
    assert call.session_event(interrupted("item_b"), 1.2) == []
    assert call.interruptions == 1 and len([e for e in call.record.timeline if isinstance(e, BargeIn)]) == 1
    # The interrupted items' late audio is dropped; the next reply plays.
    assert call.session_event(audio("item_b", 100), 1.25) == []
    assert call.session_event(audio("item_a", 100), 1.25) == []
    assert sum(isinstance(a, SendMedia) for a in call.session_event(audio("item_c", 100), 1.3)) > 0


def test_a_mark_echo_counts_as_played_when_it_arrived_not_when_the_call_got_to_it() -> None:
    """Under load the call's reader gets to an echo after it came off the socket: the caller's
    playback reached the mark before Twilio sent the echo, so it is anchored at its arrival."""
    call = live()
    call.session_event(agent_start(), 1.0)
    sent = call.session_event(audio("item_a", 500), 1.0)
    # The 100 ms mark's echo came off the socket at 1.1 and was read 6 ms later.
    call.receive(mark(marks(sent)[0]), 1.106, arrived=1.1)
    assert call.speech_started(received=1.15, now=1.15) == [SendClear()]
    (barge,) = [e for e in call.record.timeline if isinstance(e, BargeIn)]
    assert barge.heard_ms == 150  # 100 ms at 1.1, then 50 ms at real time; 144 anchored at 1.106


def test_an_arrival_time_after_now_is_taken_as_now() -> None:
    call = live()
    call.session_event(agent_start(), 1.0)
    sent = call.session_event(audio("item_a", 500), 1.0)
    call.receive(mark(marks(sent)[0]), 1.1, arrived=1.2)  # another clock's: never ahead of now
    assert call.speech_started(received=1.15, now=1.15) == [SendClear()]
    (barge,) = [e for e in call.record.timeline if isinstance(e, BargeIn)]
    assert barge.heard_ms == 150


def test_no_early_clear_when_the_session_does_not_interrupt_responses() -> None:
    call = live(GATEWAY_INTERRUPT_RESPONSE="false")
    call.session_event(agent_start(), 1.0)
    call.session_event(audio("item_a", 500), 1.0)
    assert call.speech_started(received=1.15, now=1.15) == []
    assert call.playback.cut is None and call.interruptions == 0
    # The SDK cancels the response itself then (agents/realtime/openai_realtime.py) and says
    # so with audio_interrupted: that clears, as before.
    assert call.session_event(speech(True), 1.16) == []
    assert call.session_event(interrupted("item_a"), 1.16) == [SendClear()]
    assert call.interruptions == 1


def test_speech_started_with_the_agent_silent_clears_nothing_and_forgets_an_old_cut() -> None:
    call = live()
    for name in say(call, "item_a", 100, 1.0):
        call.receive(mark(name), 1.1)
    call.playback.cut = call.playback.heard(1.1)  # left over: the SDK never asked
    assert call.speech_started(received=2.0, now=2.0) == []
    assert call.playback.cut is None
    assert call.session_event(speech(True), 2.0) == [] and call.session_event(interrupted("item_a"), 2.0) == []
    assert not any(isinstance(e, BargeIn) for e in call.record.timeline)


def test_a_new_session_forgets_a_barge_in_its_predecessor_never_finished() -> None:
    """speech_started cleared playback, then the session failed before its queue was read:
    the reconnected session's audio plays."""
    call = live()
    call.session_event(agent_start(), 1.0)
    call.session_event(audio("item_a", 500), 1.0)
    assert call.speech_started(received=1.1, now=1.1) == [SendClear()]
    call.model_lost(1.2)
    call.model_reconnected(0.3, 1.5)
    call.flush(1.5)
    assert sum(isinstance(a, SendMedia) for a in call.session_event(audio("item_z", 100), 1.6)) > 0


def test_speech_with_nothing_playing_clears_nothing() -> None:
    call = live()
    for name in say(call, "item_a", 100, 1.0):
        call.receive(mark(name), 1.1)
    assert call.session_event(interrupted("item_a"), 2.0) == []
    assert not any(isinstance(e, BargeIn) for e in call.record.timeline)


# --- The keypad ---------------------------------------------------------------------------------------


def test_collect_digits_takes_the_keys_and_answers_the_tool() -> None:
    call = live()
    assert call.request_digits(3, "#", 8.0, 1.0, waiter=7) == []
    assert call.collecting
    assert call.receive(dtmf("4"), 1.5) == []
    assert call.receive(dtmf("2"), 2.0) == []
    assert call.receive(dtmf("7"), 2.5) == [Reply(7, DigitsResult("427", "count"))]
    assert not call.collecting
    assert [e.collected for e in call.record.timeline if isinstance(e, DigitPressed)] == [True] * 3


def test_a_keypad_timeout_is_a_deadline_even_with_the_silence_timers_off() -> None:
    """The old bridge woke its timer on another event than the one collect_digits set, so with
    no silence timers a keypad timeout waited for something else to happen."""
    call = live()  # silence check-in, give-up, maximum duration, rollover: all off
    assert call.next_deadline() is None
    call.rearm = False
    call.request_digits(None, "#", 8.0, 1.0, waiter=1)
    assert call.rearm and call.next_deadline() == 9.0
    call.receive(dtmf("5"), 3.0)
    assert call.next_deadline() == 11.0  # the timeout restarts with each key
    assert call.tick(10.9) == []
    assert call.tick(11.0) == [Reply(1, DigitsResult("5", "timeout"))]
    assert call.next_deadline() is None


def test_keys_go_to_the_application_hook_then_the_model() -> None:
    call = Call(settings(), CallTokens.derived_from(AUTH_TOKEN), now=0.0, wall=WALL, has_digit_hook=True)
    call.receive(start_frame(), 0.0)
    call.flush(0.0)
    assert call.receive(dtmf("1"), 1.0) == [OfferDigit("1")]
    assert call.digit_handled("1", True, 1.1) == []  # the hook took it: the model is not told
    assert call.receive(dtmf("2"), 1.2) == [OfferDigit("2")]
    assert call.digit_handled("2", False, 1.3) == [TellModel("The caller pressed the 2 key on their phone.")]
    assert [(e.digit, e.collected) for e in call.record.timeline if isinstance(e, DigitPressed)] == [
        ("1", True), ("2", False)]


def test_keys_go_to_the_model_without_a_hook_once_it_listens() -> None:
    call = started()
    assert call.receive(dtmf("9"), 0.5) == []  # not live yet: nobody to tell
    call.flush(0.6)
    assert call.receive(dtmf("8", seq=10), 1.0) == [TellModel("The caller pressed the 8 key on their phone.")]


# --- Silence and the maximum duration --------------------------------------------------------------------


def test_silence_checks_in_then_says_goodbye_then_hangs_up() -> None:
    call = started(GATEWAY_SILENCE_CHECK_IN_S="10", GATEWAY_SILENCE_GIVE_UP_S="5")
    call.flush(1.0)  # live at 1.0: the silence clock starts
    assert call.next_deadline() == 11.0
    assert call.tick(10.9) == []
    assert call.tick(11.0) == [Ask(CHECK_IN_REQUEST)]
    # The agent checks in (heard by 12.2); the caller says nothing; the clock counts from the check-in.
    for name in say(call, "item_a", 200, 11.5):
        call.receive(mark(name), 12.2)
    assert call.next_deadline() == 17.2
    (goodbye,) = call.tick(17.2)
    assert isinstance(goodbye, Ask) and "silent for too long" in goodbye.request
    assert call.next_deadline() == 17.2 + HEARD_TIMEOUT_S  # waiting for the goodbye to be heard
    sent = say(call, "item_b", 100, 17.5)
    actions = call.receive(mark(sent[0]), 17.6)
    assert actions == [HangUp("silence", None)]
    assert call.end_reason is EndReason.AGENT_HUNG_UP and call.ending == "hang_up"
    assert [e.reason for e in call.record.timeline if isinstance(e, HungUp)] == ["silence"]


def test_the_caller_speaking_restarts_the_silence_clock() -> None:
    call = started(GATEWAY_SILENCE_CHECK_IN_S="10")
    call.flush(0.0)
    call.session_event(speech(True), 8.0)
    assert call.next_deadline() is None  # the caller is talking
    call.session_event(speech(False), 9.0)
    assert call.next_deadline() == 19.0


def test_the_maximum_duration_ends_with_a_goodbye() -> None:
    call = started(GATEWAY_MAX_CALL_S="60")
    call.flush(0.0)
    assert call.next_deadline() == 60.0
    (goodbye,) = call.tick(60.0)
    assert isinstance(goodbye, Ask) and "maximum length" in goodbye.request
    # Nobody hears it (the stream stalled): the call ends anyway once the wait is over.
    assert call.tick(60.0 + HEARD_TIMEOUT_S) == [HangUp("maximum duration", None)]


# --- Acting only once the words were heard ------------------------------------------------------------------


def test_hang_up_waits_until_the_goodbye_is_heard() -> None:
    call = live()
    call.session_event(agent_start(), 1.0)
    sent = marks(call.session_event(audio("bye", 300), 1.0) + call.session_event(audio_end("bye"), 1.0))
    # The tool runs before the gateway has even seen its tool_start: nothing yet.
    assert call.request_hang_up(1.0, waiter=3) == []
    assert call.ending == "hang_up"
    assert call.session_event(tool_start(hang_up), 1.01) == []
    assert call.session_event(agent_end(), 1.02) == []
    assert call.receive(mark(sent[0]), 1.1) == []
    assert call.receive(mark(sent[1]), 1.2) == []
    assert call.receive(mark(sent[-1]), 1.3) == [HangUp("agent", 3)]  # the last word was heard
    assert call.end_reason is EndReason.AGENT_HUNG_UP
    assert call.request_hang_up(1.4, waiter=4) == [Reply(4, "The call is already ending (hang_up).")]


def test_an_operator_hangs_up_at_once_and_a_waiting_hang_up_tool_is_told() -> None:
    call = live()
    call.session_event(agent_start(), 1.0)
    call.session_event(audio("bye", 300), 1.0)  # the agent is mid-sentence
    assert call.request_hang_up(1.0, waiter=3) == []  # the agent's own hang-up waits to be heard
    assert call.operator_hang_up(1.05) == [Reply(3, "An operator is ending the call."), HangUp("operator")]
    assert call.end_reason is EndReason.AGENT_HUNG_UP and call.ending == "hang_up"
    assert call.operator_hang_up(1.1) == []  # once
    assert call.request_hang_up(1.2, waiter=4) == [Reply(4, "The call is already ending (hang_up).")]


def test_hang_up_goes_ahead_when_the_words_are_never_confirmed() -> None:
    call = live()
    call.session_event(agent_start(), 1.0)
    call.session_event(audio("bye", 100), 1.0)  # never echoed: the stream stalled
    call.request_hang_up(1.0, waiter=1)
    call.session_event(tool_start(hang_up), 1.0)
    assert call.tick(1.0 + HEARD_TIMEOUT_S - 0.01) == []
    assert call.tick(1.0 + HEARD_TIMEOUT_S) == [HangUp("agent", 1)]


def test_a_transfer_talked_over_waits_for_the_agent_to_finish_again() -> None:
    call = live(GATEWAY_TRANSFER_TARGETS="sales=+15550009999")
    call.session_event(agent_start(), 1.0)
    sent = marks(call.session_event(audio("handoff", 500), 1.0))
    call.request_transfer("sales", 1.0, waiter=5)
    call.session_event(tool_start(transfer_call), 1.0)
    call.receive(mark(sent[0]), 1.1)
    call.session_event(interrupted("handoff"), 1.15)  # the caller talks over the hand-off
    call.session_event(agent_end(), 1.2)
    # Quiet now, but the sentence was cut: no transfer until the agent has spoken again.
    assert call.tick(1.3) == []
    again = say(call, "handoff2", 200, 2.0)
    assert call.receive(mark(again[0]), 2.1) == []
    (transfer,) = call.receive(mark(again[-1]), 2.2)
    assert isinstance(transfer, Transfer) and "+15550009999" in transfer.twiml and transfer.reply == 5
    assert call.end_reason is EndReason.TRANSFERRED
    assert [e.target for e in call.record.timeline if isinstance(e, Transferred)] == ["+15550009999"]


def test_a_transfer_to_a_target_not_allowed_is_refused_at_once() -> None:
    call = live(GATEWAY_TRANSFER_TARGETS="sales=+15550009999")
    (reply,) = call.request_transfer("+15557777777", 1.0, waiter=2)
    assert isinstance(reply, Reply) and reply.value.startswith("Transfer refused")
    assert call.ending is None and call.end_reason is None


# --- Session rollover ---------------------------------------------------------------------------------------


def test_rollover_waits_for_a_pause() -> None:
    call = started(GATEWAY_SESSION_ROLLOVER_S="100")
    call.flush(0.0)
    call.session_event(agent_start(), 99.0)  # a response in progress at the deadline
    assert call.tick(100.0) == []
    assert call.next_deadline() == 100.0 + ROLLOVER_QUIET_WAIT_S
    assert call.session_event(agent_end(), 101.0) == [RollOver()]
    assert call.next_deadline() == 101.0 + 1.5  # rolling over: only hold audio, if it takes long
    call.rolled_over(True, 101.5)
    assert call.record.rollovers == 1 and call.next_deadline() == 201.5


def test_rollover_is_postponed_without_a_pause() -> None:
    call = started(GATEWAY_SESSION_ROLLOVER_S="100")
    call.flush(0.0)
    call.session_event(agent_start(), 99.0)
    call.tick(100.0)
    assert call.tick(100.0 + ROLLOVER_QUIET_WAIT_S) == []
    assert call.next_deadline() == 100.0 + ROLLOVER_QUIET_WAIT_S + 5.0


# --- How the call ends ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("reason", "code"), [
    (EndReason.CALLER_HUNG_UP, 1000), (EndReason.AGENT_HUNG_UP, 1000), (EndReason.TRANSFERRED, 1000),
    (EndReason.PROTOCOL_ERROR, 1007), (EndReason.REFUSED, 1008), (EndReason.RATE_LIMITED, 1008),
    (EndReason.BINARY_FRAME, 1003), (EndReason.MODEL_FAILED, 1011), (None, 1000),
])
def test_end_reason_to_close_code(reason: EndReason | None, code: int) -> None:
    assert close_code(reason) == code


def test_stop_ends_the_call_and_the_first_reason_stands() -> None:
    call = live()
    call.receive(frames.text(frames.stop(seq="3")), 5.0)
    assert call.finished and call.end_reason is EndReason.CALLER_HUNG_UP
    call.end(EndReason.MODEL_ENDED, 5.1)
    record = call.finish(5.2)
    assert record.end_reason is EndReason.CALLER_HUNG_UP
    assert isinstance(record.timeline[-1], CallEnded) and record.events[-1]["event"] == "call_ended"


def test_the_record_keeps_events_as_dicts() -> None:
    call = live()
    call.receive(dtmf("5"), 2.5)
    assert {"t": 2.5, "event": "dtmf", "digit": "5", "collected": False}.items() <= call.record.events[-1].items()


def test_unknown_events_are_logged_once_each_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    call = live()
    with caplog.at_level("INFO", logger="gateway.call"):
        for seq in range(3, 1003):
            call.receive(frames.text({"event": "future", "sequenceNumber": str(seq), "streamSid": frames.STREAM_SID}), 1.0 + seq)
        for seq in range(1003, 1103):  # many names: only the first few are named in the log
            call.receive(frames.text({"event": f"e{seq}", "streamSid": frames.STREAM_SID}), 1.0 + seq)
        assert call.live  # none of it ends the call
        call.finish(2000.0)
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 3 and "'future'" in warnings[0].getMessage()
    assert call.unknown_events["future"] == 1000
    assert len(call.unknown_events) == 101 and call.unknown_events["(other names)"] == 1  # 100 names, then one tally
    (summary,) = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage() and r.levelname == "INFO"]
    assert "1100 unknown Twilio event(s) ignored" in summary and "'future' x1000" in summary


# --- No dead air: hold audio, going on after a drop -----------------------------------------------


def hold_marks(actions) -> list[str]:
    return [name for name in marks(actions) if name.startswith("hold:")]


def test_hold_audio_plays_while_the_model_is_slow_to_come() -> None:
    from gateway.audio import hold
    from gateway.bridge.events import HoldEnded, HoldStarted

    call = started(GATEWAY_HOLD_AFTER_S="1.5")  # started at 0.01
    assert call.next_deadline() == pytest.approx(1.51)
    assert call.tick(1.5) == []
    actions = call.tick(1.51)
    media_frames = [a.payload for a in actions if isinstance(a, SendMedia)]
    assert media_frames == [*hold.frames("message"), *hold.frames("tone")]
    assert hold_marks(actions) == ["hold:1", "hold:2"]
    assert any(isinstance(e, HoldStarted) for e in call.record.timeline)
    # The message has played: one more tone period goes out, so one is always queued.
    more = call.receive(mark("hold:1"), 3.0)
    assert hold_marks(more) == ["hold:3"] and len(more) == len(hold.frames("tone")) + 1
    # Hold audio is not the agent's: no playback state, no stale echoes.
    assert not call.playback.speaking and call.playback.stale_echoes == 0
    # The model is back: the queued tone is cleared at once.
    call.flush(3.5)
    assert call.live
    assert [e.seconds for e in call.record.timeline if isinstance(e, HoldEnded)] == [pytest.approx(1.99)]
    assert call.receive(mark("hold:2"), 3.6) == []  # echoes of cleared hold marks mean nothing


def test_the_agent_speaking_clears_the_hold_message_first() -> None:
    call = started(GATEWAY_HOLD_AFTER_S="1")
    call.tick(1.01)
    assert call.flush(1.2) == []  # the message is still playing: left to finish...
    actions = call.session_event(audio("item_a", 100), 1.3)
    assert isinstance(actions[0], SendClear) and isinstance(actions[1], SendMedia)  # ... until the agent speaks
    assert sum(isinstance(a, SendClear) for a in actions) == 1


def test_no_hold_audio_when_the_model_comes_in_time_or_it_is_off() -> None:
    call = started(GATEWAY_HOLD_AFTER_S="1.5")
    call.flush(0.5)
    assert call.tick(1.6) == [] and call.next_deadline() is None
    off = started(GATEWAY_HOLD_AFTER_S="0")
    assert off.next_deadline() is None  # connecting, and no hold audio to time
    assert off.tick(9.0) == []


def _with_transcript(call: Call, item: str, text: str) -> None:
    call.record.transcript.append({"item_id": item, "type": "message", "role": "assistant", "text": text})


def test_a_drop_mid_reply_cuts_it_where_the_caller_stopped_and_goes_on() -> None:
    from gateway.bridge.call import RESUME_REPLY
    from gateway.bridge.events import ReplyResumed

    call = live()
    call.session_event(agent_start(), 1.0)
    sent = marks(call.session_event(audio("item_a", 1000), 1.0))
    _with_transcript(call, "item_a", "one two three four five six seven eight nine ten")
    for name in sent[:5]:
        call.receive(mark(name), 1.5)  # 500 ms played
    assert call.model_lost(1.5) == [SendClear()]  # cut now, as a barge-in cuts
    assert not call.live and call.quiet()  # the cut response will never end: not waited for
    # The new session gets what the caller heard of it, and is asked to go on from there.
    assert call.history_items() == [{"type": "message", "role": "assistant",
                                     "content": [{"type": "output_text", "text": "one two three four five"}]}]
    call.model_reconnected(0.3, 1.8)
    assert call.flush(1.8) == [Ask(RESUME_REPLY.format(heard="one two three four five"))]
    (resumed,) = [e for e in call.record.timeline if isinstance(e, ReplyResumed)]
    assert (resumed.what, resumed.item_id, resumed.heard_ms) == ("reply", "item_a", 500)


def test_a_drop_with_an_answer_due_asks_for_the_answer() -> None:
    from gateway.bridge.call import RESUME_ANSWER

    call = live()
    call.session_event(speech(True), 2.0)
    call.session_event(speech(False), 3.0)  # the caller finished a turn; no response yet
    assert call.model_lost(3.1) == []
    call.model_reconnected(0.2, 3.3)
    assert call.flush(3.3) == [Ask(RESUME_ANSWER)]


def test_a_drop_with_nothing_pending_asks_nothing() -> None:
    call = live()
    for name in say(call, "item_a", 200, 1.0):
        call.receive(mark(name), 1.3)  # all heard, the response over
    _with_transcript(call, "item_a", "Welcome to Acme.")
    assert call.model_lost(5.0) == []
    call.model_reconnected(0.2, 5.2)
    assert call.flush(5.2) == []
    assert call.history_items()[0]["content"][0]["text"] == "Welcome to Acme."  # nothing was cut


def test_a_slow_rollover_gets_hold_audio_only_at_a_pause() -> None:
    call = started(GATEWAY_SESSION_ROLLOVER_S="100", GATEWAY_HOLD_AFTER_S="1")
    call.flush(0.0)
    assert call.tick(100.0) == [RollOver()]  # quiet at the deadline: rolling over from 100.0
    call.session_event(agent_start(), 100.5)  # meanwhile the old session answers the caller
    assert call.next_deadline() is None  # no hold audio while the conversation goes on...
    assert call.tick(101.5) == []
    actions = call.session_event(agent_end(), 102.0)  # ... and at the next pause, at once
    assert hold_marks(actions) == ["hold:1", "hold:2"]


@pytest.mark.parametrize("hold_after_s", ["1.5", "0"])
def test_a_tick_with_nothing_due_leaves_the_timer_asleep(hold_after_s: str) -> None:
    """The runner's timer sleeps until next_deadline() unless rearm is set: a tick that sets it
    with nothing due would spin the timer."""
    call = started(GATEWAY_HOLD_AFTER_S=hold_after_s)
    call.rearm = False
    assert call.tick(0.5) == [] and not call.rearm
    deadline = call.next_deadline()
    assert deadline is None or deadline > 0.5


def test_the_figures_operators_watch_are_in_the_events() -> None:
    from gateway.bridge.events import FirstAudio, ModelConnected

    call = started()  # start at 0.01
    call.model_connected(0.25, 0.26)
    call.flush(0.26)
    call.session_event(agent_start(), 1.0)
    call.session_event(audio("item_a", 500), 1.0)  # first agent audio, 0.99 s after the start
    call.session_event(speech(True), 1.149)
    call.session_event(interrupted("item_a"), 1.15)  # the clear, 1 ms after speech_started
    timeline = call.record.timeline
    assert [e.seconds for e in timeline if isinstance(e, ModelConnected)] == [0.25]
    assert [e.seconds for e in timeline if isinstance(e, FirstAudio)] == [pytest.approx(0.99)]
    (barge,) = [e for e in timeline if isinstance(e, BargeIn)]
    assert barge.clear_ms == pytest.approx(1.0)


def test_who_is_speaking_follows_the_agents_audio_and_the_callers_turns() -> None:
    """What the console shows live: the agent while its audio awaits echoes, the caller from the
    model's speech_started to speech_stopped, the caller when both (a barge-in)."""
    call = live()
    assert call.speaking == ""
    sent = say(call, "item_a", 200, 1.0)
    assert call.speaking == "agent"
    call.session_event(speech(True), 1.1)
    assert call.speaking == "caller"
    call.session_event(speech(False), 1.15)
    assert call.speaking == "agent"  # its audio still awaits echoes
    for seq, name in enumerate(sent, 10):
        call.receive(mark(name, seq), 1.25)
    assert call.speaking == ""


def test_the_start_and_end_of_a_keypad_collection_are_told_with_their_times() -> None:
    """What the recording pauses on (``Call.on_collecting``): the start of the collection and the
    keypress that ends it, each at its own time; nothing per frame in between."""
    call = live()
    told: list[tuple[bool, float]] = []
    call.on_collecting = lambda collecting, now: told.append((collecting, now))
    call.request_digits(2, None, 5.0, 1.0, waiter=1)
    call.receive(media(), 1.1)
    call.receive(dtmf("4"), 1.2)
    assert told == [(True, 1.0)]
    call.receive(dtmf("2", seq=10), 1.5)
    assert told == [(True, 1.0), (False, 1.5)]
