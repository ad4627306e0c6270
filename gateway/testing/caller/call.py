"""``TwilioCaller``: Twilio's side of one Media Streams call, over a real WebSocket.

Three tasks per call, all on the caller clock (``clock.py``):

- **media**: one 20 ms inbound frame every 20 ms, carrying queued speech or mu-law silence, as
  Twilio does for a real caller. Frame ``k`` holds the audio of ``[k, k + 1) * 20 ms`` (its
  ``timestamp`` is ``k * 20``) and goes out at ``(k + 1) * 20 ms``, once that audio has been
  "spoken": a gateway never gets speech before the caller says it. Deadlines are absolute, so
  the loop does not drift;
- **receive**: every frame from the gateway is parsed with ``gateway.twilio.parse_outbound``
  and recorded; media, marks and clears go to the ``Playout`` (Twilio's playback buffer);
  frames Twilio would not accept are recorded in ``invalid``, never raised;
- **playback**: wakes when the ``Playout``'s next piece of audio ends or its next mark falls
  due, and echoes the marks whose audio has played.

Every outgoing message is numbered by one ``sequenceNumber`` counter (``start`` is 1), as Twilio
numbers them, and sent under one lock, so numbers go out in order and the marks of one batch
are never split by another task's echo. Errors in the tasks are collected in ``errors`` (and
logged), and end the call with close code 1011 instead of leaking out of the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Literal

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway.audio import (
    FRAME_MS,
    ULAW_BYTES_PER_MS,
    ULAW_SILENCE,
    Resampler,
    pcm16_to_ulaw,
)
from gateway.security import TwilioSignatures
from gateway.testing.caller.clock import CallerClock
from gateway.testing.caller.playout import (
    SAMPLE_RATE,
    HeardSegment,
    MarkEcho,
    Playout,
    join_runs,
    timeline,
)
from gateway.testing.caller.records import InvalidMessage, Received, Utterance
from gateway.testing.caller.speech import Speech
from gateway.testing.caller.twiml import new_sid, parse_stream_twiml, webhook_form
from gateway.twilio import (
    DTMF_DIGITS,
    Connected,
    Dtmf,
    Mark,
    Media,
    MediaFormat,
    OutboundMark,
    OutboundMedia,
    ProtocolError,
    Start,
    Stop,
    UnknownEvent,
    parse_outbound,
)

__all__ = ["CallEnded", "HandshakeRejected", "TwilioCaller"]

logger = logging.getLogger("gateway.testing.caller")

#: Largest frame accepted from the gateway (outbound audio may come in one big message).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: User-Agent of Twilio's Media Streams WebSocket client.
USER_AGENT = "Twilio.TmeWs/1.0"
DEFAULT_FROM = "+15555550100"
DEFAULT_TO = "+15555550199"
_FRAME_S = FRAME_MS / 1000

Match = str | Callable[[Received], bool]


class HandshakeRejected(Exception):
    """The gateway refused the WebSocket handshake (as it must for a bad signature)."""

    def __init__(self, url: str, status: int, body: bytes) -> None:
        super().__init__(f"WebSocket handshake to {url} refused with HTTP {status}")
        self.url = url
        self.status = status
        self.body = body


class CallEnded(Exception):
    """A ``wait_*`` helper gave up: the call ended before what it waited for happened."""


class TwilioCaller:
    """Twilio's side of one Media Streams call. See ``gateway.testing.caller``."""

    def __init__(
        self,
        url: str,
        *,
        parameters: Mapping[str, str] | None = None,
        auth_token: str | None = None,
        signature: str | None = None,
        connect_url: str | None = None,
        call_sid: str | None = None,
        account_sid: str | None = None,
        stream_sid: str | None = None,
        from_: str = DEFAULT_FROM,
        to: str = DEFAULT_TO,
        speed: float = 1.0,
        open_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.connect_url = connect_url or url
        self.parameters = dict(parameters or {})
        self.call_sid = call_sid or new_sid("CA")
        self.account_sid = account_sid or new_sid("AC")
        self.stream_sid = stream_sid or new_sid("MZ")
        self.from_ = from_
        self.to = to
        self.clock = CallerClock(speed)
        if signature is None and auth_token is not None:
            # Twilio signs the handshake over the stream URL exactly as written in the TwiML,
            # with no params (https://www.twilio.com/docs/usage/webhooks/webhooks-security).
            signature = TwilioSignatures(auth_token).sign(url, {})
        self.signature = signature
        self._open_timeout = open_timeout

        # The record (caller-clock times).
        self.received: list[Received] = []
        self.invalid: list[InvalidMessage] = []
        self.clears: list[float] = []
        self.marks_echoed: list[MarkEcho] = []
        self.utterances: list[Utterance] = []
        self.keypresses: list[tuple[float, str]] = []  # (time sent, digit)
        self.frames_sent = 0
        self.errors: list[BaseException] = []
        self.closed = False
        self.closed_at: float | None = None
        self.closed_by: Literal["caller", "gateway"] | None = None
        self.playout = Playout()

        self.ws: ClientConnection | None = None
        self._sequence = 0
        self._send_lock = asyncio.Lock()
        self._speech = Speech()
        self._changed = asyncio.Event()
        self._playout_changed = asyncio.Event()
        self._closing = False
        self._receive_task: asyncio.Task[None] | None = None
        self._media_task: asyncio.Task[None] | None = None
        self._playback_task: asyncio.Task[None] | None = None

    @classmethod
    def from_twiml(cls, twiml: str | bytes, **kwargs: object) -> TwilioCaller:
        """A caller for the ``<Connect><Stream>`` in ``twiml`` (url and parameters from it)."""
        instructions = parse_stream_twiml(twiml)
        parameters = instructions.parameters
        return cls(instructions.url, parameters=parameters, **kwargs)  # type: ignore[arg-type]

    def webhook_form(self, call_status: str = "ringing") -> dict[str, str]:
        """The voice-webhook form Twilio would POST for this call."""
        return webhook_form(
            call_sid=self.call_sid, account_sid=self.account_sid, from_=self.from_, to=self.to,
            call_status=call_status,
        )

    # --- Connecting and hanging up --------------------------------------------------------------

    async def connect(self) -> TwilioCaller:
        """Open the WebSocket, send ``connected`` and ``start``, start streaming.

        Raises ``HandshakeRejected`` if the gateway answers the handshake with an HTTP error.
        A gateway that accepts and then closes at once is not an error here: the close is
        recorded (``closed``, ``close_code``) like any other.
        """
        if self.ws is not None:
            raise RuntimeError("connect() was already called; a TwilioCaller places one call")
        headers = {"X-Twilio-Signature": self.signature} if self.signature is not None else {}
        try:
            self.ws = await connect(
                self.connect_url,
                additional_headers=headers,
                user_agent_header=USER_AGENT,
                compression=None,
                max_size=MAX_MESSAGE_BYTES,
                open_timeout=self._open_timeout,
            )
        except InvalidStatus as error:
            response = error.response
            status, body = response.status_code, response.body or b""
            raise HandshakeRejected(self.connect_url, status, body) from None
        self.clock.start()
        self._receive_task = asyncio.create_task(self._guard(self._receive_loop, "receive"))
        start = Start(
            sequence_number=0,  # numbered by _send
            stream_sid=self.stream_sid,
            account_sid=self.account_sid,
            call_sid=self.call_sid,
            tracks=("inbound",),
            custom_parameters=self.parameters,
            media_format=MediaFormat("audio/x-mulaw", SAMPLE_RATE, 1),
        )
        try:
            async with self._send_lock:  # connected is the one message without a number
                await self.ws.send(Connected(protocol="Call", version="1.0.0").to_json())
            await self._send(lambda seq: _with_sequence(start, seq))
        except ConnectionClosed:
            return self  # the receive loop records how the gateway ended the call
        if not self.closed:
            self._media_task = asyncio.create_task(self._guard(self._media_loop, "media"))
            playback = self._guard(self._playback_loop, "playback")
            self._playback_task = asyncio.create_task(playback)
        return self

    async def hang_up(self, *, send_stop: bool = True) -> None:
        """End the call as Twilio does when the caller hangs up: ``stop``, then close (1000).

        ``send_stop=False`` closes without ``stop`` (a call that dropped). Idempotent.
        """
        ws = self._require_connected()
        if self.closed:
            return
        self._closing = True
        self._stop_streaming()
        media = self._media_task
        if media is not None and media is not asyncio.current_task():
            await asyncio.gather(media, return_exceptions=True)  # nothing may follow stop
        if send_stop:
            stop = Stop(0, self.stream_sid, self.account_sid, self.call_sid)
            try:
                await self._send(lambda seq: _with_sequence(stop, seq))
            except ConnectionClosed:
                pass  # the gateway closed first; its close is what gets recorded
        await ws.close()
        if self._receive_task is not None:
            await asyncio.gather(self._receive_task, return_exceptions=True)
        self._finish()

    async def __aenter__(self) -> TwilioCaller:
        return await self.connect()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.ws is not None and not self.closed:
            await self.hang_up()

    # --- What the caller does -------------------------------------------------------------------

    def say(self, ulaw: bytes) -> Utterance:
        """Queue mu-law 8 kHz speech to go out after whatever is queued (silence otherwise).
        Returns its ``Utterance``, whose ``start``/``end`` are set as it is sent."""
        if self.closed:
            raise CallEnded(f"the call has ended ({self._ending()})")
        utterance = Utterance(bytes(ulaw), queued_at=self.clock.now())
        self.utterances.append(utterance)
        self._speech.say(utterance)
        return utterance

    def say_pcm16(self, pcm16: bytes, rate: int = SAMPLE_RATE) -> Utterance:
        """``say`` PCM16 mono audio at 8, 16 or 24 kHz (resampled and encoded to mu-law)."""
        if rate != SAMPLE_RATE:
            resampler = Resampler(rate, SAMPLE_RATE)
            pcm16 = resampler.process(pcm16) + resampler.flush()
        return self.say(pcm16_to_ulaw(pcm16))

    def pause(self, ms: float) -> Utterance:
        """Queue ``ms`` of silence, so that what is said next starts that much later."""
        return self.say(bytes([ULAW_SILENCE]) * round(ms * ULAW_BYTES_PER_MS))

    async def press(self, digit: str) -> None:
        """Send a ``dtmf`` message for one key (0-9, *, #, A-D)."""
        if digit not in DTMF_DIGITS or len(digit) != 1:
            raise ValueError(f"not a DTMF digit: {digit!r}")
        self._require_live()
        await self._send(lambda seq: Dtmf(seq, self.stream_sid, "inbound_track", digit).to_json())
        self.keypresses.append((self.clock.now(), digit))

    async def send_raw(self, data: str | bytes) -> None:
        """Send ``data`` as one WebSocket frame, unchecked (text for str, binary for bytes)."""
        ws = self._require_live()
        async with self._send_lock:
            await ws.send(data)

    # --- What the caller heard ------------------------------------------------------------------

    @property
    def heard_ms(self) -> float:
        """Agent audio heard so far, in ms (from sample counts; the piece playing included)."""
        return self.playout.heard_samples(self.clock.now()) / ULAW_BYTES_PER_MS

    @property
    def playing(self) -> bool:
        """Agent audio is playing now."""
        return self.playout.playing(self.clock.now())

    @property
    def invalid_count(self) -> int:
        return len(self.invalid)

    @property
    def close_code(self) -> int | None:
        """The close code of the WebSocket once it has closed (1006: no close frame)."""
        return self.ws.close_code if self.ws is not None else None

    @property
    def close_reason(self) -> str | None:
        return self.ws.close_reason if self.ws is not None else None

    def heard_segments(self) -> list[HeardSegment]:
        """What was heard, as runs of unbroken audio (back-to-back pieces joined)."""
        return join_runs(self.playout.segments(self.clock.now()))

    def heard_audio(self) -> bytes:
        """Everything heard, mu-law, concatenated without the gaps."""
        return b"".join(piece.audio for piece in self.playout.segments(self.clock.now()))

    def heard_timeline(self, until: float | None = None) -> bytes:
        """What the caller's ear got from time 0 to ``until`` (default: the end of the last
        audio heard): the heard audio at its place on the clock, silence (0xFF) elsewhere."""
        return timeline(self.playout.segments(self.clock.now()), until)

    # --- Waiting (timeouts are real seconds) ----------------------------------------------------

    async def wait_heard(self, ms: float, timeout: float = 10.0) -> float:
        """Wait until ``ms`` of agent audio in all has been heard; return ``heard_ms``."""
        samples = math.ceil(ms * ULAW_BYTES_PER_MS - 1e-9)
        await self._wait(
            lambda: self.playout.heard_samples(self.clock.now()) >= samples,
            timeout,
            lambda: f"{ms} ms of agent audio heard (heard {self.heard_ms:.0f} ms)",
            wake_at=lambda: self.playout.when_heard(samples),
        )
        return self.heard_ms

    async def wait_for_message(
        self, match: Match, timeout: float = 10.0, *, since: int = 0
    ) -> Received:
        """The first message from the gateway in ``received[since:]`` that matches: an event
        name (``"media"``, ``"mark"``, ``"clear"``) or a predicate on ``Received``."""
        predicate = (lambda r: r.event == match) if isinstance(match, str) else match
        found: list[Received] = []
        index = since

        def check() -> bool:
            nonlocal index
            while index < len(self.received):
                received = self.received[index]
                index += 1
                if predicate(received):
                    found.append(received)
                    return True
            return False

        await self._wait(check, timeout, lambda: f"a message matching {match!r}")
        return found[0]

    async def wait_agent_silent(
        self, quiet_ms: float = 500.0, timeout: float = 10.0, *, after: float = 0.0
    ) -> float:
        """Wait until the agent has said something that ended after caller-clock ``after`` and
        has then been silent for ``quiet_ms``. Returns when its audio ended (caller clock)."""
        quiet = quiet_ms / 1000

        def last_end() -> float | None:
            end = self.playout.last_heard_end(self.clock.now())
            return end if end is not None and end > after else None

        def check() -> bool:
            end = last_end()
            now = self.clock.now()
            return end is not None and not self.playout.playing(now) and now - end >= quiet - 1e-9

        def wake_at() -> float | None:
            end = last_end()
            return None if end is None else max(end, self.playout.ends_at) + quiet

        def describe() -> str:
            return f"the agent to speak after {after:.3f} s, then be silent for {quiet_ms} ms"

        await self._wait(check, timeout, describe, wake_at=wake_at)
        end = last_end()
        assert end is not None
        return end

    async def wait_said(self, timeout: float = 10.0) -> None:
        """Wait until everything queued with ``say`` has been sent."""
        await self._wait(lambda: not self._speech, timeout, lambda: "the queued speech to be sent")

    async def wait_closed(self, timeout: float = 10.0) -> None:
        """Wait until the WebSocket has closed (either side)."""
        await self._wait(lambda: self.closed, timeout, lambda: "the call to end")

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` holds; checked whenever something arrives or plays."""
        name = getattr(predicate, "__name__", "predicate")
        await self._wait(predicate, timeout, lambda: f"{name}() to hold")

    async def _wait(
        self,
        check: Callable[[], bool],
        timeout: float,
        describe: Callable[[], str],
        wake_at: Callable[[], float | None] | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not check():
            if self.closed:
                raise CallEnded(f"the call ended ({self._ending()}) before {describe()}")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"gave up after {timeout} s waiting for {describe()}")
            delay = remaining
            at = wake_at() if wake_at is not None else None
            if at is not None:
                # A hair past the instant, so the check sees the sample count reached.
                delay = min(delay, self.clock.real_delay(at) + 1e-4)
            changed = self._changed
            try:
                async with asyncio.timeout(delay):  # not wait_for: on 3.11 it can swallow a cancel
                    await changed.wait()
            except TimeoutError:
                pass

    def _ending(self) -> str:
        text = f"closed by the {self.closed_by}, code {self.close_code}"
        if self.close_reason:
            text += f" {self.close_reason!r}"
        if self.errors:
            text += f"; caller error: {self.errors[0]!r}"
        return text

    # --- Tasks ----------------------------------------------------------------------------------

    async def _media_loop(self) -> None:
        sid = self.stream_sid
        k = 0
        while True:
            await self.clock.sleep_until((k + 1) * _FRAME_S)
            payload, spoke = self._speech.frame(k)
            chunk, timestamp = k + 1, k * FRAME_MS
            media = Media(0, sid, "inbound", chunk, timestamp, payload)
            await self._send(lambda seq: dataclasses.replace(media, sequence_number=seq).to_json())
            k += 1
            self.frames_sent = k
            if spoke:
                self._pulse()

    async def _receive_loop(self) -> None:
        assert self.ws is not None
        try:
            async for data in self.ws:
                echoes = self._on_frame(data)
                if echoes:
                    await self._echo(echoes)
        except ConnectionClosed:
            pass
        self._finish()  # (if this loop fails instead, _guard ends the call)

    def _on_frame(self, data: str | bytes) -> list[MarkEcho]:
        now = self.clock.now()
        if isinstance(data, bytes):
            self._invalid(now, data, "binary frame: Twilio expects JSON text frames")
            return []
        try:
            message = parse_outbound(data, max_size=MAX_MESSAGE_BYTES)
        except ProtocolError as error:
            self._invalid(now, data, str(error))
            return []
        if isinstance(message, UnknownEvent):
            self._invalid(now, data, f"unknown event {message.event!r}")
            return []
        if message.stream_sid != self.stream_sid:
            error = f"{message.event} for stream {message.stream_sid!r}, not {self.stream_sid!r}"
            self._invalid(now, data, error)
            return []
        self.received.append(Received(now, message))
        if isinstance(message, OutboundMedia):
            echoes = self.playout.media(message.payload, now)
        elif isinstance(message, OutboundMark):
            echoes = self.playout.mark(message.name, now)
        else:
            self.clears.append(now)
            echoes = self.playout.clear(now)
        self._playout_changed.set()
        self._pulse()
        return echoes

    def _invalid(self, now: float, data: str | bytes, error: str) -> None:
        self.invalid.append(InvalidMessage(now, data, error))
        logger.warning(
            "twilio caller: invalid message from the gateway: %s (call_sid=%s stream_sid=%s)",
            error, self.call_sid, self.stream_sid,
        )
        self._pulse()

    async def _playback_loop(self) -> None:
        while True:
            self._playout_changed.clear()
            echoes = self.playout.advance(self.clock.now())
            if echoes:
                await self._echo(echoes)
            self._pulse()
            deadline = self.playout.next_deadline()
            timeout = None if deadline is None else self.clock.real_delay(deadline)
            try:
                async with asyncio.timeout(timeout):
                    await self._playout_changed.wait()
            except TimeoutError:
                pass

    async def _echo(self, echoes: list[MarkEcho]) -> None:
        """Echo marks, all under one lock so no other echo gets between them."""
        sid = self.stream_sid
        await self._send(*(_mark_builder(sid, echo.name) for echo in echoes))
        self.marks_echoed.extend(echoes)
        self._pulse()

    async def _send(self, *builds: Callable[[int], str]) -> None:
        """Number and send messages; ``build(sequence_number)`` gives each one's text."""
        assert self.ws is not None
        async with self._send_lock:
            for build in builds:
                self._sequence += 1
                await self.ws.send(build(self._sequence))

    async def _guard(self, work: Callable[[], Awaitable[None]], name: str) -> None:
        try:
            await work()
        except ConnectionClosed:
            pass  # the receive loop records how the call ended
        except Exception as error:
            self.errors.append(error)
            logger.error("twilio caller: %s task failed (call_sid=%s stream_sid=%s)",
                         name, self.call_sid, self.stream_sid, exc_info=error)
            self._closing = True
            self._stop_streaming()
            if self.ws is not None:
                await self.ws.close(1011, "caller simulator error")
            self._finish()

    # --- Ending ---------------------------------------------------------------------------------

    def _stop_streaming(self) -> None:
        """Freeze the clock and the playout, stop sending media and echoing marks."""
        self.clock.stop()
        self.playout.end(self.clock.now())
        current = asyncio.current_task()
        for task in (self._media_task, self._playback_task):
            if task is not None and task is not current:
                task.cancel()

    def _finish(self) -> None:
        if self.closed:
            return
        self._stop_streaming()
        self.closed = True
        self.closed_at = self.clock.now()
        self.closed_by = "caller" if self._closing else "gateway"
        self._pulse()

    def _pulse(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _require_connected(self) -> ClientConnection:
        if self.ws is None:
            raise RuntimeError("not connected: call connect() first")
        return self.ws

    def _require_live(self) -> ClientConnection:
        ws = self._require_connected()
        if self.closed:
            raise CallEnded(f"the call has ended ({self._ending()})")
        return ws


def _with_sequence(message: Start | Stop, sequence: int) -> str:
    return dataclasses.replace(message, sequence_number=sequence).to_json()


def _mark_builder(stream_sid: str, name: str) -> Callable[[int], str]:
    return lambda sequence: Mark(sequence, stream_sid, name).to_json()
