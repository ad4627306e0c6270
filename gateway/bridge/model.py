"""``ModelLink``: a call's thin asyncio edge to the model, an ``agents.realtime`` session.

It connects (retried with backoff within ``GATEWAY_MODEL_CONNECT_BUDGET_S``), reads the
session's events, sends what the call decides (audio, messages, requests to speak, tool
approvals), reconnects after a mid-call failure and rolls over to a fresh session, seeding a
new session with the conversation so far. What to do and when is the call's decision
(``gateway.bridge.call``); this module only does it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from agents import RunContextWrapper
from agents.realtime import (
    RealtimeAgent,
    RealtimeModelEvent,
    RealtimeModelListener,
    RealtimePlaybackTracker,
    RealtimeRunConfig,
    RealtimeRunner,
    RealtimeSession,
)
from agents.realtime.model_inputs import RealtimeModelSendRawMessage
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from gateway.bridge.agents import CallInfo, guard_tools
from gateway.bridge.playback import Playback
from gateway.bridge.sdk import SPEECH_STARTED, realtime_model
from gateway.settings import Settings

#: The gateway's own tools (gateway.tools): they keep their own timing (a goodbye heard, a
#: keypad timeout), so the tool timeout does not apply to them.
GATEWAY_TOOLS = frozenset({"hang_up", "transfer_call", "collect_digits"})
#: Model connection retries: the first pause, and the most any pause grows to (doubling).
CONNECT_BACKOFF_S = (0.25, 2.0)
#: One connection attempt gets at most this long (a hung handshake must leave budget for a
#: retry), and however little of the budget is left, at least the minimum.
CONNECT_ATTEMPT_S = 2.5
CONNECT_MIN_ATTEMPT_S = 1.0
#: What a send raises once the session's socket is gone: websockets' ``ConnectionClosed``, or,
#: once the SDK has closed its model after the failure, its assertion that it is not connected
#: (agents/realtime/openai_realtime.py, ``_send_raw_message``). Either way the session reader
#: sees the failure and reconnects, or ends the call.
SESSION_GONE = (ConnectionClosed, AssertionError)


class PlaybackTracker(RealtimePlaybackTracker):
    """The SDK's playback tracker, answered from ``Playback``: what the caller heard, from
    Twilio mark echoes, interpolated between echoes (gateway/bridge/playback.py). The SDK
    reads ``get_state`` when the caller starts speaking over the agent and truncates the
    model's item there, then calls ``on_interrupted`` (agents/realtime/openai_realtime.py,
    speech_started handling); it reads nothing else of the tracker, so the ``on_play_*``
    reports are not needed. When the gateway has already cleared playback for this
    speech_started (``Call.speech_started``), the answer is what the caller had heard when the
    ``clear`` went out (``Playback.cut``), not what they would have heard by now."""

    def __init__(self, playback: Playback, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._playback = playback
        self._clock = clock

    def on_interrupted(self) -> None:
        self._playback.cut = None  # the SDK has truncated at it

    def get_state(self):  # type: ignore[override]
        heard = self._playback.cut
        if heard is None:
            heard = self._playback.heard(self._clock())
        if heard is None:
            return {"current_item_id": None, "current_item_content_index": None, "elapsed_ms": None}
        return {
            "current_item_id": heard.item_id,
            "current_item_content_index": heard.content_index,
            "elapsed_ms": heard.ms,
        }


class SpeechStartWatch(RealtimeModelListener):
    """Where the gateway learns that the caller started speaking, as early as it can.

    First, as the message comes off the socket: the model's connection (``ModelConnection``,
    gateway/bridge/sdk.py) calls ``arrived`` in the same event-loop step that read it, and
    ``heard`` acts on it there (the ``clear`` is written at once) if it can.

    Otherwise, and always for the record, as a listener on the session's model, added before
    the session's own. The SDK hands every server message, as decoded JSON, to its model's
    listeners, in the order they were added, before it validates the message or acts on it
    (``OpenAIRealtimeWebSocketModel._handle_ws_event`` emits a ``RealtimeModelRawServerEvent``
    first; agents/realtime/openai_realtime.py). So ``handle`` runs, and is awaited, before the
    SDK reads the playback tracker and sends its truncate, and before anything the session has
    queued for the call's reader. A message ``heard`` already acted on is not acted on again."""

    def __init__(self, handle: Callable[[float], Awaitable[None]], clock: Callable[[], float],
                 heard: Callable[[float], bool] | None = None) -> None:
        self._handle = handle
        self._clock = clock
        self._heard = heard
        self._done = 0  # speech_started messages acted on as they arrived, not yet seen here

    def arrived(self) -> None:
        if self._heard is not None and self._heard(self._clock()):
            self._done += 1

    async def on_event(self, event: RealtimeModelEvent) -> None:
        if event.type == "raw_server_event":
            data = event.data
            if type(data) is dict and data.get("type") == SPEECH_STARTED:
                if self._done:
                    self._done -= 1
                    return
                await self._handle(self._clock())


def model_settings(settings: Settings) -> dict[str, Any]:
    """The session's base model settings. The SDK re-applies base settings on every session
    update (handoffs included), so the audio format set here never changes mid-call."""
    mode = settings.audio_mode.value  # "pcm16" or "g711_ulaw": the SDK's format names
    turn_detection: dict[str, Any] = {
        "type": settings.turn_detection,
        "interrupt_response": settings.interrupt_response,
        "create_response": True,
    }
    if settings.turn_detection == "semantic_vad":
        turn_detection["eagerness"] = settings.vad_eagerness
    else:
        turn_detection["silence_duration_ms"] = settings.vad_silence_ms
    return {
        "model_name": settings.model,
        "voice": settings.voice,
        "input_audio_format": mode,
        "output_audio_format": mode,
        "input_audio_transcription": {"model": settings.transcription_model},
        "turn_detection": turn_detection,
    }


def tracing(info: CallInfo) -> dict[str, Any]:
    """The session's trace settings: every session of one call (reconnects and rollovers
    included) in one trace group, the call SID, so a call's traces group together on OpenAI's
    dashboard (``RealtimeModelTracingConfig``, agents/realtime/config.py; sent in a
    ``session.update``, agents/realtime/openai_realtime.py ``_send_tracing_config``)."""
    return {"workflow_name": "Phone call", "group_id": info.call_sid,
            "metadata": {"call_sid": info.call_sid, "stream_sid": info.stream_sid}}


def model_config(settings: Settings, tracker: RealtimePlaybackTracker, info: CallInfo) -> dict[str, Any]:
    config: dict[str, Any] = {"initial_model_settings": {**model_settings(settings), "tracing": tracing(info)},
                              "playback_tracker": tracker}
    if settings.openai_realtime_url:
        config["url"] = settings.openai_realtime_url
    if settings.openai_api_key:
        config["api_key"] = settings.openai_api_key
    elif settings.openai_realtime_url:
        # A local server needs no key; passing headers skips the SDK's key requirement.
        config["headers"] = {}
    return config


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status of a refused WebSocket handshake (websockets' ``InvalidStatus``)."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


class ModelLink:
    """The model side of one call: one session at a time (two, briefly, during a rollover)."""

    def __init__(self, settings: Settings, info: CallInfo, tracker: PlaybackTracker, log: logging.LoggerAdapter,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.info = info
        self.tracker = tracker
        self.log = log
        self.clock = clock
        self.session: RealtimeSession | None = None
        self.agent: RealtimeAgent | None = None  # the agent answering now (after handoffs)
        self._failure: str | None = None  # a transport exception the session reported
        #: Sending failed on the current session: its reader will see it end, and reconnect.
        self.broken = False
        #: Called with the time a ``speech_started`` arrived, before the SDK handles it
        #: (``SpeechStartWatch``); None: nobody.
        self.on_speech_started: Callable[[float], Awaitable[None]] | None = None
        #: Called in the event-loop step that read a ``speech_started`` off the socket, with
        #: when; True if it acted on it (then ``on_speech_started`` is not called for it).
        self.on_speech_heard: Callable[[float], bool] | None = None

    # --- Connecting -------------------------------------------------------------------------------

    def use(self, agent: RealtimeAgent) -> None:
        """The agent for this call: its tools made safe for a live call."""
        self.agent = agent
        guard_tools(agent, self.settings.tool_timeout_s, exempt=GATEWAY_TOOLS, log=self.log)

    async def _new_session(self) -> RealtimeSession:
        watch = None
        if self.on_speech_started is not None:
            watch = SpeechStartWatch(self.on_speech_started, self.clock, self.on_speech_heard)
        model = realtime_model(self.settings.model_compression, watch.arrived if watch is not None else None)
        if watch is not None:
            model.add_listener(watch)  # before the session's
        runner = RealtimeRunner(self.agent, model=model, config=RealtimeRunConfig(async_tool_calls=True))
        return await runner.run(context=self.info, model_config=model_config(self.settings, self.tracker, self.info))

    async def connect(self, wanted: Callable[[], bool]) -> RealtimeSession | None:
        """A connected session, retried with backoff within ``model_connect_budget_s``
        (refused, timed out, 429, 5xx); None once the budget is spent, at once for a refused
        key (401/403: retrying cannot help), or when ``wanted()`` turns false (the caller has
        gone)."""
        deadline = self.clock() + self.settings.model_connect_budget_s
        delay = CONNECT_BACKOFF_S[0]
        for attempt in itertools.count(1):
            session = await self._new_session()
            try:
                remaining = deadline - self.clock()
                timeout = max(min(remaining, CONNECT_ATTEMPT_S), CONNECT_MIN_ATTEMPT_S)
                async with asyncio.timeout(timeout):
                    await session.__aenter__()
                if attempt > 1:
                    self.log.info("model connected on attempt %d", attempt)
                return session
            except Exception as exc:
                with contextlib.suppress(Exception):
                    await session.close()
                status = _http_status(exc)
                retry = status not in (401, 403) and wanted()
                self.log.warning("model connection attempt %d failed: %s%s", attempt,
                                 f"HTTP {status}" if status else type(exc).__name__, f" ({exc})" if str(exc) else "")
                if not retry or self.clock() + delay >= deadline:
                    self.log.error("could not reach the model after %d attempt(s); the caller gets the fallback",
                                   attempt)
                    return None
                await asyncio.sleep(delay)
                delay = min(delay * 2, CONNECT_BACKOFF_S[1])
        raise AssertionError("unreachable")  # pragma: no cover

    async def start(self, wanted: Callable[[], bool]) -> bool:
        self.session = await self.connect(wanted)
        return self.session is not None

    async def _seed(self, session: RealtimeSession, items: list[dict[str, Any]]) -> None:
        """Give a fresh session the conversation so far."""
        for item in items:
            await session.model.send_event(RealtimeModelSendRawMessage(
                message={"type": "conversation.item.create", "other_data": {"item": item}}))

    async def reconnect(self, items: list[dict[str, Any]], wanted: Callable[[], bool]) -> bool:
        """The session failed mid-call: connect again (within the budget), carry the
        conversation over and swap."""
        new = await self.connect(wanted)
        if new is None:
            return False
        try:
            await self._seed(new, items)
        except Exception as exc:
            self.log.error("reconnected, but could not restore the conversation: %s", exc)
            await new.close()
            return False
        old, self.session, self.broken = self.session, new, False
        if old is not None:
            with contextlib.suppress(Exception):
                await old.close()
        return True

    async def roll_over(self, items: list[dict[str, Any]]) -> bool:
        """Move to a fresh session seeded with ``items``; the old one is closed once the new
        one is in place (caller audio goes to the old one until then). False: the call stays
        on the current session."""
        new = await self._new_session()
        try:
            await new.__aenter__()
            await self._seed(new, items)
        except Exception as exc:
            self.log.error("session rollover failed, staying on the current session: %s: %s", type(exc).__name__, exc)
            await new.close()
            return False
        old, self.session = self.session, new  # caller audio now goes to the new session
        if old is not None:
            await old.close()  # the reader moves on to the new session
        return True

    async def close(self) -> None:
        """The call is over: close the session, and let go of the call's hook, so that the
        call's objects are freed when the call ends, not left in a reference cycle (the runner
        holds this link, the hook is the runner's method) for the garbage collector, whose full
        collections stop every call of the process."""
        session, self.session = self.session, None
        self.on_speech_started = self.on_speech_heard = None
        if session is not None:
            await session.close()

    # --- Reading --------------------------------------------------------------------------------

    async def read(self, handle: Callable[[Any], Awaitable[None]]) -> str | None:
        """Hand every session event to ``handle`` (following rollovers) until a session ends:
        None if it ended cleanly, else what failed."""
        self._failure = None
        try:
            while True:
                session = self.session
                async for event in session:
                    if event.type == "raw_model_event" and getattr(event.data, "type", None) == "exception":
                        data = event.data
                        self._failure = f"{type(data.exception).__name__}: {data.exception} ({data.context})"
                    elif event.type == "handoff":
                        self.use(event.to_agent)
                    await handle(event)
                if self.session is session:
                    break
                # Rolled over to a new session (the old one was closed): read the new one.
        except ConnectionClosedOK:
            return None
        except Exception as exc:  # the SDK raises on an abnormal close
            return f"{type(exc).__name__}: {exc}"
        # The SDK's iterator checks "closing and queue empty" before its stored exception
        # (agents/realtime/session.py, __aiter__), so a failed transport can end iteration
        # quietly if the session is closing; the raw exception event the SDK emitted first
        # still tells a failure from a clean end.
        return self._failure

    # --- Sending ----------------------------------------------------------------------------------

    async def send_audio(self, audio: bytes) -> bool:
        """False if the session's socket has failed (the audio was not sent). Audio in flight
        to a session just rolled over and closed is lost (20 ms), and counts as sent."""
        session = self.session
        try:
            await session.send_audio(audio)
        except SESSION_GONE:
            if session is not self.session:
                return True
            self.broken = True
            return False
        return True

    async def tell(self, text: str) -> None:
        await self.session.send_message(text)

    async def ask(self, request: str) -> None:
        """Have the agent speak now without a fake user message in the history: a
        response.create whose instructions are the agent's own plus the request."""
        instructions = request
        own = await self.agent.get_system_prompt(RunContextWrapper(self.info))
        if own:
            instructions = f"{own}\n\n{request}"
        await self.session.model.send_event(
            RealtimeModelSendRawMessage(
                message={"type": "response.create", "other_data": {"response": {"instructions": instructions}}}
            )
        )

    async def decide_tool(self, call_id: str, approve: bool, message: str) -> None:
        if approve:
            await self.session.approve_tool_call(call_id)
        else:
            await self.session.reject_tool_call(call_id, rejection_message=message)
