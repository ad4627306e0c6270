"""Run the gateway app under a real uvicorn server on 127.0.0.1, on a free port, in-process.

The socket is bound first, so ``PUBLIC_URL`` (from which the TwiML stream URL and every
signature check derive) can name the real port before the app is built::

    async with GatewayServer(lambda public_url: create_app(settings_for(public_url))) as gw:
        gw.url  # http://127.0.0.1:PORT
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

import uvicorn
from starlette.applications import Starlette

from gateway.serving import uvicorn_config


class _Server(uvicorn.Server):
    """uvicorn checks ``should_exit`` every 100 ms; a test suite stops servers all the time,
    so this one also wakes the moment ``close()`` asks (the ticks still run every 100 ms)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.exit_requested = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self):  # noqa: ANN201 - uvicorn's hook
        """An in-process test server leaves the process's signals alone (uvicorn would take
        SIGINT and SIGTERM for itself, so Ctrl-C or a CI timeout could not stop the tests)."""
        yield

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    await self.exit_requested.wait()


class GatewayServer:
    def __init__(self, make_app: Callable[[str], Starlette], host: str = "127.0.0.1") -> None:
        self._make_app = make_app
        self._host = host
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.url = ""
        self.app: Starlette | None = None

    async def start(self) -> GatewayServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, 0))
        port = sock.getsockname()[1]
        self.url = f"http://{self._host}:{port}"
        self.app = self._make_app(self.url)
        config = uvicorn_config(self.app, log_level="warning", lifespan="on", ws_ping_interval=None)
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # surfaces the start-up error
            await asyncio.sleep(0.005)
        return self

    async def close(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            self._server.exit_requested.set()
            await self._task

    async def __aenter__(self) -> GatewayServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
