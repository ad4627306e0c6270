"""ModelLink, the model edge, on a real session with the local Realtime server."""

from __future__ import annotations

import asyncio
import logging

import pytest
from agents.realtime import RealtimeAgent

from gateway.audio import OutboundTranscoder
from gateway.bridge.agents import CallInfo
from gateway.bridge.model import ModelLink, PlaybackTracker
from gateway.bridge.playback import Playback
from gateway.testing.realtime import RealtimeServer, Reply
from gateway.settings import Settings
from tests.bridge.test_call import settings


def model_link(config: Settings, tracker: type[PlaybackTracker] = PlaybackTracker) -> ModelLink:
    """A call's model edge with the built-in agent, not yet connected."""
    info = CallInfo(call_sid="CA1", stream_sid="MZ1", account_sid="AC1", from_="", to="", parameters={})
    link = ModelLink(config, info, tracker(Playback(OutboundTranscoder(config.audio_mode))),
                     logging.LoggerAdapter(logging.getLogger("test"), {}))
    link.use(RealtimeAgent(name="Agent"))
    return link


async def test_audio_for_a_session_whose_socket_is_gone_is_reported_not_raised() -> None:
    """Once the SDK has closed a failed session, sending to it asserts "Not connected"
    (agents/realtime/openai_realtime.py); a caller frame in flight then must be kept for the
    next session, not kill the Twilio reader (a CI run saw exactly that)."""
    async with RealtimeServer([]) as server:
        link = model_link(settings(OPENAI_REALTIME_URL=server.url))
        assert await link.start(lambda: True)
        assert await link.send_audio(b"\xff" * 160) and not link.broken
        await link.session.model.close()  # what the SDK does with a failed connection
        assert await link.send_audio(b"\xff" * 160) is False and link.broken
        await link.close()


async def speech_started_after_audio(link: ModelLink, server: RealtimeServer) -> None:
    """Connect ``link``, let the agent's audio stream, then have the server hear the caller
    start speaking; back once the session has reported the interruption."""
    assert await link.start(lambda: True)
    await link.ask("Greet the caller.")
    conn = await server.wait_for_connection()
    async with asyncio.timeout(5):
        async for event in link.session:  # until the agent's audio is streaming
            if event.type == "audio":
                break
    # Words that name the event, in a message that is not it, come first: not a barge-in.
    await conn.emit({"type": "response.output_audio_transcript.delta", "response_id": "resp_x", "item_id": "item_x",
                     "output_index": 0, "content_index": 0, "delta": "input_audio_buffer.speech_started"})
    await conn.send_speech_started()
    async with asyncio.timeout(5):
        async for event in link.session:
            if event.type == "audio_interrupted":
                break
    await link.close()


class OrderTracker(PlaybackTracker):
    order: list[str]

    def get_state(self):  # type: ignore[override]
        self.order.append("sdk reads what was heard")
        return super().get_state()


@pytest.mark.parametrize(("acts", "expected"), [
    (True, ["heard, in the read callback", "sdk reads what was heard"]),
    (False, ["heard, in the read callback", "handed speech_started", "sdk reads what was heard"]),
    (None, ["handed speech_started", "sdk reads what was heard"]),  # no hook for the read: the listener
])
async def test_speech_started_is_acted_on_in_the_loop_step_that_reads_it(acts, expected) -> None:
    """The clear goes out first, a pass of the event loop before the SDK's reader could send
    it: ``on_speech_heard`` is called from the model connection's read of the message, before
    any task has seen it. Once it has acted, the SDK's listener does not act again; if it could
    not (Twilio's socket not taking writes), or there is no such hook, the model's listener
    hands the message over before the SDK reads the playback tracker to truncate (and so before
    it queues audio_interrupted for the session's reader)."""
    order: list[str] = []
    OrderTracker.order = order

    def heard(received: float) -> bool:
        order.append(f"heard, in {'a task' if asyncio.current_task() is not None else 'the read callback'}")
        return acts

    async def speech_started(received: float) -> None:
        order.append("handed speech_started")

    async with RealtimeServer([Reply("Hello there, how can I help?", duration_ms=3000)], pace=1.0) as server:
        link = model_link(settings(OPENAI_REALTIME_URL=server.url), OrderTracker)
        link.on_speech_started, link.on_speech_heard = speech_started, heard if acts is not None else None
        await speech_started_after_audio(link, server)
    assert order == expected
