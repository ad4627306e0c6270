"""``CallRunner``: one phone call's asyncio edge. ``await CallRunner(...).run()`` returns the
call's record when the call is over.

It feeds the sans-I/O ``Call`` (gateway/bridge/call.py) with what happens, stamped with the
clock, and carries out the actions it returns. Three tasks per call:

- the Twilio reader: each frame goes to the call; caller audio goes on to the model at once,
  one append per 20 ms frame (no batching: every batched frame adds 20 ms of latency);
- the session reader: each session event goes to the call; agent audio, marks and ``clear``
  go to Twilio from here only, so they keep their order;
- the timer: sleeps until the call's next deadline, or until an input moved it (one wake-up
  for the whole call), then tells the call the time; it runs from the stream's start, so the
  caller hears hold audio if the model is slow to come.

Slow actions (Twilio REST calls, a session rollover) run in tasks of their own, so no reader
ever waits on them. The call ends when either side ends (Twilio ``stop`` or the socket
closed, the model ending or dropping the session for good); the other tasks are cancelled,
the model session closed and the socket closed with the code the ending calls for.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Union

from starlette.websockets import WebSocket

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
    SendClear,
    SendMark,
    SendMedia,
    TellModel,
    Transfer,
)
from gateway.bridge.agents import AgentSource, CallInfo, agent_for_call, load_agent_source
from gateway.bridge.call import Call, Phase
from gateway.bridge.control import CallControl
from gateway.bridge.ending import EndReason
from gateway.bridge.media import TwilioSocket
from gateway.bridge.model import SESSION_GONE, ModelLink, PlaybackTracker
from gateway.bridge.record import CallRecord
from gateway.recording import CallRecording
from gateway.security import CallTokens
from gateway.settings import Settings
from gateway.twilio.rest import TwilioRest, TwilioRestError

#: An application's keypress handler: ``(call, digit) -> True`` if it handled the digit (then
#: the model does not hear of it); may be async. ``call.control`` can hang up, transfer, etc.
DigitHandler = Callable[[CallInfo, str], Union[bool, Awaitable[bool]]]
#: ``on_event(call, event)``: sees every session event of every call, in order, before the
#: gateway handles it (for recorders, metrics, the demo's live view). It runs on the event
#: loop between events, so it must be quick and must not block; an exception it raises is
#: logged and the call goes on.
EventHook = Callable[["CallRunner", Any], None]

_TWILIO = (SendMedia, SendMark, SendClear)
#: Once the socket has gone, how long the Twilio reader may take over what was read before the
#: close (a ``stop``, behind a frame it is still busy with) before the call ends as disconnected.
READER_GRACE_S = 2.0


class CallRunner:
    """One phone call: the Media Stream ``websocket`` bridged to an agent's realtime session."""

    def __init__(
        self,
        websocket: WebSocket,
        settings: Settings,
        tokens: CallTokens,
        agent_source: AgentSource,
        *,
        on_start: Callable[[CallRunner], None] | None = None,
        rest: TwilioRest | None = None,
        on_digit: DigitHandler | None = None,
        on_event: EventHook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.agent_source = agent_source
        self.rest = rest
        self.clock = clock
        self.call = Call(settings, tokens, now=clock(), wall=time.time(), has_digit_hook=on_digit is not None)
        self.socket = TwilioSocket(websocket, self.call, clock)
        self.call.peer = self.socket.peer
        self._wake = asyncio.Event()  # the call's one wake-up: a deadline moved, or a tool asked
        self.control = CallControl(self.call, self._wake, clock)
        self.tracker = PlaybackTracker(self.call.playback, clock)
        self.info: CallInfo | None = None
        self.model: ModelLink | None = None
        self._on_start = on_start
        self._on_digit = on_digit
        self._on_event = on_event
        self._background: set[asyncio.Task[None]] = set()
        #: ``GATEWAY_RECORD``: the call's recording, from its ``start`` (``gateway.recording``).
        self.recording: CallRecording | None = None

    @property
    def record(self) -> CallRecord:
        return self.call.record

    @property
    def speaking(self) -> str:
        """Who is speaking now: ``"caller"``, ``"agent"`` or ``""`` (``Call.speaking``)."""
        return self.call.speaking

    @property
    def call_sid(self) -> str:
        return self.call.info.call_sid if self.call.info else ""

    @property
    def log(self) -> logging.LoggerAdapter:
        return self.call.log

    # --- Lifecycle -------------------------------------------------------------------------------

    async def run(self) -> CallRecord:
        call = self.call
        try:
            if not await self._await_start():
                return call.record
            try:
                agent = await agent_for_call(self.agent_source, self.info)
            except Exception:  # the application's factory failed: end this call, say why
                self.log.exception("ending call: the agent factory failed")
                call.end(EndReason.INTERNAL_ERROR, self.clock())
                return call.record
            call.agent_chosen(agent.name, self.clock())
            self.model = ModelLink(self.settings, self.info, self.tracker, call.log, self.clock)
            self.model.use(agent)
            self.model.on_speech_started = self._speech_started
            self.model.on_speech_heard = self._speech_heard
            twilio_task = asyncio.create_task(self._read_twilio(), name=f"twilio-{self.call_sid}")
            try:
                await self._converse(twilio_task)
            finally:
                if not twilio_task.done():
                    twilio_task.cancel()
                await asyncio.gather(twilio_task, return_exceptions=True)
        except asyncio.CancelledError:
            call.end(EndReason.CANCELLED, self.clock())
            raise
        finally:
            await self.execute([call.close_stream()])
            record = call.finish(self.clock())
            if call.info is not None:
                self.log.info(
                    "call ended: %s; %.1f s, frames in %d out %d, buffered-dropped %d, stale echoes %d",
                    record.end_reason.value if record.end_reason else "?",
                    (record.ended_at or record.started_at) - record.started_at,
                    record.frames_in, record.frames_out, record.buffered_dropped, record.stale_echoes,
                )
            if self.recording is not None:  # written (in threads) before the record is handed on
                record.recording = await self.recording.finish(self.clock())
        return call.record

    async def _await_start(self) -> bool:
        """Read until a valid ``start`` (the call checks the token before anything costs
        money), within the start timeout."""
        call = self.call
        deadline = call.next_deadline()
        try:
            async with asyncio.timeout(max(0.0, deadline - self.clock())):
                while call.phase is Phase.AWAITING_START:
                    await self.execute(await self.socket.receive())
        except TimeoutError:
            await self.execute(call.tick(max(self.clock(), deadline)))
        if call.finished:
            return False
        start = call.info
        if self.settings.record:  # sample 0 is now, the stream's start
            self.recording = CallRecording(self.settings.data_dir, start.call_sid, call.record.started_at,
                                           self.clock(), self.log)
            call.on_caller_audio = self.recording.caller
            call.on_collecting = self.recording.collecting  # keys: a PIN is not kept
        self.info = CallInfo(
            call_sid=start.call_sid, stream_sid=start.stream_sid, account_sid=start.account_sid,
            from_=start.from_, to=start.to, parameters=start.parameters, control=self.control,
        )
        if "agent" in start.parameters:  # an outbound call placed with its own agent (signed parameter)
            try:
                self.agent_source = load_agent_source(start.parameters["agent"])
            except ValueError as exc:  # checked when placed; the deployment changed since
                self.log.error("ending call: %s", exc)
                call.end(EndReason.INTERNAL_ERROR, self.clock())
                return False
        if self._on_start is not None:
            self._on_start(self)
        return True

    async def _converse(self, twilio_task: asyncio.Task[None]) -> None:
        call, model = self.call, self.model
        # The timer runs from the start: hold audio if the model is slow to come.
        tasks = [twilio_task, asyncio.create_task(self._run_timers(), name=f"timers-{self.call_sid}")]
        try:
            connecting = self.clock()
            if not await model.start(self._wanted):  # the caller must not hang on: closing runs the fallback
                call.end(EndReason.MODEL_FAILED, self.clock())
                return
            await self.execute(call.model_connected(self.clock() - connecting, self.clock()))
            await self._go_live()
            session_task = asyncio.create_task(self._read_session(), name=f"session-{self.call_sid}")
            tasks.append(session_task)
            await asyncio.wait({twilio_task, session_task}, return_when=asyncio.FIRST_COMPLETED)
            if (call.end_reason is None and not twilio_task.done() and session_task.done()
                    and session_task.exception() is None and self.socket.gone()):
                # The session reader saw the socket go. What was read before the close is still
                # queued for the Twilio reader (a stop just ahead of it: the caller hung up), and
                # the reader may be busy with a frame (a keypad hook): it says how the call ended.
                await asyncio.wait({twilio_task}, timeout=READER_GRACE_S)
                call.end(EndReason.TWILIO_DISCONNECTED, self.clock())
        finally:
            for task in (*tasks, *self._background):
                if not task.done():
                    task.cancel()
            await asyncio.gather(*tasks, *self._background, return_exceptions=True)
            for task in tasks:
                if not task.cancelled() and task.exception() is not None:
                    # Each task handles what it expects; anything else is our bug: say so.
                    self.log.error("internal error in %s", task.get_name(), exc_info=task.exception())
                    call.end(EndReason.INTERNAL_ERROR, self.clock())
            await model.close()

    def _wanted(self) -> bool:
        """The call still wants a model (for connection retries)."""
        return self.call.end_reason is None and not self.socket.gone()

    async def _go_live(self) -> None:
        """Send the caller audio buffered while the model connected, until the call is live."""
        call = self.call
        while call.phase is Phase.CONNECTING and not self.model.broken:
            await self.execute(call.flush(self.clock()))

    # --- The three tasks ---------------------------------------------------------------------------

    async def _read_twilio(self) -> None:
        call, socket = self.call, self.socket
        while not call.finished:
            await self.execute(await socket.receive())

    async def _read_session(self) -> None:
        """Handle session events until the session ends: cleanly (the call ends), or by a
        failure (reconnect and go on, or end the call if that fails)."""
        call = self.call
        while True:
            failure = await self.model.read(self._session_event)
            if call.end_reason is not None or self.socket.gone():
                # The call is already over (stop, or the socket went): sends fail, nothing to do.
                # How it ended is the Twilio reader's to say (``_converse``).
                return
            if failure is None:
                self.log.info("model ended the session")
                call.end(EndReason.MODEL_ENDED, self.clock())
                return
            started = self.clock()
            self.log.error("model session failed mid-call (%s); reconnecting", failure)
            await self.execute(call.model_lost(started))
            if not await self.model.reconnect(call.history_items(), self._wanted):
                call.end(EndReason.MODEL_FAILED, self.clock())
                return
            await self.execute(call.model_reconnected(self.clock() - started, self.clock()))
            await self._go_live()
            self.log.info("model reconnected in %.0f ms; the conversation goes on", 1000 * (self.clock() - started))

    async def _speech_started(self, received: float) -> None:
        """The model heard the caller start speaking (``SpeechStartWatch``): a barge-in's
        ``clear`` goes out from here, in the model's reader, before the SDK truncates. Nothing
        raised here may reach the SDK's reader: it would end the model session."""
        try:
            await self.execute(self.call.speech_started(received, self.clock()))
        except Exception:
            self.log.exception("could not clear playback as the caller started speaking")

    def _speech_heard(self, received: float) -> bool:
        """The model's ``speech_started``, in the event-loop step that read it off the socket
        (``ModelConnection``): a barge-in's ``clear`` is written to Twilio here and now, a whole
        pass of the loop before the SDK's reader could send it. False if it cannot be written
        at once (Twilio's socket is not taking writes): the SDK's reader acts on it as usual.
        Nothing raised here may reach the model's connection."""
        if not self.socket.writable():
            return False
        try:
            actions = self.call.speech_started(received, self.clock())
            twilio = self._recorded([action for action in actions if type(action) in _TWILIO])
            if twilio and not self.socket.send_now(twilio):
                self.log.warning("Twilio's socket stopped taking writes: the clear was not sent")
            rest = [action for action in actions if type(action) not in _TWILIO]
            if rest:
                self._spawn(self.execute(rest), "barge-in")
        except Exception:
            self.log.exception("could not clear playback as the caller started speaking")
        return True

    def _recorded(self, sent: list[Action]) -> list[Action]:
        """``sent``, the messages for Twilio about to be written, told to the call's recording."""
        if self.recording is not None:
            now = self.clock()
            for action in sent:
                self.recording.sent(action, now)
        return sent

    async def _session_event(self, event: Any) -> None:
        if self.log.isEnabledFor(logging.DEBUG):  # every event, with the call SID
            self.log.debug("session event %s", event.type)
        if self._on_event is not None:
            try:
                self._on_event(self, event)
            except Exception:  # an observer's bug must not end the call
                self.log.exception("the on_event hook failed on %s", event.type)
        await self.execute(self.call.session_event(event, self.clock()))

    async def _run_timers(self) -> None:
        """Silence check-ins, keypad timeouts, waits for words to be heard, the maximum
        duration, the session rollover: whatever the call says is due, when it is due; and
        what the tools asked for (``CallControl``)."""
        call = self.call
        while True:
            deadline = call.next_deadline()
            if not self._wake.is_set():
                timeout = None if deadline is None else max(0.0, deadline - self.clock())
                try:
                    async with asyncio.timeout(timeout):  # not wait_for: it can swallow a cancel on 3.11
                        await self._wake.wait()
                except TimeoutError:
                    pass
            self._wake.clear()  # before taking: a wake-up from here on is seen next time round
            await self.execute(self.control.take() + call.tick(self.clock()))

    # --- Carrying out the call's actions -------------------------------------------------------------

    async def execute(self, actions: list[Action]) -> None:
        """Carry out ``actions`` in order (the one place that does)."""
        call = self.call
        if call.rearm:  # a deadline moved: the timer looks again
            call.rearm = False
            self._wake.set()
        i, count = 0, len(actions)
        while i < count:
            action = actions[i]
            kind = type(action)
            if kind in _TWILIO:
                # What follows for Twilio goes with it: one write for a delta's frames and mark.
                end = i + 1
                while end < count and type(actions[end]) in _TWILIO:
                    end += 1
                await self.socket.send(self._recorded(actions[i:end]))
                i = end
                continue
            i += 1
            if kind is SendAudio:
                if not await self.model.send_audio(action.audio):
                    # The model's socket failed: keep the audio for the reconnected session
                    # (the session reader sees the failure and reconnects, or ends the call).
                    call.audio_not_sent(action.audio, self.clock())
            elif kind is Reply:
                self.control.answer(action.waiter, action.value)
            elif kind is TellModel:
                try:
                    await self.model.tell(action.text)
                except SESSION_GONE:  # the session reader reconnects
                    self.log.warning("message for the model lost, the connection dropped: %s", action.text)
            elif kind is Ask:
                try:
                    await self.model.ask(action.request)
                except SESSION_GONE:
                    self.log.warning("request to speak lost, the model connection dropped: %s", action.request)
            elif kind is DecideTool:
                await self.model.decide_tool(action.call_id, action.approve, action.message)
            elif kind is OfferDigit:
                await self._offer_digit(action.digit)
            elif kind is HangUp:
                self._spawn(self._hang_up(action), "hang-up")
            elif kind is Transfer:
                self._spawn(self._transfer(action), "transfer")
            elif kind is RollOver:
                self._spawn(self._roll_over(), "rollover")
            elif kind is CloseStream:
                await self.socket.close(action.code)
            else:  # pragma: no cover - every action is handled above
                raise TypeError(f"unknown action {action!r}")

    def _spawn(self, work: Coroutine[Any, Any, None], what: str) -> None:
        task = asyncio.create_task(work, name=f"{what}-{self.call_sid}")
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:  # each handles what it expects
            self.log.error("internal error in %s", task.get_name(), exc_info=task.exception())

    async def _offer_digit(self, digit: str) -> None:
        consumed = False
        try:
            handled = self._on_digit(self.info, digit)
            consumed = bool(await handled if inspect.isawaitable(handled) else handled)
        except Exception:  # the application's bug must not end the call
            self.log.exception("digit handler failed on %s", digit)
        await self.execute(self.call.digit_handled(digit, consumed, self.clock()))

    async def _hang_up(self, action: HangUp) -> None:
        # Twilio ends the call and then closes the stream (stop). If REST is not reachable,
        # closing the stream ends <Connect>; with nothing after it in the TwiML, Twilio hangs up.
        if self.rest is None or not await self._rest("hang_up", self.call_sid):
            await self.execute([self.call.close_stream()])
        if action.reply is not None:
            self.control.answer(action.reply, "The call has ended.")

    async def _transfer(self, action: Transfer) -> None:
        if self.rest is None or not await self._rest("redirect", self.call_sid, action.twiml):
            await self.execute([self.call.close_stream()])  # no live call to redirect: end the stream
        if action.reply is not None:
            self.control.answer(action.reply, action.text)

    async def _roll_over(self) -> None:
        ok = await self.model.roll_over(self.call.history_items())
        await self.execute(self.call.rolled_over(ok, self.clock()))

    async def _rest(self, method: str, *args: str) -> bool:
        """Call Twilio REST; True if it took effect on a live call. A call already gone (20404)
        is not an error, but there is then no Twilio to close the stream: False."""
        try:
            done = await getattr(self.rest, method)(*args)
        except TwilioRestError as exc:
            self.log.error("Twilio REST %s failed: %s", method, exc)
            return False
        except Exception as exc:  # network down, DNS, TLS: the call must still end
            self.log.error("Twilio REST %s failed: %s: %s", method, type(exc).__name__, exc)
            return False
        if not done:
            self.log.info("Twilio says the call is already gone (20404)")
        return bool(done)

    # --- Twilio's callbacks, from the web edge --------------------------------------------------------

    def answered_by(self, answered_by: str) -> None:
        """Twilio's answering-machine detection result (outbound calls)."""
        self._fed(self.call.answered_by(answered_by, self.clock()))

    def twilio_status(self, status: str) -> None:
        """A Twilio call-status callback for this call."""
        self._fed(self.call.twilio_status(status, self.clock()))

    def _fed(self, actions: list[Action]) -> None:
        """After an input from outside the call's tasks: the call returns no actions for
        these, only (perhaps) a new deadline for the timer."""
        assert not actions, actions
        if self.call.rearm:
            self.call.rearm = False
            self._wake.set()
