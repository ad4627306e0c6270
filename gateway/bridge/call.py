"""``Call``: one phone call, sans-I/O, like h11's ``Connection``.

It is fed what happened, with the time (``now``, seconds on the call's clock), and returns the
actions to take (``gateway.bridge.actions``). It owns no socket, task or clock, so every policy
decision is a plain unit test (tests/bridge/test_call.py):

- **start**: the stream's ``start`` must come in time and carry a valid call token, before
  anything costs money;
- **buffering**: caller audio is kept (bounded, oldest dropped) until the model is ready,
  then sent in order, with no frame lost or reordered by the flush;
- **no dead air**: hold audio while the model is not there to speak (``Hold``), and after a
  model drop, the agent asked to go on from what the caller heard;
- **barge-in**: the caller talking over the agent clears Twilio's queue, once, only if
  something would be cut; echoes of marks from before the clear count as cleared;
- **keypad**: a keypress goes to ``collect_digits`` if it is collecting, else to the
  application's hook, else to the model;
- **silence**: a check-in, then a goodbye, then the hang-up;
- **the maximum duration**, and the model **session rollover** at a pause;
- **"act only after the words were heard"** for hang-up and transfer;
- **why the call ended**, and so the close code (``gateway.bridge.ending``).

The asyncio edge that feeds it and carries out its actions is ``gateway.bridge.runner``.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import logging
from collections.abc import Callable
from typing import Any

from gateway.audio import FRAME_BYTES, InboundTranscoder, OutboundTranscoder
from gateway.bridge.actions import (
    Action,
    Ask,
    CloseStream,
    DecideTool,
    HangUp,
    OfferDigit,
    Reply,
    RollOver,
    SendAudio,
    SendMedia,
    TellModel,
    Transfer,
)
from gateway.bridge.ending import EndReason, close_code
from gateway.bridge.events import (
    AgentChosen,
    AgentTurn,
    AnsweredBy,
    BargeIn,
    CallEnded,
    CallEvent,
    CallStarted,
    DigitPressed,
    FirstAudio,
    GuardrailTripped,
    HandedOff,
    HungUp,
    InputAudioTimeout,
    ModelConnected,
    ModelError,
    HoldEnded,
    HoldStarted,
    ModelReconnected,
    ReplyResumed,
    SessionRolledOver,
    SilenceCheckIn,
    ToolApproval,
    ToolCalled,
    ToolReturned,
    Transferred,
    TransferRefused,
    TwilioStatus,
)
from gateway.bridge.hold import Hold, is_hold_mark
from gateway.bridge.logs import CallLog, short
from gateway.bridge.playback import Playback
from gateway.bridge.record import DIGITS_TOOL, CallRecord, redact_digits, transcript_item
from gateway.bridge.timing import DigitCollector, MessageRate, SilenceAction, SilenceMonitor
from gateway.security import TOKEN_PARAMETER, CallTokens, InvalidCallToken
from gateway.settings import Settings
from gateway.twilio import Dtmf, Mark, Media, MediaStream, ProtocolError, Start, Stop, UnknownEvent
from gateway.twilio.parser import DEFAULT_MAX_SIZE
from gateway.twilio.twiml import dial_twiml

log = logging.getLogger("gateway.call")

#: What the agent is asked to say when the caller is silent, and when the call must end.
CHECK_IN_REQUEST = "The caller has said nothing for a while. Briefly ask whether they are still there."
GOODBYE_REQUEST = "Say a brief, polite goodbye now: {why} The call ends after your goodbye."
#: After the model's connection dropped and came back (see ``Call.model_lost``): go on.
RESUME_REPLY = ("The phone line dropped for a moment while you were speaking; the caller heard you "
                "up to: \"{heard}\". Say in a few words that the line cut out, then go on from there.")
RESUME_UNHEARD = ("The phone line dropped for a moment before the caller heard your last reply. Say in "
                  "a few words that the line cut out, then give that reply again.")
RESUME_ANSWER = ("The phone line dropped for a moment just as you were about to answer. Say in a few "
                 "words that the line cut out, then answer the caller.")
#: Session rollover: how long to wait for a pause, and when to try again if there was none.
ROLLOVER_QUIET_WAIT_S = 20.0
ROLLOVER_RETRY_S = 5.0
#: Longest wait for the agent's words to be heard before acting anyway (a stalled stream).
HEARD_TIMEOUT_S = 30.0
#: Distinct unknown Twilio event names logged per stream (every one is counted), and counted
#: by name (the rest together, as ``OTHER_UNKNOWN``): a peer choosing names cannot grow memory.
UNKNOWN_EVENT_NAMES_LOGGED = 3
UNKNOWN_EVENT_NAMES_COUNTED = 100
OTHER_UNKNOWN = "(other names)"
#: The largest WebSocket message a stream may send (uvicorn closes with 1009 beyond it; the
#: parser's own limit, for anyone feeding it directly). Real Twilio frames are ~300 bytes.
MAX_MESSAGE_BYTES = DEFAULT_MAX_SIZE


class Phase(enum.Enum):
    AWAITING_START = "awaiting start"  # connected; no valid start yet
    CONNECTING = "connecting"  # started; the model is not ready: caller audio is buffered
    LIVE = "live"  # the model hears the caller
    ENDED = "ended"  # one side has ended; the edges wind down


@dataclasses.dataclass(frozen=True)
class StartInfo:
    """What a valid ``start`` told us: the call, and the stream's signed parameters."""

    call_sid: str
    stream_sid: str
    account_sid: str
    parameters: dict[str, str]
    direction: str

    @property
    def from_(self) -> str:
        return self.parameters.get("from", "")

    @property
    def to(self) -> str:
        return self.parameters.get("to", "")


@dataclasses.dataclass
class _Ending:
    """A hang-up, transfer or goodbye waiting for the agent's words to be heard.

    Stages: ``tool`` (the gateway has not yet seen the tool's ``tool_start``, so the words
    before it may still be on their way), ``quiet`` (no response in progress and nothing
    unheard), ``next_response`` (a transfer's hand-off was talked over: wait for the agent to
    speak again), ``goodbye`` (a response begun after ``after`` has been heard out)."""

    kind: str  # "hang_up", "transfer" or "goodbye"
    reason: str
    deadline: float
    waiter: int | None = None
    stage: str = "quiet"
    tool: str | None = None
    entry: int = 0
    until_uninterrupted: bool = False
    interruptions: int = 0
    after: int = 0  # responses started before (goodbye; next_response)
    target: str = ""  # transfer: what Twilio dials
    text: str = ""  # transfer: the tool's answer


class Call:
    """One phone call's decisions. Feed it; carry out what it returns."""

    def __init__(self, settings: Settings, tokens: CallTokens, *, now: float, wall: float,
                 has_digit_hook: bool = False, peer: str = "[peer=?]") -> None:
        """``now`` is the call's clock when the stream connected; ``wall`` the same instant in
        Unix time (for the call token's expiry)."""
        self.settings = settings
        self.tokens = tokens
        self.has_digit_hook = has_digit_hook
        self.peer = peer
        self.log = CallLog(log, {})
        self.record = CallRecord()
        self.stream = MediaStream()
        self.phase = Phase.AWAITING_START
        self.info: StartInfo | None = None
        self.end_reason: EndReason | None = None
        #: Set when a deadline may have changed: the edge re-arms its timer and clears it.
        self.rearm = False
        mode = settings.audio_mode
        self.inbound = InboundTranscoder(mode)
        self.playback = Playback(OutboundTranscoder(mode), settings.mark_interval_ms)
        self._t0 = now
        self._wall_offset = wall - now
        self._rate = MessageRate(settings.max_message_rate, settings.max_message_burst, now)
        self._start_deadline = now + settings.start_timeout_s
        self._buffer: collections.deque[bytes] = collections.deque()
        self._buffer_limit = max(1, settings.inbound_buffer_ms // 20)
        self._flushed = 0
        self._greeted = False
        self._notes: list[str] = []  # for the model, once it hears the caller
        self._out: list[Action] = []
        # Progress of the conversation, for "heard" waits.
        self.responses_started = 0
        self.responses_ended = 0
        self.interruptions = 0
        self.tool_starts_seen: collections.Counter[str] = collections.Counter()
        self._tool_entries: collections.Counter[str] = collections.Counter()
        self._agent_speaking = False
        # Timers.
        self.silence: SilenceMonitor | None = None
        self._max_deadline = now + settings.max_call_s if settings.max_call_s else None
        self._rollover_at = now + settings.session_rollover_s if settings.session_rollover_s else None
        self._rollover_wait: float | None = None  # waiting for a pause until then
        self._rolling_since: float | None = None  # a RollOver is being carried out
        self._collector: DigitCollector | None = None
        self._collector_waiter: int | None = None
        self._ending: _Ending | None = None
        # No dead air: hold audio while the model is away; going on after a drop.
        self.hold = Hold(settings.hold_after_s)
        self._holding_since: float | None = None
        self._response_due = False  # the caller finished a turn (or a tool returned) since the last response began
        self._resume: tuple[str, str, float] | None = None  # (what, item_id, heard_ms) to go on with
        self._cut_text: dict[str, str] = {}  # item_id -> what the caller heard of a reply cut by a drop
        self._started_at: float | None = None  # when the valid start came
        self._first_audio_sent = False
        self._speech_started_at: float | None = None  # the model's last speech_started
        #: A barge-in was cleared the moment speech_started arrived (``speech_started``); the
        #: session's queue still holds what the model sent before it, which is dropped, up to
        #: the queued speech_started (``_barging``), and the SDK's audio_interrupted, which finds
        #: the clear already sent (``_cleared_early``).
        self._barging = False
        self._cleared_early = False
        self._caller_speaking = False  # between the model's speech_started and speech_stopped
        self._turn_began: float | None = None  # the agent's response in progress began
        #: Unknown Twilio events received, by name (logged once each, counted at the end).
        self.unknown_events: collections.Counter[str] = collections.Counter()
        #: Told every caller frame as it comes, ``(timestamp_ms, payload, now)``: the call's
        #: recording (``gateway.recording``) places it by Twilio's timestamp. None: nobody.
        self.on_caller_audio: Callable[[int, bytes, float], None] | None = None
        #: Told when a keypad collection begins (True) and ends (False), ``(collecting, now)``:
        #: the recording pauses the caller's side meanwhile. None: nobody.
        self.on_collecting: Callable[[bool, float], None] | None = None

    # --- Derived state --------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.phase is Phase.ENDED

    @property
    def live(self) -> bool:
        return self.phase is Phase.LIVE

    @property
    def ending(self) -> str | None:
        """"hang_up" or "transfer" once the gateway is ending the call (a goodbye still being
        said is not yet an ending)."""
        if self._ending is None or self._ending.kind == "goodbye":
            return None
        return self._ending.kind

    @property
    def collecting(self) -> bool:
        """A keypad collection is waiting for keypresses."""
        return self._collector is not None

    def quiet(self) -> bool:
        """No response in progress and nothing sent still unheard."""
        return self.responses_started == self.responses_ended and not self.playback.speaking

    @property
    def speaking(self) -> str:
        """Who is speaking now: ``"caller"`` (the model hears speech), ``"agent"`` (audio sent
        awaits its echoes), or ``""``. The caller wins when both are (a barge-in)."""
        if self._caller_speaking:
            return "caller"
        return "agent" if self._agent_speaking else ""

    def next_deadline(self) -> float | None:
        """When ``tick`` next has something to do (None: only an input can change that)."""
        if self.phase is Phase.AWAITING_START:
            return self._start_deadline
        candidates = [self._collector.deadline() if self._collector is not None else None]
        if self._ending is not None:
            if self._ending.stage != "acted":
                candidates.append(self._ending.deadline)
        elif self.phase is Phase.LIVE:
            candidates += [self.silence.deadline() if self.silence is not None else None, self._max_deadline]
            if self._rolling_since is None:
                candidates.append(self._rollover_wait if self._rollover_wait is not None else self._rollover_at)
        if self._notes and self.phase is Phase.LIVE:
            candidates.append(self._t0)  # due now
        if self.phase is not Phase.ENDED and not self._hold_waits():
            candidates.append(self.hold.deadline())
        deadlines = [d for d in candidates if d is not None]
        return min(deadlines) if deadlines else None

    # --- Twilio -----------------------------------------------------------------------------------

    def receive(self, text: str, now: float, arrived: float | None = None) -> list[Action]:
        """A text frame from Twilio, handled at ``now``; ``arrived``: when it came off the
        socket, if known (a busy event loop gets to it later). A mark echo counts as played
        then: the caller's playback reached the mark before the echo was sent."""
        if self.phase is Phase.ENDED:
            return []
        if not self._rate.allow(now):
            return self._limit(EndReason.RATE_LIMITED, f"more than {self.settings.max_message_rate} "
                               f"messages/s (burst {self.settings.max_message_burst})", now)
        try:
            message = self.stream.receive(text)
        except ProtocolError as exc:
            if self.phase is Phase.AWAITING_START:
                log.warning("%s stream refused before start: %s", self.peer, exc)
            else:
                self.log.error("ending call: %s", exc)
            return self.end(EndReason.PROTOCOL_ERROR, now)
        kind = type(message)
        if kind is Media:
            if self.on_caller_audio is not None:
                self.on_caller_audio(message.timestamp, message.payload, now)
            return self._caller_audio(message.payload)
        if kind is Mark:
            return self._mark_echoed(message.name, now, now if arrived is None else min(arrived, now))
        if kind is Dtmf:
            return self._digit(message.digit, now)
        if kind is Start:
            return self._start(message, now)
        if kind is Stop:
            return self.end(EndReason.CALLER_HUNG_UP, now)
        if kind is UnknownEvent:
            self._unknown_event(message.event)
        return []

    def _unknown_event(self, name: str) -> None:
        """A future Twilio event must not end a call, nor let a peer fill the log: the first of
        each name is logged, the rest counted and logged once when the call ends."""
        if name not in self.unknown_events and len(self.unknown_events) >= UNKNOWN_EVENT_NAMES_COUNTED:
            name = OTHER_UNKNOWN
        self.unknown_events[name] += 1
        if self.unknown_events[name] > 1 or len(self.unknown_events) > UNKNOWN_EVENT_NAMES_LOGGED:
            return
        if self.phase is Phase.AWAITING_START:
            log.warning("%s ignoring unknown Twilio event before start: %r (more are counted, not logged)",
                        self.peer, short(name, 40))
        else:
            self.log.warning("ignoring unknown Twilio event %r (more are counted, not logged)", short(name, 40))

    def binary_frame(self, now: float) -> list[Action]:
        return self._limit(EndReason.BINARY_FRAME, "a binary frame", now)

    def too_big(self, now: float) -> list[Action]:
        return self._limit(EndReason.TOO_BIG, f"a message over {MAX_MESSAGE_BYTES} bytes", now)

    def twilio_closed(self, now: float) -> list[Action]:
        return self.end(EndReason.TWILIO_DISCONNECTED, now)

    def _limit(self, reason: EndReason, what: str, now: float) -> list[Action]:
        if self.phase is Phase.AWAITING_START:
            log.warning("%s stream refused before start: %s: %s", self.peer, reason.value, what)
        else:
            self.log.error("ending call: %s: %s", reason.value, what)
        return self.end(reason, now)

    def _start(self, start: Start, now: float) -> list[Action]:
        params = dict(start.custom_parameters)
        self.log = CallLog(log, {"call_sid": start.call_sid, "stream_sid": start.stream_sid})
        # Inbound tokens are bound to the call SID; outbound TwiML is written before Twilio
        # assigns one, so those are bound to our own call reference (itself signed).
        outbound = params.get("direction") == "outbound"
        subject = params.get("ref", "") if outbound else start.call_sid
        try:
            self.tokens.verify(params.get(TOKEN_PARAMETER), subject, params, now=now + self._wall_offset)
        except InvalidCallToken as exc:
            # The peer is named, so that a peer forging tokens is limited per peer (gateway.ratelog).
            self.log.warning("%s stream refused before any model connection: %s", self.peer, exc)
            return self.end(EndReason.REFUSED, now)
        self.info = StartInfo(start.call_sid, start.stream_sid, start.account_sid, params,
                              "outbound" if outbound else "inbound")
        self.phase = Phase.CONNECTING
        self.rearm = True
        self._started_at = now
        self.hold.away(now)  # the caller hears nothing until the model speaks
        self._emit(CallStarted(t=now - self._t0, call_sid=start.call_sid, stream_sid=start.stream_sid,
                               from_=self.info.from_, to=self.info.to, direction=self.info.direction))
        self.log.info("call started: from %s to %s", self.info.from_ or "?", self.info.to or "?")
        return []

    def _caller_audio(self, payload: bytes) -> list[Action]:
        self.record.frames_in += 1
        audio = self.inbound.convert(payload)
        if self.phase is Phase.LIVE:
            return [SendAudio(audio)]
        self._keep(audio)
        return []

    def _keep(self, audio: bytes) -> None:
        if len(self._buffer) >= self._buffer_limit:
            self._buffer.popleft()
            self.record.buffered_dropped += 1
        self._buffer.append(audio)

    def _mark_echoed(self, name: str, now: float, played_at: float) -> list[Action]:
        if is_hold_mark(name):
            return self.hold.echoed(name)
        self.playback.mark_echoed(name, played_at)
        self._speech_changed(now)
        if self.hold.since is not None and not self.hold.started:
            self.rearm = True
            self._maybe_hold(now)
        return self._progress(now)

    # --- The keypad -------------------------------------------------------------------------------

    def _digit(self, digit: str, now: float) -> list[Action]:
        if self._collector is not None:
            result = self._collector.feed(digit, now)
            self.rearm = True
            if result is not None:
                self._finish_collection(result, now)
            return self._digit_done(digit, True, now)
        if self.has_digit_hook:
            return [OfferDigit(digit)]
        return self._digit_done(digit, False, now)

    def digit_handled(self, digit: str, consumed: bool, now: float) -> list[Action]:
        """The application's hook answered ``OfferDigit``: True if it took the keypress."""
        return self._digit_done(digit, consumed, now)

    def _digit_done(self, digit: str, consumed: bool, now: float) -> list[Action]:
        shown = "*" if consumed and self.settings.redact_digits else digit  # a PIN stays out of the logs
        self.log.info("caller pressed %s%s", shown, " (collected)" if consumed else "")
        self._emit(DigitPressed(t=now - self._t0, digit=digit, collected=consumed))
        out = self._take()
        if not consumed and self.phase is Phase.LIVE:
            out.append(TellModel(f"The caller pressed the {digit} key on their phone."))
        return out

    def request_digits(self, count: int | None, terminator: str | None, timeout_s: float, now: float,
                       waiter: int) -> list[Action]:
        """``collect_digits``: answered (``Reply`` to ``waiter``) with a ``DigitsResult``."""
        if self._collector is not None:
            raise RuntimeError("already collecting keypresses")
        self._collector = DigitCollector(count, terminator, timeout_s, now)
        self._collector_waiter = waiter
        self.rearm = True
        if self.on_collecting is not None:
            self.on_collecting(True, now)
        return []

    def _finish_collection(self, result: Any, now: float) -> None:
        waiter, self._collector, self._collector_waiter = self._collector_waiter, None, None
        if self.on_collecting is not None:
            self.on_collecting(False, now)
        if waiter is not None:
            self._out.append(Reply(waiter, result))

    # --- The model ------------------------------------------------------------------------------

    def model_connected(self, seconds: float, now: float) -> list[Action]:
        """The first model session is connected (``seconds``: retries included)."""
        self._emit(ModelConnected(t=now - self._t0, seconds=round(seconds, 3)))
        return []

    def agent_chosen(self, name: str, now: float) -> list[Action]:
        self._emit(AgentChosen(t=now - self._t0, agent=name))
        return []

    def flush(self, now: float) -> list[Action]:
        """The model is ready (connected, or reconnected): call until ``live``. Each call
        returns the caller audio buffered so far; once none is left, the call goes live (with
        no step between the last emptiness check and going live, so no frame is lost or
        reordered), asking for the greeting the first time and passing on pending notes."""
        if self.phase is not Phase.CONNECTING:
            return []
        if self._buffer:
            out: list[Action] = [SendAudio(audio) for audio in self._buffer]
            self._flushed += len(self._buffer)
            self._buffer.clear()
            return out
        self.phase = Phase.LIVE
        self.rearm = True
        self.record.buffered_frames = self._flushed
        if self._flushed:
            self.log.info("sent %d ms of caller audio buffered while the model connected", self._flushed * 20)
        self._flushed = 0
        out = []
        if not self._greeted:
            self._greeted = True
            if self.settings.greeting:
                out.append(Ask(self.settings.greeting))
            if self.settings.silence_check_in_s or self.settings.silence_give_up_s:
                self.silence = SilenceMonitor(self.settings.silence_check_in_s, self.settings.silence_give_up_s, now)
        out += [TellModel(note) for note in self._notes]
        self._notes.clear()
        out += self.hold.back()
        self._hold_over(now)
        if self._resume is not None:
            out.append(self._go_on(now))
        return out

    def audio_not_sent(self, audio: bytes, now: float) -> list[Action]:
        """Sending ``SendAudio`` failed (the model's socket went): keep it, and everything
        after it, for the session that replaces it."""
        if self.phase is Phase.LIVE:
            self.phase = Phase.CONNECTING
        self._keep(audio)
        return []

    def model_lost(self, now: float) -> list[Action]:
        """The model's connection failed mid-call; the edge reconnects. Until then caller audio
        is buffered, and after ``GATEWAY_HOLD_AFTER_S`` the caller hears hold audio.

        If the agent was speaking, its reply is cut now, as a barge-in cuts it: Twilio's queue
        is cleared and what the caller heard is kept, to seed the new session with and to go on
        from. If a response was in progress or due (the caller had finished a turn, or a tool
        had returned), the agent is asked to answer once the model is back. Otherwise nothing
        is asked: the conversation simply goes on."""
        out: list[Action] = []
        if self.phase is Phase.LIVE:
            self.phase = Phase.CONNECTING
        self.rearm = True
        self._barging = self._cleared_early = False  # nothing more comes of the failed session
        heard = self.playback.heard(now)
        if self.playback.interruptible and heard is not None:
            sent = self.playback.sent_ms(heard.item_id, heard.content_index)
            self._resume = ("reply", heard.item_id, heard.ms)
            self._cut_text[heard.item_id] = self._heard_text(heard.item_id, heard.ms, sent)
            out += self.playback.interrupt(heard.item_id)
        else:
            self.playback.interrupt()  # the old session's items are gone with it (nothing to clear)
            if self.responses_started > self.responses_ended or self._response_due:
                self._resume = ("answer", "", 0.0)
        self.responses_ended = self.responses_started  # a response cut by the drop never ends
        self._speech_changed(now)
        if out:
            self.hold.playing = False  # the clear cut any hold audio too
        self.hold.away(now)
        return out

    def model_reconnected(self, seconds: float, now: float) -> list[Action]:
        """A new session took over (seeded with ``history_items``); then ``flush``."""
        self.record.reconnects += 1
        self._emit(ModelReconnected(t=now - self._t0, seconds=round(seconds, 3)))
        return []

    def rolled_over(self, ok: bool, now: float) -> list[Action]:
        """The edge carried out ``RollOver``: ``ok`` if the call is on the new session."""
        started, self._rolling_since = self._rolling_since, None
        self.rearm = True
        self._out += self.hold.back()
        self._hold_over(now)
        if not ok:
            self._rollover_at = now + ROLLOVER_RETRY_S
            return self._take()
        # Nothing was playing (a pause): forget the old session's items, so that a barge-in on
        # the new session can never truncate an item the new session does not have.
        self.playback.interrupt()
        self._barging = self._cleared_early = False  # the old session's queue is read no more
        self.record.rollovers += 1
        seconds = now - (started if started is not None else now)
        self._emit(SessionRolledOver(t=now - self._t0, seconds=round(seconds, 3)))
        self.log.info("rolled over to a new model session in %.0f ms", 1000 * seconds)
        self._rollover_at = now + self.settings.session_rollover_s
        return self._take()

    def session_event(self, event: Any, now: float) -> list[Action]:
        """One ``agents.realtime`` session event (``HANDLERS``)."""
        self.record.counts[event.type] += 1
        handler = HANDLERS.get(event.type)
        if handler is None:
            self.log.warning("unhandled session event %r", event.type)
            return []
        handler(self, event, now)
        if self.hold.since is not None and not self.hold.started:
            self.rearm = True  # what _hold_waits looks at may have changed: the timer looks again
            self._maybe_hold(now)
        if self._ending is not None or self._rollover_wait is not None:
            return self._progress(now)
        return self._take()

    def history_items(self) -> list[dict[str, Any]]:
        """The conversation so far, as ``conversation.item.create`` items for a fresh session
        (text: the model's audio replies are carried by their transcripts). Assistant text goes
        as ``output_text`` content, the GA type for text an assistant said; whether the live API
        accepts it in an audio session is not observable here (openai/types/realtime, assistant
        message param)."""
        items = []
        for entry in self.record.transcript:
            text, role = entry.get("text"), entry.get("role")
            text = self._cut_text.get(entry.get("item_id"), text)  # only what was heard of a cut reply
            if entry.get("type") != "message" or not text or role not in ("user", "assistant"):
                continue
            kind = "input_text" if role == "user" else "output_text"
            items.append({"type": "message", "role": role, "content": [{"type": kind, "text": text}]})
        return items

    # The handlers: what each session event means for the call (docs/events.md).

    def speech_started(self, received: float, now: float) -> list[Action]:
        """The model heard the caller start speaking: its ``input_audio_buffer.speech_started``,
        handed over by the model edge at ``received``, the moment it arrived, before the SDK
        handles it and before anything queued on the session reaches ``session_event``.

        If the agent is being heard and the session interrupts responses on speech, the
        ``clear`` goes out now, and the SDK's truncation, which follows at once, is told what
        the caller had heard at this instant (``Playback.cut``): the caller hears nothing more
        of the agent, and the model is cut where they stopped hearing it, however long the
        SDK and the session queue take under load. With ``interrupt_response`` off the server
        keeps talking; the SDK's audio_interrupted decides, as before (``_on_audio_interrupted``).
        """
        self.playback.cut = None
        if self.phase is Phase.ENDED or not self.settings.interrupt_response or not self.playback.interruptible:
            return []
        actions: list[Action] = self.playback.barge_in(now)
        self._barging = self._cleared_early = True
        cut = self.playback.cut
        item_id = cut.item_id if cut is not None else ""
        self._barged(item_id, cut.ms if cut is not None else 0.0, round(1000 * (now - received), 3), now)
        self._twilio(actions, now)
        return self._take()

    def _barged(self, item_id: str, heard_ms: float, clear_ms: float | None, now: float) -> None:
        self.interruptions += 1
        self.log.info("barge-in: cleared playback of %s at %.0f ms heard", item_id, heard_ms)
        self._emit(BargeIn(t=now - self._t0, item_id=item_id, heard_ms=round(heard_ms), clear_ms=clear_ms))

    def _on_audio(self, event: Any, now: float) -> None:
        if self._barging:  # sent before the caller started speaking; cleared, not to be heard
            self.playback.dropped_bytes += len(event.audio.data)
            return
        if self.hold.playing or self.hold.since is not None:  # the agent speaks: no more hold audio
            self._out += self.hold.stop()
            self._hold_over(now)
        self._twilio(self.playback.audio(event.item_id, event.content_index, event.audio.data, now), now)

    def _on_audio_end(self, event: Any, now: float) -> None:
        self._twilio(self.playback.audio_end(event.item_id, event.content_index, now), now)

    def _on_audio_interrupted(self, event: Any, now: float) -> None:
        # The SDK reports this at every speech_started once the model has spoken at all
        # (agents/realtime/openai_realtime.py, "input_audio_buffer.speech_started": it only
        # checks that an audio item exists). With everything heard and nothing streaming,
        # there is nothing to cut: no clear, no barge-in.
        if self._cleared_early:  # cleared when speech_started arrived (``speech_started``)
            self._cleared_early = False
            self.playback.drop(event.item_id)  # its audio still arriving is dropped
            return
        if not self.playback.interruptible:
            self.log.debug("speech started with the agent silent: nothing to clear")
            return
        heard = self.playback.heard(now)
        self._twilio(self.playback.interrupt(event.item_id), now)
        since = self._speech_started_at
        clear_ms = round(1000 * (now - since), 3) if since is not None and now - since < 1.0 else None
        self._barged(event.item_id, heard.ms if heard else 0.0, clear_ms, now)

    def _on_guardrail_tripped(self, event: Any, now: float) -> None:
        self._twilio(self.playback.interrupt(), now)
        names = [r.guardrail.get_name() for r in event.guardrail_results]
        self.log.warning("output guardrail tripped (%s): playback cleared", ", ".join(names))
        self._emit(GuardrailTripped(t=now - self._t0, guardrails=names, message=event.message))

    def _on_agent_start(self, event: Any, now: float) -> None:
        self.log.debug("agent %s responding", event.agent.name)
        self.responses_started += 1
        self._turn_began = now
        self._response_due = False

    def _on_agent_end(self, event: Any, now: float) -> None:
        self.log.debug("agent %s done", event.agent.name)
        self.responses_ended += 1
        began, self._turn_began = self._turn_began, None
        if began is not None:
            self._emit(AgentTurn(t=now - self._t0, agent=event.agent.name, seconds=round(now - began, 4)))

    def _on_tool_start(self, event: Any, now: float) -> None:
        self.log.info("tool %s started: %s", event.tool.name, short(event.arguments))
        self._emit(ToolCalled(t=now - self._t0, tool=event.tool.name, arguments=event.arguments))
        # The SDK queues tool_start behind every audio event of the response that called the
        # tool (agents/realtime/session.py, function-tool dispatch): everything the agent said
        # before calling it has now been sent to Twilio.
        self.tool_starts_seen[event.tool.name] += 1

    def _on_tool_end(self, event: Any, now: float) -> None:
        output = str(event.output)
        if event.tool.name == DIGITS_TOOL and self.settings.redact_digits:
            output = redact_digits(output)
        self.log.info("tool %s finished: %s", event.tool.name, short(output))
        self._response_due = True  # the SDK sends the output and asks for a response
        self._emit(ToolReturned(t=now - self._t0, tool=event.tool.name, output=str(event.output)))

    def _on_tool_approval_required(self, event: Any, now: float) -> None:
        # Nobody can click "approve" on a phone call: the policy decides, at once.
        policy = self.settings.tool_approval
        message = "" if policy == "approve" else f"The tool {event.tool.name} is not permitted on this call."
        self._out.append(DecideTool(event.call_id, policy == "approve", message))
        self.log.info("tool %s needed approval: %sd by policy", event.tool.name, policy)
        self._emit(ToolApproval(t=now - self._t0, tool=event.tool.name, decision=policy))

    def _on_handoff(self, event: Any, now: float) -> None:
        # The SDK sends the new agent's instructions and tools in a session.update built on our
        # base settings, so voice and audio formats stay as they were.
        self.log.info("handoff: %s -> %s", event.from_agent.name, event.to_agent.name)
        self._emit(HandedOff(t=now - self._t0, from_agent=event.from_agent.name, to_agent=event.to_agent.name))

    def _on_history_added(self, event: Any, now: float) -> None:
        item = transcript_item(event.item)
        transcript = self.record.transcript
        for i, existing in enumerate(transcript):
            if existing.get("item_id") == item.get("item_id"):
                transcript[i] = item
                return
        transcript.append(item)

    def _on_history_updated(self, event: Any, now: float) -> None:
        self.record.transcript = [transcript_item(item) for item in event.history]

    def _on_error(self, event: Any, now: float) -> None:
        # Model errors (and events the SDK could not validate) do not end the call by
        # themselves; a dropped connection ends the session iterator instead.
        self.log.error("model error: %s", short(str(event.error), 300))
        self._emit(ModelError(t=now - self._t0, error=short(str(event.error), 300)))

    def _on_raw_model_event(self, event: Any, now: float) -> None:
        # Every server message also arrives here; the typed events carry the meaning, except
        # the caller's turns, which run the silence clock. (A transport exception, also here,
        # is the model edge's business: it tells a failed connection from a clean end.)
        data = event.data
        if getattr(data, "type", None) != "raw_server_event" or not isinstance(data.data, dict):
            return
        server_type = data.data.get("type")
        if server_type in ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped"):
            started = server_type.endswith("started")
            self._caller_speaking = started
            if started:
                self._speech_started_at = now  # the SDK emits audio_interrupted right after
                self._barging = False  # what the model sent before it has all been dropped
            else:
                self._response_due = True  # the model answers a finished turn
            if self.silence is not None:
                self.silence.caller_speech(started, now)
                self.rearm = True

    def _on_input_audio_timeout_triggered(self, event: Any, now: float) -> None:
        self.log.info("caller silent past the model's idle timeout")
        self._emit(InputAudioTimeout(t=now - self._t0))

    def _twilio(self, actions: list[Action], now: float) -> None:
        for action in actions:
            if type(action) is SendMedia:  # several frames a message: count the frames
                self.record.frames_out += -(-len(action.payload) // FRAME_BYTES)
        if not self._first_audio_sent and self.record.frames_out and self._started_at is not None:
            self._first_audio_sent = True
            self._emit(FirstAudio(t=now - self._t0, seconds=round(now - self._started_at, 4)))
        self._out += actions
        self._speech_changed(now)

    def _speech_changed(self, now: float) -> None:
        speaking = self.playback.speaking
        if speaking != self._agent_speaking:
            self._agent_speaking = speaking
            if self.silence is not None:
                self.silence.agent_speech(speaking, now)
                self.rearm = True

    # --- The application and Twilio callbacks ----------------------------------------------------

    def answered_by(self, answered_by: str, now: float) -> list[Action]:
        """Twilio's answering-machine detection result (outbound calls): the agent is told,
        once it hears the caller."""
        self._emit(AnsweredBy(t=now - self._t0, answered_by=answered_by))
        if answered_by == "human":
            text = "A person answered the phone."
        elif answered_by.startswith("machine") or answered_by == "fax":
            text = ("An answering machine answered, not a person. Leave a brief message now, "
                    "then end the call with hang_up.")
        else:
            text = "It is not known whether a person or a machine answered."
        self._notes.append(f"(Call status: {text})")
        self.rearm = True
        return []

    def twilio_status(self, status: str, now: float) -> list[Action]:
        self._emit(TwilioStatus(t=now - self._t0, status=status))
        return []

    # --- Ending the call: hang-up, transfer, goodbye ---------------------------------------------

    def request_hang_up(self, now: float, waiter: int) -> list[Action]:
        """The agent's ``hang_up``: end the call once its goodbye has been heard."""
        if self.ending is not None:
            return [Reply(waiter, f"The call is already ending ({self.ending}).")]
        self._begin(_Ending("hang_up", "agent", now + HEARD_TIMEOUT_S, waiter, stage="tool",
                            tool="hang_up", entry=self._enter("hang_up")))
        return self._progress(now)

    def operator_hang_up(self, now: float) -> list[Action]:
        """An operator ends the call (``POST /calls/{call_sid}/hangup``): at once, whatever the
        agent is saying. A tool waiting on an ending the agent asked for is told."""
        previous = self._ending
        if previous is not None and previous.stage == "acted":
            return []
        if previous is not None and previous.waiter is not None:
            self._out.append(Reply(previous.waiter, "An operator is ending the call."))
        self._begin(_Ending("hang_up", "operator", now, stage="heard"))
        return self._progress(now)

    def request_transfer(self, target: str, now: float, waiter: int) -> list[Action]:
        """The agent's ``transfer_call``: hand the caller to a person once the hand-off
        sentence has been heard, uninterrupted."""
        dial = self.settings.transfer_target(target)
        if dial is None:
            allowed = ", ".join(name for name, _ in self.settings.transfer_targets) or "none"
            self._emit(TransferRefused(t=now - self._t0, target=target))
            self.log.warning("transfer to %r refused: not an allowed target", target)
            return [Reply(waiter, f"Transfer refused: {target!r} is not an allowed target. Allowed: {allowed}.")]
        if self.ending is not None:
            return [Reply(waiter, f"The call is already ending ({self.ending}).")]
        self._begin(_Ending("transfer", "transfer", now + HEARD_TIMEOUT_S, waiter, stage="tool",
                            tool="transfer_call", entry=self._enter("transfer_call"),
                            until_uninterrupted=True, target=dial, text=f"Transferring the caller to {target}."))
        return self._progress(now)

    def _enter(self, tool: str) -> int:
        self._tool_entries[tool] += 1
        return self._tool_entries[tool]

    def _goodbye(self, why: str, reason: str, now: float) -> None:
        self._begin(_Ending("goodbye", reason, now + HEARD_TIMEOUT_S, stage="goodbye", after=self.responses_started))
        self._out.append(Ask(GOODBYE_REQUEST.format(why=why)))

    def _begin(self, ending: _Ending) -> None:
        self._ending = ending
        self._rollover_wait = None
        self.rearm = True

    def _progress(self, now: float) -> list[Action]:
        """Move a pending ending (and a wanted rollover) on, as far as the call allows now."""
        ending = self._ending
        if ending is not None and ending.stage != "acted":
            self._advance(ending, now)
        self._check_rollover(now)
        return self._take()

    def _advance(self, ending: _Ending, now: float) -> None:
        while True:
            stage = ending.stage
            timed_out = now >= ending.deadline
            if stage == "tool":
                if self.tool_starts_seen[ending.tool or ""] >= ending.entry:
                    ending.stage, ending.interruptions = "quiet", self.interruptions
                elif timed_out:
                    ending.stage = "unheard"
            elif stage == "quiet":
                if self.quiet():
                    if not ending.until_uninterrupted or self.interruptions == ending.interruptions:
                        ending.stage = "heard"
                    else:  # cut off mid-sentence: wait for the agent's next response, then its end
                        self.log.info("the hand-off was interrupted; waiting for the agent to finish again")
                        ending.stage, ending.after = "next_response", self.responses_started
                elif timed_out:
                    ending.stage = "unheard"
            elif stage == "next_response":
                if self.responses_started > ending.after:
                    ending.stage, ending.interruptions = "quiet", self.interruptions
                elif timed_out:
                    ending.stage = "heard"  # the agent has nothing more to say: not mid-sentence
            elif stage == "goodbye":
                if (self.responses_started > ending.after and self.quiet()) or timed_out:
                    ending.stage = "heard"
            if ending.stage in ("heard", "unheard"):
                self._act(ending, now)
                return
            if ending.stage == stage:
                return

    def _act(self, ending: _Ending, now: float) -> None:
        if ending.kind == "transfer":
            self._emit(Transferred(t=now - self._t0, target=ending.target))
            self.end_reason = self.end_reason or EndReason.TRANSFERRED
            self.log.info("transferring to %s", ending.target)
            self._out.append(Transfer(dial_twiml(ending.target), ending.waiter, ending.text))
        else:
            if ending.kind == "hang_up" and ending.stage == "unheard":
                self.log.warning("hanging up without confirmation that the goodbye was heard")
            self._emit(HungUp(t=now - self._t0, reason=ending.reason))
            self.end_reason = self.end_reason or EndReason.AGENT_HUNG_UP
            self.log.info("hanging up (%s)", ending.reason)
            self._out.append(HangUp(ending.reason, ending.waiter))
            ending.kind = "hang_up"
        ending.stage = "acted"
        self.rearm = True

    # --- No dead air -------------------------------------------------------------------------------

    def _hold_waits(self) -> bool:
        """Something else is heard or said: the agent's last words are still playing, or during
        a rollover the old session is still in a conversation with the caller."""
        if self.playback.speaking:
            return True
        caller_speaking = self.silence is not None and self.silence.caller_speaking
        return self._rolling_since is not None and not (self.quiet() and not caller_speaking)

    def _maybe_hold(self, now: float) -> None:
        """Hold audio, once the model has been away long enough and nothing else is heard."""
        if self.hold.since is None or self.hold.started or self.phase is Phase.ENDED:
            return
        if not self.hold.due(now) or self._hold_waits():
            return
        self.log.info("the model has not been there to speak for %g s: hold audio", self.settings.hold_after_s)
        self._holding_since = now
        self._emit(HoldStarted(t=now - self._t0))
        self._out += self.hold.start()

    def _hold_over(self, now: float) -> None:
        """The hold audio is over (if there was any): noted with how long it lasted."""
        if self._holding_since is not None:
            self._emit(HoldEnded(t=now - self._t0, seconds=round(now - self._holding_since, 3)))
            self._holding_since = None

    def _heard_text(self, item_id: str, heard_ms: float, sent_ms: float) -> str:
        """The part of a reply's transcript the caller heard: its words in proportion to the
        audio heard (the transcript arrives with the audio, word by word; an estimate)."""
        entry = next((e for e in reversed(self.record.transcript) if e.get("item_id") == item_id), None)
        words = (entry or {}).get("text", "").split()
        if not words or sent_ms <= 0:
            return ""
        return " ".join(words[: round(len(words) * min(1.0, heard_ms / sent_ms))])

    def _go_on(self, now: float) -> Ask:
        what, item_id, heard_ms = self._resume
        self._resume = None
        self._emit(ReplyResumed(t=now - self._t0, what=what, item_id=item_id, heard_ms=round(heard_ms)))
        if what == "answer":
            return Ask(RESUME_ANSWER)
        heard = self._cut_text.get(item_id, "")
        self.log.info("going on with the reply cut by the drop, after %.0f ms heard", heard_ms)
        return Ask(RESUME_REPLY.format(heard=heard) if heard else RESUME_UNHEARD)

    # --- Timers -------------------------------------------------------------------------------------

    def tick(self, now: float) -> list[Action]:
        """The time is ``now``: whatever fell due."""
        if self.phase is Phase.AWAITING_START:
            if now >= self._start_deadline:
                log.warning("%s stream refused: no start within %g s", self.peer, self.settings.start_timeout_s)
                return self.end(EndReason.REFUSED, now)
            return []
        self._maybe_hold(now)
        if self._collector is not None:
            result = self._collector.expired(now)
            if result is not None:
                self._finish_collection(result, now)
        if self.phase is Phase.LIVE and self._notes:
            self._out += [TellModel(note) for note in self._notes]
            self._notes.clear()
        if self._ending is not None:
            return self._progress(now)
        if self.phase is not Phase.LIVE:
            return self._take()
        if self._max_deadline is not None and now >= self._max_deadline:
            self.log.info("maximum call duration (%g s) reached", self.settings.max_call_s)
            self._goodbye("This call has reached its maximum length.", "maximum duration", now)
            return self._take()
        self._check_rollover(now)
        action = self.silence.due(now) if self.silence is not None else None
        if action is SilenceAction.CHECK_IN:
            self.log.info("caller silent: checking in")
            self._emit(SilenceCheckIn(t=now - self._t0))
            self._out.append(Ask(CHECK_IN_REQUEST))
        elif action is SilenceAction.GIVE_UP:
            self.log.info("caller still silent: ending the call")
            self._goodbye("The caller has been silent for too long.", "silence", now)
        return self._take()

    def _check_rollover(self, now: float) -> None:
        """Move the call to a fresh model session before the current one hits the Realtime
        API's session lifetime limit, at a quiet moment (no response in progress, nothing
        unheard, the caller not speaking); if there is none within ``ROLLOVER_QUIET_WAIT_S``,
        try again ``ROLLOVER_RETRY_S`` later."""
        if (self._rollover_at is None or now < self._rollover_at or self._rolling_since is not None
                or self.phase is not Phase.LIVE):
            return
        if self._ending is not None:
            self._rollover_wait = None
            return
        if self._rollover_wait is None:
            self._rollover_wait = now + ROLLOVER_QUIET_WAIT_S
            self.rearm = True
        caller_speaking = self.silence is not None and self.silence.caller_speaking
        if self.quiet() and not caller_speaking:
            self._rollover_wait = None
            self._rolling_since = now
            self.hold.away(now)  # if the new session is slow to come, the caller hears hold audio
            self._out.append(RollOver())
        elif now >= self._rollover_wait:
            self.log.info("session rollover postponed: the conversation is not at a pause")
            self._rollover_wait = None
            self._rollover_at = now + ROLLOVER_RETRY_S
            self.rearm = True

    # --- The end -------------------------------------------------------------------------------------

    def end(self, reason: EndReason, now: float) -> list[Action]:
        """The call is over for ``reason`` (the first reason given stands): fed by the edge when
        it sees an end (the model ended or failed, the socket went), and by the call itself."""
        if self.end_reason is None:
            self.end_reason = reason
        self.phase = Phase.ENDED
        self.rearm = True
        return self._take()

    def close_stream(self) -> CloseStream:
        """How to close the stream now, given why the call is ending."""
        return CloseStream(close_code(self.end_reason))

    def finish(self, now: float) -> CallRecord:
        """The call is over (the edge calls this once): its record, complete."""
        self.phase = Phase.ENDED
        record = self.record
        record.stale_echoes = self.playback.stale_echoes
        record.dropped_audio_bytes = self.playback.dropped_bytes
        ignored = sum(self.unknown_events.values())
        if ignored:
            names = ", ".join(f"{short(name, 40)!r} x{n}" for name, n in self.unknown_events.most_common(5))
            (self.log if self.info is not None else log).info(
                "%s%d unknown Twilio event(s) ignored: %s", "" if self.info is not None else self.peer + " ",
                ignored, names)
        self._emit(CallEnded(t=now - self._t0, reason=self.end_reason or EndReason.INTERNAL_ERROR))
        return record

    # --- Plumbing ---------------------------------------------------------------------------------

    def _emit(self, event: CallEvent) -> None:
        self.record.add(event)

    def _take(self) -> list[Action]:
        out, self._out = self._out, []
        return out


#: Session event type -> handling. docs/events.md is this table in prose; a test checks that
#: every event type the SDK defines is here.
HANDLERS = {
    "agent_start": Call._on_agent_start,
    "agent_end": Call._on_agent_end,
    "handoff": Call._on_handoff,
    "tool_start": Call._on_tool_start,
    "tool_end": Call._on_tool_end,
    "tool_approval_required": Call._on_tool_approval_required,
    "raw_model_event": Call._on_raw_model_event,
    "audio": Call._on_audio,
    "audio_end": Call._on_audio_end,
    "audio_interrupted": Call._on_audio_interrupted,
    "error": Call._on_error,
    "history_updated": Call._on_history_updated,
    "history_added": Call._on_history_added,
    "guardrail_tripped": Call._on_guardrail_tripped,
    "input_audio_timeout_triggered": Call._on_input_audio_timeout_triggered,
}
