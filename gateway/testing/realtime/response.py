"""``ResponseStream``: one model response, streamed with the GA event sequence.

For each output item of the turn, in order (sdk.md section 7; the GA reference):

- a ``Reply``: ``response.output_item.added``, ``conversation.item.added``,
  ``response.content_part.added``, then ``response.output_audio.delta`` chunks each followed by
  the ``response.output_audio_transcript.delta`` of the words due by then, then
  ``response.output_audio.done``, ``response.output_audio_transcript.done``,
  ``response.content_part.done``, ``response.output_item.done``, ``conversation.item.done``;
- a ``ToolCall``: ``response.output_item.added`` (status ``in_progress``, empty arguments),
  ``conversation.item.added``, ``response.function_call_arguments.delta`` / ``.done``,
  ``response.output_item.done`` (status ``completed``: this is what makes the SDK run the tool),
  ``conversation.item.done``;

and finally ``response.done`` with the output items and a made-up but deterministic ``usage``.

Cancellation (``cancel``) is synchronous: it emits the closing events of the item being spoken
(``output_audio.done`` ... ``output_item.done`` with status ``incomplete``; the reference says
these are "also emitted when a Response is interrupted, incomplete, or cancelled") and
``response.done`` with status ``cancelled``, and no delta follows. Because events are queued in
the order they are emitted, nothing of the cancelled response can slip out after its
``response.done``.

Pacing: audio is cut into ``chunk_ms`` deltas. With ``pace=None`` they go out as fast as the
event loop allows (yielding between deltas so client events are still handled); with
``pace=p`` each delta is sent at ``start + (audio of the response before it) / p``, where
``start`` is the first delta of the response: ``p=1.0`` streams in real time (the client always
holds one chunk), ``p=4.0`` at four times real time.
"""

from __future__ import annotations

import asyncio
import base64
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from gateway.testing.realtime.records import ResponseRecord
from gateway.testing.realtime.script import Reply, ToolCall, Turn, turn_items
from gateway.testing.realtime.session import AudioFormat

if TYPE_CHECKING:
    from gateway.testing.realtime.connection import RealtimeConnection

__all__ = ["ResponseStream"]


class _OpenMessage:
    __slots__ = ("item", "output_index", "transcript")

    def __init__(self, item: dict[str, Any], output_index: int) -> None:
        self.item, self.output_index, self.transcript = item, output_index, ""


class ResponseStream:
    def __init__(self, conn: RealtimeConnection, record: ResponseRecord, *, fmt: AudioFormat,
                 voice: Any, chunk_ms: int, pace: float | None, tone_hz: float) -> None:
        self.conn, self.record, self.fmt = conn, record, fmt
        self._voice, self._chunk_ms, self._pace, self._tone_hz = voice, chunk_ms, pace, tone_hz
        self._open: _OpenMessage | None = None
        self._output: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._pace_start: float | None = None  # loop time of the response's first delta

    # -- the response object ------------------------------------------------------------------

    def _response(self, *, status: str, details: dict[str, Any] | None = None,
                  usage: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "id": self.record.id,
            "object": "realtime.response",
            "status": status,
            "status_details": details,
            "output": list(self._output),
            "conversation_id": self.conn.conversation_id,
            "output_modalities": ["audio"],
            "max_output_tokens": "inf",
            "audio": {"output": {"format": self.fmt.wire,
                                 # a custom voice object is the session's business; the SDK
                                 # flattens it before validating, so only echo a voice name
                                 **({"voice": self._voice} if isinstance(self._voice, str) else {})}},
            "usage": usage,
            "metadata": None,
        }

    def created_event(self) -> dict[str, Any]:
        return {"type": "response.created", "response": self._response(status="in_progress")}

    def _usage(self) -> dict[str, Any]:
        # Not billing-accurate, just stable: ~1 token per 4 characters of text, 10 per second
        # of audio, 10 per conversation item of input.
        text = math.ceil(len(self.record.transcript) / 4)
        audio = math.ceil(self.record.audio_ms / 100)
        inp = 10 * len(self.conn.items)
        return {
            "total_tokens": inp + text + audio,
            "input_tokens": inp,
            "output_tokens": text + audio,
            "input_token_details": {"text_tokens": inp, "audio_tokens": 0, "cached_tokens": 0},
            "output_token_details": {"text_tokens": text, "audio_tokens": audio},
        }

    # -- streaming ---------------------------------------------------------------------------

    async def run(self, resolve_turn: Callable[[], Awaitable[Turn]]) -> None:
        """Choose the turn and stream it. Returns early once the response is cancelled."""
        try:
            turn = await resolve_turn()
            items = turn_items(turn)
        except Exception as exc:
            if not self.record.done:
                self._finish("failed", details={"type": "failed", "error": {
                    "type": "server_error", "code": None, "message": f"on_turn failed: {exc!r}"}})
            raise
        if self.record.done:
            return
        self.record.turn = turn
        for output_index, item in enumerate(items):
            if isinstance(item, ToolCall):
                self._function_call(output_index, item)
            else:
                await self._message(output_index, item)
            if self.record.done:
                return
        self._finish("completed")

    def _ids(self, item_id: str, output_index: int) -> dict[str, Any]:
        return {"response_id": self.record.id, "item_id": item_id, "output_index": output_index}

    async def _message(self, output_index: int, reply: Reply) -> None:
        conn, send = self.conn, self.conn._send
        audio = self.fmt.from_model_pcm16(reply.pcm16(self._tone_hz))
        item_id = conn._new_id("item")
        item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "assistant",
                "status": "in_progress", "content": []}
        self.record.item_ids.append(item_id)
        send({"type": "response.output_item.added", "response_id": self.record.id,
              "output_index": output_index, "item": item})
        previous = conn._add_item(item)
        send({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
        ids = {**self._ids(item_id, output_index), "content_index": 0}
        send({"type": "response.content_part.added", **ids, "part": {"type": "audio", "transcript": ""}})
        self._open = _OpenMessage(item, output_index)

        step = self._chunk_ms * self.fmt.bytes_per_ms
        chunks = [audio[i:i + step] for i in range(0, len(audio), step)]
        words = re.findall(r"\s*\S+", reply.transcript)
        words_sent = 0
        for index, chunk in enumerate(chunks):
            if self._pace is None:
                await asyncio.sleep(0)  # let client events (a barge-in) through
            elif self._pace_start is None:
                self._pace_start = asyncio.get_running_loop().time()
            else:  # one clock for the whole response: items follow on without a gap
                await self._sleep_until(self._pace_start + self.record.audio_ms / 1000 / self._pace)
            if self.record.done:
                return
            send({"type": "response.output_audio.delta", **ids,
                  "delta": _b64(chunk)})
            now = time.monotonic()
            ms = len(chunk) / self.fmt.bytes_per_ms
            self.record.audio += chunk
            self.record.audio_ms += ms
            self.record.first_delta_at = self.record.first_delta_at or now
            self.record.last_delta_at = now
            conn._item_audio_ms[item_id] = conn._item_audio_ms.get(item_id, 0.0) + ms
            due = round(len(words) * (index + 1) / len(chunks))
            if due > words_sent:
                self._transcript_delta(ids, "".join(words[words_sent:due]))
                words_sent = due
        if words_sent < len(words) or not chunks and reply.transcript:
            self._transcript_delta(ids, "".join(words[words_sent:]) or reply.transcript)
        self._close_message("completed")

    def _transcript_delta(self, ids: dict[str, Any], delta: str) -> None:
        assert self._open is not None
        self._open.transcript += delta
        self.record.transcript += delta
        self.conn._send({"type": "response.output_audio_transcript.delta", **ids, "delta": delta})

    async def _sleep_until(self, deadline: float) -> None:
        delay = deadline - asyncio.get_running_loop().time()
        if delay <= 0:
            await asyncio.sleep(0)
            return
        try:
            async with asyncio.timeout(delay):
                await self._wake.wait()
        except TimeoutError:
            pass

    def _close_message(self, status: str) -> None:
        open_, self._open = self._open, None
        assert open_ is not None
        send = self.conn._send
        item_id, transcript = open_.item["id"], open_.transcript
        ids = {**self._ids(item_id, open_.output_index), "content_index": 0}
        send({"type": "response.output_audio.done", **ids})
        send({"type": "response.output_audio_transcript.done", **ids, "transcript": transcript})
        send({"type": "response.content_part.done", **ids,
              "part": {"type": "audio", "transcript": transcript}})
        item = {**open_.item, "status": status,
                "content": [{"type": "output_audio", "transcript": transcript}]}
        self.conn._update_item(item)
        send({"type": "response.output_item.done", "response_id": self.record.id,
              "output_index": open_.output_index, "item": item})
        send({"type": "conversation.item.done", "item": item})
        self._output.append(item)

    def _function_call(self, output_index: int, call: ToolCall) -> None:
        conn, send = self.conn, self.conn._send
        item_id = conn._new_id("item")
        call_id = call.call_id or conn._new_id("call")
        arguments = call.arguments_json()
        item = {"id": item_id, "object": "realtime.item", "type": "function_call",
                "status": "in_progress", "name": call.name, "call_id": call_id, "arguments": ""}
        self.record.item_ids.append(item_id)
        conn._call_ids.add(call_id)
        send({"type": "response.output_item.added", "response_id": self.record.id,
              "output_index": output_index, "item": item})
        previous = conn._add_item(item)
        send({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
        ids = {**self._ids(item_id, output_index), "call_id": call_id}
        send({"type": "response.function_call_arguments.delta", **ids, "delta": arguments})
        send({"type": "response.function_call_arguments.done", **ids, "name": call.name,
              "arguments": arguments})
        done = {**item, "status": "completed", "arguments": arguments}
        conn._update_item(done)
        send({"type": "response.output_item.done", "response_id": self.record.id,
              "output_index": output_index, "item": done})
        send({"type": "conversation.item.done", "item": done})
        self._output.append(done)

    # -- ending ------------------------------------------------------------------------------

    def cancel(self, reason: str) -> None:
        """Stop now: close the item being spoken and send ``response.done`` (cancelled)."""
        if self.record.done:
            return
        if self._open is not None:
            self._close_message("incomplete")
        self._finish("cancelled", details={"type": "cancelled", "reason": reason})
        self._wake.set()

    def _finish(self, status: str, *, details: dict[str, Any] | None = None) -> None:
        record = self.record
        record.status = status  # type: ignore[assignment]
        record.reason = (details or {}).get("reason")
        record.done_at = time.monotonic()
        self.conn._send({"type": "response.done",
                         "response": self._response(status=status, details=details, usage=self._usage())})
        self.conn._response_finished(self)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
