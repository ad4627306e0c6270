"""``RealtimeServer``: the WebSocket server; each connection is a ``RealtimeConnection``."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Sequence
from http import HTTPStatus
from types import TracebackType
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from gateway.testing.realtime.connection import ConnectionOptions, RealtimeConnection
from gateway.testing.realtime.script import DEFAULT_TONE_HZ, Line, OnTurn, Script
from gateway.testing.realtime.waiting import Changes

__all__ = ["RealtimeServer", "RealtimeServerError", "serve_forever"]

logger = logging.getLogger("gateway.testing.realtime")

#: Same frame limit as the SDK's client (8 MiB); a big audio append must not kill the call.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


class RealtimeServerError(RuntimeError):
    """A connection failed inside the server (an invalid event, a failing ``on_turn``):
    raised by ``close()`` so that a test cannot pass over it."""


class RealtimeServer:
    """A local OpenAI Realtime (GA protocol) WebSocket server that plays scripted turns.

    ``script``: a ``Script`` or a list of lines (``Reply``, ``ToolCall``, ``Heard``, tuples of
    turns); every connection plays its own copy from the start.
    ``on_turn(conn, trigger)``: called for every response; return a turn to play it, or None
    to play the script's next turn. May be a coroutine function.
    ``chunk_ms``: audio per ``response.output_audio.delta``. ``pace``: None sends deltas as
    fast as possible; ``1.0`` in real time; ``4.0`` four times faster than real time.
    ``tone_hz``: fundamental of the synthesized voice of replies without audio.
    ``vad_threshold_dbfs`` / ``min_speech_ms``: the energy VAD (a 10 ms frame at or above the
    threshold is speech; speech must last ``min_speech_ms`` to start a turn).
    ``silence_duration_ms``: the default ``turn_detection.silence_duration_ms`` (a session
    can set its own).
    ``validate``: check every outgoing event against the openai types (raise on a bad one).
    ``api_key``: if set, the handshake must carry ``Authorization: Bearer <api_key>``.
    """

    def __init__(
        self,
        script: Script | Sequence[Line] | None = None,
        *,
        on_turn: OnTurn | None = None,
        chunk_ms: int = 100,
        pace: float | None = None,
        tone_hz: float = DEFAULT_TONE_HZ,
        vad_threshold_dbfs: float = -45.0,
        min_speech_ms: int = 60,
        silence_duration_ms: int = 500,
        validate: bool = True,
        api_key: str | None = None,
        compression: str | None = "deflate",
    ) -> None:
        if chunk_ms <= 0:
            raise ValueError("chunk_ms must be positive")
        if pace is not None and pace <= 0:
            raise ValueError("pace must be positive (or None: as fast as possible)")
        self.options = ConnectionOptions(
            script=Script.coerce(script), on_turn=on_turn, chunk_ms=chunk_ms, pace=pace,
            tone_hz=tone_hz, vad_threshold_dbfs=vad_threshold_dbfs, min_speech_ms=min_speech_ms,
            silence_duration_ms=silence_duration_ms, validate=validate)
        self.api_key = api_key
        #: permessage-deflate, when the client offers it (``websockets``' default, as the Agents
        #: SDK's client does); None: declined, every message goes uncompressed.
        self.compression = compression
        self.connections: list[RealtimeConnection] = []
        """Every connection so far, in the order they were accepted."""
        self.errors: list[BaseException] = []
        """Internal errors of any connection (``close()`` raises the first one)."""
        self._server: Server | None = None
        self._failures: collections.deque[int | str] = collections.deque()
        self._closing = asyncio.Event()
        self.handshakes_failed = 0
        self._changes = Changes()
        self.host = ""
        self.port = 0

    @property
    def url(self) -> str:
        """``ws://HOST:PORT/v1/realtime``: pass it as ``model_config["url"]``."""
        if self._server is None:
            raise RuntimeError("the server is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}/v1/realtime"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> RealtimeServer:
        """Listen on ``host:port`` (port 0: any free port; see ``url``)."""
        if self._server is not None:
            raise RuntimeError("the server is already started")
        self._server = await serve(self._handle, host, port, max_size=MAX_MESSAGE_BYTES,
                                   process_request=self._check_auth, compression=self.compression)
        self.host, self.port = self._server.sockets[0].getsockname()[:2]
        logger.info("realtime test server listening on %s", self.url)
        return self

    async def close(self) -> None:
        """Close every connection (1001) and stop listening. Raises ``RealtimeServerError``
        if any connection failed inside the server."""
        self._closing.set()  # hung handshakes end now
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self.errors:
            raise RealtimeServerError(
                f"{len(self.errors)} internal error(s) in the realtime test server; "
                f"first: {self.errors[0]!r}") from self.errors[0]

    async def __aenter__(self) -> RealtimeServer:
        if self._server is None:
            await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            await self.close()
        except RealtimeServerError:
            if exc is None:
                raise
            logger.error("realtime test server errors (the block also raised): %r", self.errors)

    async def wait_for_connection(self, index: int = 0, *, timeout: float = 5.0) -> RealtimeConnection:
        """Wait until connection number ``index`` (0: the first) has been accepted."""
        return await self._changes.wait_until(
            lambda: self.connections[index] if len(self.connections) > index else None,
            timeout=timeout, what=f"connection #{index}")

    def fail_next(self, *failures: int | str) -> None:
        """Make the next handshakes fail, one failure each, in order: an HTTP status (e.g.
        429, 500: refused with it) or ``"hang"`` (accepted by TCP, never answered: the
        client's timeout). For fault tests; ``handshakes_failed`` counts them."""
        for failure in failures:
            if failure != "hang" and not (isinstance(failure, int) and 400 <= failure <= 599):
                raise ValueError(f"a failure is an HTTP error status or 'hang', not {failure!r}")
        self._failures.extend(failures)

    async def _check_auth(self, connection: ServerConnection, request: Request) -> Response | None:
        if self._failures:
            failure = self._failures.popleft()
            self.handshakes_failed += 1
            if failure == "hang":
                await self._closing.wait()  # until the client gives up, or the server closes
                failure = HTTPStatus.SERVICE_UNAVAILABLE
            status = HTTPStatus(failure)
            return connection.respond(status, f"{status.phrase} (injected by the test)\n")
        if self.api_key is None or request.headers.get("Authorization") == f"Bearer {self.api_key}":
            return None
        return connection.respond(HTTPStatus.UNAUTHORIZED, "Incorrect API key provided.\n")

    async def _handle(self, websocket: ServerConnection) -> None:
        conn = RealtimeConnection(websocket, len(self.connections), self.options, self._record_error)
        self.connections.append(conn)
        self._changes.notify()
        await conn._serve()

    def _record_error(self, conn: RealtimeConnection, exc: BaseException) -> None:
        self.errors.append(exc)


async def serve_forever(host: str = "127.0.0.1", port: int = 8765,
                        script: Script | Sequence[Line] | None = None, **options: Any) -> None:
    """Run a ``RealtimeServer`` until cancelled, printing its URL (for ``gateway`` CLI use).
    ``options`` are ``RealtimeServer`` keyword arguments."""
    server = RealtimeServer(script, **options)
    await server.start(host, port)
    print(f"OpenAI Realtime test server listening on {server.url}", flush=True)
    try:
        await asyncio.Future()  # until cancelled
    finally:
        try:
            await server.close()
        except RealtimeServerError as e:
            logger.error("%s", e)
