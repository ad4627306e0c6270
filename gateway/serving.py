"""``gateway serve``'s server: uvicorn, with a graceful drain on SIGTERM.

A deploy stops the old process with SIGTERM. Ending its calls then would hang up on people
mid-sentence, so the first SIGTERM (or Ctrl-C) drains instead:

- ``/readyz`` answers 503 at once (the load balancer stops sending new work); ``/healthz``
  stays 200 (the process is alive, do not kill it);
- new incoming-call webhooks are turned away: a ``<Redirect>`` to
  ``GATEWAY_DRAIN_REDIRECT_URL`` (another instance), else 503 (Twilio then tries the number's
  fallback URL); ``POST /calls`` answers 503;
- calls in progress go on until they end, or until ``GATEWAY_DRAIN_TIMEOUT_S`` has passed;
- then the server shuts down as usual and the process exits with status 0.

A second signal exits at once (uvicorn's own handling).

``uvicorn_config`` is the one place the server's settings are chosen (``gateway serve``, the
test kit's ``GatewayServer`` and the bench's bare relay use it), including the WebSocket
protocol class ``MediaStreamProtocol``: uvicorn's sans-I/O ``websockets`` implementation with
flow control that pauses reading when messages pile up rather than after every message, and a
text message that is not UTF-8 closed with 1007 and one line (not a traceback per message).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.protocols.utils import ClientDisconnected
from websockets.exceptions import InvalidState
from websockets.frames import CloseCode, apply_mask  # apply_mask: in C where built

from gateway.ratelog import peer_tag

if TYPE_CHECKING:
    from starlette.types import ASGIApp
    from uvicorn._types import ASGIReceiveEvent, ASGISendEvent
    from websockets.http11 import Request

    from gateway.app import Gateway

__all__ = [
    "ARRIVED", "SEND_TEXTS", "DrainingServer", "MediaStreamProtocol", "freeze_startup_heap", "release_transport",
    "uvicorn_config",
]

log = logging.getLogger("gateway.serving")


#: Collections of the middle generation between two full collections (``gc.set_threshold``'s
#: third figure; CPython's default is 10).
FULL_COLLECTION_AFTER = 100


def freeze_startup_heap() -> None:
    """Keep the garbage collector's full collections short and rare: each stops every call.

    Short: after start-up the process holds some 200,000 objects that live as long as it does
    (the Agents SDK's and openai's pydantic models, uvicorn, the app). A full collection walks
    all of them: about 120 ms on the development machine (Python 3.13), a stall of every call's
    audio that a 14-minute soak saw about once a minute (bench/README.md). ``gc.freeze()`` moves
    them out of the collector's sight for good (CPython's documented use: objects that stay for
    the process's life); collections then walk only what calls have created since.

    Rare: a full collection still walks every live call's objects, about 400 a call: 25-42 ms
    beside 150 calls under Python 3.11 (``bench/bargein.py``), long enough to make a barge-in's
    ``clear`` late, and it finds next to nothing to free, since an ended call leaves no
    reference cycle (``tests/callflow/test_lifecycle.py``). The middle generation was collected
    every 5 to 10 s at that load: with CPython's default of a full collection after every 10 of
    those, one came every minute or two; after 100 (``FULL_COLLECTION_AFTER``), every 8 to 17
    minutes. Cyclic garbage old enough to reach the last generation waits that long to be
    freed; the younger generations' collections are unchanged. Thresholds the process has
    already set (not CPython's default third figure) are left as they are.
    """
    gc.collect()  # garbage from start-up is freed, not frozen
    gc.freeze()
    young, middle, full = gc.get_threshold()
    if full == 10:
        gc.set_threshold(young, middle, FULL_COLLECTION_AFTER)


def release_transport(transport: object) -> None:
    """Call from a protocol's ``connection_lost``: on Python before 3.13, a closed asyncio socket
    transport keeps a bound method of its own (``_read_ready_cb``), a reference cycle that only
    the collector's full collections free, and they stop every call for longer the more they
    free. Python 3.13 drops it when the transport closes (``_SelectorSocketTransport.close``,
    asyncio/selector_events.py); this does the same after the close."""
    if sys.version_info < (3, 13) and getattr(transport, "_read_ready_cb", None) is not None:
        transport._read_ready_cb = None  # type: ignore[attr-defined]


def masked_frame(opcode: int, payload: bytes, key: bytes) -> bytes:
    """A client's unfragmented WebSocket frame (RFC 6455 section 5.2): FIN, ``opcode``, the
    shortest length form, masked with the 4-byte ``key``, which the caller chooses (section
    5.3 asks for a fresh, unpredictable key per frame)."""
    size = len(payload)
    if size < 126:
        header = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
    return header + key + apply_mask(payload, key)


#: The key of a received message's arrival time (``time.monotonic()``), an extension of the ASGI
#: message that Starlette passes through untouched.
ARRIVED = "gateway.arrived"
#: An ASGI extension (in ``scope["extensions"]`` when the server has it): a ``websocket.send``
#: message whose ``SEND_TEXTS`` key holds several text messages, framed in order and written
#: to the socket at once; and ``scope["extensions"][SEND_TEXTS]["write_now"]``
#: (``MediaStreamProtocol.write_now``).
SEND_TEXTS = "gateway.send_texts"


class MediaStreamProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol, with flow control suited to a Media Stream, and
    a text message that is not UTF-8 refused in one line.

    Flow control: uvicorn pauses the socket's reading after every message it queues for the
    application and resumes when the application has taken the last one: for a stream of 50
    small messages a second that is an ``epoll_ctl`` pair per message, about a tenth of the
    gateway's CPU under load (``bench/load.py``, py-spy). Here reading pauses only when ``HIGH``
    messages wait unread and resumes once the application is down to ``LOW``: the same
    back-pressure on a peer that outruns the application, with no system calls while it keeps
    up. A peer can then have at most ``HIGH`` messages (each at most the server's
    ``ws_max_size``) queued in the process before TCP holds the rest.

    Invalid UTF-8: ``websockets``' sans-I/O parser does not decode text frames (its asyncio
    layer does); uvicorn decodes a whole message when it queues it and, if that fails, logs an
    ERROR with a traceback, for every such message of every peer. RFC 6455 says to *Fail the
    WebSocket Connection* then, with close code 1007, "invalid frame payload data"
    (https://www.rfc-editor.org/rfc/rfc6455#section-8.1, section 7.4.1): done here with
    ``websockets``' ``fail`` (close frame, then the server ends the TCP connection), and one
    WARNING naming the peer, limited per peer like every line naming one (``gateway.ratelog``).
    The application sees a ``websocket.disconnect`` with code 1007.

    Several messages in one write: a model audio delta becomes a ``media`` message or two and
    a ``mark``, sent back to back. uvicorn writes each ASGI message to the socket by itself, a
    ``send`` system call each. A ``websocket.send`` that carries ``SEND_TEXTS`` (a list of
    strings) frames them all and writes them in one call (``bench/hotpath.py``: 23 us of CPU
    for a delta's three messages one by one, 11 at once); the scope's ``extensions`` name the
    key, so that the application knows the server has it. Flow control and a closed
    connection are handled as for one message. The extension's ``write_now`` writes at once,
    from outside any task (a barge-in's ``clear``, from the model connection's read), or
    refuses if the socket is not taking writes.

    Each connection's own log records (uvicorn's handshake line, ``websockets``' "connection
    open") carry the peer too, so that they are limited per peer as well.

    Arrival time: each message the application receives carries ``ARRIVED``, when it was read
    off the socket (``time.monotonic()``). Under load the call's reader gets to a message a
    loop iteration or more later; a mark echo counts as played when it arrived, not when it
    was read (``TwilioSocket.receive``), so that what the caller heard is not under-counted by
    the event loop's queue.
    """

    HIGH = 8
    LOW = 2

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # uvicorn's lines of this connection ('"WebSocket /twilio/media" [accepted]', '403') and
        # websockets' ("connection open", "connection rejected"): one or two per connection,
        # whoever the peer. Each record carries the peer (``record.peer``), so the gateway's
        # per-peer limit applies to them too (gateway.ratelog).
        peer = peer_tag(self.client)
        self.logger = _PeerLogger(self.logger, {"peer": peer})  # type: ignore[assignment]
        self.conn.logger = logging.LoggerAdapter(self.conn.logger, {"peer": peer})

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        # No reference cycle left for the collector, whose full collections stop every call:
        # the scope's extension names this protocol's method; the transport, before Python
        # 3.13, its own.
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"].pop(SEND_TEXTS, None)
        release_transport(self.transport)

    def handle_connect(self, event: Request) -> None:  # the handshake: the scope is built here
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][SEND_TEXTS] = {"write_now": self.write_now}

    def write_now(self, texts: list[str]) -> bool:
        """Frame ``texts`` and write them to the socket now, without waiting: False (and
        nothing written) if the connection is not open or its writes are paused, so that
        nothing an application's ``send`` is waiting to write could come after them. An empty
        list asks whether they could be."""
        if not self.handshake_complete or self.close_sent or self.disconnected or not self.writable.is_set():
            return False
        if texts:
            try:
                self._write(texts)
            except InvalidState:
                return False
        return True

    def _write(self, texts: list[str]) -> None:
        for text in texts:
            self.conn.send_text(text.encode())
        self.transport.write(b"".join(self.conn.data_to_send()))

    async def send(self, message: ASGISendEvent) -> None:
        texts = message.get(SEND_TEXTS)
        if texts is None or not self.handshake_complete or self.close_sent:
            await super().send(message)  # uvicorn's own (a batch after the close: its error)
            return
        await self.writable.wait()
        if self.disconnected:
            raise ClientDisconnected()
        try:
            self._write(texts)
        except InvalidState:
            raise ClientDisconnected() from None

    def send_receive_event_to_app(self) -> None:
        # uvicorn's own (uvicorn.protocols.websockets.websockets_sansio_impl), but for the
        # pause rule and the invalid text.
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.close_sent:
            # The application has closed: messages are dropped, not queued, and reading goes
            # on until the peer's close frame (uvicorn's rule): never pause then.
            return
        if self.curr_msg_data_type == "text":
            try:
                message: ASGIReceiveEvent = {"type": "websocket.receive", "text": data.decode(),  # type: ignore[typeddict-unknown-key]
                                             ARRIVED: time.monotonic()}
            except UnicodeDecodeError as error:
                self.fail_invalid_text(error)
                return
        else:
            message = {"type": "websocket.receive", "bytes": data}
        self.queue.put_nowait(message)
        if not self.read_paused and self.queue.qsize() >= self.HIGH:
            self.read_paused = True
            self.transport.pause_reading()

    def fail_invalid_text(self, error: UnicodeDecodeError) -> None:
        """A text message that is not UTF-8: one line, then close with 1007 and drop the TCP
        connection (what uvicorn does after its traceback, and ``websockets`` for a close
        frame's reason that is not UTF-8)."""
        code, reason = int(CloseCode.INVALID_DATA), "invalid UTF-8"
        path = getattr(self, "scope", {}).get("path", "?")
        log.warning("%s WebSocket %s closed with 1007: a text message that is not UTF-8 (%s at byte %d)",
                    peer_tag(self.client), path, error.reason, error.start)
        self.conn.fail(code, reason)
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.transport.close()

    async def receive(self) -> ASGIReceiveEvent:
        message = await self.queue.get()
        if self.read_paused and self.queue.qsize() <= self.LOW:
            self.read_paused = False
            self.transport.resume_reading()
        return message


class _PeerLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A connection's uvicorn logger whose records carry the peer."""

    @property
    def level(self) -> int:  # uvicorn compares its logger's level with TRACE
        return self.logger.level


def uvicorn_config(app: ASGIApp, **options: object) -> uvicorn.Config:
    """The server's uvicorn settings: ``MediaStreamProtocol`` for WebSockets, messages up to
    ``MAX_MESSAGE_BYTES`` (a Media Stream limit, see ``gateway.bridge.call``); ``options``
    add to or override them (host, port, log level, ping interval, ...)."""
    from gateway.bridge.call import MAX_MESSAGE_BYTES

    settings: dict[str, object] = {"ws": MediaStreamProtocol, "ws_max_size": MAX_MESSAGE_BYTES, **options}
    return uvicorn.Config(app, **settings)  # type: ignore[arg-type]


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, gateway: Gateway, drain_timeout_s: float) -> None:
        super().__init__(config)
        self.gateway = gateway
        self.drain_timeout_s = drain_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Future[None] | None = None

    async def startup(self, sockets=None) -> None:  # noqa: ANN001 - uvicorn's signature
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)
        freeze_startup_heap()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # uvicorn installs this with signal.signal: it runs in the main thread, between two
        # steps of the event loop. The first SIGTERM/SIGINT drains (and is not re-raised at
        # exit, so the exit status is 0); any later one is uvicorn's.
        if sig in (signal.SIGTERM, signal.SIGINT) and self._drain_task is None and self._loop is not None:
            self._drain_task = self._loop.create_future()  # claims the drain before it starts
            self._loop.call_soon_threadsafe(self._start_drain)
            return
        super().handle_exit(sig, frame)

    def _start_drain(self) -> None:
        self._drain_task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        await self.gateway.drain(self.drain_timeout_s)
        self.should_exit = True
