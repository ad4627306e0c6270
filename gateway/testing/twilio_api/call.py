"""``FakeCall``: one simulated phone call, driven the way Twilio drives it.

Its life, as tasks on the event loop:

- **dialling** (outbound calls): ``initiated``, ``ringing``, then after ``answer_after_s`` the
  outcome: answered (by a ``human``, a ``machine_*``, ...) or ``busy`` / ``no-answer`` /
  ``failed`` / ``canceled``. A ``Timeout`` shorter than the ring time means ``no-answer``.
- **TwiML**: the verbs run in order (``twiml.py``). ``<Connect><Stream>`` connects a
  ``TwilioCaller`` (the caller simulator) and holds until the stream closes; ``<Dial>`` records
  whom it dialled and holds the call bridged (the far party is not simulated) until someone
  hangs up; ``<Redirect>`` fetches and runs the next document; ``<Hangup>`` ends the call.
  When the verbs run out, the call completes, as Twilio hangs up after the last verb.
- **callbacks**: status callbacks go out one at a time, in order, signed; the asynchronous
  answering-machine result goes out on its own.

REST updates act on the running call: ``Status=completed`` stops the TwiML (the stream gets
``stop`` and a close) and completes the call; new ``Twiml`` / ``Url`` stop the running TwiML
the same way and run the new document.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from websockets.exceptions import WebSocketException

from gateway.testing.caller.call import CallEnded, HandshakeRejected, TwilioCaller
from gateway.testing.caller.twiml import StreamInstructions, TwimlError, WebhookError, webhook_form
from gateway.testing.realtime.waiting import Changes
from gateway.testing.twilio_api.resources import API_VERSION, now, rfc2822
from gateway.testing.twilio_api.twiml import parse_verbs
from gateway.testing.twilio_api.webhooks import Callback, CallbackKind, deliver

__all__ = ["ANSWERED_BY", "NOT_ANSWERED", "Answer", "FakeCall"]

logger = logging.getLogger("gateway.testing.twilio_api")

#: ``AnsweredBy`` values of answering-machine detection (https://www.twilio.com/docs/voice/answering-machine-detection).
ANSWERED_BY = (
    "human", "machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other",
    "fax", "unknown",
)
#: Final statuses of a call that was never answered.
NOT_ANSWERED = ("busy", "no-answer", "failed", "canceled")
FINAL_STATUSES = ("completed", *NOT_ANSWERED)
#: StatusCallbackEvent names, and the CallStatus each one reports (completed: the final one).
_EVENT_STATUS = {"initiated": "initiated", "ringing": "ringing", "answered": "in-progress"}

#: Decides how an outbound call is answered: an ``ANSWERED_BY`` value, or one of
#: ``NOT_ANSWERED``. May be async (to hold the call ringing until a test says so).
Answer = Callable[["FakeCall"], "str | Awaitable[str]"]


@dataclass(frozen=True)
class Behaviour:
    """How the fake Twilio treats every call (the ``FakeTwilio`` options)."""

    auth_token: str
    answer_after_s: float = 0.0
    answered_by: str = "human"
    answer: Answer | None = None
    amd_after_s: float = 0.0
    connect_url: Callable[[str], str] | None = None
    deliver_via: Callable[[str], str | None] | None = None
    speed: float = 1.0


class FakeCall:
    """One call Twilio is handling; see ``gateway.testing.twilio_api`` for the manual.

    The record: ``status`` (Twilio's: queued, ringing, in-progress, completed, busy, ...) and
    ``statuses`` (each one it went through), ``answered_by`` (with machine detection),
    ``twiml`` / ``url`` (what it runs first), ``updates`` (REST update forms),
    ``redirects`` (the TwiML, or the URL, each update redirected it to), ``verbs`` (names of
    the verbs run), ``dialed``, ``callers`` (one ``TwilioCaller`` per stream connected;
    ``caller`` is the latest), ``callbacks`` (every request made to the application),
    ``errors`` (what Twilio's debugger would show).
    """

    def __init__(
        self,
        behaviour: Behaviour,
        *,
        sid: str,
        account_sid: str,
        direction: str,
        to: str,
        from_: str,
        status: str = "queued",
        twiml: str | None = None,
        url: str | None = None,
        method: str = "POST",
        status_callback: str | None = None,
        status_callback_events: Iterable[str] = (),
        status_callback_method: str = "POST",
        machine_detection: str | None = None,
        async_amd: bool = False,
        async_amd_status_callback: str | None = None,
        async_amd_status_callback_method: str = "POST",
        timeout_s: float | None = None,
    ) -> None:
        self._behaviour = behaviour
        self.sid = sid
        self.account_sid = account_sid
        self.direction = direction
        self.to = to
        self.from_ = from_
        self.twiml = twiml
        self.url = url
        self.method = method
        self.status_callback = status_callback
        events = [event.lower() for event in status_callback_events]
        # Twilio's default: with a StatusCallback and no events, only ``completed`` is sent.
        self.status_callback_events = events or (["completed"] if status_callback else [])
        self.status_callback_method = status_callback_method
        self.machine_detection = machine_detection
        self.async_amd = async_amd
        self.async_amd_status_callback = async_amd_status_callback
        self.async_amd_status_callback_method = async_amd_status_callback_method
        self.timeout_s = timeout_s

        self.status = status
        self.statuses = [status]
        self.answered_by: str | None = None
        self.date_created = self.date_updated = now()
        self.start_time: datetime | None = None
        self.end_time: datetime | None = None
        self.duration: int | None = None
        self.updates: list[dict[str, str | list[str]]] = []
        self.redirects: list[str] = []
        self.verbs: list[str] = []
        self.dialed: list[str] = []
        self.callers: list[TwilioCaller] = []
        self.callbacks: list[Callback] = []
        self.errors: list[str] = []

        self._changes = Changes()
        self._answered_at: float | None = None
        self._sequence = 0
        self._life: asyncio.Task[None] | None = None
        self._twiml_task: asyncio.Task[None] | None = None
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._outbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        # One control action at a time (REST updates, hang-ups): each sees the call as the
        # previous one left it, and a stream never gets two stops.
        self._control = asyncio.Lock()
        self._holding = False  # the TwiML waits on a connected stream or a <Dial>

    # --- The record -----------------------------------------------------------------------------

    @property
    def caller(self) -> TwilioCaller | None:
        """The caller on the latest stream connected (None before any)."""
        return self.callers[-1] if self.callers else None

    @property
    def ended(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def settled(self) -> bool:
        """The call's TwiML has run as far as it can without anyone acting: the call has
        ended, or it is held by a connected stream or a ``<Dial>``, or no TwiML is running."""
        task = self._twiml_task
        return self.ended or self._holding or task is None or task.done()

    @property
    def status_callbacks(self) -> list[Callback]:
        return [callback for callback in self.callbacks if callback.kind == "status"]

    def __repr__(self) -> str:
        return f"<FakeCall {self.sid} {self.direction} {self.from_} -> {self.to}: {self.status}>"

    # --- Waiting (timeouts in real seconds; a call that ends first raises CallEnded) ------------

    async def wait_status(self, status: str, timeout: float = 10.0) -> None:
        """Wait until the call has been ``status`` (now or before)."""

        def gone() -> str | None:
            return f"the call ended {self.status}" if self.ended and status not in self.statuses else None

        await self._wait(lambda: status in self.statuses, timeout, f"the call to be {status}", gone)

    async def wait_caller(self, timeout: float = 10.0) -> TwilioCaller:
        """Wait until a stream has connected (``start`` sent); return ``caller``, the latest."""
        await self._wait(lambda: self.callers, timeout, "a stream",
                         lambda: f"the call ended {self.status}" if self.ended and not self.callers else None)
        caller = self.caller
        assert caller is not None
        return caller

    async def wait_callback(
        self, call_status: str | None = None, *, kind: CallbackKind = "status", timeout: float = 10.0
    ) -> Callback:
        """Wait until a callback of ``kind`` (with ``CallStatus == call_status`` if given) has
        been delivered (or has failed); return it."""

        def found() -> Callback | None:
            for callback in self.callbacks:
                if callback.kind == kind and call_status in (None, callback.form.get("CallStatus")):
                    return callback
            return None

        what = f"a {kind} callback" + (f" with CallStatus {call_status}" if call_status else "")
        result = await self._wait(found, timeout, what)
        assert isinstance(result, Callback)
        return result

    async def wait_until(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Wait until ``predicate()`` is truthy (checked after every change); return it."""
        return await self._wait(predicate, timeout, getattr(predicate, "__name__", "predicate"))

    async def _wait(
        self, predicate: Callable[[], Any], timeout: float, what: str,
        gone: Callable[[], str | None] = lambda: None,
    ) -> Any:
        try:
            return await self._changes.wait_until(predicate, timeout=timeout, what=f"{what} ({self.sid})",
                                                  gone=gone)
        except ConnectionError as error:
            raise CallEnded(str(error)) from None

    # --- What the person on the phone does ------------------------------------------------------

    async def hang_up(self) -> None:
        """The other party hangs up: the stream gets ``stop`` and closes, the call completes."""
        async with self._control:
            if self.ended:
                return
            if self.status != "in-progress":
                raise RuntimeError(f"call {self.sid} is {self.status}, not answered: decide how it is "
                                   "answered with FakeTwilio(answer=...)")
            await self._stop_twiml()
            self._end("completed")

    # --- Driven by FakeTwilio -------------------------------------------------------------------

    def dial_out(self) -> None:
        """Start an outbound call (REST create): ring, answer as decided, run its TwiML."""
        self._life = self._spawn(self._dial_out(), "dialling")

    async def ring_in(self, webhook_url: str, method: str = "POST") -> None:
        """An inbound call: fetch the TwiML from the voice webhook (signed), then run it.
        Raises ``WebhookError`` (non-2xx) or ``ConnectionError`` if no TwiML came, and
        returns once a stream is connected or the TwiML has run without one."""
        form = webhook_form(call_sid=self.sid, account_sid=self.account_sid, from_=self.from_, to=self.to)
        callback = await self._deliver("twiml", webhook_url, form, method)
        if not callback.ok:
            self._end("failed")
            if callback.status is None:
                raise ConnectionError(f"voice webhook {webhook_url} unreachable: {callback.error}")
            raise WebhookError(webhook_url, callback.status, callback.body)
        self.twiml = callback.body
        self._answer(None)
        self._start_twiml(callback.body, None, "POST")
        task = self._twiml_task
        await self._wait(lambda: self.callers or task is None or task.done() or self.ended, 30.0,
                         "the TwiML to connect a stream")

    async def update(self, form: dict[str, str]) -> bool:
        """A REST update (validated by the server). ``False``: the call had already ended,
        and nothing was done (Twilio answers 404)."""
        async with self._control:
            if self.ended:
                return False
            status, twiml, url = form.get("Status"), form.get("Twiml"), form.get("Url")
            if status is not None:
                if self.status == "in-progress":
                    if status == "completed":  # "canceled" does not affect an answered call
                        await self._stop_twiml()
                        self._end("completed")
                else:  # queued or ringing: either status cancels it
                    await _cancel(self._life)
                    self._end("canceled")
            elif twiml is not None or url is not None:  # (else e.g. a new StatusCallback only)
                self.redirects.append(twiml if twiml is not None else str(url))
                method = form.get("Method", "POST")
                if self.status == "in-progress":
                    await self._stop_twiml()
                    self._start_twiml(twiml, url, method)
                else:  # not answered yet: this is what runs when it is
                    self.twiml, self.url, self.method = twiml, url, method
            self._touch()
            return True

    async def close(self) -> None:
        """Tear down (FakeTwilio is closing): end the call, deliver what is queued."""
        async with self._control:
            answered = self.status == "in-progress"
            await self._stop_twiml()
            self._end("completed" if answered else "canceled")
        for task in list(self._side_tasks):
            if task is not self._sender:
                await _cancel(task)
        if self._sender is not None:
            self._outbox.put_nowait({})  # the end marker
            try:
                async with asyncio.timeout(2.0):
                    await asyncio.shield(self._sender)
            except TimeoutError:
                await _cancel(self._sender)

    # --- Dialling -------------------------------------------------------------------------------

    async def _dial_out(self) -> None:
        behaviour = self._behaviour
        self._status_event("initiated")
        self._set_status("ringing")
        self._status_event("ringing")
        if self.timeout_s is not None and behaviour.answer_after_s > self.timeout_s:
            await asyncio.sleep(self.timeout_s)
            self._end("no-answer")
            return
        await asyncio.sleep(behaviour.answer_after_s)
        outcome = behaviour.answered_by
        if behaviour.answer is not None:
            decided = behaviour.answer(self)
            outcome = await decided if inspect.isawaitable(decided) else decided
        if outcome in NOT_ANSWERED:
            self._end(outcome)
            return
        if outcome not in ANSWERED_BY:
            raise ValueError(f"answer outcome {outcome!r} is none of {ANSWERED_BY + NOT_ANSWERED}")
        self._answer(outcome)
        if self.machine_detection and not self.async_amd:
            await asyncio.sleep(behaviour.amd_after_s)  # synchronous AMD: the TwiML waits for it
        self._start_twiml(self.twiml, self.url, self.method)

    def _answer(self, answered_by: str | None) -> None:
        self.start_time = now()
        self._answered_at = asyncio.get_running_loop().time()
        if self.machine_detection:
            self.answered_by = answered_by
        self._set_status("in-progress")
        self._status_event("answered")
        if self.machine_detection and self.async_amd and self.async_amd_status_callback:
            self._spawn(self._amd_result(), "answering-machine result")

    async def _amd_result(self) -> None:
        await asyncio.sleep(self._behaviour.amd_after_s)
        if self.ended or self.async_amd_status_callback is None:
            return
        form = {
            "AccountSid": self.account_sid,
            "AnsweredBy": self.answered_by or "unknown",
            "CallSid": self.sid,
            "MachineDetectionDuration": str(round(self._behaviour.amd_after_s * 1000)),
        }
        await self._deliver("amd", self.async_amd_status_callback, form, self.async_amd_status_callback_method)

    # --- TwiML ----------------------------------------------------------------------------------

    def _start_twiml(self, twiml: str | None, url: str | None, method: str) -> None:
        if self.ended:
            return
        self._twiml_task = self._spawn(self._execute(twiml, url, method), "twiml")

    async def _stop_twiml(self) -> None:
        """End the running TwiML; a connected stream gets ``stop`` and a close, as Twilio
        ends a ``<Connect><Stream>`` when the call is updated or hung up."""
        await _cancel(self._life)  # if still running, all it had left was to start the TwiML
        task, self._twiml_task = self._twiml_task, None
        if task is not asyncio.current_task():
            await _cancel(task)
        caller = self.caller
        if caller is not None and caller.ws is not None and not caller.closed:
            await caller.hang_up(send_stop=True)
        self._touch()

    async def _execute(self, twiml: str | None, url: str | None, method: str) -> None:
        if twiml is None and url is not None:
            twiml = await self._fetch(url, method)
        if twiml is not None:
            await self._run(twiml, url)
        self._end("completed")  # Twilio hangs up when the document runs out

    async def _run(self, twiml: str, document_url: str | None) -> None:
        try:
            verbs = parse_verbs(twiml)
        except TwimlError as error:
            self._error(f"12100 Document parse failure: {error}")
            return
        for verb in verbs:
            self.verbs.append(verb.name)
            self._touch()
            if verb.name == "Connect":
                if verb.stream is None:
                    self._error("<Connect> without <Stream> is not simulated; skipped")
                else:
                    await self._stream(verb.stream)
            elif verb.name == "Dial":
                self.dialed.extend(verb.targets)
                self._holding = True
                self._touch()
                try:
                    await asyncio.Event().wait()  # bridged to the far party until someone hangs up
                finally:
                    self._holding = False
            elif verb.name in ("Hangup", "Reject"):
                return
            elif verb.name == "Redirect":
                target = _join(document_url, verb.url or "")
                fetched = await self._fetch(target, verb.method)
                if fetched is not None:
                    await self._run(fetched, target)
                return
            # Say, Play, Pause, Gather, Record, ...: not simulated, they take no time

    async def _stream(self, stream: StreamInstructions) -> None:
        behaviour = self._behaviour
        caller = TwilioCaller(
            stream.url,
            parameters=stream.parameters,
            auth_token=behaviour.auth_token,
            connect_url=behaviour.connect_url(stream.url) if behaviour.connect_url else None,
            call_sid=self.sid,
            account_sid=self.account_sid,
            from_=self.from_,
            to=self.to,
            speed=behaviour.speed,
        )
        try:
            await caller.connect()
        except asyncio.CancelledError:  # updated or hung up mid-handshake: end what opened
            if caller.ws is not None and not caller.closed:
                await caller.hang_up(send_stop=True)
            raise
        except HandshakeRejected as error:
            self._error(f"31920 Stream - WebSocket - Handshake Error: {error}")
            return
        except (OSError, TimeoutError, WebSocketException) as error:
            self._error(f"31920 Stream - WebSocket - could not connect to {caller.connect_url}: {error!r}")
            return
        self.callers.append(caller)
        self._touch()
        logger.info("fake twilio: stream connected (call_sid=%s stream_sid=%s)", self.sid, caller.stream_sid)
        self._holding = True
        try:
            while not caller.closed:  # the application ends it by closing: the next verb runs
                try:
                    await caller.wait_closed(timeout=3600.0)
                except TimeoutError:
                    pass
        finally:
            self._holding = False
        self._touch()

    async def _fetch(self, url: str, method: str) -> str | None:
        """Twilio's TwiML request (``Url``, ``<Redirect>``): the call's parameters, signed."""
        form = webhook_form(call_sid=self.sid, account_sid=self.account_sid, from_=self.from_, to=self.to,
                            call_status=self.status)
        form["Direction"] = self.direction
        if self.answered_by is not None:
            form["AnsweredBy"] = self.answered_by
        callback = await self._deliver("twiml", url, form, method)
        return callback.body if callback.ok else None

    # --- Status and callbacks -------------------------------------------------------------------

    def _set_status(self, status: str) -> None:
        self.status = status
        self.statuses.append(status)
        self._touch()

    def _end(self, status: str) -> None:
        if self.ended:
            return
        self.end_time = now()
        if self._answered_at is not None:
            self.duration = round(asyncio.get_running_loop().time() - self._answered_at)
        else:
            self.duration = 0
        self._set_status(status)
        self._status_event("completed")
        logger.info("fake twilio: call ended %s (call_sid=%s)", status, self.sid)

    def _status_event(self, event: str) -> None:
        if not self.status_callback or event not in self.status_callback_events:
            return
        self._sequence += 1
        form = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": self.sid,
            "CallStatus": _EVENT_STATUS.get(event, self.status),
            "CallbackSource": "call-progress-events",
            "Called": self.to,
            "Caller": self.from_,
            "Direction": self.direction,
            "From": self.from_,
            "SequenceNumber": str(self._sequence - 1),
            "Timestamp": rfc2822(now()) or "",
            "To": self.to,
        }
        if event == "completed":
            form["CallDuration"] = str(self.duration or 0)
        if self.answered_by is not None:
            form["AnsweredBy"] = self.answered_by
        self._outbox.put_nowait(form)
        if self._sender is None:
            self._sender = self._spawn(self._send_status_callbacks(), "status callbacks")

    async def _send_status_callbacks(self) -> None:
        """One at a time, in order, as Twilio sends a call's progress events."""
        while True:
            form = await self._outbox.get()
            if not form or self.status_callback is None:
                return
            await self._deliver("status", self.status_callback, form, self.status_callback_method)

    async def _deliver(self, kind: CallbackKind, url: str, form: dict[str, str], method: str) -> Callback:
        via = self._behaviour.deliver_via(url) if self._behaviour.deliver_via else None
        callback = await deliver(kind, url, form, self._behaviour.auth_token, method, via=via)
        self.callbacks.append(callback)
        if not callback.ok:
            # Twilio's debugger: 11200 when it could not get TwiML, 15003 for a callback.
            code = "11200 HTTP retrieval failure" if kind == "twiml" else f"15003 {kind} callback failed"
            self._error(f"{code}: {method} {url} got {callback.status or callback.error}")
        self._touch()
        return callback

    # --- Plumbing -------------------------------------------------------------------------------

    def _error(self, text: str) -> None:
        self.errors.append(text)
        logger.warning("fake twilio: %s (call_sid=%s)", text, self.sid)
        self._touch()

    def _touch(self) -> None:
        self.date_updated = now()
        self._changes.notify()

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(self._guard(work, name))
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)
        return task

    async def _guard(self, work: Coroutine[Any, Any, None], name: str) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug or a bad test option: recorded, and the call fails
            logger.exception("fake twilio: %s failed (call_sid=%s)", name, self.sid)
            self.errors.append(f"fake twilio: {name} failed: {error!r}")
            self._end("failed")


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is None or task.done() or task is asyncio.current_task():
        return
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _join(base: str | None, url: str) -> str:
    return urllib.parse.urljoin(base, url) if base else url
