"""The server's WebSocket protocol (gateway.serving.MediaStreamProtocol), on a real uvicorn
server and a real client: no pause of the socket per message while the application keeps up,
back-pressure when it does not, and every message delivered in order either way; a text message
that is not UTF-8 closed with 1007 in one line naming the peer, limited per peer."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import time

import pytest
import uvicorn
import websockets
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.ratelog import LogLimiter, PeerLogFilter
from gateway.serving import ARRIVED, SEND_TEXTS, MediaStreamProtocol, uvicorn_config


class CountingProtocol(MediaStreamProtocol):
    """Counts the socket's pauses, and the most messages ever queued for the application."""

    instances: list[CountingProtocol] = []

    def connection_made(self, transport) -> None:  # noqa: ANN001 - asyncio's signature
        super().connection_made(transport)
        self.pauses = self.resumes = self.most_queued = 0
        pause, resume = transport.pause_reading, transport.resume_reading

        def counted_pause() -> None:
            self.pauses += 1
            pause()

        def counted_resume() -> None:
            self.resumes += 1
            resume()

        transport.pause_reading, transport.resume_reading = counted_pause, counted_resume
        CountingProtocol.instances.append(self)

    def send_receive_event_to_app(self) -> None:
        super().send_receive_event_to_app()
        self.most_queued = max(self.most_queued, self.queue.qsize())


@pytest.fixture
async def server():
    """A WebSocket endpoint that reads ``n`` messages (waiting for ``go`` before each of the
    second half) and answers with what it read, joined."""
    go = asyncio.Event()

    async def endpoint(ws: WebSocket) -> None:
        await ws.accept()
        n = int(await ws.receive_text())
        got = []
        for i in range(n):
            if i == n // 2:
                await go.wait()
            got.append(await ws.receive_text())
        await ws.send_text(",".join(got))
        await ws.close()

    async with serving(endpoint, ws=CountingProtocol, log_level="warning") as url:
        CountingProtocol.instances.clear()
        yield url, go
        go.set()  # (a failed test may have left the endpoint waiting)


@contextlib.asynccontextmanager
async def serving(endpoint, **options: object):  # noqa: ANN001 - a Starlette WebSocket endpoint
    """``endpoint`` at ``/ws`` on a real uvicorn (``uvicorn_config``: ``MediaStreamProtocol``
    unless ``ws`` says otherwise), on 127.0.0.1 and a free port: its URL."""
    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn_config(app, lifespan="off", **options))
    srv.capture_signals = lambda: _no_signals()  # type: ignore[method-assign]
    task = asyncio.create_task(srv.serve(sockets=[sock]))
    try:
        while not srv.started:
            await asyncio.sleep(0.005)
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}/ws"
    finally:
        srv.should_exit = True
        async with asyncio.timeout(10):
            await task


class _no_signals:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


async def test_no_pause_while_the_app_keeps_up_and_back_pressure_when_it_does_not(server) -> None:
    url, go = server
    n = 200
    async with websockets.connect(url, compression=None) as ws:
        await ws.send(str(n))
        # First half: the application reads as fast as messages come, paced like a Media Stream.
        for i in range(n // 2):
            await ws.send(f"m{i}")
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.1)
        protocol = CountingProtocol.instances[-1]
        assert protocol.pauses == 0  # uvicorn's own class pauses after every message: 100 here
        # Second half: the application stops reading; messages pile up until reading pauses.
        for i in range(n // 2, n):
            await ws.send(f"m{i}")
        await asyncio.sleep(0.1)
        assert protocol.pauses == 1
        # Reading stopped: what one read from the socket had brought in was queued, no more.
        assert MediaStreamProtocol.HIGH <= protocol.most_queued < n // 2
        go.set()
        answer = await ws.recv()
    assert answer == ",".join(f"m{i}" for i in range(n))  # all of them, in order
    assert protocol.resumes >= 1


async def test_each_message_carries_when_it_came_off_the_socket_not_when_the_app_read_it() -> None:
    """A mark echo counts as played when it arrived (TwilioSocket.receive): the stamp is the
    server's read of the socket, however long the message then waits for the application."""
    go = asyncio.Event()
    seen: list[tuple[float, float]] = []

    async def endpoint(ws: WebSocket) -> None:
        await ws.accept()
        await go.wait()  # the application is busy: the message waits in the queue
        message = await ws.receive()
        seen.append((message[ARRIVED], time.monotonic()))
        await ws.send_text(message["text"])

    async with serving(endpoint, log_level="warning") as url, websockets.connect(url) as ws:
        sent = time.monotonic()
        await ws.send("hello")
        await asyncio.sleep(0.2)  # loopback delivers it long before: the server reads it
        released = time.monotonic()
        go.set()
        assert await asyncio.wait_for(ws.recv(), 5) == "hello"
    ((arrived, got),) = seen
    assert sent <= arrived < released <= got


class WriteCounting(MediaStreamProtocol):
    """Keeps what each write to the socket carried."""

    instances: list[WriteCounting] = []

    def connection_made(self, transport) -> None:  # noqa: ANN001 - asyncio's signature
        super().connection_made(transport)
        self.writes: list[bytes] = []
        write = transport.write

        def counted(data: bytes) -> None:
            self.writes.append(bytes(data))
            write(data)

        transport.write = counted
        WriteCounting.instances.append(self)


async def test_several_messages_sent_at_once_go_out_in_order_in_one_write() -> None:
    """``SEND_TEXTS``: a model delta's frames and its mark cost one system call, not one each;
    the peer reads them as the separate messages they are, in order."""
    extensions = []

    async def endpoint(ws: WebSocket) -> None:
        await ws.accept()
        extensions.append(set(ws.scope["extensions"]))
        await ws.send({"type": "websocket.send", SEND_TEXTS: ["media 1", "media 2", "mark"]})
        await ws.send_text("alone")
        await ws.receive_text()  # the peer has read them all

    async with serving(endpoint, ws=WriteCounting, log_level="warning") as url, \
            websockets.connect(url, compression=None) as ws:
        got = [await asyncio.wait_for(ws.recv(), 5) for _ in range(4)]
        await ws.send("done")
    assert got == ["media 1", "media 2", "mark", "alone"]
    writes = WriteCounting.instances[-1].writes
    carrying = [[m for m in (b"media 1", b"media 2", b"mark", b"alone") if m in w] for w in writes]
    assert [c for c in carrying if c] == [[b"media 1", b"media 2", b"mark"], [b"alone"]]  # the three in one write
    assert SEND_TEXTS in extensions[0]  # the server says it can, for the application to see


async def test_several_messages_for_a_closed_socket_raise_as_one_would() -> None:
    """After the peer has gone, a batch is refused the way uvicorn refuses one message: the
    application sees a disconnect, not a silent loss."""
    outcome: list[str] = []
    gone = asyncio.Event()

    async def endpoint(ws: WebSocket) -> None:
        await ws.accept()
        await gone.wait()
        await asyncio.sleep(0.1)  # the server has seen the close
        try:
            await ws.send({"type": "websocket.send", SEND_TEXTS: ["a", "b"]})
            outcome.append("sent")
        except WebSocketDisconnect:
            outcome.append("disconnected")

    async with serving(endpoint, log_level="warning") as url:
        async with websockets.connect(url, compression=None):
            pass
        gone.set()
        async with asyncio.timeout(5):
            while not outcome:
                await asyncio.sleep(0.01)
    assert outcome == ["disconnected"]


async def test_messages_written_now_go_out_at_once_unless_writes_wait() -> None:
    """The extension's ``write_now`` (a barge-in's ``clear``, from the model connection's read):
    written in the same event-loop step, or refused, never queued behind anything. Refused
    while the socket's writes are paused (a message the application is waiting to send would
    otherwise come after it) and once the connection has closed."""
    results: list[object] = []
    closed = asyncio.Event()

    async def endpoint(ws: WebSocket) -> None:
        await ws.accept()
        write_now = ws.scope["extensions"][SEND_TEXTS]["write_now"]
        protocol = WriteCounting.instances[-1]
        results.append(write_now(["clear"]))
        protocol.pause_writing()  # the peer is not reading: the transport's buffer is full
        results.append(write_now([]))
        protocol.resume_writing()
        results.append(write_now([]))
        await closed.wait()
        await asyncio.sleep(0.1)  # the server has seen the close
        results.append(write_now(["late"]))

    async with serving(endpoint, ws=WriteCounting, log_level="warning") as url:
        async with websockets.connect(url, compression=None) as ws:
            assert await asyncio.wait_for(ws.recv(), 5) == "clear"
        closed.set()
        async with asyncio.timeout(5):
            while len(results) < 4:
                await asyncio.sleep(0.01)
    assert results == [True, False, True, False]
    assert not any(b"late" in w for w in WriteCounting.instances[-1].writes)


def test_the_startup_heap_is_frozen_so_full_collections_walk_only_newer_objects() -> None:
    import gc

    from gateway.serving import FULL_COLLECTION_AFTER, freeze_startup_heap

    gc.unfreeze()
    tracked = len(gc.get_objects())
    thresholds = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)  # CPython's default
        freeze_startup_heap()
        assert gc.get_freeze_count() >= tracked // 2  # this process's heap: out of the collector's sight
        assert len(gc.get_objects()) < tracked // 10  # what a full collection now walks
        assert gc.get_threshold() == (700, 10, FULL_COLLECTION_AFTER)  # and comes ten times more rarely
        gc.set_threshold(500, 20, 5)  # the process chose its own: left as it is
        freeze_startup_heap()
        assert gc.get_threshold() == (500, 20, 5)
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


# --- A text message that is not UTF-8 --------------------------------------------------------------


class Captured(logging.Handler):
    """The records of the loggers it is attached to (uvicorn's own loggers may not reach the
    root: its default logging config stops them)."""

    def __init__(self, *names: str) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.loggers = [logging.getLogger(name) for name in names]

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> Captured:
        for logger in self.loggers:
            logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for logger in self.loggers:
            logger.removeHandler(self)


@pytest.fixture
async def echo():
    """An endpoint under ``MediaStreamProtocol`` that echoes text messages and notes how each
    connection ended for it; uvicorn's loggers as ``gateway serve`` has them."""
    ends: list[int] = []

    async def endpoint(ws: WebSocket) -> None:
        await ws.accept()
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                ends.append(message.get("code", 1000))
                return
            await ws.send_text("echo " + message["text"])

    with Captured("uvicorn.error", "gateway.serving") as captured:
        async with serving(endpoint, log_level="info", log_config=None) as url:
            yield url, ends, captured


INVALID = b'{"event": "media", "x": "\xff\xfe"}'  # not UTF-8 from byte 25


async def closed_by_server(ws: websockets.ClientConnection) -> int | None:
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 5)
    return ws.close_code


async def test_invalid_utf8_closes_with_1007_in_one_line_naming_the_peer_and_no_traceback(echo) -> None:
    url, ends, captured = echo
    async with websockets.connect(url) as good:
        async with websockets.connect(url) as bad:
            await bad.send(INVALID, text=True)  # a text frame, sent as these bytes
            assert await closed_by_server(bad) == 1007
            port = bad.local_address[1]
        await good.send("still here")  # the connection next to it is unaffected
        assert await good.recv() == "echo still here"
    lines = [r for r in captured.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in lines] == [
        f"[peer=127.0.0.1:{port}] WebSocket /ws closed with 1007: a text message that is not UTF-8 "
        "(invalid start byte at byte 25)"
    ]
    assert not any(r.exc_info for r in captured.records)  # uvicorn's own handling logs a traceback
    assert ends[0] == 1007  # the application was told, with the code


async def test_a_message_in_fragments_is_decoded_whole(echo) -> None:
    url, ends, captured = echo
    async with websockets.connect(url) as ws:
        await ws.send([b"caf\xc3", b"\xa9"], text=True)  # a character split across two frames
        assert await ws.recv() == "echo caf\u00e9"
        await ws.send([INVALID[:20], INVALID[20:]], text=True)
        assert await closed_by_server(ws) == 1007


async def test_a_peer_s_lines_are_limited_per_peer_uvicorn_s_own_included(echo) -> None:
    url, ends, captured = echo
    peer_log = PeerLogFilter(LogLimiter(burst=2, every_s=60, total_burst=100, total_every_s=1), clock=lambda: 0.0)
    peer_log.install(("gateway.serving", "uvicorn.error"))
    try:
        for _ in range(6):
            async with websockets.connect(url) as bad:
                await bad.send(INVALID, text=True)
                assert await closed_by_server(bad) == 1007
    finally:
        peer_log.uninstall()
    written = collections.Counter(r.msg for r in captured.records if hasattr(r, "peer") or "[peer=" in r.getMessage())
    assert written == {
        "%s WebSocket %s closed with 1007: a text message that is not UTF-8 (%s at byte %d)": 2,
        '%s - "WebSocket %s" [accepted]': 2,  # uvicorn's
        "connection open": 2,  # websockets'
    }
    assert peer_log.limiter.untold == 3 * 4
    peers = {r.peer for r in captured.records if r.name == "uvicorn.error" and hasattr(r, "peer")}
    assert all(p.startswith("[peer=127.0.0.1:") for p in peers) and len(peers) == 2
