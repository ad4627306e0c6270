"""gateway.bridge.sdk: the SDK's raw-message conversion, without a new pydantic adapter per
message, gives exactly what the SDK's own does; the model connection is opened as the SDK would,
its compression the setting's, and the SDK's own model is used if it opens connections otherwise."""

from __future__ import annotations

import asyncio
import logging

import pytest
import websockets
from agents.realtime import openai_realtime as sdk
from agents.realtime.model_inputs import RealtimeModelSendAudio, RealtimeModelSendRawMessage

from gateway.bridge import sdk as prepared
from gateway.testing.realtime import RealtimeServer
from tests.bridge.test_call import settings
from tests.bridge.test_model import model_link

MESSAGES = [
    {"type": "response.create", "other_data": {"response": {"instructions": "Greet the caller."}}},
    {"type": "conversation.item.create", "other_data": {"item": {
        "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi."}]}}},
    {"type": "input_audio_buffer.clear"},
    {"type": "no.such.event"},  # not a client event: None, as the SDK says
]


def test_conversion_is_unchanged_and_builds_no_adapter_per_message(monkeypatch) -> None:
    prepared.prepare()
    prepared.prepare()  # idempotent
    theirs = [prepared.original_conversion.__func__(sdk._ConversionHelper, RealtimeModelSendRawMessage(message=m))
              for m in MESSAGES]
    built = []
    real = sdk.TypeAdapter
    monkeypatch.setattr(sdk, "TypeAdapter", lambda *a: built.append(a) or real(*a))
    ours = [sdk._ConversionHelper.try_convert_raw_message(RealtimeModelSendRawMessage(message=m)) for m in MESSAGES]
    assert [o.model_dump() if o else None for o in ours] == [t.model_dump() if t else None for t in theirs]
    assert theirs[-1] is None and theirs[0] is not None
    assert built == []  # the SDK's own builds one each time; ours was built once


@pytest.mark.parametrize(("setting", "offered"), [("none", False), ("deflate", True)])
async def test_the_model_connection_offers_compression_only_when_set(setting, offered) -> None:
    """GATEWAY_MODEL_COMPRESSION: the session's connection offers permessage-deflate (the SDK's
    default) or nothing; the rest of its handshake is the SDK's, and audio flows either way."""
    async with RealtimeServer([]) as server:
        link = model_link(settings(OPENAI_REALTIME_URL=server.url, GATEWAY_MODEL_COMPRESSION=setting))
        assert await link.start(lambda: True)
        conn = await server.wait_for_connection()
        assert await link.send_audio(b"\x55" * 160)
        async with asyncio.timeout(5):
            while len(conn.input_audio) < 160:
                await asyncio.sleep(0.01)
        await link.close()
    headers = {k.lower(): v for k, v in conn.headers.items()}
    assert ("permessage-deflate" in headers.get("sec-websocket-extensions", "")) is offered
    assert headers["user-agent"] == prepared.SDK_USER_AGENT
    assert conn.path == "/v1/realtime" and conn.input_audio == b"\x55" * 160


async def test_the_gateway_opens_the_connection_as_the_sdk_would() -> None:
    """What the gateway repeats of the SDK's own connection, its User-Agent and its limit on
    one message, is what the installed SDK's model does: a new SDK that changes either fails
    here, not in production."""
    async with RealtimeServer([]) as server:
        models = [sdk.OpenAIRealtimeWebSocketModel(), prepared.realtime_model("none")]
        for model in models:
            await model.connect({"url": server.url, "api_key": "sk-test", "initial_model_settings": {}})
        conns = [await server.wait_for_connection(i) for i in range(2)]
        limits = [model._websocket.protocol.max_message_size for model in models]
        for model in models:
            await model.close()
    assert [{k.lower(): v for k, v in c.headers.items()}["user-agent"] for c in conns] == [prepared.SDK_USER_AGENT] * 2
    assert limits == [prepared.SDK_MAX_MESSAGE_BYTES] * 2


@pytest.mark.parametrize("size", [0, 1, 160, 960, 4800])
def test_the_caller_s_audio_is_sent_as_the_sdk_would_send_it(size) -> None:
    """``GatewayModel.send_event`` writes the append event itself: the very JSON the SDK's
    own conversion and serialization produce (``_send_audio``)."""
    audio = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    theirs = sdk._ConversionHelper.convert_audio_to_input_audio_buffer_append(
        RealtimeModelSendAudio(audio=audio, commit=False)).model_dump_json(exclude_unset=True)
    assert prepared.audio_append(audio) == theirs


def test_an_sdk_that_opens_its_connection_otherwise_keeps_its_own_connection(monkeypatch, caplog) -> None:
    """If a new SDK no longer opens its connection in the method the gateway overrides (or
    takes other arguments), the SDK's own model is used as it is, and one warning says so."""
    async def changed(self, url, headers, transport_config=None, extra=None):  # noqa: ANN001, ANN202
        raise AssertionError("never called")

    assert [type(prepared.realtime_model(c)) for c in ("none", "deflate")] == [prepared.GatewayModel] * 2
    monkeypatch.setattr(sdk.OpenAIRealtimeWebSocketModel, "_create_websocket_connection", changed)
    prepared._overridable.cache_clear()  # decided once per process: as if this SDK were installed
    try:
        with caplog.at_level(logging.WARNING, logger="gateway.sdk"):
            models = [prepared.realtime_model("none"), prepared.realtime_model("deflate", lambda: None)]
    finally:
        prepared._overridable.cache_clear()  # the next test decides again, with the real SDK
    assert [type(m) for m in models] == [sdk.OpenAIRealtimeWebSocketModel] * 2
    assert [r.getMessage() for r in caplog.records if r.name == "gateway.sdk"] == [
        "openai-agents opens its model connection differently than 0.24 did: the connection is the SDK's own "
        "(GATEWAY_MODEL_COMPRESSION is not applied, and a barge-in's clear waits for the SDK's reader)"]


async def test_the_gateway_s_own_frames_are_the_messages_it_wrote() -> None:
    """``ModelConnection.write_text`` frames each message itself (every length form of RFC
    6455, section 5.2, and text beyond ASCII): a ``websockets`` server, which refuses a client
    frame that is not masked, reads back each message as written, in order with ``send``'s."""
    received: list[str] = []

    async def keep(ws) -> None:  # noqa: ANN001
        async for message in ws:
            received.append(message)

    texts = ["", "a" * 125, "b" * 126, "c" * 65535, "d" * 65536, '{"text":"Grüße, 你好"}']
    async with websockets.serve(keep, "127.0.0.1", 0, compression=None, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        conn = await websockets.connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None,
                                        create_connection=prepared.ModelConnection)
        assert [conn.write_text(text) for text in texts] == [True] * len(texts)
        await conn.send("by send")
        await conn.close()
        async with asyncio.timeout(5):
            while len(received) < len(texts) + 1:
                await asyncio.sleep(0.01)
    assert received == [*texts, "by send"]


async def test_the_gateway_leaves_a_message_to_send_unless_it_can_go_at_once() -> None:
    """Writes paused, permessage-deflate in use, or the connection closed: ``write_text``
    writes nothing and says so, and ``send_event`` falls back on ``send`` (which, closed,
    raises ConnectionClosed as the SDK's own does)."""
    async with RealtimeServer([]) as server:
        model = prepared.realtime_model("none")
        await model.connect({"url": server.url, "api_key": "sk-test", "initial_model_settings": {}})
        conn = model._connection
        conn.pause_writing()
        assert conn.write_text("{}") is False
        conn.resume_writing()
        assert conn.write_text("{}") is True
        deflated = prepared.realtime_model("deflate")
        await deflated.connect({"url": server.url, "api_key": "sk-test", "initial_model_settings": {}})
        assert deflated._connection.protocol.extensions and deflated._connection.write_text("{}") is False
        await deflated.close()
        await model.close()
        assert conn.write_text("{}") is False
        with pytest.raises(websockets.ConnectionClosed):
            await model.send_event(RealtimeModelSendAudio(audio=b"\x00" * 160, commit=False))


def test_masking_keys_are_fresh_for_each_frame_and_drawn_anew_after_a_fork() -> None:
    keys = prepared.MaskKeys()
    taken = [keys.take() for _ in range(3000)]  # across three draws of the pool
    assert {len(key) for key in taken} == {4}
    assert len(set(taken)) > 2990  # 4-byte keys from the CSPRNG: a repeat is rare, never systematic
    upcoming = keys._pool[keys._at : keys._at + 4]
    keys._forget()  # what a forked child runs (os.register_at_fork)
    assert keys.take() != upcoming
