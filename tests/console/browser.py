"""A headless Chromium for the console's tests, driven over the Chrome DevTools Protocol.

Debian's ``chromium`` package (``/usr/bin/chromium``), started with ``--remote-debugging-port=0``:
it picks a free port and writes it, with the browser's WebSocket path, to ``DevToolsActivePort``
in its profile directory. One WebSocket (the ``websockets`` package) carries every command; a
page is a target attached in flat mode, so its commands and events carry its ``sessionId``
(https://chromedevtools.github.io/devtools-protocol/, "Target.attachToTarget").
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

__all__ = ["CHROMIUM", "BrowserError", "Chromium", "Page", "chromium_or_skip"]

CHROMIUM = Path("/usr/bin/chromium")


class BrowserError(RuntimeError):
    """Chromium did not start, or a DevTools command failed."""


def chromium_or_skip() -> Path:
    """The Chromium binary. Missing: the test is skipped, unless GATEWAY_TEST_REQUIRE_CHROMIUM=1
    (CI, which installs it), where a missing browser is a failure, not a pass."""
    import pytest

    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    why = f"{CHROMIUM} is missing (Debian: apt-get install chromium)"
    if os.environ.get("GATEWAY_TEST_REQUIRE_CHROMIUM") == "1":
        pytest.fail(f"GATEWAY_TEST_REQUIRE_CHROMIUM=1 but {why}")
    pytest.skip(why)


class Chromium:
    """``async with Chromium(profile_dir) as browser: page = await browser.new_page()``"""

    def __init__(self, profile: Path, binary: Path = CHROMIUM, *, start_timeout: float = 30.0) -> None:
        self.profile = profile
        self.binary = binary
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = profile.parent / f"{profile.name}-chromium.log"
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Chromium:
        self.profile.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(self.binary), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--mute-audio", "--hide-scrollbars",
                 "--autoplay-policy=no-user-gesture-required", "--window-size=1280,900",
                 "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
                 f"--user-data-dir={self.profile}", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = await self._devtools_url()
            self._ws = await connect(url, max_size=None, ping_interval=None)
        except BaseException:
            await self.close()
            raise
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _devtools_url(self) -> str:
        """Waits (with a deadline) for Chromium to write its DevTools port."""
        active = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.start_timeout
        while True:
            if active.is_file():
                lines = active.read_text().split()
                if len(lines) >= 2:
                    return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
            assert self.process is not None
            if self.process.poll() is not None:
                raise BrowserError(f"chromium exited with {self.process.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise BrowserError(f"chromium wrote no DevToolsActivePort within {self.start_timeout} s: "
                                   f"{self.log_tail()}")
            await asyncio.sleep(0.05)

    def log_tail(self, n: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        return ""

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for raw in self._ws:
                message = json.loads(raw)
                if "id" in message:
                    future = self._waiting.pop(message["id"], None)
                    if future is not None and not future.done():
                        future.set_result(message)
                else:
                    for listener in list(self._listeners):
                        listener(message)
        finally:
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(BrowserError("the DevTools connection closed"))

    async def send(self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None,
                   timeout: float = 30.0) -> dict[str, Any]:
        assert self._ws is not None
        ident = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = future
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        await self._ws.send(json.dumps(message))
        async with asyncio.timeout(timeout):
            answer = await future
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    def listen(self, listener: Callable[[dict[str, Any]], None]) -> None:
        self._listeners.append(listener)

    async def new_page(self) -> Page:
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        page = Page(self, attached["sessionId"])
        self.listen(page._event)
        for domain in ("Page", "Runtime", "Network"):
            await page.send(f"{domain}.enable")
        return page

    async def close(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self.send("Browser.close", timeout=5.0)
            await self._ws.close()
            self._ws = None
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self.process is not None:
            try:
                await asyncio.to_thread(self.process.wait, 10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait)
            self.process = None
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """One tab: navigate, evaluate JavaScript, wait for the DOM, take a screenshot; the URLs it
    requested (``requested``) and what its console said (``console``)."""

    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser = browser
        self.session = session
        self.requested: list[str] = []
        self.console: list[str] = []
        self.errors: list[str] = []
        self._loaded = asyncio.Event()

    def _event(self, message: dict[str, Any]) -> None:
        if message.get("sessionId") != self.session:
            return
        method, params = message.get("method"), message.get("params", {})
        if method == "Network.requestWillBeSent":
            self.requested.append(params["request"]["url"])
        elif method == "Page.loadEventFired":
            self._loaded.set()
        elif method == "Runtime.consoleAPICalled":
            self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.errors.append(details.get("exception", {}).get("description") or details.get("text", "?"))

    async def send(self, method: str, params: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
        return await self.browser.send(method, params, session=self.session, **options)

    async def goto(self, url: str, timeout: float = 30.0) -> None:
        """Navigate and wait for the page's load event."""
        self._loaded.clear()
        navigated = await self.send("Page.navigate", {"url": url})
        if navigated.get("errorText"):
            raise BrowserError(f"navigating to {url}: {navigated['errorText']}")
        async with asyncio.timeout(timeout):
            await self._loaded.wait()

    async def loaded_after(self, action: str, timeout: float = 30.0) -> None:
        """Run ``action`` (JavaScript that navigates: a click, a submit) and wait for the next page."""
        self._loaded.clear()
        await self.evaluate(action)
        async with asyncio.timeout(timeout):
            await self._loaded.wait()

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                      "awaitPromise": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, what: str, timeout: float = 20.0, poll_s: float = 0.05) -> Any:
        """Evaluates ``expression`` until it is truthy (its value), or fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(poll_s)
        raise AssertionError(f"the page never showed {what} within {timeout} s (last: {value!r}); "
                             f"page errors: {self.errors[-3:]}; console: {self.console[-5:]}")

    async def screenshot(self, path: Path) -> Path:
        """The whole page as a PNG."""
        metrics = await self.send("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        shot = await self.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": max(1280, size["width"]), "height": size["height"], "scale": 1},
        })
        path.write_bytes(base64.b64decode(shot["data"]))
        return path
