"""gateway.bridge.sdk: the SDK's raw-message conversion, without a new pydantic adapter per
message, gives exactly what the SDK's own does."""

from __future__ import annotations

from agents.realtime import openai_realtime as sdk
from agents.realtime.model_inputs import RealtimeModelSendRawMessage

from gateway.bridge import sdk as prepared

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
