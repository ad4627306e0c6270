"""``Call``: one Twilio Media Stream bridged to one ``agents.realtime`` RealtimeSession.

The thin asyncio edge around the sans-I/O cores (``MediaStream``, the transcoders, ``Playback``).
Two tasks per call, each the only writer in its direction:

- ``_read_twilio``: Twilio frames in. Caller audio is transcoded and sent to the model at once,
  one append per 20 ms frame (no batching: every batched frame adds 20 ms of latency). Mark
  echoes advance playback. Until the model is connected, caller audio is buffered (bounded).
- ``_read_session``: session events in. Each has a deliberate handling (``HANDLERS`` below and
  docs/events.md); agent audio, marks and ``clear`` go to Twilio from here only.

The call ends when either side ends (Twilio ``stop`` or socket closed, the model ending or
dropping the session); the other task is cancelled, the session closed, the socket closed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import enum
import inspect
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from agents import RunContextWrapper
from agents.realtime import (
    RealtimeAgent,
    RealtimePlaybackTracker,
    RealtimeRunConfig,
    RealtimeRunner,
    RealtimeSession,
)
from agents.realtime.model_inputs import RealtimeModelSendRawMessage
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from gateway.audio import AudioMode, InboundTranscoder, OutboundTranscoder
from gateway.bridge.agents import (
    AgentSource,
    CallInfo,
    agent_for_call,
    guard_tools,
    load_agent_source,
)
from gateway.bridge.control import CallControl
from gateway.bridge.playback import Action, Playback, SendClear, SendMark, SendMedia
from gateway.bridge.timing import MessageRate, SilenceAction, SilenceMonitor
from gateway.security import TOKEN_PARAMETER, CallTokens, InvalidCallToken
from gateway.settings import Settings
from gateway.twilio import (
    Dtmf,
    Mark,
    Media,
    MediaStream,
    ProtocolError,
    Start,
    Stop,
    UnknownEvent,
)
from gateway.twilio.parser import DEFAULT_MAX_SIZE
from gateway.twilio.rest import TwilioRest

log = logging.getLogger("gateway.call")

#: An application's keypress handler: ``(call, digit) -> True`` if it handled the digit (then
#: the model does not hear of it); may be async. ``call.control`` can hang up, transfer, etc.
DigitHandler = Callable[[CallInfo, str], "bool | Awaitable[bool]"]
#: ``on_event(call, event)``: sees every session event of every call, in order, before the
#: gateway handles it (for recorders, metrics, the demo's live view). It runs on the event
#: loop between events, so it must be quick and must not block; an exception it raises is
#: logged and the call goes on.
EventHook = Callable[["Call", Any], None]

#: What the agent is asked to say when the caller is silent, and when the call must end.
#: Session rollover: how long to wait for a pause, and when to try again if there was none.
ROLLOVER_QUIET_WAIT_S = 20.0
ROLLOVER_RETRY_S = 5.0
CHECK_IN_REQUEST = "The caller has said nothing for a while. Briefly ask whether they are still there."
GOODBYE_REQUEST = "Say a brief, polite goodbye now: {why} The call ends after your goodbye."

#: WebSocket close codes we use towards Twilio (RFC 6455 section 7.4.1).
CLOSE_NORMAL = 1000
CLOSE_PROTOCOL = 1007  # a frame that is not a valid Media Streams message
CLOSE_POLICY = 1008  # refused: no valid call token, or no start in time
CLOSE_INTERNAL = 1011  # the model side failed
CLOSE_UNSUPPORTED = 1003  # a binary frame: Media Streams messages are JSON text
CLOSE_TOO_BIG = 1009  # (sent by uvicorn itself, over ``ws_max_size``)
#: The gateway's own tools (gateway.tools): they keep their own timing (a goodbye heard, a
#: keypad timeout), so the tool timeout does not apply to them.
GATEWAY_TOOLS = frozenset({"hang_up", "transfer_call", "collect_digits"})
#: Model connection retries: the first pause, and the most any pause grows to (doubling).
CONNECT_BACKOFF_S = (0.25, 2.0)
#: One connection attempt gets at most this long (a hung handshake must leave budget for a
#: retry), and however little of the budget is left, at least the minimum.
CONNECT_ATTEMPT_S = 2.5
CONNECT_MIN_ATTEMPT_S = 1.0

#: How long a connected stream may take to send ``start``.
#: The largest WebSocket message a stream may send (uvicorn closes with 1009 beyond it; the
#: parser's own limit, for anyone feeding it directly). Real Twilio frames are ~300 bytes.
MAX_MESSAGE_BYTES = DEFAULT_MAX_SIZE


class EndReason(str, enum.Enum):
    CALLER_HUNG_UP = "caller hung up (stop)"
    AGENT_HUNG_UP = "agent hung up"
    TRANSFERRED = "transferred to a person"
    TWILIO_DISCONNECTED = "Twilio socket closed"
    MODEL_ENDED = "model ended the session"
    MODEL_FAILED = "model connection failed"
    PROTOCOL_ERROR = "malformed Twilio message"
    BINARY_FRAME = "binary frame (Media Streams is JSON text)"
    RATE_LIMITED = "message rate limit exceeded"
    TOO_BIG = "message too big"
    REFUSED = "refused before start"
    INTERNAL_ERROR = "internal error"
    CANCELLED = "cancelled"


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status of a refused WebSocket handshake (websockets' ``InvalidStatus``)."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


class StreamLimit(Exception):
    """The Twilio side sent what no Twilio stream sends (too much, too fast, binary)."""

    def __init__(self, reason: EndReason, what: str) -> None:
        super().__init__(f"{reason.value}: {what}")
        self.reason = reason


@dataclasses.dataclass
class CallRecord:
    """What is kept of a call: who, when, how it ended, what was said."""

    call_sid: str = ""
    stream_sid: str = ""
    from_: str = ""
    to: str = ""
    direction: str = "inbound"
    agent: str = ""
    started_at: float = dataclasses.field(default_factory=time.time)
    ended_at: float | None = None
    end_reason: EndReason | None = None
    #: The session's history (history_added / history_updated), as plain dicts.
    transcript: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: Gateway-level events worth keeping: tools, handoffs, interruptions, errors.
    events: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: Session event counts by type.
    counts: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    frames_in: int = 0  # caller frames received
    frames_out: int = 0  # agent frames sent
    buffered_frames: int = 0  # caller frames buffered while the model connected, then sent
    buffered_dropped: int = 0  # caller frames dropped from a full pre-connect buffer
    stale_echoes: int = 0  # mark echoes after a clear (cleared, not played)
    dropped_audio_bytes: int = 0  # model audio of interrupted items, never sent
    rollovers: int = 0  # moves to a fresh model session (session lifetime limit)
    reconnects: int = 0  # new model sessions after the connection failed mid-call

    def note(self, kind: str, **fields: Any) -> None:
        self.events.append({"t": round(time.time() - self.started_at, 3), "event": kind, **fields})


class CallLog(logging.LoggerAdapter):
    """Every line of a call carries its call SID and stream SID."""

    def process(self, msg, kwargs):
        extra = self.extra or {}
        kwargs.setdefault("extra", {}).update(extra)
        return f"[call={extra.get('call_sid', '-')} stream={extra.get('stream_sid', '-')}] {msg}", kwargs


class PlaybackTracker(RealtimePlaybackTracker):
    """The SDK's playback tracker, answered from ``Playback``: what the caller heard, from
    Twilio mark echoes, interpolated between echoes (see gateway/bridge/playback.py). The SDK
    reads ``get_state`` when the caller starts speaking over the agent and truncates the
    model's item there (agents/realtime/openai_realtime.py, speech_started handling)."""

    def __init__(self, playback: Playback, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._playback = playback
        self._clock = clock

    def get_state(self):  # type: ignore[override]
        heard = self._playback.heard(self._clock())
        if heard is None:
            return {"current_item_id": None, "current_item_content_index": None, "elapsed_ms": None}
        return {
            "current_item_id": heard.item_id,
            "current_item_content_index": heard.content_index,
            "elapsed_ms": heard.ms,
        }


def model_settings(settings: Settings) -> dict[str, Any]:
    """The session's base model settings. The SDK re-applies base settings on every session
    update (handoffs included), so the audio format set here never changes mid-call."""
    mode = settings.audio_mode.value  # "pcm16" or "g711_ulaw": the SDK's format names
    turn_detection: dict[str, Any] = {
        "type": settings.turn_detection,
        "interrupt_response": settings.interrupt_response,
        "create_response": True,
    }
    if settings.turn_detection == "semantic_vad":
        turn_detection["eagerness"] = settings.vad_eagerness
    else:
        turn_detection["silence_duration_ms"] = settings.vad_silence_ms
    return {
        "model_name": settings.model,
        "voice": settings.voice,
        "input_audio_format": mode,
        "output_audio_format": mode,
        "input_audio_transcription": {"model": settings.transcription_model},
        "turn_detection": turn_detection,
    }


def model_config(settings: Settings, tracker: RealtimePlaybackTracker) -> dict[str, Any]:
    config: dict[str, Any] = {"initial_model_settings": model_settings(settings), "playback_tracker": tracker}
    if settings.openai_realtime_url:
        config["url"] = settings.openai_realtime_url
    if settings.openai_api_key:
        config["api_key"] = settings.openai_api_key
    elif settings.openai_realtime_url:
        # A local server needs no key; passing headers skips the SDK's key requirement.
        config["headers"] = {}
    return config


class Call:
    """One phone call. ``await Call(...).run()`` returns when the call is over."""

    def __init__(
        self,
        websocket: WebSocket,
        settings: Settings,
        tokens: CallTokens,
        agent_source: AgentSource,
        *,
        on_start: Callable[[Call], None] | None = None,
        rest: TwilioRest | None = None,
        on_digit: DigitHandler | None = None,
        on_event: EventHook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.websocket = websocket
        self.settings = settings
        self.tokens = tokens
        self.agent_source = agent_source
        self.clock = clock
        self.record = CallRecord()
        self.log = CallLog(log, {})
        self.stream = MediaStream()
        self.info: CallInfo | None = None
        mode: AudioMode = settings.audio_mode
        self.inbound = InboundTranscoder(mode)
        self.playback = Playback(OutboundTranscoder(mode), settings.mark_interval_ms)
        self.tracker = PlaybackTracker(self.playback, clock)
        self.session: RealtimeSession | None = None
        self.agent: RealtimeAgent | None = None  # the starting agent
        self.current_agent: RealtimeAgent | None = None  # after handoffs
        self._on_start = on_start
        self._ready = False  # model connected and pre-connect audio flushed
        self._buffer: collections.deque[bytes] = collections.deque()
        self._buffer_limit = max(1, settings.inbound_buffer_ms // 20)
        self._end_reason: EndReason | None = None
        self._model_exception: str | None = None
        self.control = CallControl(self, rest, clock)
        self._on_digit = on_digit
        self._on_event = on_event
        self.silence: SilenceMonitor | None = None
        self._timer_wake = asyncio.Event()
        self._agent_speaking = False
        self._connected_at = clock()
        self._pending_notes: list[str] = []  # system notes for the model, sent once it is ready
        self._rate = MessageRate(settings.max_message_rate, settings.max_message_burst, clock())

    # --- Lifecycle -----------------------------------------------------------------------

    async def run(self) -> CallRecord:
        try:
            start = await self._await_start()
            if start is None:
                return self.record
            try:
                agent = self.agent = self.current_agent = await agent_for_call(self.agent_source, self.info)
            except Exception:  # the application's factory failed: end this call, say why
                self.log.exception("ending call: the agent factory failed")
                self._end(EndReason.INTERNAL_ERROR)
                return self.record
            self.record.agent = agent.name
            guard_tools(agent, self.settings.tool_timeout_s, exempt=GATEWAY_TOOLS, log=self.log)
            twilio_task = asyncio.create_task(self._read_twilio(), name=f"twilio-{self.info.call_sid}")
            try:
                await self._converse(agent, twilio_task)
            finally:
                if not twilio_task.done():
                    twilio_task.cancel()
                await asyncio.gather(twilio_task, return_exceptions=True)
        except asyncio.CancelledError:
            self._end(EndReason.CANCELLED)
            raise
        finally:
            await self._close_socket()
            record = self.record
            record.ended_at = time.time()
            record.end_reason = self._end_reason
            record.stale_echoes = self.playback.stale_echoes
            record.dropped_audio_bytes = self.playback.dropped_bytes
            if self.info is not None:
                self.log.info(
                    "call ended: %s; %.1f s, frames in %d out %d, buffered-dropped %d, stale echoes %d",
                    self._end_reason.value if self._end_reason else "?",
                    record.ended_at - record.started_at,
                    record.frames_in, record.frames_out, record.buffered_dropped, record.stale_echoes,
                )
        return self.record

    async def _converse(self, agent: RealtimeAgent, twilio_task: asyncio.Task[None]) -> None:
        session = await self._connect(agent)
        if session is None:  # the caller must not hang on: closing the stream runs the fallback
            self._end(EndReason.MODEL_FAILED)
            return
        self.session = session
        try:
            await self._flush_buffer()
            if self.settings.greeting:
                await self._greet()
            session_task = asyncio.create_task(self._read_session(), name=f"session-{self.info.call_sid}")
            timer_task = asyncio.create_task(self._run_timers(), name=f"timers-{self.info.call_sid}")
            try:
                await asyncio.wait({twilio_task, session_task}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (twilio_task, session_task, timer_task):
                    if not task.done():
                        task.cancel()
                await asyncio.gather(twilio_task, session_task, timer_task, return_exceptions=True)
                for task in (twilio_task, session_task, timer_task):
                    if not task.cancelled() and task.exception() is not None:
                        # Each task handles what it expects; anything else is our bug: say so.
                        self.log.error("internal error in %s", task.get_name(), exc_info=task.exception())
                        self._end(EndReason.INTERNAL_ERROR)
        finally:
            current, self.session = self.session, None
            await session.close()
            if current is not None and current is not session:
                await current.close()

    async def _new_session(self, agent: RealtimeAgent) -> RealtimeSession:
        runner = RealtimeRunner(agent, config=RealtimeRunConfig(async_tool_calls=True))
        return await runner.run(context=self.info, model_config=model_config(self.settings, self.tracker))

    async def _connect(self, agent: RealtimeAgent) -> RealtimeSession | None:
        """A connected session, retried with backoff within ``model_connect_budget_s``
        (refused, timed out, 429, 5xx); None once the budget is spent, at once for a refused
        key (401/403: retrying cannot help), or when the caller has gone."""
        deadline = self.clock() + self.settings.model_connect_budget_s
        delay = CONNECT_BACKOFF_S[0]
        for attempt in itertools.count(1):
            session = await self._new_session(agent)
            try:
                remaining = deadline - self.clock()
                timeout = max(min(remaining, CONNECT_ATTEMPT_S), CONNECT_MIN_ATTEMPT_S)
                async with asyncio.timeout(timeout):
                    await session.__aenter__()
                if attempt > 1:
                    self.log.info("model connected on attempt %d", attempt)
                return session
            except Exception as exc:
                with contextlib.suppress(Exception):
                    await session.close()
                status = _http_status(exc)
                retry = status not in (401, 403) and not self._twilio_gone() and self._end_reason is None
                self.log.warning("model connection attempt %d failed: %s%s", attempt,
                                 f"HTTP {status}" if status else type(exc).__name__, f" ({exc})" if str(exc) else "")
                if not retry or self.clock() + delay >= deadline:
                    self.log.error("could not reach the model after %d attempt(s); the caller gets the fallback",
                                   attempt)
                    return None
                await asyncio.sleep(delay)
                delay = min(delay * 2, CONNECT_BACKOFF_S[1])
        raise AssertionError("unreachable")  # pragma: no cover

    async def _seed(self, session: RealtimeSession) -> None:
        """Give a fresh session the conversation so far."""
        for item in self._history_items():
            await session.model.send_event(RealtimeModelSendRawMessage(
                message={"type": "conversation.item.create", "other_data": {"item": item}}))

    async def _reconnect(self, failure: str) -> bool:
        """The model's socket failed mid-call: connect again (within the budget), carry the
        conversation over and go on. Caller audio is buffered meanwhile."""
        started = self.clock()
        self._ready = False
        self.log.error("model session failed mid-call (%s); reconnecting", failure)
        old = self.session
        new = await self._connect(self.current_agent)
        if new is None:
            return False
        try:
            await self._seed(new)
        except Exception as exc:
            self.log.error("reconnected, but could not restore the conversation: %s", exc)
            await new.close()
            return False
        self.session = new
        self.playback.interrupt()  # the old session's items are gone with it
        with contextlib.suppress(Exception):
            await old.close()
        await self._flush_buffer()
        self.record.reconnects += 1
        self.note_control("model_reconnected", seconds=round(self.clock() - started, 3))
        self.log.info("model reconnected in %.0f ms; the conversation goes on", 1000 * (self.clock() - started))
        return True

    def _peer(self) -> str:
        client = self.websocket.client
        return f"[peer={client.host}:{client.port}]" if client else "[peer=?]"

    def _end(self, reason: EndReason) -> None:
        if self._end_reason is None:
            self._end_reason = reason

    async def _close_socket(self) -> None:
        if self.websocket.application_state == WebSocketState.DISCONNECTED:
            return
        code = {
            EndReason.PROTOCOL_ERROR: CLOSE_PROTOCOL,
            EndReason.REFUSED: CLOSE_POLICY,
            EndReason.RATE_LIMITED: CLOSE_POLICY,
            EndReason.BINARY_FRAME: CLOSE_UNSUPPORTED,
            EndReason.MODEL_FAILED: CLOSE_INTERNAL,
        }.get(self._end_reason, CLOSE_NORMAL)
        try:
            await self.websocket.close(code)
        except (WebSocketDisconnect, RuntimeError, OSError):  # the peer closed first: done
            pass

    # --- Twilio side -----------------------------------------------------------------------

    async def _receive(self) -> str | None:
        """The next Twilio frame, or None when the socket closed. Raises ``StreamLimit`` for
        a frame no Twilio stream sends: binary, or over the message rate."""
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            if message.get("code") == CLOSE_TOO_BIG:
                raise StreamLimit(EndReason.TOO_BIG, f"a message over {MAX_MESSAGE_BYTES} bytes")
            return None
        if not self._rate.allow(self.clock()):
            raise StreamLimit(EndReason.RATE_LIMITED, f"more than {self.settings.max_message_rate} "
                              f"messages/s (burst {self.settings.max_message_burst})")
        text = message.get("text")
        if text is None:
            raise StreamLimit(EndReason.BINARY_FRAME, "a binary frame")
        return text

    async def _await_start(self) -> Start | None:
        """Read until ``start``; verify the call token before anything costs money."""
        try:
            async with asyncio.timeout(self.settings.start_timeout_s):
                while True:
                    data = await self._receive()
                    if data is None:
                        self._end(EndReason.TWILIO_DISCONNECTED)
                        return None
                    message = self.stream.receive(data)
                    if isinstance(message, Start):
                        break
                    if isinstance(message, UnknownEvent):
                        log.warning("unknown Twilio event before start: %r", message.event)
        except TimeoutError:
            log.warning("%s stream refused: no start within %d s", self._peer(), self.settings.start_timeout_s)
            self._end(EndReason.REFUSED)
            return None
        except ProtocolError as exc:
            log.warning("%s stream refused before start: %s", self._peer(), exc)
            self._end(EndReason.PROTOCOL_ERROR)
            return None
        except StreamLimit as exc:
            log.warning("%s stream refused before start: %s", self._peer(), exc)
            self._end(exc.reason)
            return None
        params = dict(message.custom_parameters)
        self.log = CallLog(log, {"call_sid": message.call_sid, "stream_sid": message.stream_sid})
        # Inbound tokens are bound to the call SID; outbound TwiML is written before Twilio
        # assigns one, so those are bound to our own call reference (itself signed).
        outbound = params.get("direction") == "outbound"
        subject = params.get("ref", "") if outbound else message.call_sid
        try:
            self.tokens.verify(params.get(TOKEN_PARAMETER), subject, params, now=time.time())
        except InvalidCallToken as exc:
            self.log.warning("stream refused before any model connection: %s", exc)
            self._end(EndReason.REFUSED)
            return None
        self.info = CallInfo(
            call_sid=message.call_sid,
            stream_sid=message.stream_sid,
            account_sid=message.account_sid,
            from_=params.get("from", ""),
            to=params.get("to", ""),
            parameters=params,
            control=self.control,
        )
        self.record.call_sid, self.record.stream_sid = message.call_sid, message.stream_sid
        self.record.from_, self.record.to = self.info.from_, self.info.to
        self.record.direction = "outbound" if outbound else "inbound"
        if "agent" in params:  # an outbound call placed with its own agent (signed parameter)
            try:
                self.agent_source = load_agent_source(params["agent"])
            except ValueError as exc:  # checked when placed; the deployment changed since
                self.log.error("ending call: %s", exc)
                self._end(EndReason.INTERNAL_ERROR)
                return None
        self.log.info("call started: from %s to %s", self.info.from_ or "?", self.info.to or "?")
        if self._on_start is not None:
            self._on_start(self)
        return message

    async def _read_twilio(self) -> None:
        try:
            while True:
                data = await self._receive()
                if data is None:
                    self._end(EndReason.TWILIO_DISCONNECTED)
                    return
                message = self.stream.receive(data)
                if isinstance(message, Media):
                    await self._caller_audio(message.payload)
                elif isinstance(message, Mark):
                    self._mark_echoed(message.name)
                elif isinstance(message, Dtmf):
                    try:
                        await self._digit(message.digit)
                    except ConnectionClosed:  # the model's socket failed; the reader reconnects
                        self.log.warning("keypress %s lost: the model connection dropped", message.digit)
                elif isinstance(message, Stop):
                    self._end(EndReason.CALLER_HUNG_UP)
                    return
                elif isinstance(message, UnknownEvent):
                    self.log.warning("ignoring unknown Twilio event %r", message.event)
        except ProtocolError as exc:
            self.log.error("ending call: %s", exc)
            self._end(EndReason.PROTOCOL_ERROR)
        except StreamLimit as exc:
            self.log.error("ending call: %s", exc)
            self._end(exc.reason)
        except WebSocketDisconnect:
            self._end(EndReason.TWILIO_DISCONNECTED)

    async def _caller_audio(self, payload: bytes) -> None:
        self.record.frames_in += 1
        audio = self.inbound.convert(payload)
        if self._ready:
            session = self.session
            try:
                await session.send_audio(audio)
                return
            except ConnectionClosed:
                if session is not self.session:
                    return  # in flight to a session just rolled over and closed: 20 ms lost
                # The model's socket failed: keep the audio for the reconnected session (the
                # session reader sees the failure and reconnects, or ends the call).
                self._ready = False
        if len(self._buffer) >= self._buffer_limit:
            self._buffer.popleft()
            self.record.buffered_dropped += 1
        self._buffer.append(audio)

    async def _flush_buffer(self) -> None:
        """Send the audio that arrived while the model was connecting, then go live. Frames
        that arrive during the flush join the buffer; going live happens with no await between
        the last emptiness check and the flag, so no frame is lost or reordered."""
        sent = 0
        while self._buffer:
            await self.session.send_audio(self._buffer.popleft())
            sent += 1
        self._ready = True
        self.record.buffered_frames = sent
        if sent:
            self.log.info("sent %d ms of caller audio buffered while the model connected", sent * 20)

    def _mark_echoed(self, name: str) -> None:
        played = self.playback.mark_echoed(name, self.clock())
        if played is not None and played.ms:
            self.tracker.on_play_ms(played.item_id, played.content_index, played.ms)
        self._agent_speech_changed()
        self.control.changed()

    async def _digit(self, digit: str) -> None:
        consumed = self.control.digit(digit)
        if not consumed and self._on_digit is not None:
            try:
                handled = self._on_digit(self.info, digit)
                consumed = bool(await handled if inspect.isawaitable(handled) else handled)
            except Exception:  # the application's bug must not end the call
                self.log.exception("digit handler failed on %s", digit)
        self.log.info("caller pressed %s%s", digit, " (collected)" if consumed else "")
        self.record.note("dtmf", digit=digit, collected=consumed)
        if consumed:
            self._timer_wake.set()
        elif self._ready:
            await self.session.send_message(f"The caller pressed the {digit} key on their phone.")

    async def _send(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, SendMedia):
                self.record.frames_out += 1
                await self.websocket.send_text(self.stream.media(action.payload))
            elif isinstance(action, SendMark):
                await self.websocket.send_text(self.stream.mark(action.name))
            elif isinstance(action, SendClear):
                await self.websocket.send_text(self.stream.clear())
        self._agent_speech_changed()

    def _agent_speech_changed(self) -> None:
        speaking = self.playback.speaking
        if speaking != self._agent_speaking:
            self._agent_speaking = speaking
            if self.silence is not None:
                self.silence.agent_speech(speaking, self.clock())
                self._timer_wake.set()

    # --- Call control (used by CallControl and the timers) -------------------------------------

    @property
    def call_sid(self) -> str:
        return self.info.call_sid if self.info else ""

    @property
    def log_prefix(self) -> str:
        return f"[call={self.call_sid or '-'} stream={self.record.stream_sid or '-'}]"

    def note_control(self, kind: str, **fields: Any) -> None:
        """A call event (hang-up, transfer): in the log's record and in the transcript."""
        self.record.note(kind, **fields)
        self.record.transcript.append({"type": "call_event", "event": kind, **fields})

    def mark_hung_up(self, reason: str) -> None:
        self._end(EndReason.AGENT_HUNG_UP)
        self.log.info("hanging up (%s)", reason)

    def answered_by(self, answered_by: str) -> None:
        """Twilio's answering-machine detection result (outbound calls): tell the agent."""
        self.record.note("answered_by", answered_by=answered_by)
        if answered_by == "human":
            text = "A person answered the phone."
        elif answered_by.startswith("machine") or answered_by == "fax":
            text = ("An answering machine answered, not a person. Leave a brief message now, "
                    "then end the call with hang_up.")
        else:
            text = "It is not known whether a person or a machine answered."
        self._pending_notes.append(f"(Call status: {text})")
        self._timer_wake.set()

    def mark_transferred(self) -> None:
        self._end(EndReason.TRANSFERRED)

    async def end_stream(self) -> None:
        """Close the Media Stream ourselves: Twilio then runs the TwiML after <Connect>."""
        await self._close_socket()

    async def _run_timers(self) -> None:
        """Silence check-ins, keypad timeouts and the call's maximum duration."""
        settings, control = self.settings, self.control
        if settings.silence_check_in_s or settings.silence_give_up_s:
            self.silence = SilenceMonitor(settings.silence_check_in_s, settings.silence_give_up_s, self.clock())
        max_deadline = self._connected_at + settings.max_call_s if settings.max_call_s else None
        rollover_at = self._connected_at + settings.session_rollover_s if settings.session_rollover_s else None
        while True:
            deadlines = [d for d in (
                self.silence.deadline() if self.silence else None, control.collection_deadline(), max_deadline,
                rollover_at,
            ) if d is not None]
            self._timer_wake.clear()
            timeout = max(0.0, min(deadlines) - self.clock()) if deadlines else None
            try:
                async with asyncio.timeout(timeout):  # not wait_for: it can swallow a cancel on 3.11
                    await self._timer_wake.wait()
            except TimeoutError:
                pass
            now = self.clock()
            control.tick(now)
            while self._pending_notes and self._ready:
                await self.session.send_message(self._pending_notes.pop(0))
            if control.ending is not None:
                return
            if max_deadline is not None and now >= max_deadline:
                self.log.info("maximum call duration (%d s) reached", settings.max_call_s)
                await self._goodbye("This call has reached its maximum length.", reason="maximum duration")
                return
            if rollover_at is not None and now >= rollover_at:
                if await self._rollover():
                    rollover_at = self.clock() + settings.session_rollover_s
                else:
                    rollover_at = self.clock() + ROLLOVER_RETRY_S
                continue
            action = self.silence.due(now) if self.silence else None
            if action is SilenceAction.CHECK_IN:
                self.log.info("caller silent: checking in")
                self.record.note("silence_check_in")
                await self.ask(CHECK_IN_REQUEST)
            elif action is SilenceAction.GIVE_UP:
                self.log.info("caller still silent: ending the call")
                await self._goodbye("The caller has been silent for too long.", reason="silence")
                return

    async def _rollover(self) -> bool:
        """Move the call to a fresh model session before the current one hits the Realtime
        API's session lifetime limit, carrying the conversation so far.

        Done at a quiet moment (no response in progress, nothing unheard, the caller not
        speaking); the caller's audio keeps flowing (to the old session until the swap) and
        hears no more than the new session's connection time as a pause, if anything.
        """
        control = self.control
        quiet = await control.wait_until(
            lambda: control.quiet() and not (self.silence and self.silence.caller_speaking), ROLLOVER_QUIET_WAIT_S
        )
        if not quiet or control.ending is not None:
            self.log.info("session rollover postponed: the conversation is not at a pause")
            return False
        started = self.clock()
        old = self.session
        new = await self._new_session(self.current_agent)
        try:
            await new.__aenter__()
            await self._seed(new)
        except Exception as exc:
            self.log.error("session rollover failed, staying on the current session: %s: %s", type(exc).__name__, exc)
            await new.close()
            return False
        self.session = new  # caller audio now goes to the new session
        # Nothing is playing (a pause): forget the old session's items, so that a barge-in on
        # the new session can never truncate an item the new session does not have.
        self.playback.interrupt()
        await old.close()  # the reader task moves on to the new session
        self.record.rollovers += 1
        self.note_control("session_rollover", seconds=round(self.clock() - started, 3))
        self.log.info("rolled over to a new model session in %.0f ms", 1000 * (self.clock() - started))
        return True

    def _history_items(self) -> list[dict[str, Any]]:
        """The conversation so far as conversation.item.create items (text: the model's
        audio replies are carried by their transcripts). Assistant text goes as ``output_text``
        content, the GA type for text an assistant said; whether the live API accepts it in an
        audio session is not observable here (openai/types/realtime, assistant message param)."""
        items = []
        for entry in self.record.transcript:
            text, role = entry.get("text"), entry.get("role")
            if entry.get("type") != "message" or not text or role not in ("user", "assistant"):
                continue
            kind = "input_text" if role == "user" else "output_text"
            items.append({"type": "message", "role": role, "content": [{"type": kind, "text": text}]})
        return items

    async def _goodbye(self, why: str, *, reason: str) -> None:
        before = self.control.responses_started
        await self.ask(GOODBYE_REQUEST.format(why=why))
        await self.control.heard_out_after(before)
        await self.control.hang_up(reason=reason, after_tool=None)

    # --- Model side -------------------------------------------------------------------------

    async def _greet(self) -> None:
        await self.ask(self.settings.greeting)

    async def ask(self, request: str) -> None:
        """Have the agent speak now (greeting, check-in, goodbye) without a fake user message in
        the history: a response.create whose instructions are the agent's own plus the request."""
        instructions = request
        own = await self.agent.get_system_prompt(RunContextWrapper(self.info))
        if own:
            instructions = f"{own}\n\n{request}"
        await self.session.model.send_event(
            RealtimeModelSendRawMessage(
                message={"type": "response.create", "other_data": {"response": {"instructions": instructions}}}
            )
        )

    def _observe(self, event: Any) -> None:
        try:
            self._on_event(self, event)
        except Exception:  # an observer's bug must not end the call
            self.log.exception("the on_event hook failed on %s", event.type)

    async def _read_session(self) -> None:
        """Handle session events until the session ends: cleanly (the call ends), or by a
        failure (reconnect and go on, or end the call if that fails)."""
        while True:
            failure = await self._read_until_end()
            if self._end_reason is not None or self._twilio_gone():
                # The call is already over (stop, or the socket went): sends fail, nothing to do.
                self._end(EndReason.TWILIO_DISCONNECTED)
                return
            if failure is None:
                self.log.info("model ended the session")
                self._end(EndReason.MODEL_ENDED)
                return
            if not await self._reconnect(failure):
                self._end(EndReason.MODEL_FAILED)
                return

    async def _read_until_end(self) -> str | None:
        """Read sessions (following rollovers) until one ends: None if it ended cleanly, else
        what failed."""
        self._model_exception = None
        try:
            debug = self.log.isEnabledFor(logging.DEBUG)
            while True:
                session = self.session
                async for event in session:
                    self.record.counts[event.type] += 1
                    if debug:  # every event, with the call SID; INFO lines come from the handlers
                        self.log.debug("session event %s", event.type)
                    if self._on_event is not None:
                        self._observe(event)
                    handler = HANDLERS.get(event.type)
                    if handler is None:
                        self.log.warning("unhandled session event %r", event.type)
                        continue
                    await handler(self, event)
                if self.session is session:
                    break
                # Rolled over to a new session (the old one was closed): read the new one.
        except ConnectionClosedOK:
            return None
        except Exception as exc:  # the SDK raises on an abnormal close
            return f"{type(exc).__name__}: {exc}"
        # The SDK's iterator checks "closing and queue empty" before its stored exception
        # (agents/realtime/session.py, __aiter__), so a failed transport can end iteration
        # quietly if the session is closing; the raw exception event the SDK emitted first
        # still tells a failure from a clean end.
        return self._model_exception

    def _twilio_gone(self) -> bool:
        return WebSocketState.DISCONNECTED in (self.websocket.client_state, self.websocket.application_state)

    async def on_audio(self, event) -> None:
        await self._send(self.playback.audio(event.item_id, event.content_index, event.audio.data, self.clock()))

    async def on_audio_end(self, event) -> None:
        await self._send(self.playback.audio_end(event.item_id, event.content_index, self.clock()))

    async def on_audio_interrupted(self, event) -> None:
        # The SDK reports this at every speech_started once the model has spoken at all
        # (openai_realtime.py, "input_audio_buffer.speech_started": it only checks that an
        # audio item exists). With everything heard and nothing streaming, there is nothing
        # to cut: no clear, no barge-in.
        if not self.playback.interruptible:
            self.log.debug("speech started with the agent silent: nothing to clear")
            return
        heard = self.playback.heard(self.clock())
        await self._send(self.playback.interrupt(event.item_id))
        self.control.interrupted()
        self.log.info(
            "barge-in: cleared playback of %s at %.0f ms heard",
            event.item_id, heard.ms if heard else 0.0,
        )
        self.record.note("interrupted", item_id=event.item_id, heard_ms=round(heard.ms) if heard else 0)

    async def on_guardrail_tripped(self, event) -> None:
        await self._send(self.playback.interrupt())
        names = [r.guardrail.get_name() for r in event.guardrail_results]
        self.log.warning("output guardrail tripped (%s): playback cleared", ", ".join(names))
        self.record.note("guardrail_tripped", guardrails=names, message=event.message)

    async def on_agent_start(self, event) -> None:
        self.log.debug("agent %s responding", event.agent.name)
        self.control.response_started()

    async def on_agent_end(self, event) -> None:
        self.log.debug("agent %s done", event.agent.name)
        self.control.response_ended()

    async def on_tool_start(self, event) -> None:
        self.log.info("tool %s started: %s", event.tool.name, _short(event.arguments))
        self.record.note("tool_start", tool=event.tool.name, arguments=event.arguments)
        # Everything the agent said before calling the tool has now been sent to Twilio.
        self.control.tool_started(event.tool.name)

    async def on_tool_end(self, event) -> None:
        self.log.info("tool %s finished: %s", event.tool.name, _short(str(event.output)))
        self.record.note("tool_end", tool=event.tool.name, output=str(event.output))

    async def on_tool_approval_required(self, event) -> None:
        # Nobody can click "approve" on a phone call: the policy decides, at once.
        if self.settings.tool_approval == "approve":
            await self.session.approve_tool_call(event.call_id)
        else:
            await self.session.reject_tool_call(
                event.call_id, rejection_message=f"The tool {event.tool.name} is not permitted on this call."
            )
        self.log.info("tool %s needed approval: %sd by policy", event.tool.name, self.settings.tool_approval)
        self.record.note("tool_approval", tool=event.tool.name, decision=self.settings.tool_approval)

    async def on_handoff(self, event) -> None:
        # The SDK sends the new agent's instructions and tools in a session.update built on our
        # base settings, so voice and audio formats stay as they were.
        self.record.agent = event.to_agent.name
        self.current_agent = event.to_agent
        guard_tools(event.to_agent, self.settings.tool_timeout_s, exempt=GATEWAY_TOOLS, log=self.log)
        self.log.info("handoff: %s -> %s", event.from_agent.name, event.to_agent.name)
        self.record.note("handoff", from_agent=event.from_agent.name, to_agent=event.to_agent.name)

    async def on_history_added(self, event) -> None:
        item = _item_dict(event.item)
        for i, existing in enumerate(self.record.transcript):
            if existing.get("item_id") == item.get("item_id"):
                self.record.transcript[i] = item
                return
        self.record.transcript.append(item)

    async def on_history_updated(self, event) -> None:
        self.record.transcript = [_item_dict(item) for item in event.history]

    async def on_error(self, event) -> None:
        # Model errors (and events the SDK could not validate) do not end the call by
        # themselves; a dropped connection ends the session iterator instead.
        self.log.error("model error: %s", _short(str(event.error), 300))
        self.record.note("error", error=_short(str(event.error), 300))

    async def on_raw_model_event(self, event) -> None:
        # Every server message also arrives here; the typed events carry the meaning. Only a
        # transport exception matters: it is how a failed connection is told from a clean end.
        kind = getattr(event.data, "type", None)
        if kind == "raw_server_event":
            server_type = event.data.data.get("type") if isinstance(event.data.data, dict) else None
            if server_type in ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped"):
                if self.silence is not None:  # the caller speaking or done: the silence clock
                    self.silence.caller_speech(server_type.endswith("started"), self.clock())
                    self._timer_wake.set()
        elif kind == "exception":
            self._model_exception = f"{type(event.data.exception).__name__}: {event.data.exception} ({event.data.context})"

    async def on_input_audio_timeout_triggered(self, event) -> None:
        self.log.info("caller silent past the model's idle timeout")
        self.record.note("input_audio_timeout")


#: Session event type -> handling. docs/events.md is this table in prose; a test checks that
#: every event type the SDK defines is here.
HANDLERS: dict[str, Callable[[Call, Any], Awaitable[None]]] = {
    "agent_start": Call.on_agent_start,
    "agent_end": Call.on_agent_end,
    "handoff": Call.on_handoff,
    "tool_start": Call.on_tool_start,
    "tool_end": Call.on_tool_end,
    "tool_approval_required": Call.on_tool_approval_required,
    "raw_model_event": Call.on_raw_model_event,
    "audio": Call.on_audio,
    "audio_end": Call.on_audio_end,
    "audio_interrupted": Call.on_audio_interrupted,
    "error": Call.on_error,
    "history_updated": Call.on_history_updated,
    "history_added": Call.on_history_added,
    "guardrail_tripped": Call.on_guardrail_tripped,
    "input_audio_timeout_triggered": Call.on_input_audio_timeout_triggered,
}


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _item_dict(item: Any) -> dict[str, Any]:
    """A history item as plain data: role, status, text (transcripts joined)."""
    data = item.model_dump(mode="json") if hasattr(item, "model_dump") else dict(item)
    text_parts = []
    for part in data.get("content", []) or []:
        text = part.get("transcript") or part.get("text")
        if text:
            text_parts.append(text)
    out = {"item_id": data.get("item_id"), "type": data.get("type"), "role": data.get("role"), "status": data.get("status")}
    if text_parts:
        out["text"] = " ".join(text_parts)
    if data.get("type") == "function_call":
        out.update(name=data.get("name"), arguments=data.get("arguments"), output=data.get("output"))
    return out
