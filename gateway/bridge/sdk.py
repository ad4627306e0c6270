"""Keeping the Agents SDK's one-off costs off the event loop's hot path.

Two things in ``agents.realtime.openai_realtime`` (openai-agents 0.24) block the event loop
long enough to delay every other call's audio:

- ``_ConversionHelper.try_convert_raw_message`` builds a new pydantic
  ``TypeAdapter(RealtimeClientEvent)`` for every raw message sent (about 20 ms here, each
  time): the gateway sends one per call (the greeting) and one per history item when a session
  is rolled over or reconnected. ``prepare()`` swaps in the same conversion with one adapter
  built once. Same input, same output: the method is a pure function of the message.
- The first session of the process builds the server-event adapter and completes the event
  models' schemas (about 100 ms): ``prepare()`` does that at start-up, before any call.

Called from the app's lifespan. If a future SDK changes these internals, ``prepare`` leaves it
alone and logs that it did.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("gateway.sdk")
_done = False
#: The SDK's own conversion, as it was before ``prepare`` (for comparison in tests).
original_conversion: Any = None


def prepare() -> None:
    global _done, original_conversion
    if _done:
        return
    _done = True
    try:
        from agents.realtime import openai_realtime as sdk
        from pydantic import TypeAdapter
    except ImportError:  # pragma: no cover - the SDK is a dependency
        return
    helper = getattr(sdk, "_ConversionHelper", None)
    client_event = getattr(sdk, "OpenAIRealtimeClientEvent", None)
    adapter = TypeAdapter(client_event) if client_event is not None else None  # one, for both uses
    if helper is None or adapter is None or not hasattr(helper, "try_convert_raw_message"):
        log.info("openai-agents internals changed: raw-message conversion left as it is")
    else:
        original_conversion = helper.__dict__["try_convert_raw_message"]

        def try_convert_raw_message(cls: Any, message: Any) -> Any:
            try:
                data = {"type": message.message["type"]}
                data.update(message.message.get("other_data", {}))
                return adapter.validate_python(data)
            except Exception:
                return None

        helper.try_convert_raw_message = classmethod(try_convert_raw_message)
    warm = getattr(sdk, "get_server_event_type_adapter", None)
    if warm is not None:
        warm()
    # Complete the client events' schemas now (pydantic defers it to the first dump).
    with_response = {"type": "response.create", "response": {"instructions": "warm-up"}}
    with_item = {"type": "conversation.item.create",
                 "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "."}]}}
    if adapter is not None:
        for data in (with_response, with_item, {"type": "input_audio_buffer.append", "audio": ""}):
            try:
                adapter.validate_python(data).model_dump_json(exclude_unset=True)
            except Exception as exc:  # warm-up must never stop the gateway from starting
                log.debug("SDK warm-up of %s skipped: %s", data["type"], exc)
