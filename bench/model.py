"""The model side of the benchmark: the local Realtime server, talking at real-time pace.

    python bench/model.py --port 0 --reply-seconds 60 --out RESULT.pickle

A process of its own (``bench/load.py`` starts it on the load core). It runs
``gateway.testing.realtime.RealtimeServer`` (the same GA wire protocol and event sequence
the tests use) with ``pace=1.0``, and a script whose first turn, the greeting, is one long
reply: the agent speaks for ``--reply-seconds`` without a pause, so every call carries model
audio to the caller for as long as it lasts. The callers are silent and never take a turn.

It prints ``{"url": ...}`` on its first line once listening, and on SIGTERM writes what it
measured to ``--out`` and exits. Per connection (one phone call), from the server's own
records:

- ``call_sid``: the connection's call, read from the session's instructions (the bench's agent,
  ``bench.agent``, and the bare relay both put ``bench-call=<CallSid>`` there);
- ``app_t`` / ``app_bytes``: when each ``input_audio_buffer.append`` was handled, and the input
  audio bytes received so far (in the session's input format);
- ``delta_t`` / ``delta_bytes``: when each ``response.output_audio.delta`` of the first response
  went out, and the output audio bytes sent so far (in the session's output format);
- the input and output formats (``audio/pcm`` 24 kHz or ``audio/pcmu``);
- ``item_id``: the first response's audio item (the greeting);
- for a barge-in call (``--barge-ins``): ``barge_at``, when the server meant to interrupt;
  ``speech_queued`` and ``speech_sent``, when its ``speech_started`` was queued and when the
  writer had handed it to the socket (the start of the clear latency); ``item_ms_at_barge``,
  the greeting's audio sent by then; ``truncations``, each ``conversation.item.truncate``
  received (item id, ``audio_end_ms``, time); ``response_status``, the greeting's end
  (``cancelled`` after a barge-in).

``--barge-ins FILE`` (``bench/bargein.py``): a JSON object, call SID -> seconds. On the
connection of each of those calls, once the greeting has streamed that long (from its first
delta, at real-time pace), the server acts as the model's VAD hearing the caller: it sends
``input_audio_buffer.speech_started`` and, as the real API does with ``interrupt_response``,
cancels the greeting (``RealtimeConnection.send_speech_started``).

The server keeps everything it ever saw for tests' assertions (every event, all audio). A load
run lasts minutes with thousands of calls, so a harvester task turns those records into the
flat arrays above every half second, in small slices, and then drops them (and drops each
closed connection). Three more economies, none visible on the wire, keep the load core free for
the calls: appends take a fast path (``BenchConnection``: timed and counted, not validated,
kept or run through the VAD); the server's validation of its own events is off
(``validate=False``: the events are those of the test suite, where it is on); and the shared
reply is converted to mu-law once, not per call.

A lag probe records how late this process's event loop wakes up, as for the load generator.
``--gc-freeze`` (tests/test_rolling_deploy.py uses it) freezes the start-up heap once listening
(``gc.freeze()``, as the gateway does): a full collection of it would stall every call of this
process for 100 ms or more.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import cProfile
import functools
import gc
import json
import os
import pickle
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gateway.testing.realtime.server as realtime_server_module  # noqa: E402
from gateway.testing.realtime.connection import RealtimeConnection  # noqa: E402
from gateway.testing.realtime.script import Reply, Script, synthesize_voice  # noqa: E402
from gateway.testing.realtime.server import RealtimeServer  # noqa: E402
from gateway.testing.realtime.session import PCM16, PCMU, AudioFormat  # noqa: E402

CALL_TAG = re.compile(r"bench-call=(CA[0-9a-f]{32})")
#: Call SID -> seconds of greeting after which the server sends speech_started (--barge-ins).
BARGE_INS: dict[str, float] = {}
#: A calm speaking rate, for the reply's transcript (the server spreads its words over the
#: audio deltas as transcript deltas, as the real model does).
WORDS_PER_SECOND = 2.5

# Every connection converts its reply from the model's PCM16 to the session's output format
# when the response starts: for a long reply in audio/pcmu that is seconds of CPU per call.
# All calls speak the same reply, so convert it once (AudioFormat is frozen, hence hashable;
# a bytes object caches its hash).
AudioFormat.from_model_pcm16 = functools.lru_cache(maxsize=8)(AudioFormat.from_model_pcm16)  # type: ignore[method-assign]


class Harvest:
    """What one connection measured, as flat arrays."""

    __slots__ = ("call_sid", "input_type", "output_type", "app_t", "app_bytes", "delta_t", "delta_bytes",
                 "_in_total", "_out_total", "_response_id", "opened_at", "closed_at", "item_id", "barge_at",
                 "speech_queued", "speech_sent", "item_ms_at_barge", "truncations", "response_status")

    def __init__(self) -> None:
        self.call_sid: str | None = None
        self.input_type = self.output_type = ""
        self.app_t, self.app_bytes = array.array("d"), array.array("q")
        self.delta_t, self.delta_bytes = array.array("d"), array.array("q")
        self._in_total = self._out_total = 0
        self._response_id: str | None = None
        self.opened_at = time.monotonic()
        self.closed_at: float | None = None
        self.item_id: str | None = None
        self.barge_at = self.speech_queued = self.speech_sent = self.item_ms_at_barge = None
        self.truncations: list[tuple[str, int, float]] = []
        self.response_status: str | None = None

    def append(self, t: float, nbytes: int) -> None:
        self._in_total += nbytes
        self.app_t.append(t)
        self.app_bytes.append(self._in_total)

    def take(self, conn: RealtimeConnection) -> None:
        """Move the connection's new records into the arrays and drop them from the server."""
        if self.call_sid is None:
            found = CALL_TAG.search(str(conn.session.get("instructions") or ""))
            if found:
                self.call_sid = found.group(1)
        self.input_type, self.output_type = conn.input_format.type, conn.output_format.type
        sent, conn.sent[:] = list(conn.sent), []
        for event in sent:
            if event.type == "response.output_audio.delta":
                response_id = event.data["response_id"]
                if self._response_id is None:
                    self._response_id, self.item_id = response_id, event.data["item_id"]
                if response_id != self._response_id:
                    continue  # only the first response (the long reply) is measured
                self._out_total += b64_decoded_len(event.data["delta"])
                self.delta_t.append(event.time)
                self.delta_bytes.append(self._out_total)
        conn.received.clear()
        for response in conn.responses:
            del response.audio[:]
        if conn.truncations:
            self.truncations = [(t.item_id, t.audio_end_ms, t.time) for t in conn.truncations]
        if conn.responses:
            self.response_status = conn.responses[0].status

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__ if not name.startswith("_")}


class BenchConnection(RealtimeConnection):
    """A server connection whose audio appends take a fast path.

    Appends are nearly all the traffic (50 a second a call). The test server parses each one
    against the openai types, keeps it, and runs its VAD over the audio: on one shared core
    that would be most of the harness's CPU, for nothing (the callers are silent by
    construction, and the model's own cost is not what is measured). Here an append is
    JSON-decoded, timed and counted, and nothing else. Every other event takes the server's
    normal path.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.harvest = Harvest()
        self._barge_task: asyncio.Task[None] | None = None

    def _receive(self, text: str) -> None:
        if '"input_audio_buffer.append"' in text:
            now = time.monotonic()
            try:
                audio = json.loads(text)["audio"]
            except (ValueError, KeyError, TypeError):
                super()._receive(text)  # let the server answer it as the real API would
                return
            self.harvest.append(now, b64_decoded_len(audio))
            return
        super()._receive(text)

    def _on_session_update(self, event: dict[str, Any]) -> None:
        super()._on_session_update(event)
        if BARGE_INS and self._barge_task is None:
            found = CALL_TAG.search(str(self.session.get("instructions") or ""))
            if found and found.group(1) in BARGE_INS:
                self.harvest.call_sid = found.group(1)
                self._barge_task = asyncio.get_running_loop().create_task(self._barge_in(BARGE_INS[found.group(1)]))

    async def _barge_in(self, after: float) -> None:
        """Once the greeting has streamed ``after`` seconds: the caller starts speaking."""
        harvest = self.harvest

        def greeting() -> Any:
            return self.responses and self.responses[0].first_delta_at is not None and self.responses[0]
        try:
            response = await self.wait_until(greeting, timeout=60.0, what="the greeting")
        except (TimeoutError, ConnectionError):
            return
        harvest.barge_at = response.first_delta_at + after
        item_id = response.item_ids[0] if response.item_ids else ""
        delay = harvest.barge_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if self.closed:
            return
        # When the writer has handed speech_started to the socket: the clear latency's start.
        ws, send = self._ws, self._ws.send

        async def timed_send(message: Any, *args: Any, **kwargs: Any) -> None:
            await send(message, *args, **kwargs)
            if isinstance(message, str) and '"input_audio_buffer.speech_started"' in message:
                harvest.speech_sent = time.monotonic()
                del ws.send  # the instance's own method again

        ws.send = timed_send  # type: ignore[method-assign]
        harvest.item_ms_at_barge = self._item_audio_ms.get(item_id, 0.0)
        harvest.speech_queued = time.monotonic()
        # Where the caller's speech starts on the input audio clock (appends skip the VAD here).
        start_ms = int(harvest._in_total / self.input_format.bytes_per_ms)
        await self.send_speech_started(start_ms)


def b64_decoded_len(text: str) -> int:
    n = len(text)
    return n // 4 * 3 - (text.endswith("==") + text.endswith("=")) if n else 0


async def harvester(server: RealtimeServer, done: list[Harvest], stop: asyncio.Event) -> None:
    while True:
        finished = stop.is_set()
        for index, conn in enumerate(list(server.connections)):
            if conn is None:
                continue
            conn.harvest.take(conn)
            if conn.closed:
                conn.harvest.closed_at = time.monotonic()
                done.append(conn.harvest)
                server.connections[index] = None  # the server keeps no more of it
            await asyncio.sleep(0)  # a slice per connection: never hold the loop for long
        if finished:
            return
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except TimeoutError:
            pass


async def lag_probe(lag: array.array, lag_t: array.array, stop: asyncio.Event) -> None:
    while not stop.is_set():
        before = time.monotonic()
        await asyncio.sleep(0.010)
        after = time.monotonic()
        lag.append(after - before - 0.010)
        lag_t.append(after)


async def serve(args: argparse.Namespace) -> dict[str, Any]:
    # The server builds its connections from this module-level name (RealtimeServer._handle). Set
    # here, in the model process, not on import: a test that imports this module (for its lag
    # probe) must keep the real connections, which record every event.
    realtime_server_module.RealtimeConnection = BenchConnection
    if args.barge_ins:
        BARGE_INS.update(json.loads(Path(args.barge_ins).read_text()))
    seconds = max(1.0, args.reply_seconds)
    words = " ".join(["word"] * max(1, int(seconds * WORDS_PER_SECOND)))
    reply = Reply(words, audio=synthesize_voice(int(seconds * 1000)))
    for fmt in (PCM16, PCMU):  # convert now, not in the first call's response (seconds of CPU)
        fmt.from_model_pcm16(reply.audio)
    server = RealtimeServer(Script([reply], default=Reply("Okay.")), pace=1.0, chunk_ms=args.chunk_ms,
                            validate=False, compression=None if args.compression == "none" else "deflate")
    await server.start(args.host, args.port)
    if args.gc_freeze:  # the start-up heap out of the collector's sight, as the gateway does
        gc.collect()
        gc.freeze()
    print(json.dumps({"url": server.url}), flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    done: list[Harvest] = []
    lag, lag_t = array.array("d"), array.array("d")
    probe = asyncio.create_task(lag_probe(lag, lag_t, stop))
    await harvester(server, done, stop)
    await probe
    # Connections still open at the end are measured too.
    for conn in server.connections:
        if conn is not None:
            conn.harvest.take(conn)
            done.append(conn.harvest)
    server.connections[:] = [c for c in server.connections if c is not None]
    try:
        await asyncio.wait_for(server.close(), 5)
    except Exception as exc:  # the measurements matter more than a clean close
        print(f"model server close: {exc!r}", file=sys.stderr)
    return {"connections": [h.as_dict() for h in done], "lag": lag, "lag_t": lag_t}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reply-seconds", type=float, default=60.0)
    parser.add_argument("--chunk-ms", type=int, default=100, help="audio per delta (default 100 ms)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--compression", choices=("deflate", "none"), default="deflate",
                        help="permessage-deflate when the client offers it (default), or none")
    parser.add_argument("--barge-ins", help="JSON file: call SID -> seconds of greeting after which the server "
                        "sends speech_started on that call (a barge-in)")
    parser.add_argument("--gc-freeze", action="store_true",
                        help="freeze the start-up heap (gc.freeze()): no full collection of it stalls the calls")
    args = parser.parse_args()
    profile = os.environ.get("BENCH_PROFILE")  # a pstats file: where this process's CPU goes
    profiler = cProfile.Profile(time.process_time) if profile else None
    if profiler is not None:
        profiler.enable()
    result = asyncio.run(serve(args))
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    Path(args.out).write_bytes(pickle.dumps(result))


if __name__ == "__main__":
    main()
