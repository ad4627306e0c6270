"""ModelLink, the model edge, on a real session with the local Realtime server."""

from __future__ import annotations

import logging

from agents.realtime import RealtimeAgent

from gateway.audio import OutboundTranscoder
from gateway.bridge.agents import CallInfo
from gateway.bridge.model import ModelLink, PlaybackTracker
from gateway.bridge.playback import Playback
from gateway.testing.realtime import RealtimeServer
from tests.bridge.test_call import settings


async def test_audio_for_a_session_whose_socket_is_gone_is_reported_not_raised() -> None:
    """Once the SDK has closed a failed session, sending to it asserts "Not connected"
    (agents/realtime/openai_realtime.py); a caller frame in flight then must be kept for the
    next session, not kill the Twilio reader (a CI run saw exactly that)."""
    async with RealtimeServer([]) as server:
        config = settings(OPENAI_REALTIME_URL=server.url)
        info = CallInfo(call_sid="CA1", stream_sid="MZ1", account_sid="AC1", from_="", to="", parameters={})
        tracker = PlaybackTracker(Playback(OutboundTranscoder(config.audio_mode)))
        link = ModelLink(config, info, tracker, logging.LoggerAdapter(logging.getLogger("test"), {}))
        link.use(RealtimeAgent(name="Agent"))
        assert await link.start(lambda: True)
        assert await link.send_audio(b"\xff" * 160) and not link.broken
        await link.session.model.close()  # what the SDK does with a failed connection
        assert await link.send_audio(b"\xff" * 160) is False and link.broken
        await link.close()
