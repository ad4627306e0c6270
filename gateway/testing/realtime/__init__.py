"""A local OpenAI Realtime (GA protocol) WebSocket server for tests: no account, no network.

Run your agents against it unchanged: the Agents SDK's own ``OpenAIRealtimeWebSocketModel``
connects to it as to ``wss://api.openai.com/v1/realtime``, and every event it sends validates
against ``openai.types.realtime.RealtimeServerEvent`` (checked before sending; an invalid event
raises ``InvalidServerEvent`` in the server and makes ``close()`` raise)::

    from agents.realtime import RealtimeAgent, RealtimeRunner
    from gateway.testing.realtime import Heard, RealtimeServer, Reply, ToolCall

    async with RealtimeServer([
        Reply("Thanks for calling. How can I help?"),
        Heard("What's the weather in Paris?"),
        ToolCall("get_weather", {"city": "Paris"}),
        Reply("It's sunny in Paris."),
    ]) as server:
        runner = RealtimeRunner(RealtimeAgent(name="agent", instructions="..."))
        session = await runner.run(model_config={"url": server.url, "headers": {}})
        async with session:
            ...                                   # talk to it; audio, tools, barge-in
        conn = server.connections[0]              # what the server saw, for assertions
        assert conn.function_call_outputs[0].output == "sunny"

``headers: {}`` skips the SDK's API-key check; pass ``api_key`` to both sides to test auth.

What it does, per connection (each a phone call, fully isolated):

- **Session.** ``session.created`` at connect (GA shape, PCM16 24 kHz both ways, server VAD);
  each ``session.update`` is merged into the session (partial, deep) and answered with the
  whole merged session in ``session.updated``. Formats: ``audio/pcm`` 24 kHz or
  ``audio/pcmu`` 8 kHz, each direction.
- **Caller audio.** ``input_audio_buffer.append`` is recorded (``conn.input_audio``, and
  ``conn.input_audio_pcm16(rate)`` to measure it) and fed to an energy VAD timed by the audio
  itself (see ``gateway.testing.realtime.vad``): ``speech_started`` / ``speech_stopped`` /
  ``committed`` / the user item / its transcript (the script's next ``Heard``, else
  ``"<speech N ms>"``) and, with ``create_response``, the next scripted response. Speech while a
  response streams cancels it (``interrupt_response``), as the real API does. With
  ``turn_detection: null`` the client commits (``input_audio_buffer.commit``).
- **Responses.** Every ``response.create`` gets ``response.created`` and then the next scripted
  turn, streamed with the full GA event sequence (see ``gateway.testing.realtime.response``),
  in ``chunk_ms`` deltas at ``pace`` (None: as fast as possible; 1.0: real time).
  ``response.cancel`` stops it (``response.done``, status ``cancelled``).
- **Conversation.** ``conversation.item.create`` / ``retrieve`` / ``truncate`` / ``delete``
  behave like the real API, errors included (an unknown event type, bad JSON, a missing field
  or an unknown parameter gets an ``error`` event with ``invalid_request_error``; the connection
  stays open).

Recorded per connection: ``received`` / ``sent`` events, ``responses``, ``user_turns``,
``truncations``, ``function_call_outputs``, ``user_messages``, ``items``, ``session``. Wait for
state instead of sleeping: ``await server.wait_for_connection()``,
``await conn.wait_for("conversation.item.truncate")``, ``await conn.wait_for_response(0)``,
``await conn.wait_until(lambda: ...)``. Drive the call from the model's side:
``await conn.send_speech_started()``, ``send_speech_stopped()``, ``start_response(turn)``,
``emit(raw_event)``, ``close(code)``; ``conn.will_hear(text)`` sets the transcript of the
caller's next speech turn (the server cannot recognise speech), which ``When`` rules in the
script then match (see ``gateway.testing.realtime.script``). For whole call flows with your
agent, ``gateway.testing.phone`` wraps all this in a phone system and a caller.

Not simulated (a test that needs them can ``emit`` the events itself): text-only output
(every reply is audio with a transcript), ``audio/pcma``, ``idle_timeout_ms``
(``input_audio_buffer.timeout_triggered``), ``rate_limits.updated``, and the parameters of
``response.create`` (recorded in ``conn.received``, not honoured). The session's
``turn_detection.threshold`` (the real model's 0-1 activation threshold) is kept but unused:
the VAD's energy threshold is ``RealtimeServer(vad_threshold_dbfs=...)``.

Standalone: ``python -m gateway.testing.realtime --port 8765`` serves until Ctrl-C
(``serve_forever`` is the same thing for the ``gateway`` CLI).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.testing._lazy import lazy_exports

if TYPE_CHECKING:
    from gateway.testing.realtime.connection import RealtimeConnection
    from gateway.testing.realtime.records import (
        FunctionCallOutput,
        ReceivedEvent,
        ResponseRecord,
        SentEvent,
        Truncation,
        UserMessage,
        UserTurn,
    )
    from gateway.testing.realtime.script import (
        Heard,
        Reply,
        Script,
        ToolCall,
        Trigger,
        Turn,
        When,
        synthesize_voice,
    )
    from gateway.testing.realtime.server import RealtimeServer, RealtimeServerError, serve_forever
    from gateway.testing.realtime.wire import InvalidServerEvent, validate_server_event

__all__ = [
    "FunctionCallOutput",
    "Heard",
    "InvalidServerEvent",
    "RealtimeConnection",
    "RealtimeServer",
    "RealtimeServerError",
    "ReceivedEvent",
    "Reply",
    "ResponseRecord",
    "Script",
    "SentEvent",
    "ToolCall",
    "Trigger",
    "Truncation",
    "Turn",
    "UserMessage",
    "UserTurn",
    "When",
    "serve_forever",
    "synthesize_voice",
    "validate_server_event",
]

# Each public name and its module, imported on first use (see gateway.testing._lazy).
__getattr__, __dir__ = lazy_exports(globals(), {
    "RealtimeConnection": ".connection",
    "FunctionCallOutput": ".records",
    "ReceivedEvent": ".records",
    "ResponseRecord": ".records",
    "SentEvent": ".records",
    "Truncation": ".records",
    "UserMessage": ".records",
    "UserTurn": ".records",
    "Heard": ".script",
    "Reply": ".script",
    "Script": ".script",
    "ToolCall": ".script",
    "Trigger": ".script",
    "Turn": ".script",
    "When": ".script",
    "synthesize_voice": ".script",
    "RealtimeServer": ".server",
    "RealtimeServerError": ".server",
    "serve_forever": ".server",
    "InvalidServerEvent": ".wire",
    "validate_server_event": ".wire",
})
