"""gateway.bridge.sdk: the SDK's raw-message conversion, without a new pydantic adapter per
message, gives exactly what the SDK's own does; the model connection's compression is the
setting's."""

from __future__ import annotations

import asyncio
import logging

import pytest
from agents.realtime import openai_realtime as sdk
from agents.realtime.model_inputs import RealtimeModelSendRawMessage

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
    assert headers["user-agent"] == prepared.SDK_USER_AGENT  # with deflate, the SDK's own model sends it
    assert conn.path == "/v1/realtime" and conn.input_audio == b"\x55" * 160


def test_an_sdk_that_opens_its_connection_otherwise_keeps_its_own_compression(monkeypatch, caplog) -> None:
    """If a new SDK no longer opens its connection in the method the gateway overrides (or
    takes other arguments), the setting is not applied: the SDK's own model, and one warning."""
    async def changed(self, url, headers, transport_config=None, extra=None):  # noqa: ANN001, ANN202
        raise AssertionError("never called")

    assert isinstance(prepared.realtime_model("none"), prepared.Uncompressed)
    monkeypatch.setattr(sdk.OpenAIRealtimeWebSocketModel, "_create_websocket_connection", changed)
    prepared._overridable.cache_clear()  # decided once per process: as if this SDK were installed
    try:
        with caplog.at_level(logging.WARNING, logger="gateway.sdk"):
            models = [prepared.realtime_model("none"), prepared.realtime_model("none")]
    finally:
        prepared._overridable.cache_clear()  # the next test decides again, with the real SDK
    assert [type(m) for m in models] == [sdk.OpenAIRealtimeWebSocketModel] * 2
    assert [r.getMessage() for r in caplog.records if "GATEWAY_MODEL_COMPRESSION" in r.getMessage()] == [
        "openai-agents opens its model connection differently than 0.24 did: GATEWAY_MODEL_COMPRESSION=none "
        "is not applied, the connection's compression is the SDK's"]
    assert type(prepared.realtime_model("deflate")) is sdk.OpenAIRealtimeWebSocketModel
