"""``RealtimeConnection``: one client of the local Realtime server (one phone call).

It plays the model's side of the GA protocol for one WebSocket and records everything for
assertions. The protocol logic is synchronous: a client event goes in (``_receive``) and the
server events it causes are queued, in order, before anything else runs; one writer task sends
the queue. That is what makes a barge-in exact: ``speech_started`` and the cancelled
response's closing events are queued together, and no delta can slip in between. The only
other task is the response being streamed (``ResponseStream``), which waits between deltas.

Everything a test may want to check is a public attribute (see the class docstring), and the
``wait_*`` helpers let a test wait for a state instead of sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import inspect
import itertools
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from gateway.audio import Resampler
from gateway.testing.realtime.records import (
    FunctionCallOutput,
    ReceivedEvent,
    ResponseRecord,
    SentEvent,
    Truncation,
    UserMessage,
    UserTurn,
)
from gateway.testing.realtime.response import ResponseStream
from gateway.testing.realtime.script import OnTurn, Script, ScriptCursor, Trigger, Turn, turn_items
from gateway.testing.realtime.session import (
    AudioFormat,
    TurnDetection,
    audio_config,
    default_session,
    merge_session,
)
from gateway.testing.realtime.vad import EnergyVad, SpeechStart
from gateway.testing.realtime.waiting import Changes
from gateway.testing.realtime.wire import (
    ClientEventError,
    error_event,
    parse_client_event,
    validate_server_event,
    validate_session,
)

__all__ = ["ConnectionOptions", "RealtimeConnection"]

logger = logging.getLogger("gateway.testing.realtime")

T = TypeVar("T")

#: The real API refuses to commit less than this much audio.
MIN_COMMIT_MS = 100


@dataclass(frozen=True)
class ConnectionOptions:
    """What every connection of one server shares (see ``RealtimeServer`` for each field)."""

    script: Script
    on_turn: OnTurn | None
    chunk_ms: int
    pace: float | None
    tone_hz: float
    vad_threshold_dbfs: float
    min_speech_ms: int
    silence_duration_ms: int
    validate: bool


class RealtimeConnection:
    """One connection. Records, in order:

    - ``received``: every client event (``ReceivedEvent``: type, time, parsed dict), valid or not;
    - ``sent``: every server event (``SentEvent``);
    - ``responses`` (``ResponseRecord``: id, turn, status, audio sent, first/last delta time);
    - ``user_turns`` (``UserTurn``: each caller speech turn and its audio times);
    - ``truncations``, ``function_call_outputs``, ``user_messages``;
    - ``items``: the conversation as the server holds it (id -> item);
    - ``session``: the current merged session; ``input_format`` / ``output_format``;
    - ``input_audio``: every input byte received, as received; ``input_audio_pcm16(rate)``.

    The request is in ``path``, ``headers`` and ``model`` (the ``?model=`` query parameter).
    """

    def __init__(self, websocket: ServerConnection, index: int, options: ConnectionOptions,
                 on_error: Callable[[RealtimeConnection, BaseException], None]) -> None:
        self.index = index
        self._ws = websocket
        self._options = options
        self._on_error = on_error
        request = websocket.request
        self.path: str = request.path if request else ""
        self.headers: dict[str, str] = dict(request.headers.raw_items()) if request else {}
        self.model: str | None = parse_qs(urlsplit(self.path).query).get("model", [None])[0]

        self._ids = itertools.count(1)
        self.session_id = f"sess_{index}"
        self.conversation_id = f"conv_{index}"
        self.session: dict[str, Any] = default_session(
            self.session_id, silence_duration_ms=options.silence_duration_ms)
        self.input_format: AudioFormat = AudioFormat.from_wire(audio_config(self.session, "input").get("format"))
        self.output_format: AudioFormat = AudioFormat.from_wire(audio_config(self.session, "output").get("format"))

        self.received: list[ReceivedEvent] = []
        self.sent: list[SentEvent] = []
        self.responses: list[ResponseRecord] = []
        self.user_turns: list[UserTurn] = []
        self.truncations: list[Truncation] = []
        self.function_call_outputs: list[FunctionCallOutput] = []
        self.user_messages: list[UserMessage] = []
        self.items: dict[str, dict[str, Any]] = {}
        self.close_code: int | None = None
        self.closed = False

        self._input: list[tuple[AudioFormat, bytearray]] = []
        self._buffer_ms = 0.0  # uncommitted input audio
        self._vad = EnergyVad(threshold_dbfs=options.vad_threshold_dbfs,
                              min_speech_ms=options.min_speech_ms)
        self._open_turn: UserTurn | None = None
        self._cursor = ScriptCursor(options.script)
        self._active: ResponseStream | None = None
        self._response_task: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._last_user_text: str | None = None
        self._fresh_input: str | None = None  # caller input since the last response started
        self._will_hear: collections.deque[str] = collections.deque()
        self._item_audio_ms: dict[str, float] = {}
        self._call_ids: set[str] = set()
        self._outbox: asyncio.Queue[str] = asyncio.Queue()
        self._changes = Changes()
        self._log = logging.LoggerAdapter(logger, {"connection": index})

    def __repr__(self) -> str:
        return f"<RealtimeConnection {self.index} {self.session_id} responses={len(self.responses)}>"

    # -- derived views ------------------------------------------------------------------------

    @property
    def turn_detection(self) -> TurnDetection | None:
        return TurnDetection.from_session(self.session, self._options.silence_duration_ms)

    @property
    def active_response(self) -> ResponseRecord | None:
        return self._active.record if self._active else None

    @property
    def speech_started_at(self) -> list[float]:
        """Monotonic time of every ``speech_started`` sent."""
        return [t.started_at for t in self.user_turns if t.source != "commit"]

    @property
    def audio_clock_ms(self) -> int:
        """Milliseconds of input audio received so far (the clock VAD times are on)."""
        return self._vad.position_ms

    @property
    def input_audio(self) -> bytes:
        """Every input audio byte received, in the input format(s) it arrived in."""
        return b"".join(bytes(data) for _, data in self._input)

    def input_audio_pcm16(self, rate: int | None = None) -> bytes:
        """Every input audio byte received, decoded to PCM16 at ``rate`` (default: the input
        format's rate; 8000 and 24000 are always available)."""
        out = bytearray()
        for fmt, data in self._input:
            pcm = fmt.to_pcm16(bytes(data))
            if rate is not None and rate != fmt.rate:
                resampler = Resampler(fmt.rate, rate)
                pcm = resampler.process(pcm) + resampler.flush()
            out += pcm
        return bytes(out)

    def received_of(self, type: str) -> list[ReceivedEvent]:
        return [e for e in self.received if e.type == type]

    def sent_of(self, type: str) -> list[SentEvent]:
        return [e for e in self.sent if e.type == type]

    # -- waiting ------------------------------------------------------------------------------

    async def wait_until(self, predicate: Callable[[], T], *, timeout: float = 5.0,
                         what: str | None = None) -> T:
        """Wait until ``predicate()`` is truthy (re-checked on every change to this
        connection) and return its value. Raises ``TimeoutError``, or ``ConnectionError`` if
        the connection closes first."""
        label = what or getattr(predicate, "__name__", "condition")
        return await self._changes.wait_until(
            predicate, timeout=timeout, what=f"{label} on connection {self.index}",
            gone=lambda: f"connection {self.index} closed ({self.close_code})" if self.closed else None)

    async def wait_for(self, match: str | Callable[[ReceivedEvent], bool], *, count: int = 1,
                       timeout: float = 5.0) -> ReceivedEvent:
        """Wait until ``count`` client events match (an event type, or a predicate on
        ``ReceivedEvent``) and return the ``count``-th. Events already received count."""
        test = _matcher(match)
        return await self.wait_until(lambda: _nth([e for e in self.received if test(e)], count),
                                     timeout=timeout, what=f"client event {_label(match)} #{count}")

    async def wait_for_sent(self, match: str | Callable[[SentEvent], bool], *, count: int = 1,
                            timeout: float = 5.0) -> SentEvent:
        """Like ``wait_for``, for the events the server sent."""
        test = _matcher(match)
        return await self.wait_until(lambda: _nth([e for e in self.sent if test(e)], count),
                                     timeout=timeout, what=f"server event {_label(match)} #{count}")

    async def wait_for_response(self, index: int = 0, *, done: bool = True,
                                timeout: float = 5.0) -> ResponseRecord:
        """Wait for ``responses[index]`` (by default until it is done) and return it."""
        def ready() -> ResponseRecord | None:
            if len(self.responses) > index and (self.responses[index].done or not done):
                return self.responses[index]
            return None
        return await self.wait_until(ready, timeout=timeout, what=f"response #{index}")

    # -- test controls ------------------------------------------------------------------------

    async def emit(self, event: Mapping[str, Any], *, validate: bool | None = None) -> None:
        """Send a raw server event (an ``event_id`` is added if missing) and wait until it is
        written. Validated like every event unless ``validate=False``: an invalid event raises
        ``InvalidServerEvent`` here, and nothing is sent."""
        if self.closed:
            raise ConnectionError(f"connection {self.index} is closed")
        self._send(dict(event), validate=validate)
        await self._flush()

    def will_hear(self, transcript: str) -> None:
        """The transcript of the caller's next speech turn (queued; before the script's
        ``Heard`` lines). What a caller simulator says it is saying, since this server cannot
        recognise speech."""
        self._will_hear.append(transcript)

    async def send_speech_started(self, audio_start_ms: int | None = None) -> UserTurn:
        """Act as if the VAD heard the caller start speaking (default: now on the audio
        clock): ``speech_started``, and a barge-in if a response is streaming and the session
        says ``interrupt_response``."""
        turn = self._speech_started(self.audio_clock_ms if audio_start_ms is None else audio_start_ms,
                                    source="injected")
        await self._flush()
        return turn

    async def send_speech_stopped(self, transcript: str | None = None,
                                  audio_end_ms: int | None = None) -> UserTurn:
        """End the caller's current speech turn as the VAD would: ``speech_stopped``,
        ``committed``, the user item, its transcript (``transcript``, else the script's next
        ``Heard``, else ``"<speech N ms>"``), and a response if the session says
        ``create_response``."""
        if self._open_turn is None:
            raise RuntimeError("no speech turn in progress; call send_speech_started first")
        turn = self._speech_stopped(self.audio_clock_ms if audio_end_ms is None else audio_end_ms,
                                    transcript=transcript)
        await self._flush()
        return turn

    async def start_response(self, turn: Turn | None = None) -> ResponseRecord:
        """Start a response on the server's own initiative (with ``turn``, else the next
        scripted turn). Raises ``RuntimeError`` if one is in progress."""
        if self._active is not None:
            raise RuntimeError(f"response {self._active.record.id} is still in progress")
        if turn is not None:
            turn_items(turn)
        record = self._start_response(Trigger("server", None, self._last_user_text), forced=turn)
        await self._flush()
        return record

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the WebSocket from the server side (``1000``/``1001`` end the SDK session
        quietly; anything else makes the SDK raise)."""
        await self._flush()
        await self._ws.close(code, reason)

    # -- serving ------------------------------------------------------------------------------

    async def _serve(self) -> None:
        writer = asyncio.create_task(self._write_loop(), name=f"realtime-writer-{self.index}")
        try:
            self._send({"type": "session.created", "session": self.session})
            async for message in self._ws:
                if isinstance(message, bytes):
                    self._reject(ClientEventError("Binary frames are not supported: send each "
                                                  "client event as a JSON text frame."))
                    continue
                self._receive(message)
        except ConnectionClosed:
            pass
        except Exception as exc:
            self._fail(exc, close=False)
            await self._flush(timeout=1.0)
            await self._ws.close(1011, "test server error")
        finally:
            await self._flush(timeout=1.0)
            self.closed = True
            self.close_code = self._ws.close_code
            if self._response_task is not None:
                self._response_task.cancel()
            writer.cancel()
            while not self._outbox.empty():
                self._outbox.get_nowait()
                self._outbox.task_done()
            self._changes.notify()
            self._log.debug("connection %d closed (%s)", self.index, self.close_code)

    async def _write_loop(self) -> None:
        while True:
            text = await self._outbox.get()
            try:
                await self._ws.send(text)
            except ConnectionClosed:
                pass
            finally:
                self._outbox.task_done()

    async def _flush(self, timeout: float = 5.0) -> None:
        if not self.closed:
            try:
                async with asyncio.timeout(timeout):
                    await self._outbox.join()
            except TimeoutError:
                self._log.warning("connection %d: outbox not drained in %s s", self.index, timeout)

    def _fail(self, exc: BaseException, *, close: bool = True) -> None:
        """A bug (an invalid event, a failing on_turn hook): log it, report it to the server
        (which re-raises it at close), tell the client and close with 1011."""
        self._log.error("connection %d: internal error", self.index, exc_info=exc)
        self._on_error(self, exc)
        if not self.closed:
            self._send(error_event(f"Test server error: {exc}", type="server_error"), validate=False)
            if close:
                task = asyncio.get_running_loop().create_task(self._close_after_error())
                self._closing = task  # keep a reference until it is done

    async def _close_after_error(self) -> None:
        await self._flush(timeout=1.0)
        await self._ws.close(1011, "test server error")

    def _send(self, event: dict[str, Any], *, validate: bool | None = None) -> dict[str, Any]:
        if self.closed:
            return event
        event.setdefault("event_id", self._new_id("event"))
        if self._options.validate if validate is None else validate:
            validate_server_event(event)
        self.sent.append(SentEvent(event["type"], time.monotonic(), event))
        self._outbox.put_nowait(json.dumps(event))
        self._changes.notify()
        return event

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{self.index}_{next(self._ids)}"

    def _add_item(self, item: dict[str, Any]) -> str | None:
        """Append an item to the conversation; return the id of the item before it."""
        previous = next(reversed(self.items), None) if self.items else None
        self.items[item["id"]] = item
        return previous

    def _update_item(self, item: dict[str, Any]) -> None:
        if item["id"] in self.items:
            self.items[item["id"]] = item

    # -- client events ------------------------------------------------------------------------

    def _receive(self, text: str) -> None:
        try:
            event = json.loads(text)
        except ValueError as e:
            self._reject(ClientEventError(f"Invalid JSON: {e}. Each client event must be a JSON "
                                          "object.", code="invalid_json"))
            return
        if not isinstance(event, dict):
            self._reject(ClientEventError("Each client event must be a JSON object.",
                                          code="invalid_json"))
            return
        self.received.append(ReceivedEvent(str(event.get("type")), time.monotonic(), event))
        self._changes.notify()
        try:
            parse_client_event(event)
            handler = getattr(self, "_on_" + event["type"].replace(".", "_"))
            handler(event)
        except ClientEventError as e:
            if e.event_id is None and isinstance(event.get("event_id"), str):
                e.event_id = event["event_id"]
            self._reject(e)

    def _reject(self, e: ClientEventError) -> None:
        self._log.info("connection %d: rejected a client event: %s", self.index, e.message)
        self._send(error_event(e.message, code=e.code, param=e.param, event_id=e.event_id))

    def _on_session_update(self, event: dict[str, Any]) -> None:
        update = event["session"]
        if update.get("type") != "realtime":
            raise ClientEventError("This server only supports realtime sessions "
                                   "(session.type 'realtime').", code="invalid_value",
                                   param="session.type")
        merged = merge_session(self.session, update,
                               silence_duration_ms=self._options.silence_duration_ms)
        validate_session(merged)
        try:
            input_format = AudioFormat.from_wire(audio_config(merged, "input").get("format"))
            output_format = AudioFormat.from_wire(audio_config(merged, "output").get("format"))
        except ValueError as e:
            raise ClientEventError(str(e), code="invalid_value", param="session.audio") from e
        self.session, self.input_format, self.output_format = merged, input_format, output_format
        self._send({"type": "session.updated", "session": merged})

    def _on_input_audio_buffer_append(self, event: dict[str, Any]) -> None:
        try:
            data = base64.b64decode(event["audio"], validate=True)
        except (binascii.Error, ValueError) as e:
            raise ClientEventError(f"Invalid 'audio': not valid base64 ({e}).",
                                   code="invalid_value", param="audio") from e
        fmt = self.input_format
        if self._input and self._input[-1][0] == fmt:
            self._input[-1][1].extend(data)
        else:
            self._input.append((fmt, bytearray(data)))
        pcm = fmt.to_pcm16(data)
        self._buffer_ms += len(pcm) / 2 / fmt.rate * 1000
        td = self.turn_detection
        for found in self._vad.feed(pcm, fmt.rate,
                                    silence_duration_ms=td.silence_duration_ms if td else None,
                                    prefix_padding_ms=td.prefix_padding_ms if td else 0):
            if isinstance(found, SpeechStart):
                self._speech_started(found.audio_start_ms, source="vad")
            else:
                self._speech_stopped(found.audio_end_ms)

    def _on_input_audio_buffer_commit(self, event: dict[str, Any]) -> None:
        if self._buffer_ms < MIN_COMMIT_MS:
            raise ClientEventError(
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {self._buffer_ms:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty")
        turn, self._open_turn = self._open_turn, None
        end = self.audio_clock_ms
        if turn is None:
            turn = UserTurn(self._new_id("item"), "commit", max(0, int(end - self._buffer_ms)),
                            time.monotonic())
            self.user_turns.append(turn)
        turn.audio_end_ms, turn.stopped_at = end, time.monotonic()
        self._vad.reset()
        self._commit(turn, None)

    def _on_input_audio_buffer_clear(self, event: dict[str, Any]) -> None:
        self._buffer_ms = 0.0
        self._open_turn = None
        self._vad.reset()
        self._send({"type": "input_audio_buffer.cleared"})

    def _on_output_audio_buffer_clear(self, event: dict[str, Any]) -> None:
        raise ClientEventError("output_audio_buffer.clear is only supported for WebRTC and SIP "
                               "sessions.", code="invalid_value", param="type")

    def _on_conversation_item_create(self, event: dict[str, Any]) -> None:
        item = dict(event["item"])
        if item.get("id") in self.items:
            raise ClientEventError(f"Item with id '{item['id']}' already exists.",
                                   code="invalid_value", param="item.id")
        if item["type"] == "function_call_output" and item["call_id"] not in self._call_ids:
            raise ClientEventError(f"Tool call ID '{item['call_id']}' not found in conversation.",
                                   code="invalid_value", param="item.call_id")
        if item["type"] == "function_call" and item.get("call_id"):
            self._call_ids.add(item["call_id"])
        item.setdefault("id", self._new_id("item"))
        if item["type"] in ("message", "function_call", "function_call_output"):
            item.setdefault("object", "realtime.item")
            item.setdefault("status", "completed")
        previous = self._add_item(item)
        now = time.monotonic()
        if item["type"] == "function_call_output":
            self.function_call_outputs.append(FunctionCallOutput(item["call_id"], item["output"], now))
        elif item["type"] == "message" and item["role"] == "user":
            text = " ".join(p.get("text") or "" for p in item["content"] if p.get("type") == "input_text")
            if text:
                self.user_messages.append(UserMessage(item["id"], text, now))
                self._last_user_text = self._fresh_input = text
        self._send({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
        self._send({"type": "conversation.item.done", "previous_item_id": previous, "item": item})

    def _on_conversation_item_retrieve(self, event: dict[str, Any]) -> None:
        item = self.items.get(event["item_id"])
        if item is None:
            raise ClientEventError(f"Item with item_id not found: {event['item_id']}",
                                   code="item_retrieve_invalid_item_id", param="item_id")
        self._send({"type": "conversation.item.retrieved", "item": item})

    def _on_conversation_item_delete(self, event: dict[str, Any]) -> None:
        if self.items.pop(event["item_id"], None) is None:
            raise ClientEventError(f"Item with item_id not found: {event['item_id']}",
                                   code="item_delete_invalid_item_id", param="item_id")
        self._send({"type": "conversation.item.deleted", "item_id": event["item_id"]})

    def _on_conversation_item_truncate(self, event: dict[str, Any]) -> None:
        item_id, index, end_ms = event["item_id"], event["content_index"], event["audio_end_ms"]
        item = self.items.get(item_id)
        if item is None or item["type"] != "message" or item["role"] != "assistant":
            raise ClientEventError(f"Only assistant messages can be truncated; no such item: "
                                   f"{item_id}", code="item_truncate_invalid_item_id", param="item_id")
        if index != 0:
            raise ClientEventError(f"Invalid content_index {index}: the item has one audio part.",
                                   code="invalid_value", param="content_index")
        audio_ms = self._item_audio_ms.get(item_id, 0.0)
        if end_ms < 0 or end_ms > int(-(-audio_ms // 1)):
            raise ClientEventError(f"audio_end_ms ({end_ms}) must be between 0 and the audio "
                                   f"duration of the item ({audio_ms:g}ms).",
                                   code="invalid_value", param="audio_end_ms")
        self.truncations.append(Truncation(item_id, index, end_ms, time.monotonic()))
        # The real API drops the transcript of a truncated item so that the context holds no
        # text the caller did not hear.
        self._update_item({**item, "content": [{"type": "output_audio", "transcript": ""}]})
        self._send({"type": "conversation.item.truncated", "item_id": item_id,
                    "content_index": index, "audio_end_ms": end_ms})

    def _on_response_create(self, event: dict[str, Any]) -> None:
        if self._active is not None:
            rid = self._active.record.id
            raise ClientEventError(f"Conversation already has an active response in progress: "
                                   f"{rid}. Wait until the response is finished before creating "
                                   "a new one.", code="conversation_already_has_active_response")
        self._start_response(Trigger("response.create", event, self._last_user_text))

    def _on_response_cancel(self, event: dict[str, Any]) -> None:
        wanted = event.get("response_id")
        if self._active is None or (wanted and wanted != self._active.record.id):
            raise ClientEventError("Cancellation failed: no active response found",
                                   code="response_cancel_not_active")
        self._active.cancel("client_cancelled")

    # -- caller turns -------------------------------------------------------------------------

    def _speech_started(self, audio_start_ms: int, *, source: str) -> UserTurn:
        turn = UserTurn(self._new_id("item"), source, int(audio_start_ms), time.monotonic())  # type: ignore[arg-type]
        self.user_turns.append(turn)
        self._open_turn = turn
        self._send({"type": "input_audio_buffer.speech_started",
                    "audio_start_ms": turn.audio_start_ms, "item_id": turn.item_id})
        td = self.turn_detection
        if self._active is not None and (td is None or td.interrupt_response):
            self._active.cancel("turn_detected")
        return turn

    def _speech_stopped(self, audio_end_ms: int, transcript: str | None = None) -> UserTurn:
        turn, self._open_turn = self._open_turn, None
        assert turn is not None
        turn.audio_end_ms, turn.stopped_at = int(audio_end_ms), time.monotonic()
        self._send({"type": "input_audio_buffer.speech_stopped",
                    "audio_end_ms": turn.audio_end_ms, "item_id": turn.item_id})
        self._commit(turn, transcript)
        td = self.turn_detection
        if td is not None and td.create_response and self._active is None:
            self._start_response(Trigger("turn_detection", None, turn.transcript))
        return turn

    def _commit(self, turn: UserTurn, transcript: str | None) -> None:
        previous = next(reversed(self.items), None) if self.items else None
        self._send({"type": "input_audio_buffer.committed", "previous_item_id": previous,
                    "item_id": turn.item_id})
        item = {"id": turn.item_id, "object": "realtime.item", "type": "message", "role": "user",
                "status": "completed", "content": [{"type": "input_audio", "transcript": None}]}
        self._add_item(item)
        self._send({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
        self._buffer_ms = 0.0
        duration = (turn.audio_end_ms or 0) - turn.audio_start_ms
        if transcript is None and self._will_hear:
            transcript = self._will_hear.popleft()
        if transcript is None:
            transcript = self._cursor.next_heard()
        turn.transcript = f"<speech {duration} ms>" if transcript is None else transcript
        self._last_user_text = self._fresh_input = turn.transcript
        # The real API transcribes only when the session asks for it (the SDK always does).
        if audio_config(self.session, "input").get("transcription") is not None:
            self._send({"type": "conversation.item.input_audio_transcription.completed",
                        "item_id": turn.item_id, "content_index": 0, "transcript": turn.transcript,
                        "usage": {"type": "duration", "seconds": round(duration / 1000, 3)}})
            item = {**item, "content": [{"type": "input_audio", "transcript": turn.transcript}]}
            self._update_item(item)
        self._send({"type": "conversation.item.done", "previous_item_id": previous, "item": item})

    # -- responses ----------------------------------------------------------------------------

    def _start_response(self, trigger: Trigger, forced: Turn | None = None) -> ResponseRecord:
        out = audio_config(self.session, "output")
        record = ResponseRecord(self._new_id("resp"), trigger, time.monotonic())
        stream = ResponseStream(self, record, fmt=self.output_format, voice=out.get("voice"),
                                chunk_ms=self._options.chunk_ms, pace=self._options.pace,
                                tone_hz=self._options.tone_hz)
        self.responses.append(record)
        self._active = stream
        self._send(stream.created_event())
        fresh, self._fresh_input = self._fresh_input, None

        async def resolve() -> Turn:
            if forced is not None:
                return forced
            if self._options.on_turn is not None:
                chosen = self._options.on_turn(self, trigger)
                if inspect.isawaitable(chosen):
                    chosen = await chosen
                if chosen is not None:
                    return chosen  # type: ignore[return-value]
            return self._cursor.next_turn(fresh)

        task = asyncio.get_running_loop().create_task(stream.run(resolve),
                                                      name=f"realtime-{record.id}")
        task.add_done_callback(self._response_done)
        self._response_task = task
        return record

    def _response_finished(self, stream: ResponseStream) -> None:
        if self._active is stream:
            self._active = None

    def _response_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._fail(exc)


def _matcher(match: str | Callable[[Any], bool]) -> Callable[[Any], bool]:
    if isinstance(match, str):
        return lambda e: e.type == match
    return match


def _label(match: str | Callable[[Any], bool]) -> str:
    return repr(match) if isinstance(match, str) else getattr(match, "__name__", "predicate")


def _nth(found: list[T], count: int) -> T | None:
    return found[count - 1] if len(found) >= count else None
