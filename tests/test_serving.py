"""The server's WebSocket flow control (gateway.serving.MediaStreamProtocol), on a real uvicorn
server and a real client: no pause of the socket per message while the application keeps up,
back-pressure when it does not, and every message delivered in order either way."""

from __future__ import annotations

import asyncio
import socket

import pytest
import uvicorn
import websockets
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from gateway.serving import MediaStreamProtocol, uvicorn_config


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

    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn_config(app, ws=CountingProtocol, log_level="warning", lifespan="off")
    srv = uvicorn.Server(config)
    srv.capture_signals = lambda: _no_signals()  # type: ignore[method-assign]
    task = asyncio.create_task(srv.serve(sockets=[sock]))
    while not srv.started:
        await asyncio.sleep(0.005)
    CountingProtocol.instances.clear()
    yield f"ws://127.0.0.1:{sock.getsockname()[1]}/ws", go
    go.set()  # (a failed test may have left the endpoint waiting)
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


def test_the_startup_heap_is_frozen_so_full_collections_walk_only_newer_objects() -> None:
    import gc

    from gateway.serving import freeze_startup_heap

    gc.unfreeze()
    tracked = len(gc.get_objects())
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() >= tracked // 2  # this process's heap: out of the collector's sight
        assert len(gc.get_objects()) < tracked // 10  # what a full collection now walks
    finally:
        gc.unfreeze()
