"""``TwilioSocket``: a call's thin asyncio edge to Twilio, the Media Streams WebSocket.

It reads one frame at a time and hands it to the call (``gateway.bridge.call.Call``), with
the socket-level facts only it can see (a binary frame, a message over the size limit, the
peer gone); it writes what the call decided (media, marks, clear), serialized by the
stream's ``MediaStream``; and it closes the socket.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from gateway.bridge.actions import Action, SendClear, SendMark, SendMedia
from gateway.bridge.call import Call
from gateway.bridge.ending import CLOSE_TOO_BIG
from gateway.serving import ARRIVED, SEND_TEXTS


class TwilioSocket:
    def __init__(self, websocket: WebSocket, call: Call, clock: Callable[[], float] = time.monotonic) -> None:
        self.websocket = websocket
        self.call = call
        self.clock = clock
        self._stream = call.stream  # the call parses what comes in; the same stream serializes
        # The server stamps each message's arrival on time.monotonic (MediaStreamProtocol): it
        # can stand in for the call's clock only if that is the same clock.
        self._stamped = clock is time.monotonic
        # The server can write several messages at once (MediaStreamProtocol): a model delta's
        # frames and its mark then cost one system call, not one each.
        extension = websocket.scope.get("extensions", {}).get(SEND_TEXTS)
        self._batches = extension is not None
        #: Writes texts to the socket at once, if it is taking writes; None if the server cannot.
        self._write_now: Callable[[list[str]], bool] | None = (extension or {}).get("write_now")

    @property
    def peer(self) -> str:
        client = self.websocket.client
        return f"[peer={client.host}:{client.port}]" if client else "[peer=?]"

    async def receive(self) -> list[Action]:
        """Read the next frame and feed it to the call: what it decided."""
        try:
            message = await self.websocket.receive()
        except WebSocketDisconnect:
            return self.call.twilio_closed(self.clock())
        now = self.clock()
        if message["type"] == "websocket.disconnect":
            if message.get("code") == CLOSE_TOO_BIG:
                return self.call.too_big(now)
            return self.call.twilio_closed(now)
        text = message.get("text")
        if text is None:
            return self.call.binary_frame(now)
        return self.call.receive(text, now, message.get(ARRIVED) if self._stamped else None)

    async def send(self, actions: list[Action]) -> None:
        """Send Twilio these messages (media, marks, clear), in order; at once if the server can."""
        texts = [self._text(action) for action in actions]
        if self._batches and len(texts) > 1:
            await self.websocket.send({"type": "websocket.send", SEND_TEXTS: texts})
            return
        for text in texts:
            await self.websocket.send_text(text)

    def writable(self) -> bool:
        """Whether ``send_now`` can write at once: the server can, and the socket is open and
        taking writes (nothing waits to be written ahead of what it sends)."""
        return self._write_now is not None and self._write_now([])

    def send_now(self, actions: list[Action]) -> bool:
        """Write these messages to the socket now, in this event-loop step (``writable``); False
        if they were not."""
        return self._write_now is not None and self._write_now([self._text(action) for action in actions])

    def _text(self, action: Action) -> str:
        kind = type(action)
        if kind is SendMedia:
            return self._stream.media(action.payload)  # type: ignore[attr-defined]
        if kind is SendMark:
            return self._stream.mark(action.name)  # type: ignore[attr-defined]
        if kind is SendClear:
            return self._stream.clear()
        raise TypeError(f"not a message for Twilio: {action!r}")

    def gone(self) -> bool:
        return WebSocketState.DISCONNECTED in (self.websocket.client_state, self.websocket.application_state)

    async def close(self, code: int) -> None:
        if self.websocket.application_state == WebSocketState.DISCONNECTED:
            return
        try:
            await self.websocket.close(code)
        except (WebSocketDisconnect, RuntimeError, OSError):  # the peer closed first: done
            pass
