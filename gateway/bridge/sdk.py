"""Where the gateway adjusts the Agents SDK: its one-off costs kept off the event loop's hot
path, and the model connection's compression made a setting.

Two things in ``agents.realtime.openai_realtime`` (openai-agents 0.24) block the event loop
long enough to delay every other call's audio:

- ``_ConversionHelper.try_convert_raw_message`` builds a new pydantic
  ``TypeAdapter(RealtimeClientEvent)`` for every raw message sent (about 20 ms here, each
  time): the gateway sends one per call (the greeting) and one per history item when a session
  is rolled over or reconnected. ``prepare()`` swaps in the same conversion with one adapter
  built once. Same input, same output: the method is a pure function of the message.
- The first session of the process builds the server-event adapter and completes the event
  models' schemas (about 100 ms): ``prepare()`` does that at start-up, before any call.

Called from the app's lifespan. If a future SDK changes these internals, ``prepare`` leaves it
alone and logs that it did.

``realtime_model(compression, on_speech_started)`` is the model each session connects with:
the SDK's own, with one method overridden, the one that opens the connection
(``OpenAIRealtimeWebSocketModel._create_websocket_connection``, agents/realtime/openai_realtime.py).
Three things depend on it:

- Compression: openai-agents 0.24 opens its WebSocket with ``websockets``' default, which offers
  permessage-deflate, and its public ``TransportConfig`` has no compression option. The gateway
  offers it or not (``GATEWAY_MODEL_COMPRESSION``); everything else (the URL, the headers, the
  SDK's user agent, its 8 MiB message limit) is as the SDK's would be.
- The caller's audio: ``GatewayModel.send_event`` writes each chunk's
  ``input_audio_buffer.append`` to the connection itself, the SDK's JSON byte for byte, without
  the pydantic model the SDK builds and serializes for it (a quarter of the cost of sending one),
  and frames it itself when the connection takes it at once (``ModelConnection.write_text``).
- The earliest word of a barge-in: the connection is a ``ModelConnection``, which calls
  ``on_speech_started`` in the event-loop step that reads a ``speech_started`` off the socket,
  a pass of the loop before the SDK's reader task sees it.

If a future SDK opens its connection some other way, the gateway logs it once and uses the
SDK's model as it is: deflate, and a barge-in's ``clear`` sent from the SDK's reader.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
from binascii import b2a_base64
from collections.abc import Callable
from typing import Any

import agents
import websockets
from agents.realtime import OpenAIRealtimeWebSocketModel
from agents.realtime.model_inputs import RealtimeModelSendAudio, RealtimeModelSendEvent
from websockets.asyncio.client import ClientConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from gateway.serving import masked_frame, release_transport

log = logging.getLogger("gateway.sdk")
#: The SDK's own limit on one incoming message (agents/realtime/openai_realtime.py).
SDK_MAX_MESSAGE_BYTES = 8 * 1024 * 1024
#: The User-Agent the SDK's connection sends.
SDK_USER_AGENT = f"Agents/Python {agents.__version__}"
_done = False
#: The SDK's own conversion, as it was before ``prepare`` (for comparison in tests).
original_conversion: Any = None


def prepare() -> None:
    global _done, original_conversion
    if _done:
        return
    _done = True
    try:
        from agents.realtime import openai_realtime as sdk
        from pydantic import TypeAdapter
    except ImportError:  # pragma: no cover - the SDK is a dependency
        return
    helper = getattr(sdk, "_ConversionHelper", None)
    client_event = getattr(sdk, "OpenAIRealtimeClientEvent", None)
    adapter = TypeAdapter(client_event) if client_event is not None else None  # one, for both uses
    if helper is None or adapter is None or not hasattr(helper, "try_convert_raw_message"):
        log.info("openai-agents internals changed: raw-message conversion left as it is")
    else:
        original_conversion = helper.__dict__["try_convert_raw_message"]

        def try_convert_raw_message(cls: Any, message: Any) -> Any:
            try:
                data = {"type": message.message["type"]}
                data.update(message.message.get("other_data", {}))
                return adapter.validate_python(data)
            except Exception:
                return None

        helper.try_convert_raw_message = classmethod(try_convert_raw_message)
    warm = getattr(sdk, "get_server_event_type_adapter", None)
    if warm is not None:
        warm()
    # Complete the client events' schemas now (pydantic defers it to the first dump).
    with_response = {"type": "response.create", "response": {"instructions": "warm-up"}}
    with_item = {"type": "conversation.item.create",
                 "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "."}]}}
    if adapter is not None:
        for data in (with_response, with_item, {"type": "input_audio_buffer.append", "audio": ""}):
            try:
                adapter.validate_python(data).model_dump_json(exclude_unset=True)
            except Exception as exc:  # warm-up must never stop the gateway from starting
                log.debug("SDK warm-up of %s skipped: %s", data["type"], exc)


@functools.cache
def _overridable() -> bool:
    """Whether the SDK still opens its connection in the method ``GatewayModel`` overrides,
    with the arguments it expects. Decided once, at the first session that asks: if not, one
    warning says what is not applied."""
    method = getattr(OpenAIRealtimeWebSocketModel, "_create_websocket_connection", None)
    ok = inspect.iscoroutinefunction(method) and \
        list(inspect.signature(method).parameters) == ["self", "url", "headers", "transport_config"]
    if not ok:
        log.warning("openai-agents opens its model connection differently than 0.24 did: the connection is the "
                    "SDK's own (GATEWAY_MODEL_COMPRESSION is not applied, and a barge-in's clear waits for the "
                    "SDK's reader)")
    return ok


#: The one server event the gateway acts on as it comes off the socket.
SPEECH_STARTED = "input_audio_buffer.speech_started"
_SPEECH_STARTED_BYTES = f'"{SPEECH_STARTED}"'.encode()
#: A ``speech_started`` is about 150 bytes; audio deltas, kilobytes, are not searched.
_SMALL_MESSAGE = 1024


def audio_append(audio: bytes) -> str:
    """The ``input_audio_buffer.append`` event for ``audio``, as the SDK serializes it."""
    return '{"audio":"' + b2a_base64(audio, newline=False).decode("ascii") + '","type":"input_audio_buffer.append"}'


class MaskKeys:
    """Masking keys for the frames a client sends: each a fresh 4 bytes of the operating
    system's CSPRNG, as RFC 6455 asks (section 5.3: "chosen at random", unpredictable, new for
    each frame), drawn 1,024 at a time. ``websockets`` draws each with ``secrets.token_bytes``,
    a system call per frame. A forked process draws its own: it never reuses its parent's."""

    DRAW = 4096

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._pool, self._at = b"", 0

    def take(self) -> bytes:
        at = self._at
        if at >= len(self._pool):
            self._pool, at = os.urandom(self.DRAW), 0
        self._at = at + 4
        return self._pool[at : at + 4]


_mask_keys = MaskKeys()


class ModelConnection(ClientConnection):
    """The model's WebSocket connection, which calls ``on_speech_started`` the moment a
    ``speech_started`` is read off the socket, in the same event-loop step, before any task
    sees it: the SDK's reader, a task woken by the message, runs a whole pass of the event
    loop later (under load, milliseconds). ``process_event`` is where ``websockets`` hands
    each parsed frame of a connection to its subclasses (websockets/asyncio/connection.py);
    the frame then goes on to the SDK unchanged."""

    on_speech_started: Callable[[], None] | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        # Closed: let go of the call's hook, and of what would keep this connection in a
        # reference cycle, freed only by the collector's full collections, which stop every
        # call: the logger adapter ``websockets`` gives it names it; the keepalive task's
        # cancellation traceback holds its frame; the transport, before Python 3.13, keeps a
        # bound method of its own.
        self.on_speech_started = None
        self.keepalive_task = None
        logger = self.logger
        if isinstance(logger, logging.LoggerAdapter) and logger.extra and logger.extra.get("websocket") is self:
            self.logger = self.protocol.logger = logger.logger
        release_transport(self.transport)

    def write_text(self, text: str) -> bool:
        """Frame ``text`` as one text message and write it now, if the connection takes it at
        once: open, writes not paused, no fragmented message under way, no extension (with
        permessage-deflate ``websockets`` frames it). Otherwise False, and nothing written:
        ``send`` then does it, with its flow control and its errors.

        The frame is the one ``websockets`` would send (RFC 6455 section 5.2: FIN, text, masked,
        the shortest length form); ``send`` costs more for it: an async context per message,
        a drain check, and a system call for each masking key."""
        protocol = self.protocol
        if protocol.state is not State.OPEN or self.paused or self.send_in_progress is not None \
                or protocol.expect_continuation_frame or protocol.extensions or self.transport.is_closing():
            return False
        self.transport.write(masked_frame(Opcode.TEXT, text.encode(), _mask_keys.take()))
        return True

    def process_event(self, event: Any) -> None:
        super().process_event(event)
        hook = self.on_speech_started
        if hook is None or type(event) is not Frame or event.opcode is not Opcode.TEXT:
            return
        data = event.data
        if len(data) > _SMALL_MESSAGE or _SPEECH_STARTED_BYTES not in data:
            return
        try:
            message = json.loads(data)
        except ValueError:
            return  # not JSON: the SDK reports it
        if type(message) is dict and message.get("type") == SPEECH_STARTED:
            hook()


class GatewayModel(OpenAIRealtimeWebSocketModel):
    """The SDK's model, with the connection opened by the gateway: compressed or not as set
    (``none``: every model message sent and read as it is, with no zlib on either side), a
    ``ModelConnection`` that tells ``on_speech_started`` of a ``speech_started`` as it arrives,
    and the caller's audio written to it without a pydantic event per chunk."""

    def __init__(self, compression: str, on_speech_started: Callable[[], None] | None = None) -> None:
        super().__init__()
        self._compression = None if compression == "none" else "deflate"
        self._on_speech_started = on_speech_started
        self._connection: ModelConnection | None = None

    async def send_event(self, event: RealtimeModelSendEvent) -> None:
        # The hot path, 50 chunks of the caller's audio a second per call. The SDK builds each
        # as a pydantic InputAudioBufferAppendEvent and serializes it (``_send_audio``,
        # ``_send_raw_message``); here the same JSON, byte for byte (a test compares them), is
        # built directly, and framed by ``write_text`` when the connection takes it at once. If
        # not, ``send`` writes it; on a closed connection that raises ConnectionClosed, as the
        # SDK's does. Everything else is the SDK's.
        connection = self._connection
        if type(event) is RealtimeModelSendAudio and not event.commit and connection is not None:
            text = audio_append(event.audio)
            if not connection.write_text(text):
                await connection.send(text)
            return
        await super().send_event(event)

    async def _create_websocket_connection(self, url: str, headers: dict[str, str],
                                           transport_config: Any = None) -> Any:
        if transport_config:  # the gateway passes none; anything else is the SDK's to handle
            return await super()._create_websocket_connection(url, headers, transport_config)
        connection = await websockets.connect(url, user_agent_header=SDK_USER_AGENT, additional_headers=headers,
                                              max_size=SDK_MAX_MESSAGE_BYTES, compression=self._compression,
                                              create_connection=ModelConnection)
        connection.on_speech_started = self._on_speech_started
        self._connection = connection
        return connection


def realtime_model(compression: str, on_speech_started: Callable[[], None] | None = None,
                   ) -> OpenAIRealtimeWebSocketModel:
    """A new model for one session, its connection compressed (``deflate``: the SDK's own
    behaviour) or not (``none``); ``on_speech_started`` is told of every ``speech_started`` as
    it comes off the socket (``ModelConnection``). If the SDK no longer opens its connection
    where the gateway expects, the SDK's own model: deflate, and no early word."""
    if _overridable():
        return GatewayModel(compression, on_speech_started)
    return OpenAIRealtimeWebSocketModel()
