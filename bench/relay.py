"""The bare relay: the floor the gateway's cost is measured against.

    python bench/relay.py --port 8081 --model-url ws://127.0.0.1:8765/v1/realtime

The least a Twilio <-> Realtime bridge can do, on the same stack as the gateway (Starlette
under uvicorn with the gateway's server settings, ``gateway.serving.uvicorn_config``, on the
Twilio side; a plain ``websockets`` client with the SDK's connection options on the model
side), and nothing else:

- ``POST /twilio/voice`` answers a fixed ``<Connect><Stream>`` (no signature check, no token);
- per Media Stream, on ``start``, one WebSocket to the Realtime server: a ``session.update``
  asking for ``audio/pcmu`` both ways (G.711 passes straight through: no codec, no resampling)
  with the gateway's turn detection, and a ``response.create`` for the greeting;
- each caller ``media`` payload goes out as one ``input_audio_buffer.append``, its base64
  text copied as it came (frames that arrive while the model connects wait, then go in order);
- each ``response.output_audio.delta`` goes back as 20 ms (160-byte) ``media`` frames, the
  frame size the gateway sends; every other server event is read and ignored;
- no SDK, no marks, no barge-in, no transcript, no timers, no logging per call.

``GET /healthz`` answers like the gateway's (``active_calls``, ``tasks``), for the harness.
The session's instructions carry ``bench-call=<CallSid>``, as ``bench.agent`` does for the
gateway, so the Realtime server can tell the calls apart.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
from pathlib import Path

import uvicorn
import websockets
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.serving import uvicorn_config  # noqa: E402
from gateway.settings import COMPRESSIONS, Settings  # noqa: E402

FRAME_BYTES = 160
#: The SDK's WebSocket options (agents/realtime/openai_realtime.py): library defaults, 8 MiB.
MODEL_MAX_SIZE = 8 * 1024 * 1024


def session_update(call_sid: str) -> str:
    return json.dumps({"type": "session.update", "session": {
        "type": "realtime",
        "instructions": f"bench-call={call_sid}",
        "audio": {
            "input": {"format": {"type": "audio/pcmu"},
                      "turn_detection": {"type": "semantic_vad", "create_response": True,
                                         "interrupt_response": True}},
            "output": {"format": {"type": "audio/pcmu"}},
        },
    }})


class Relay:
    def __init__(self, public_url: str, model_url: str, compression: str = Settings.model_compression) -> None:
        self.stream_url = public_url.replace("http", "ws", 1).rstrip("/") + "/twilio/media"
        self.model_url = model_url
        #: What the model connection offers, as the gateway's GATEWAY_MODEL_COMPRESSION.
        self.compression = compression
        self.active = 0

    async def voice(self, request: Request) -> Response:
        await request.body()
        twiml = (f'<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
                 f'<Stream url="{self.stream_url}" /></Connect></Response>')
        return Response(twiml, media_type="application/xml")

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "active_calls": self.active, "tasks": len(asyncio.all_tasks())})

    async def media(self, ws: WebSocket) -> None:
        await ws.accept()
        self.active += 1
        try:
            while True:  # connected, then start
                message = json.loads(await ws.receive_text())
                if message.get("event") == "start":
                    break
            await self.bridge(ws, message["streamSid"], message["start"]["callSid"])
        except (WebSocketDisconnect, RuntimeError):  # the caller hung up, or the model's end closed it
            pass
        finally:
            self.active -= 1
            try:
                await ws.close()
            except (RuntimeError, WebSocketDisconnect):  # the caller's side is already gone
                pass

    async def bridge(self, ws: WebSocket, stream_sid: str, call_sid: str) -> None:
        """The call, once Twilio's ``start`` has come."""
        connecting = asyncio.create_task(self._connect(call_sid, ws, stream_sid))
        try:
            await self._caller_to_model(ws, connecting)
        finally:
            connecting.cancel()
            if connecting.done() and not connecting.cancelled() and connecting.exception() is None:
                model, back = connecting.result()
                back.cancel()
                await model.close()

    async def _connect(self, call_sid: str, ws: WebSocket, stream_sid: str
                       ) -> tuple[websockets.ClientConnection, asyncio.Task]:
        """Open the model's side, ask for the greeting, and start relaying its audio at once."""
        model = await websockets.connect(self.model_url, max_size=MODEL_MAX_SIZE,
                                         compression=None if self.compression == "none" else "deflate")
        await model.send(session_update(call_sid))
        await model.send('{"type":"response.create"}')
        return model, asyncio.create_task(self._model_to_caller(model, ws, stream_sid))

    async def _caller_to_model(self, ws: WebSocket, connecting: asyncio.Task) -> None:
        model = None
        waiting: list[str] = []
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = json.loads(message["text"])
            event = data.get("event")
            if event == "media":
                append = '{"type":"input_audio_buffer.append","audio":"' + data["media"]["payload"] + '"}'
                if model is None:
                    waiting.append(append)
                    if not connecting.done():
                        continue
                    model = connecting.result()[0]
                    for text in waiting:  # what arrived while the model connected, in order
                        await model.send(text)
                    waiting.clear()
                else:
                    await model.send(append)
            elif event == "stop":
                return

    async def _model_to_caller(self, model: websockets.ClientConnection, ws: WebSocket, stream_sid: str) -> None:
        head = '{"event":"media","streamSid":"' + stream_sid + '","media":{"payload":"'
        pending = b""
        try:
            async for text in model:
                event = json.loads(text)
                if event.get("type") != "response.output_audio.delta":
                    continue
                pending += base64.b64decode(event["delta"])
                whole = len(pending) - len(pending) % FRAME_BYTES
                for i in range(0, whole, FRAME_BYTES):
                    payload = base64.b64encode(pending[i:i + FRAME_BYTES]).decode()
                    await ws.send_text(head + payload + '"}}')
                pending = pending[whole:]
            await ws.close()  # the model ended the session: end the call
        except (websockets.ConnectionClosed, WebSocketDisconnect, RuntimeError):
            pass  # either side went away: the caller side's handler ends the call


def create_app(public_url: str, model_url: str, relay_class: type[Relay] = Relay, **options: str) -> Starlette:
    relay = relay_class(public_url, model_url, **options)
    return Starlette(routes=[
        Route("/twilio/voice", relay.voice, methods=["POST"]),
        WebSocketRoute("/twilio/media", relay.media),
        Route("/healthz", relay.healthz, methods=["GET"]),
    ])


def main(relay_class: type[Relay] = Relay, modes: tuple[str, ...] = ()) -> None:
    """Serve ``relay_class`` (``--mode``, one of ``modes``, is passed on to it if it has modes;
    ``--compression`` always)."""
    parser = argparse.ArgumentParser(description=(sys.modules[relay_class.__module__].__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--model-url", required=True)
    parser.add_argument("--compression", choices=COMPRESSIONS, default=Settings.model_compression,
                        help="what the model connection offers, as GATEWAY_MODEL_COMPRESSION "
                             f"(default {Settings.model_compression}, the gateway's)")
    if modes:
        parser.add_argument("--mode", choices=modes, default=modes[0])
    args = parser.parse_args()
    options = {"mode": args.mode} if modes else {}
    options["compression"] = args.compression
    app = create_app(f"http://{args.host}:{args.port}", args.model_url, relay_class, **options)
    # The gateway's server settings (gateway/serving.py, as `gateway serve` uses them).
    uvicorn.Server(uvicorn_config(app, host=args.host, port=args.port, log_level="warning")).run()


if __name__ == "__main__":
    main()
