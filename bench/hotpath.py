"""What the gateway's own ways of sending save, per message, beside the plain ways, in one run.

    python bench/hotpath.py

- **Twilio: one model delta's messages.** A 100 ms delta becomes a media message, a mark and
  the next media message, sent back to back. uvicorn writes each ASGI message to the socket by
  itself (a ``send`` system call each); the gateway's server (``MediaStreamProtocol``) takes
  them in one ``websocket.send`` with ``SEND_TEXTS`` and writes them at once. The server is the
  gateway's own uvicorn; the peer reads in another process. CPU of the server's process per
  delta.
- **Model: 20 ms of the caller's audio.** The Agents SDK's model builds each
  ``input_audio_buffer.append`` as a pydantic event, serializes it and sends it with
  ``websockets``; ``GatewayModel`` builds the same JSON directly and frames it itself
  (``ModelConnection.write_text``). G.711 (160 bytes) and PCM16 24 kHz (960 bytes), to a server
  in another process that reads and drops them. CPU of the sending process per chunk.

The two ways alternate, round after round, in one process; the table gives the median round
and the saving per call-second (10 deltas and 50 chunks a second). The hypervisor's steal over
the run is printed: with more than a few percent, run it again.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvicorn  # noqa: E402
from agents.realtime import OpenAIRealtimeWebSocketModel  # noqa: E402
from agents.realtime.model_inputs import RealtimeModelSendAudio  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.routing import WebSocketRoute  # noqa: E402
from starlette.websockets import WebSocket  # noqa: E402

from bench.harness import core_times  # noqa: E402
from gateway.bridge.sdk import realtime_model  # noqa: E402
from gateway.serving import SEND_TEXTS, uvicorn_config  # noqa: E402

STREAM_SID = "MZ" + "0123456789abcdef" * 2
#: A peer that reads every message until "done" (Twilio's side of the first measure).
READER = """
import asyncio, sys, websockets
async def main():
    async with websockets.connect(sys.argv[1], compression=None, max_size=None) as ws:
        async for message in ws:
            if message == "done":
                return
asyncio.run(main())
"""
#: A WebSocket server that drops what it reads and prints its port (the model's side).
SINK = """
import asyncio, websockets
async def drop(ws):
    async for _ in ws:
        pass
async def main():
    async with websockets.serve(drop, "127.0.0.1", 0, compression=None, max_size=None) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()
asyncio.run(main())
"""

Way = Callable[[], Awaitable[None]]


async def rounds(ways: dict[str, Way], count: int, repeats: int) -> dict[str, float]:
    """Each way ``count`` times per round, the ways alternating: the median round's CPU per
    time, in microseconds."""
    spent: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(repeats):
        for name, way in ways.items():
            start = time.process_time()
            for i in range(count):
                await way()
                if i % 20 == 19:
                    # The peer reads everything before the next burst: every write finds the
                    # socket's buffer empty and goes out at once, as on a live call (with
                    # writes piling up unread, asyncio would only queue them, for nothing).
                    await asyncio.sleep(0.001)
            spent[name].append((time.process_time() - start) / count * 1e6)
    return {name: statistics.median(times) for name, times in spent.items()}


async def twilio_delta(count: int, repeats: int) -> dict[str, float]:
    payload = base64.b64encode(bytes(400)).decode()  # 50 ms of mu-law a media message
    media = '{"event":"media","streamSid":"%s","media":{"payload":"%s"}}' % (STREAM_SID, payload)
    mark = '{"event":"mark","streamSid":"%s","mark":{"name":"g0:item_1:0:800"}}' % STREAM_SID
    texts = [media, mark, media]
    result: dict[str, float] = {}

    async def endpoint(ws: WebSocket) -> None:
        await ws.accept()

        async def one_by_one() -> None:
            for text in texts:
                await ws.send_text(text)

        async def at_once() -> None:
            await ws.send({"type": "websocket.send", SEND_TEXTS: texts})

        result.update(await rounds({"plain": one_by_one, "gateway": at_once}, count, repeats))
        await ws.send_text("done")

    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])
    server = uvicorn.Server(uvicorn_config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    reader = await asyncio.create_subprocess_exec(sys.executable, "-c", READER, f"ws://127.0.0.1:{port}/ws")
    await reader.wait()
    server.should_exit = True
    await serving
    return result


async def model_audio(size: int, count: int, repeats: int) -> dict[str, float]:
    sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
    try:
        url = f"ws://127.0.0.1:{sink.stdout.readline().strip()}/v1/realtime"  # type: ignore[union-attr]
        models = {"plain": OpenAIRealtimeWebSocketModel(), "gateway": realtime_model("none")}
        for model in models.values():
            await model.connect({"url": url, "api_key": "sk-bench", "initial_model_settings": {}})
        chunk = os.urandom(size)

        def sender(model: OpenAIRealtimeWebSocketModel) -> Way:
            async def send() -> None:
                await model.send_event(RealtimeModelSendAudio(audio=chunk, commit=False))
            return send

        result = await rounds({name: sender(model) for name, model in models.items()}, count, repeats)
        for model in models.values():
            await model.close()
        return result
    finally:
        sink.kill()
        sink.wait()


def steal_percent(before: dict[int, dict[str, float]], after: dict[int, dict[str, float]], seconds: float) -> float:
    return 100 * max(after[c]["steal"] - before[c]["steal"] for c in after) / seconds


async def main(count: int, repeats: int) -> None:
    began, cores = time.monotonic(), core_times()
    rows = [
        ("Twilio: one delta's 3 messages (media, mark, media)", 10, await twilio_delta(count, repeats)),
        ("model: 20 ms of caller audio, G.711 (160 B)", 50, await model_audio(160, count, repeats)),
        ("model: 20 ms of caller audio, PCM16 24 kHz (960 B)", 50, await model_audio(960, count, repeats)),
    ]
    steal = steal_percent(cores, core_times(), time.monotonic() - began)
    print(f"CPU per message, us (median of {repeats} rounds of {count})   plain  gateway  saved  saved per call-second")
    for name, per_second, cpu in rows:
        saved = cpu["plain"] - cpu["gateway"]
        print(f"{name:<58} {cpu['plain']:6.1f}  {cpu['gateway']:7.1f}  {saved:5.1f}  {saved * per_second:7.0f} us")
    print(f"\nhypervisor steal over the run, busiest core: {steal:.1f}%"
          + ("  (disturbed: run it again)" if steal > 3 else ""))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=3000, help="messages per way per round (default 3000)")
    parser.add_argument("--repeats", type=int, default=7, help="rounds (default 7)")
    args = parser.parse_args()
    asyncio.run(main(args.count, args.repeats))
