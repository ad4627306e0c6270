"""The bare relay on the Agents SDK: the least a Twilio-to-Realtime bridge built on
``agents.realtime`` can do, to tell the SDK's own cost from the gateway's.

    python bench/sdk_relay.py --port 8081 --model-url ws://127.0.0.1:9000/v1/realtime [--mode pcm16]

``bench/relay.py``, with its model side through the SDK instead of a bare ``websockets``
client: per call one ``RealtimeRunner(agent).run(...)`` session, each caller payload decoded
and handed to ``session.send_audio`` (the SDK encodes it again), the greeting asked for with a
raw ``response.create``, and every ``audio`` session event cut into 20 ms ``media`` frames.
Like the relay: no marks, no barge-in, no transcript, no timers, no per-call logging, no
validation of what Twilio sends. What it costs beyond ``relay.py`` is what the SDK costs any
bridge: validating and dispatching every server event, building every client event, the
session's queue and its task. ``bench/load.py --sdk-relay`` measures it beside the other two.

In ``g711_ulaw`` (the default) the audio passes through. In ``pcm16`` the session is PCM16
24 kHz both ways, converted with the cheapest conversion there is, ``audioop.ratecv`` (linear
interpolation, no anti-aliasing filter: audio quality the gateway's resampler exists to avoid),
so the model side carries PCM16's larger messages: the floor of a PCM16 bridge on the SDK.
With ``SDK_RELAY_CONVERT=polyphase`` in its environment (``load.py --sdk-relay-convert``) it
converts with the gateway's own transcoders instead (``gateway.audio``: the polyphase resampler
whose quality ``bench/audio.py`` measures): the floor of a PCM16 bridge on the SDK with the
gateway's audio quality.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from pathlib import Path

from agents.realtime import RealtimeAgent, RealtimeRunner
from agents.realtime.model_inputs import RealtimeModelSendRawMessage
from starlette.websockets import WebSocket, WebSocketDisconnect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import relay  # noqa: E402
from bench.relay import FRAME_BYTES, Relay  # noqa: E402
from gateway.audio import AudioMode, InboundTranscoder, OutboundTranscoder  # noqa: E402
from gateway.audio.g711 import audioop, pcm16_to_ulaw, ulaw_to_pcm16  # noqa: E402
from gateway.bridge.sdk import realtime_model  # noqa: E402
from gateway.settings import Settings  # noqa: E402


def model_settings(mode: str) -> dict:
    return {"input_audio_format": mode, "output_audio_format": mode,
            "turn_detection": {"type": "semantic_vad", "interrupt_response": True, "create_response": True}}


class Passthrough:
    """G.711 both ways: nothing to convert."""

    def inbound(self, ulaw: bytes) -> bytes:
        return ulaw

    def outbound(self, audio: bytes) -> bytes:
        return audio


class Ratecv:
    """PCM16 24 kHz both ways with ``audioop.ratecv`` (state kept across chunks)."""

    def __init__(self) -> None:
        self._up = self._down = None

    def inbound(self, ulaw: bytes) -> bytes:
        pcm, self._up = audioop.ratecv(ulaw_to_pcm16(ulaw), 2, 1, 8000, 24000, self._up)
        return pcm

    def outbound(self, audio: bytes) -> bytes:
        pcm, self._down = audioop.ratecv(audio, 2, 1, 24000, 8000, self._down)
        return pcm16_to_ulaw(pcm)


class Polyphase:
    """PCM16 24 kHz both ways with the gateway's transcoders (its resampler, its codec)."""

    def __init__(self) -> None:
        self.inbound = InboundTranscoder(AudioMode.PCM16).convert
        self.outbound = OutboundTranscoder(AudioMode.PCM16).convert


CONVERSIONS = {"ratecv": Ratecv, "polyphase": Polyphase}


class SdkRelay(Relay):
    def __init__(self, public_url: str, model_url: str, mode: str = "g711_ulaw",
                 compression: str = Settings.model_compression) -> None:
        super().__init__(public_url, model_url, compression)
        self.mode = mode

    async def bridge(self, ws: WebSocket, stream_sid: str, call_sid: str) -> None:
        agent = RealtimeAgent(name="Relay", instructions=f"bench-call={call_sid}")
        # The model the gateway connects with (its compression as GATEWAY_MODEL_COMPRESSION).
        session = await RealtimeRunner(agent, model=realtime_model(self.compression)).run(model_config={
            "url": self.model_url, "headers": {}, "initial_model_settings": model_settings(self.mode)})
        convert = CONVERSIONS[os.environ.get("SDK_RELAY_CONVERT", "ratecv")]() if self.mode == "pcm16" else Passthrough()
        async with session:
            await session.model.send_event(RealtimeModelSendRawMessage(message={"type": "response.create"}))
            back = asyncio.create_task(self._session_to_caller(session, ws, stream_sid, convert))
            try:
                await self._caller_to_session(ws, session, convert)
            finally:
                back.cancel()

    async def _caller_to_session(self, ws: WebSocket, session, convert) -> None:  # noqa: ANN001
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = json.loads(message["text"])
            event = data.get("event")
            if event == "media":
                await session.send_audio(convert.inbound(base64.b64decode(data["media"]["payload"])))
            elif event == "stop":
                return

    async def _session_to_caller(self, session, ws: WebSocket, stream_sid: str, convert) -> None:  # noqa: ANN001
        head = '{"event":"media","streamSid":"' + stream_sid + '","media":{"payload":"'
        pending = b""
        try:
            async for event in session:
                if event.type != "audio":
                    continue
                pending += convert.outbound(event.audio.data)
                whole = len(pending) - len(pending) % FRAME_BYTES
                for i in range(0, whole, FRAME_BYTES):
                    payload = base64.b64encode(pending[i:i + FRAME_BYTES]).decode()
                    await ws.send_text(head + payload + '"}}')
                pending = pending[whole:]
            await ws.close()  # the session ended: end the call
        except (WebSocketDisconnect, RuntimeError):
            pass


MODES = ("g711_ulaw", "pcm16")

if __name__ == "__main__":
    relay.main(SdkRelay, modes=MODES)
