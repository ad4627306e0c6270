"""The local Realtime server, driven by the real Agents SDK (``OpenAIRealtimeWebSocketModel``)
and by a raw WebSocket client for what the SDK never sends.

Every server event is validated before it is sent (``validate=True``), and every SDK session
here asserts that it saw no ``error`` event, so a test passing means the SDK accepted the wire
as it accepts the real API's. Time-dependent checks use the audio clock; the only wall-clock
assertions are the pacing ones.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import numpy as np
import pytest
import websockets
from agents import function_tool
from agents.realtime import (
    RealtimeAgent,
    RealtimePlaybackTracker,
    RealtimeRunConfig,
    RealtimeRunner,
)
from agents.realtime.model_inputs import RealtimeModelSendInterrupt, RealtimeModelSendRawMessage
from websockets.exceptions import InvalidStatus

from gateway.audio import pcm16_to_ulaw, ulaw_to_pcm16
from gateway.audio.measure import amplitude_at, from_pcm16, to_pcm16, tone
from gateway.testing import RealtimeServer as PackageRealtimeServer
from gateway.testing.realtime import (
    Heard,
    InvalidServerEvent,
    RealtimeConnection,
    RealtimeServer,
    RealtimeServerError,
    Reply,
    Script,
    ToolCall,
    Trigger,
    When,
    serve_forever,
    synthesize_voice,
    validate_server_event,
)
from gateway.testing.realtime.script import ScriptCursor
from gateway.testing.realtime.vad import EnergyVad, SpeechStart, SpeechStop

os.environ.pop("OPENAI_API_KEY", None)  # prove that no key is needed

PCM16_SETTINGS: dict[str, Any] = {"input_audio_format": "pcm16", "output_audio_format": "pcm16"}
ULAW_SETTINGS: dict[str, Any] = {"input_audio_format": "g711_ulaw", "output_audio_format": "g711_ulaw"}
#: Fast turn-taking for VAD tests: 200 ms of silence ends a turn; no prefix padding, so the
#: reported start is the tone's own start.
FAST_VAD = {"type": "server_vad", "silence_duration_ms": 200, "prefix_padding_ms": 0}


# -- helpers -----------------------------------------------------------------------------------


class Call:
    """An SDK ``RealtimeSession`` whose events are collected by a background task."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.events: list[Any] = []
        self.raw_types: list[str] = []
        self._changed = asyncio.Event()

    async def consume(self) -> None:
        async for event in self.session:
            if event.type == "raw_model_event":
                if event.data.type == "raw_server_event":
                    self.raw_types.append(event.data.data.get("type"))
            else:
                self.events.append(event)
            self._changed.set()
            self._changed = asyncio.Event()

    def of(self, kind: str) -> list[Any]:
        return [e for e in self.events if e.type == kind]

    async def wait_for(self, kind: str | Callable[[Any], bool], *, count: int = 1,
                       timeout: float = 5.0) -> Any:
        test = (lambda e: e.type == kind) if isinstance(kind, str) else kind
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            found = [e for e in self.events if test(e)]
            if len(found) >= count:
                return found[count - 1]
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"SDK event {kind!r} #{count} not seen; got "
                                   f"{[e.type for e in self.events]}")
            changed = self._changed
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    def audio(self, item_id: str | None = None) -> bytes:
        return b"".join(e.audio.data for e in self.of("audio") if item_id in (None, e.item_id))

    @property
    def history(self) -> list[Any]:
        return self.of("history_updated")[-1].history

    async def request_response(self) -> None:
        """What a gateway does for a greeting: a bare ``response.create``."""
        await self.session.model.send_event(RealtimeModelSendRawMessage(message={"type": "response.create"}))


@contextlib.asynccontextmanager
async def sdk_call(server: RealtimeServer, *, settings: dict[str, Any] | None = None,
                   tools: Sequence[Any] = (), tracker: RealtimePlaybackTracker | None = None,
                   allow_errors: bool = False) -> AsyncIterator[Call]:
    agent = RealtimeAgent(name="agent", instructions="Be brief.", tools=list(tools))
    runner = RealtimeRunner(agent, config=RealtimeRunConfig())
    model_config: dict[str, Any] = {"url": server.url, "headers": {},
                                    "initial_model_settings": dict(settings or PCM16_SETTINGS)}
    if tracker is not None:
        model_config["playback_tracker"] = tracker
    session = await runner.run(model_config=model_config)
    async with session:
        call = Call(session)
        consumer = asyncio.create_task(call.consume())
        try:
            yield call
        finally:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
    if not allow_errors:
        assert call.of("error") == [], [e.error for e in call.of("error")]


async def raw_client(server: RealtimeServer) -> Any:
    return await websockets.connect(server.url)


async def recv_until(ws: Any, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            event = json.loads(await ws.recv())
            if event["type"] == kind:
                return event


def pcm16_tone(freq: float, ms: int, rate: int = 24000, amplitude: float = 12000.0) -> bytes:
    return to_pcm16(tone(freq, rate, ms / 1000, amplitude))


def silence(ms: int, rate: int = 24000) -> bytes:
    return bytes(2 * rate * ms // 1000)


def ulaw_tone(freq: float, ms: int) -> bytes:
    return pcm16_to_ulaw(pcm16_tone(freq, ms, rate=8000))


def ulaw_silence(ms: int) -> bytes:
    return b"\xff" * (8 * ms)


# -- greeting: audio, transcript and lifecycle events, in both formats ----------------------


@pytest.mark.parametrize(
    ("settings", "bytes_per_ms", "rate"),
    [(PCM16_SETTINGS, 48, 24000), (ULAW_SETTINGS, 8, 8000)],
    ids=["pcm16", "g711_ulaw"],
)
async def test_greeting_plays_in_the_session_format(settings: dict[str, Any], bytes_per_ms: int,
                                                     rate: int) -> None:
    greeting = Reply("Thanks for calling, how can I help?", duration_ms=1500, tone_hz=600)
    async with RealtimeServer([greeting]) as server, sdk_call(server, settings=settings) as call:
        await call.request_response()
        await call.wait_for("agent_end")
        conn = server.connections[0]

    audio = call.audio()
    assert len(audio) == 1500 * bytes_per_ms
    assert [e.type for e in call.events if e.type in ("agent_start", "audio_end", "agent_end")] == [
        "agent_start", "audio_end", "agent_end"]
    pcm = from_pcm16(audio if rate == 24000 else ulaw_to_pcm16(audio))
    assert amplitude_at(pcm, rate, 600) > 4000  # the synthesized voice, audible and measurable
    assistant = [i for i in call.history if i.role == "assistant"]
    assert [c.transcript for c in assistant[0].content] == [greeting.transcript]
    assert conn.output_format.rate == rate
    record = conn.responses[0]
    assert (record.status, record.turn, record.audio_ms) == ("completed", greeting, 1500)
    assert bytes(record.audio) == audio
    assert record.first_delta_at is not None and record.last_delta_at is not None
    assert "response.cancel" not in [e.type for e in conn.received]
    assert conn.path == "/v1/realtime" and conn.headers["User-Agent"].startswith("Agents/Python")
    assert "Authorization" not in conn.headers  # headers={} skips the SDK's API key


async def test_full_ga_event_sequence_for_one_reply() -> None:
    async with RealtimeServer([Reply("Hi there.", duration_ms=250)], chunk_ms=100) as server, \
            sdk_call(server) as call:
        await call.request_response()
        await call.wait_for("agent_end")
        sent = [e.type for e in server.connections[0].sent]
    start = sent.index("response.created")
    assert sent[start:] == [
        "response.created", "response.output_item.added", "conversation.item.added",
        "response.content_part.added",
        "response.output_audio.delta", "response.output_audio_transcript.delta",
        "response.output_audio.delta", "response.output_audio.delta",
        "response.output_audio_transcript.delta",
        "response.output_audio.done", "response.output_audio_transcript.done",
        "response.content_part.done", "response.output_item.done", "conversation.item.done",
        "response.done",
    ]
    assert call.raw_types == sent  # the SDK saw exactly what was sent, in order


async def test_send_message_gets_the_next_reply_and_is_recorded() -> None:
    async with RealtimeServer([Reply("One.", duration_ms=200), Reply("Two.", duration_ms=200)]) as server, \
            sdk_call(server) as call:
        await call.session.send_message("Hello?")
        await call.wait_for("agent_end")
        await call.session.send_message("And again?")
        await call.wait_for("agent_end", count=2)
        conn = server.connections[0]
    assert [m.text for m in conn.user_messages] == ["Hello?", "And again?"]
    assert [r.turn.transcript for r in conn.responses] == ["One.", "Two."]
    assert [r.trigger.user_text for r in conn.responses] == ["Hello?", "And again?"]
    roles = [(i.role, i.content[0].text if i.role == "user" else i.content[0].transcript)
             for i in call.history]
    assert roles == [("user", "Hello?"), ("assistant", "One."), ("user", "And again?"),
                     ("assistant", "Two.")]


async def test_script_default_plays_when_the_script_runs_out() -> None:
    script = Script([Reply("First.", duration_ms=100)], default=Reply("Sorry?", duration_ms=100))
    async with RealtimeServer(script) as server, sdk_call(server) as call:
        for n in (1, 2, 3):
            await call.request_response()
            await call.wait_for("agent_end", count=n)
        assert [r.turn.transcript for r in server.connections[0].responses] == [
            "First.", "Sorry?", "Sorry?"]


# -- tools -------------------------------------------------------------------------------------


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


async def test_tool_call_runs_the_real_function_tool_then_the_next_reply_plays() -> None:
    script = [ToolCall("get_weather", {"city": "Paris"}, call_id="call_weather"),
              Reply("It is sunny in Paris.", duration_ms=300)]
    async with RealtimeServer(script) as server, sdk_call(server, tools=[get_weather]) as call:
        await call.session.send_message("Weather in Paris?")
        await call.wait_for("agent_end", count=2)
        conn = server.connections[0]

    start, end = call.of("tool_start")[0], call.of("tool_end")[0]
    assert (start.tool.name, json.loads(start.arguments)) == ("get_weather", {"city": "Paris"})
    assert end.output == "sunny in Paris"
    assert [(o.call_id, o.output) for o in conn.function_call_outputs] == [
        ("call_weather", "sunny in Paris")]
    assert [r.status for r in conn.responses] == ["completed", "completed"]
    assert conn.responses[1].turn == script[1]
    assert len(call.audio()) == 300 * 48


async def test_a_turn_can_speak_then_call_a_tool_in_one_response() -> None:
    turn = (Reply("One moment.", duration_ms=200), ToolCall("get_weather", {"city": "Oslo"}))
    async with RealtimeServer([turn, Reply("Cold.", duration_ms=100)]) as server, \
            sdk_call(server, tools=[get_weather]) as call:
        await call.request_response()
        await call.wait_for("agent_end", count=2)
        conn = server.connections[0]
    assert [o.output for o in conn.function_call_outputs] == ["sunny in Oslo"]
    first = [e.data for e in conn.sent if e.data.get("response_id") == conn.responses[0].id
             and e.type == "response.output_item.done"]
    assert [(d["output_index"], d["item"]["type"]) for d in first] == [(0, "message"), (1, "function_call")]


async def test_function_call_output_for_an_unknown_call_is_an_error() -> None:
    async with RealtimeServer() as server:
        async with await raw_client(server) as ws:
            await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                "type": "function_call_output", "call_id": "nope", "output": "x"}}))
            error = await recv_until(ws, "error")
    assert error["error"]["param"] == "item.call_id"


# -- caller audio and the VAD ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["pcm16", "g711_ulaw"])
async def test_caller_tone_reaches_the_model_intact(mode: str) -> None:
    """A 1 kHz tone the caller sends arrives as a 1 kHz tone of the same duration."""
    settings = {**(PCM16_SETTINGS if mode == "pcm16" else ULAW_SETTINGS), "turn_detection": None}
    burst = pcm16_tone(1000, 1200) if mode == "pcm16" else ulaw_tone(1000, 1200)
    async with RealtimeServer() as server, sdk_call(server, settings=settings) as call:
        conn = await server.wait_for_connection()
        await conn.wait_for_sent("session.updated")
        for i in range(0, len(burst), 960):  # 20 ms (pcm16) or 120 ms (mu-law) appends
            await call.session.send_audio(burst[i:i + 960])
        await conn.wait_until(lambda: len(conn.input_audio) == len(burst))
    assert conn.input_audio == burst
    for rate in (8000, 24000):
        pcm = from_pcm16(conn.input_audio_pcm16(rate))
        assert pcm.size == 1.2 * rate
        assert amplitude_at(pcm, rate, 1000) == pytest.approx(12000, rel=0.02)
    assert conn.audio_clock_ms == 1200
    assert conn.user_turns == []  # turn_detection null: no VAD


@pytest.mark.parametrize("mode", ["pcm16", "g711_ulaw"])
async def test_vad_tone_burst_is_a_caller_turn_that_gets_a_response(mode: str) -> None:
    if mode == "pcm16":
        settings, audio = PCM16_SETTINGS, silence(300) + pcm16_tone(1000, 400) + silence(400)
    else:
        settings, audio = ULAW_SETTINGS, ulaw_silence(300) + ulaw_tone(1000, 400) + ulaw_silence(400)
    script = [Heard("I need a taxi."), Reply("Where to?", duration_ms=200)]
    async with RealtimeServer(script) as server, \
            sdk_call(server, settings={**settings, "turn_detection": FAST_VAD}) as call:
        await call.session.send_audio(audio)
        await call.wait_for("agent_end")
        conn = server.connections[0]

    turn = conn.user_turns[0]
    # Audio-clock times: the tone spans 300-700 ms; 200 ms of silence ends the turn.
    assert (turn.source, turn.audio_start_ms, turn.audio_end_ms) == ("vad", 300, 900)
    assert turn.transcript == "I need a taxi."
    speech = [e.data for e in conn.sent if e.type.startswith("input_audio_buffer.speech")]
    assert speech == [
        {"type": "input_audio_buffer.speech_started", "audio_start_ms": 300,
         "item_id": turn.item_id, "event_id": speech[0]["event_id"]},
        {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 900,
         "item_id": turn.item_id, "event_id": speech[1]["event_id"]},
    ]
    assert conn.responses[0].trigger.source == "turn_detection"
    assert conn.responses[0].trigger.user_text == "I need a taxi."
    at = call.raw_types.index("input_audio_buffer.speech_started")
    assert call.raw_types[at:at + 6] == [
        "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed", "conversation.item.added",
        "conversation.item.input_audio_transcription.completed", "conversation.item.done"]
    user = [i for i in call.history if i.role == "user"]
    assert [c.transcript for c in user[0].content] == ["I need a taxi."]
    assert len(call.of("audio_interrupted")) == 0  # no assistant audio was playing


async def test_vad_default_transcript_and_prefix_padding() -> None:
    vad = {"type": "server_vad", "silence_duration_ms": 300}  # prefix_padding_ms defaults to 300
    async with RealtimeServer() as server, \
            sdk_call(server, settings={**PCM16_SETTINGS, "turn_detection": vad}) as call:
        await call.session.send_audio(silence(1000) + pcm16_tone(300, 500) + silence(300))
        await call.wait_for("agent_end")
        turn = server.connections[0].user_turns[0]
    assert (turn.audio_start_ms, turn.audio_end_ms) == (700, 1800)
    assert turn.transcript == "<speech 1100 ms>"


async def test_semantic_vad_the_sdk_default_is_served_by_the_same_detector() -> None:
    async with RealtimeServer(silence_duration_ms=250) as server, sdk_call(server) as call:
        await call.session.send_audio(pcm16_tone(300, 200) + silence(300))
        await call.wait_for("agent_end")
        conn = server.connections[0]
    assert conn.session["audio"]["input"]["turn_detection"]["type"] == "semantic_vad"
    assert (conn.user_turns[0].audio_start_ms, conn.user_turns[0].audio_end_ms) == (0, 450)


async def test_manual_commit_without_turn_detection() -> None:
    settings = {**PCM16_SETTINGS, "turn_detection": None}
    script = [Heard("Hello from a push-to-talk caller."), Reply("Hi.", duration_ms=100)]
    async with RealtimeServer(script) as server, sdk_call(server, settings=settings) as call:
        await call.session.send_audio(pcm16_tone(500, 300), commit=True)
        conn = await server.wait_for_connection()
        await conn.wait_for_sent("conversation.item.input_audio_transcription.completed")
        assert conn.responses == []  # without turn detection nothing answers on its own
        await call.request_response()
        await call.wait_for("agent_end")
    turn = conn.user_turns[0]
    assert (turn.source, turn.audio_start_ms, turn.audio_end_ms) == ("commit", 0, 300)
    assert turn.transcript == "Hello from a push-to-talk caller."


async def test_commit_of_an_almost_empty_buffer_is_an_error() -> None:
    async with RealtimeServer() as server:
        async with await raw_client(server) as ws:
            await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                      "audio": base64.b64encode(silence(50)).decode()}))
            await ws.send(json.dumps({"type": "input_audio_buffer.commit", "event_id": "c1"}))
            error = await recv_until(ws, "error")
            await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
            await recv_until(ws, "input_audio_buffer.cleared")
    assert error["error"]["code"] == "input_audio_buffer_commit_empty"
    assert error["error"]["event_id"] == "c1"


# -- barge-in ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["pcm16", "g711_ulaw"])
async def test_barge_in_cancels_the_response_and_records_the_truncation(mode: str) -> None:
    """The caller speaks over a long reply: the SDK reports ``audio_interrupted`` and truncates
    at what the playback tracker says was heard; the server stops the reply at once."""
    settings = {**(PCM16_SETTINGS if mode == "pcm16" else ULAW_SETTINGS), "turn_detection": FAST_VAD}
    speech = pcm16_tone(700, 300) + silence(300) if mode == "pcm16" else ulaw_tone(700, 300) + ulaw_silence(300)
    script = [Reply("A very long story about the weather.", duration_ms=5000),
              Heard("Stop, please."), Reply("Sorry, go ahead.", duration_ms=200)]
    tracker = RealtimePlaybackTracker()
    async with RealtimeServer(script, pace=1.0) as server, \
            sdk_call(server, settings=settings, tracker=tracker) as call:
        await call.request_response()
        first = await call.wait_for("audio")
        await call.wait_for("audio", count=2)
        tracker.on_play_ms(first.item_id, first.content_index, 150)  # what the caller heard
        await call.session.send_audio(speech)
        interrupted = await call.wait_for("audio_interrupted")
        await call.wait_for("agent_end", count=2)
        conn = server.connections[0]

    assert interrupted.item_id == first.item_id
    assert [(t.item_id, t.content_index, t.audio_end_ms) for t in conn.truncations] == [
        (first.item_id, 0, 150)]
    cancelled, reply = conn.responses
    assert (cancelled.status, cancelled.reason) == ("cancelled", "turn_detected")
    assert cancelled.audio_ms < 1000  # it stopped long before its 5 s
    assert reply.status == "completed" and reply.turn == script[2]
    # Nothing of the cancelled reply reached the SDK after the interruption.
    index = call.events.index(interrupted)
    assert not [e for e in call.events[index:] if e.type == "audio" and e.item_id == first.item_id]
    assert call.audio(first.item_id) == bytes(cancelled.audio)
    # interrupt_response was on, so the SDK left the cancelling to the server.
    assert "response.cancel" not in [e.type for e in conn.received]
    done = [e.data for e in conn.sent if e.type == "response.done"][0]["response"]
    assert done["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    assert done["output"][0]["status"] == "incomplete"
    # The real API's closing sequence, right after speech_started.
    sent = [e.type for e in conn.sent]
    at = sent.index("input_audio_buffer.speech_started")
    assert sent[at:at + 7] == [
        "input_audio_buffer.speech_started", "response.output_audio.done",
        "response.output_audio_transcript.done", "response.content_part.done",
        "response.output_item.done", "conversation.item.done", "response.done"]


async def test_injected_speech_started_interrupts_like_the_vad() -> None:
    async with RealtimeServer([Reply("Long reply.", duration_ms=5000)], pace=1.0) as server, \
            sdk_call(server) as call:
        await call.request_response()
        await call.wait_for("audio")
        conn = server.connections[0]
        turn = await conn.send_speech_started()
        await call.wait_for("audio_interrupted")
        await conn.wait_for_response(0)
        await conn.send_speech_stopped("Injected words.")
        await call.wait_for("agent_end", count=2)
    assert (conn.responses[0].status, conn.responses[0].reason) == ("cancelled", "turn_detected")
    assert turn.source == "injected" and turn.transcript == "Injected words."
    assert conn.speech_started_at == [turn.started_at]
    # Without a playback tracker the SDK truncates at wall-clock playback time, clamped.
    assert len(conn.truncations) == 1


async def test_client_response_cancel() -> None:
    async with RealtimeServer([Reply("Long reply.", duration_ms=5000)], pace=1.0) as server, \
            sdk_call(server) as call:
        await call.request_response()
        await call.wait_for("audio")
        await call.session.model.send_event(RealtimeModelSendInterrupt(force_response_cancel=True))
        await call.wait_for("agent_end")
        conn = server.connections[0]
    assert (conn.responses[0].status, conn.responses[0].reason) == ("cancelled", "client_cancelled")
    assert conn.received_of("response.cancel")


# -- dynamic behaviour and server-side controls ------------------------------------------------


async def test_on_turn_hook_answers_dynamically_and_can_defer_to_the_script() -> None:
    seen: list[Trigger] = []

    async def on_turn(conn: RealtimeConnection, trigger: Trigger) -> Reply | None:
        seen.append(trigger)
        if trigger.user_text and "echo" in trigger.user_text:
            return Reply(f"You said: {trigger.user_text}", duration_ms=100)
        return None

    async with RealtimeServer([Reply("Scripted.", duration_ms=100)], on_turn=on_turn) as server, \
            sdk_call(server) as call:
        await call.session.send_message("echo this")
        await call.wait_for("agent_end")
        await call.session.send_message("something else")
        await call.wait_for("agent_end", count=2)
        conn = server.connections[0]
    assert [r.turn.transcript for r in conn.responses] == ["You said: echo this", "Scripted."]
    assert [t.source for t in seen] == ["response.create", "response.create"]
    assert seen[0].event is not None and seen[0].event["type"] == "response.create"


async def test_server_initiated_response_and_close() -> None:
    async with RealtimeServer() as server, sdk_call(server) as call:
        conn = await server.wait_for_connection()
        await conn.wait_for_sent("session.updated")
        record = await conn.start_response(Reply("Are you still there?", duration_ms=100))
        await call.wait_for("agent_end")
        assert record.trigger.source == "server" and record.status == "completed"
        await conn.close(1000, "bye")
        await conn.wait_until(lambda: conn.closed)
    assert conn.close_code == 1000


async def test_concurrent_connections_are_isolated() -> None:
    def on_turn(conn: RealtimeConnection, trigger: Trigger) -> Reply:
        return Reply(f"Call {conn.index}.", duration_ms=100 * (conn.index + 1))

    async with RealtimeServer(on_turn=on_turn) as server:
        async with sdk_call(server) as a, sdk_call(server, settings=ULAW_SETTINGS) as b:
            await asyncio.gather(a.request_response(), b.request_response())
            await asyncio.gather(a.wait_for("agent_end"), b.wait_for("agent_end"))
            by_format = {c.output_format.type: c for c in server.connections}
            ulaw, pcm = by_format["audio/pcmu"], by_format["audio/pcm"]
        assert len(a.audio()) == 100 * (pcm.index + 1) * 48
        assert len(b.audio()) == 100 * (ulaw.index + 1) * 8
        assert [len(c.responses) for c in server.connections] == [1, 1]
        assert {c.session_id for c in server.connections} == {"sess_0", "sess_1"}


# -- pacing ------------------------------------------------------------------------------------


async def test_pace_spreads_deltas_over_audio_time() -> None:
    # Two replies of 500 ms in one response, 250 ms chunks, twice real time: each delta leaves
    # when the response's audio before it would have played at 2x (0, 125, 250, 375 ms), with
    # no gap between the two items.
    turn = (Reply("Paced.", duration_ms=500), Reply("Still paced.", duration_ms=500))
    async with RealtimeServer([turn], pace=2.0, chunk_ms=250) as server, sdk_call(server) as call:
        await call.request_response()
        await call.wait_for("agent_end")
        paced = server.connections[0].responses[0]
    assert len(call.of("audio")) == 4 and len(call.of("audio_end")) == 2
    assert paced.last_delta_at - paced.first_delta_at == pytest.approx(0.375, abs=0.06)

    async with RealtimeServer([Reply("Fast.", duration_ms=5000)], pace=None, chunk_ms=20) as server, \
            sdk_call(server) as call:
        await call.request_response()
        await call.wait_for("agent_end")
        fast = server.connections[0].responses[0]
    assert len(call.of("audio")) == 250
    assert fast.last_delta_at - fast.first_delta_at < 0.5  # far faster than real time


# -- session -----------------------------------------------------------------------------------


async def test_session_update_is_a_partial_merge_answered_in_full() -> None:
    async with RealtimeServer() as server, sdk_call(server, settings=ULAW_SETTINGS):
        conn = await server.wait_for_connection()
        # The SDK sends its full settings, then a tracing-only update after session.created.
        await conn.wait_for_sent("session.updated", count=2)
        updates = [e.data["session"] for e in conn.received_of("session.update")]
        assert "audio" not in updates[1] and updates[1]["tracing"] == "auto"
        last = conn.sent_of("session.updated")[-1].data["session"]
        assert last["audio"]["output"]["format"] == {"type": "audio/pcmu"}
        assert last["audio"]["input"]["turn_detection"]["interrupt_response"] is True
        assert last["tracing"] == "auto" and last["instructions"] == "Be brief."
        assert conn.input_format.type == conn.output_format.type == "audio/pcmu"


async def test_session_created_is_ga_pcm16_with_server_vad() -> None:
    async with RealtimeServer(silence_duration_ms=350) as server:
        async with await raw_client(server) as ws:
            created = json.loads(await ws.recv())
    assert created["type"] == "session.created"
    audio = created["session"]["audio"]
    assert created["session"]["type"] == "realtime"
    assert audio["input"]["format"] == audio["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert audio["input"]["turn_detection"]["silence_duration_ms"] == 350


async def test_invalid_session_update_is_refused_and_changes_nothing() -> None:
    async with RealtimeServer() as server:
        async with await raw_client(server) as ws:
            await ws.send(json.dumps({"type": "session.update", "event_id": "bad", "session": {
                "type": "realtime", "audio": {"output": {"format": {"type": "audio/pcm", "rate": 8000}}}}}))
            error = await recv_until(ws, "error")
            await ws.send(json.dumps({"type": "session.update", "session": {
                "type": "realtime", "audio": {"output": {"format": {"type": "audio/pcma"}}}}}))
            unsupported = await recv_until(ws, "error")
            conn = server.connections[0]
            assert conn.output_format.type == "audio/pcm"
            assert not conn.sent_of("session.updated")
            # Every key of a GA session is optional: even a null audio.input is served.
            await ws.send(json.dumps({"type": "session.update", "session": {
                "type": "realtime", "audio": {"input": None}}}))
            updated = await recv_until(ws, "session.updated")
            assert updated["session"]["audio"]["input"] is None and conn.turn_detection is None
    assert error["error"]["type"] == "invalid_request_error" and error["error"]["event_id"] == "bad"
    assert "pcma" in unsupported["error"]["message"]


# -- errors and conversation events on the raw wire --------------------------------------------


async def test_bad_client_events_get_error_events_and_the_connection_stays_open() -> None:
    async with RealtimeServer() as server:
        async with await raw_client(server) as ws:
            await ws.send("{not json")
            malformed = await recv_until(ws, "error")
            await ws.send(json.dumps({"type": "response.audio.delta", "event_id": "e1"}))
            unknown = await recv_until(ws, "error")
            await ws.send(json.dumps({"type": "conversation.item.truncate", "item_id": "x"}))
            missing = await recv_until(ws, "error")
            await ws.send(json.dumps({"type": "response.create", "colour": "blue"}))
            extra = await recv_until(ws, "error")
            await ws.send(json.dumps({"type": "response.cancel"}))
            not_active = await recv_until(ws, "error")
            await ws.send(b"\x00\x01")
            binary = await recv_until(ws, "error")
            await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
            await recv_until(ws, "input_audio_buffer.cleared")  # still serving
    assert malformed["error"]["type"] == "invalid_request_error"
    assert "Invalid JSON" in malformed["error"]["message"]
    assert "'response.audio.delta'" in unknown["error"]["message"]
    assert (unknown["error"]["param"], unknown["error"]["event_id"]) == ("type", "e1")
    assert missing["error"]["code"] == "missing_required_parameter"
    assert extra["error"]["code"] == "unknown_parameter" and extra["error"]["param"] == "colour"
    assert not_active["error"]["code"] == "response_cancel_not_active"
    assert "Binary" in binary["error"]["message"]
    conn = server.connections[0]
    assert [e.type for e in conn.received] == [
        "response.audio.delta", "conversation.item.truncate", "response.create",
        "response.cancel", "input_audio_buffer.clear"]


async def test_conversation_item_create_retrieve_truncate_delete() -> None:
    async with RealtimeServer([Reply("Hello.", duration_ms=300)]) as server:
        async with await raw_client(server) as ws:
            await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}}))
            added = await recv_until(ws, "conversation.item.added")
            item_id = added["item"]["id"]
            await ws.send(json.dumps({"type": "conversation.item.retrieve", "item_id": item_id}))
            retrieved = await recv_until(ws, "conversation.item.retrieved")
            await ws.send(json.dumps({"type": "conversation.item.retrieve", "item_id": "missing"}))
            not_found = await recv_until(ws, "error")
            await ws.send(json.dumps({"type": "response.create"}))
            await ws.send(json.dumps({"type": "response.create", "event_id": "second"}))
            busy = await recv_until(ws, "error")
            done = await recv_until(ws, "response.done")
            assistant = done["response"]["output"][0]["id"]
            await ws.send(json.dumps({"type": "conversation.item.truncate", "item_id": assistant,
                                      "content_index": 0, "audio_end_ms": 400}))
            too_long = await recv_until(ws, "error")
            await ws.send(json.dumps({"type": "conversation.item.truncate", "item_id": assistant,
                                      "content_index": 0, "audio_end_ms": 120}))
            truncated = await recv_until(ws, "conversation.item.truncated")
            await ws.send(json.dumps({"type": "conversation.item.delete", "item_id": item_id}))
            deleted = await recv_until(ws, "conversation.item.deleted")
        conn = server.connections[0]
    assert added["previous_item_id"] is None and item_id.startswith("item_")
    assert retrieved["item"]["content"] == [{"type": "input_text", "text": "hi"}]
    assert not_found["error"]["param"] == "item_id"
    assert busy["error"]["code"] == "conversation_already_has_active_response"
    assert busy["error"]["event_id"] == "second"
    assert too_long["error"]["param"] == "audio_end_ms"
    assert (truncated["item_id"], truncated["audio_end_ms"]) == (assistant, 120)
    assert deleted["item_id"] == item_id and item_id not in conn.items
    assert [(t.item_id, t.audio_end_ms) for t in conn.truncations] == [(assistant, 120)]
    assert [m.text for m in conn.user_messages] == ["hi"]


async def test_api_key_is_checked_when_configured() -> None:
    async with RealtimeServer(api_key="sk-test") as server:
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(server.url)
        assert refused.value.response.status_code == 401
        async with websockets.connect(server.url, additional_headers={
                "Authorization": "Bearer sk-test"}) as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"


# -- validation --------------------------------------------------------------------------------


def test_validate_server_event_rejects_what_the_sdk_would_reject() -> None:
    ok = {"type": "input_audio_buffer.speech_started", "event_id": "e", "audio_start_ms": 1,
          "item_id": "i"}
    validate_server_event(ok)
    with pytest.raises(InvalidServerEvent, match="event_id"):
        validate_server_event({k: v for k, v in ok.items() if k != "event_id"})
    with pytest.raises(InvalidServerEvent, match="usage"):  # the SDK requires usage
        validate_server_event({"type": "conversation.item.input_audio_transcription.completed",
                               "event_id": "e", "item_id": "i", "content_index": 0, "transcript": "t"})
    with pytest.raises(InvalidServerEvent):  # a beta event name
        validate_server_event({"type": "response.audio.delta", "event_id": "e"})
    # Stricter than pydantic: a stray field would override the SDK's playback tracker.
    with pytest.raises(InvalidServerEvent, match="audio_end_ms"):
        validate_server_event({**ok, "audio_end_ms": 500})


async def test_emit_validates_unless_told_not_to() -> None:
    async with RealtimeServer() as server:
        async with await raw_client(server) as ws:
            conn = await server.wait_for_connection()
            with pytest.raises(InvalidServerEvent):
                await conn.emit({"type": "conversation.item.added", "item": {
                    "type": "message", "role": "assistant"}})  # no content: the SDK rejects it
            await conn.emit({"type": "input_audio_buffer.cleared"})
            await conn.emit({"type": "made.up"}, validate=False)
            types = [json.loads(await ws.recv())["type"] for _ in range(3)]
    assert types == ["session.created", "input_audio_buffer.cleared", "made.up"]


async def test_an_internal_error_fails_the_connection_and_close_raises() -> None:
    def broken(conn: RealtimeConnection, trigger: Trigger) -> Any:
        return "not a turn"

    server = RealtimeServer(on_turn=broken)
    await server.start()
    async with await raw_client(server) as ws:
        await ws.send(json.dumps({"type": "response.create"}))
        done = await recv_until(ws, "response.done")
        error = await recv_until(ws, "error")
        with pytest.raises(websockets.ConnectionClosedError):
            await ws.recv()
    assert done["response"]["status"] == "failed"
    assert error["error"]["type"] == "server_error"
    with pytest.raises(RealtimeServerError, match="TypeError"):
        await server.close()


# -- serve_forever -----------------------------------------------------------------------------


async def test_serve_forever_prints_its_url_and_serves_until_cancelled(capsys: pytest.CaptureFixture[str]) -> None:
    task = asyncio.create_task(serve_forever("127.0.0.1", 0))
    url = ""
    async with asyncio.timeout(5):
        while "ws://" not in url:
            await asyncio.sleep(0.01)
            url = capsys.readouterr().out
    url = url.split()[-1]
    assert url.endswith("/v1/realtime")
    async with websockets.connect(url) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# -- pure pieces: VAD, script, voice -----------------------------------------------------------


def _vad_run(chunks: Sequence[bytes], rate: int = 8000, **kw: Any) -> list[Any]:
    vad = EnergyVad(**kw)
    events: list[Any] = []
    for chunk in chunks:
        events += vad.feed(chunk, rate, silence_duration_ms=200, prefix_padding_ms=0)
    return events


def test_vad_times_come_from_the_audio_and_ignore_chunking() -> None:
    audio = silence(250, 8000) + pcm16_tone(400, 500, 8000) + silence(600, 8000)
    expected = [SpeechStart(audio_start_ms=250, detected_ms=310), SpeechStop(audio_end_ms=950)]
    assert _vad_run([audio]) == expected
    assert _vad_run([audio[i:i + 333] for i in range(0, len(audio), 333)]) == expected  # odd sizes


def test_vad_needs_min_speech_and_the_threshold() -> None:
    click = silence(100, 8000) + pcm16_tone(400, 40, 8000) + silence(400, 8000)
    assert _vad_run([click], min_speech_ms=60) == []
    quiet = pcm16_tone(400, 500, 8000, amplitude=100)  # about -50 dBFS
    assert _vad_run([quiet]) == []
    assert _vad_run([quiet], threshold_dbfs=-60)[0] == SpeechStart(0, 60)


def test_vad_silence_bridges_short_pauses() -> None:
    words = pcm16_tone(400, 200, 8000) + silence(150, 8000) + pcm16_tone(400, 200, 8000)
    assert _vad_run([words + silence(300, 8000)]) == [SpeechStart(0, 60), SpeechStop(750)]


def test_script_cursor_plays_turns_and_heard_lines_separately() -> None:
    hello, answer = Reply("Hello."), ToolCall("lookup", {"q": 1})
    cursor = ScriptCursor(Script([hello, Heard("first"), answer, Heard("second")],
                                 default=Reply("Default.")))
    assert cursor.next_heard() == "first"
    assert cursor.next_turn() == hello
    assert cursor.next_heard() == "second"
    assert cursor.next_heard() is None
    assert cursor.next_turn() == answer
    assert cursor.next_turn() == Reply("Default.")


def test_when_rules_answer_fresh_input_before_the_turns_in_order() -> None:
    first, second = Reply("First."), Reply("Second.")
    refund = ToolCall("issue_refund", {"order": "1"})
    bye = Reply("Bye.")
    cursor = ScriptCursor(Script([
        first, When("REFUND", refund), second,
        When(re.compile(r"\bbye\b"), bye, once=True),
        When(lambda text: text.isdigit(), Reply("Digits.")),
    ]))
    assert cursor.next_turn("hello") == first  # no rule matches: the next turn in order
    assert cursor.next_turn("a refund please") == refund  # case-insensitive substring
    assert cursor.next_turn(None) == second  # not fresh input (after a tool output)
    assert cursor.next_turn("goodbye") == Reply("Okay.")  # the regex wants the word
    assert cursor.next_turn("ok bye") == bye
    assert cursor.next_turn("ok bye") == Reply("Okay.")  # once: retired
    assert cursor.next_turn("1234") == Reply("Digits.")
    assert cursor.next_turn("another refund") == refund  # rules repeat by default
    assert cursor.turns_left == 0


def test_when_rejects_what_is_not_a_turn_or_a_matcher() -> None:
    with pytest.raises(TypeError):
        When("x", Heard("not a turn"))
    with pytest.raises(TypeError):
        When(42, Reply("x"))


async def test_a_rule_answers_what_the_caller_is_said_to_have_said() -> None:
    script = [Reply("Hi."), When("order", Reply("Your order is on its way.")), Reply("Anything else?")]
    async with RealtimeServer(script) as server:
        async with websockets.connect(server.url) as ws:
            drain = asyncio.create_task(_drain(ws))
            conn = await server.wait_for_connection()
            conn.will_hear("Where is my order?")
            await ws.send(json.dumps({"type": "response.create"}))
            await conn.wait_for_response(0)
            await conn.send_speech_started(0)
            turn = await conn.send_speech_stopped(audio_end_ms=500)
            await ws.send(json.dumps({"type": "response.create"}))
            answer = await conn.wait_for_response(1)
            await ws.close()
            await drain
    assert turn.transcript == "Where is my order?"  # will_hear comes before Heard lines
    assert answer.turn == Reply("Your order is on its way.")


async def _drain(ws: Any) -> None:
    with contextlib.suppress(websockets.ConnectionClosed):
        async for _ in ws:
            pass


def test_reply_duration_and_synthesized_voice() -> None:
    assert Reply("x" * 50).synthesized_ms == 3000
    assert Reply("Hi").synthesized_ms == 200
    voice = from_pcm16(synthesize_voice(1000, 250))
    assert voice.size == 24000
    assert amplitude_at(voice, 24000, 250) == pytest.approx(6000, rel=0.02)
    assert np.abs(voice).max() < 32767 and abs(voice[0]) < 50  # faded in, no clipping
    with pytest.raises(ValueError):
        Reply("x", audio=b"\x00\x00", duration_ms=10)
    with pytest.raises(ValueError):
        Reply("x", audio=b"\x00")
    assert ToolCall("f", {"a": 1}).arguments_json() == '{"a":1}'


def test_package_exports_the_server() -> None:
    assert PackageRealtimeServer is RealtimeServer
    with pytest.raises(RuntimeError):
        RealtimeServer().url  # noqa: B018 - not started


@pytest.mark.parametrize(("compression", "negotiated"), [("deflate", True), (None, False)])
async def test_permessage_deflate_is_accepted_or_declined_as_configured(compression, negotiated) -> None:
    """The SDK's client (``websockets``' default) offers permessage-deflate; the server takes it
    up, or with ``compression=None`` declines it and every message goes uncompressed."""
    import websockets

    async with RealtimeServer(compression=compression) as server:
        async with websockets.connect(server.url) as ws:  # offers deflate, as the SDK does
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
    assert ("permessage-deflate" in extensions) is negotiated
