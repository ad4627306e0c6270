"""Call-flow tests for your agent, written like the phone call they check.

A ``PhoneSystem`` is a whole phone system on 127.0.0.1 for one test: a fake Twilio (REST API and
call handling), the local OpenAI Realtime server playing your script, and the gateway (real
uvicorn, real Agents SDK) running your agent. A ``PhoneCall`` is the person on the phone::

    from gateway.testing import Reply, ToolCall, ToolUse, When

    async def test_refund(phone_system):
        phone = await phone_system(agent=support_agent, script=[
            Reply("Acme, how can I help?"),
            When("refund", ToolCall("issue_refund", {"order_id": "4271"})),
            Reply("Done: your refund is on its way."),
        ])
        call = await phone.call()                    # Twilio rings the gateway
        assert "help" in (await call.listen()).text   # the greeting, heard in full
        await call.say("I'd like a refund for order 4271, please.")
        answer = await call.listen()
        assert answer.text == "Done: your refund is on its way."
        assert call.tool_calls == [ToolUse("issue_refund", {"order_id": "4271"}, "refunded")]
        await call.hang_up()

The ``phone_system`` fixture comes with the package (a pytest plugin, ``gateway.testing.
pytest_plugin``, loaded automatically once the package is installed alongside pytest-asyncio);
outside pytest, ``async with PhoneSystem(agent, script) as phone:`` does the same.

**The script** (``gateway.testing.realtime.script``) is what the model says, as data: ``Reply``
(speech: a transcript, synthesized or given audio), ``ToolCall`` (the model calls one of your
agent's tools; the SDK runs your real tool code and the model gets its real output), tuples of
them (one response), ``Heard`` (what the model reports hearing), and ``When`` rules (when the
caller's words or keys match, respond so). The model cannot recognise speech here, so
``call.say("text")`` tells it what was said: the caller sends speech-like audio of a plausible
length, and the model's transcript of that turn is ``"text"``.

**Time.** Calls run ``speed`` times faster than real time (default ``DEFAULT_SPEED``): the
caller's clock (and so every time it records) is scaled, the model streams its audio as fast as
it can, and the caller plays it at ``speed``. Durations of what was heard come from sample
counts and are exact at any speed. A test about timing itself (barge-in latency, truncation,
silence timers, which run on the gateway's real clock) should pass ``speed=1``.

**What you can check** on a ``PhoneCall``: ``listen()``'s ``AgentSpeech`` (what the agent said
and how long it was heard), ``heard_ms`` / ``heard_segments()`` / ``silences()``,
``transcript`` (the session history as (role, text) lines), ``tool_calls`` (``ToolUse``: name,
arguments, output, as the gateway saw your tool run), ``transferred_to`` (what Twilio dialled),
``events`` (the gateway's call events: hang-ups, transfers, interruptions, errors),
``record`` (the gateway's ``CallRecord``), ``end_reason``; and underneath, ``twilio_call``
(``FakeCall``), ``caller`` (``TwilioCaller``) and ``model`` (``RealtimeConnection``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.audio import pcm16_to_ulaw
from gateway.bridge.ending import EndReason
from gateway.bridge.record import CallRecord
from gateway.bridge.runner import DigitHandler, EventHook
from gateway.bridge.agents import AgentSource
from gateway.testing.caller.call import CallEnded, TwilioCaller
from gateway.testing.caller.playout import HeardSegment
from gateway.testing.caller.records import Utterance
from gateway.testing.caller.twiml import new_sid
from gateway.testing.gateway_server import GatewayServer
from gateway.testing.realtime.connection import RealtimeConnection
from gateway.testing.realtime.script import (
    MS_PER_CHARACTER,
    Line,
    Reply,
    Script,
    ToolCall,
    synthesize_voice,
    turn_items,
)
from gateway.testing.realtime.server import RealtimeServer
from gateway.testing.twilio_api.call import FakeCall
from gateway.testing.twilio_api.server import FakeTwilio

if TYPE_CHECKING:
    from gateway.app import Gateway

__all__ = ["DEFAULT_SPEED", "AgentSpeech", "PhoneCall", "PhoneSystem", "ToolUse", "caller_speech"]

#: How much faster than real time kit calls run unless a test says otherwise.
DEFAULT_SPEED = 20.0
#: The agent has finished speaking once it has been silent this long (caller clock)...
DEFAULT_QUIET_MS = 700.0
#: ...and the model is idle and no tool is running.
_POLL_S = 0.005
CALLER_TONE_HZ = 170.0  # the simulated caller's "voice": lower than the agent's 440 Hz
MAX_SAID_MS = 3000  # ``say(text)`` speaks at most this long, however long the text


@dataclass(frozen=True)
class ToolUse:
    """A tool the agent ran during the call, as the gateway saw it (the SDK's tool_start and
    tool_end events). ``output`` is None while it runs."""

    name: str
    arguments: Any  # the JSON arguments, parsed (the raw string if they do not parse)
    output: str | None = None


@dataclass(frozen=True)
class AgentSpeech:
    """What one ``listen()`` heard: the agent's replies since the caller's last action."""

    text: str  # the transcripts of the replies, joined (what the model said it said)
    ms: float  # agent audio heard, from sample counts
    start: float | None  # caller-clock seconds of the first and last audio heard
    end: float | None


def caller_speech(text: str, ms: float | None = None) -> bytes:
    """Speech-like mu-law audio for the simulated caller to say ``text``: a voiced tone at the
    caller's pitch, ``MS_PER_CHARACTER`` per character (at most ``MAX_SAID_MS``)."""
    if ms is None:
        ms = min(MAX_SAID_MS, max(300, MS_PER_CHARACTER * len(text)))
    return pcm16_to_ulaw(synthesize_voice(int(ms), CALLER_TONE_HZ, rate=8000))


class PhoneSystem:
    """A fake Twilio, the local Realtime server and the gateway, wired together on 127.0.0.1.

    ``agent``: your agent (a ``RealtimeAgent``, a factory ``fn(call_info)``, or an import path
    ``"module:attr"``); None uses ``GATEWAY_AGENT`` / the default agent. ``script``: the model's
    side of the conversation (see the module docstring). ``settings``: gateway settings as
    environment variables (``{"GATEWAY_TRANSFER_TARGETS": "sales=+15551230000"}``); the
    account, URLs and keys are filled in. ``speed``: see the module docstring.
    ``realtime_options`` / ``twilio_options``: passed to ``RealtimeServer`` / ``FakeTwilio``.
    """

    def __init__(
        self,
        agent: AgentSource | str | None = None,
        script: Script | Sequence[Line] = (),
        *,
        settings: Mapping[str, str] | None = None,
        speed: float = DEFAULT_SPEED,
        on_digit: DigitHandler | None = None,
        on_event: EventHook | None = None,
        realtime_options: Mapping[str, Any] | None = None,
        twilio_options: Mapping[str, Any] | None = None,
        number: str = "+15550002222",
        real_model: bool = False,
    ) -> None:
        self.agent = agent
        self.speed = speed
        self.number = number
        self.settings = dict(settings or {})
        #: The local Realtime server; None with ``real_model`` (the gateway then talks to
        #: OpenAI, with ``OPENAI_API_KEY`` from ``settings``: the demo's ``--real``).
        self.realtime = None if real_model else RealtimeServer(script, **dict(realtime_options or {}))
        self.twilio = FakeTwilio(speed=speed, **dict(twilio_options or {}))
        self.gateway_server = GatewayServer(self._make_app)
        self.calls: list[PhoneCall] = []
        self.api_key = "kit-" + new_sid("")[:16]
        self.data_dir = Path(tempfile.mkdtemp(prefix="gateway-kit-"))
        self._on_digit = on_digit
        self._on_event = on_event
        self._ringing = asyncio.Lock()
        self._started = False

    def _make_app(self, public_url: str):
        from gateway.app import create_app
        from gateway.bridge.agents import load_agent_source
        from gateway.settings import Settings

        env = {
            "PUBLIC_URL": public_url,
            "TWILIO_ACCOUNT_SID": self.twilio.account_sid,
            "TWILIO_AUTH_TOKEN": self.twilio.auth_token,
            "TWILIO_API_BASE_URL": self.twilio.base_url,
            "GATEWAY_API_KEY": self.api_key,
            # Records and recordings of the kit's calls (removed at close unless the settings
            # name a GATEWAY_DATA_DIR of their own).
            "GATEWAY_DATA_DIR": str(self.data_dir),
            # A call at ``speed`` sends its 50 frames a second ``speed`` times as fast.
            "GATEWAY_MAX_MESSAGE_RATE": str(int(200 * max(1.0, self.speed))),
            "GATEWAY_MAX_MESSAGE_BURST": str(int(500 * max(1.0, self.speed))),
            **self.settings,
        }
        if self.realtime is not None:
            env["OPENAI_REALTIME_URL"] = self.realtime.url
        agent = load_agent_source(self.agent) if isinstance(self.agent, str) else self.agent
        return create_app(Settings.from_mapping(env), agent=agent, on_digit=self._on_digit,
                          on_event=self._on_event)

    # --- Running --------------------------------------------------------------------------------

    async def start(self) -> PhoneSystem:
        peers = [self.twilio] if self.realtime is None else [self.twilio, self.realtime]
        await asyncio.gather(*(peer.start() for peer in peers))
        try:
            await self.gateway_server.start()
        except BaseException:
            await asyncio.gather(*(peer.close() for peer in peers), return_exceptions=True)
            raise
        self._started = True
        self.twilio.add_number(self.number, voice_url=self.url + "/twilio/voice")
        return self

    async def close(self) -> None:
        """Hang up what is still connected, stop everything; raise if a simulator or the
        Realtime server failed."""
        if not self._started:
            return
        self._started = False
        for call in self.calls:
            if not call.caller.closed:
                with contextlib.suppress(Exception):
                    await call.twilio_call.hang_up()
        # The two HTTP servers take ~100 ms each to shut down (uvicorn); in parallel.
        await asyncio.gather(self.gateway_server.close(), self.twilio.close())
        if self.realtime is not None:
            await self.realtime.close()  # raises RealtimeServerError if it failed inside
        shutil.rmtree(self.data_dir, ignore_errors=True)
        errors = [e for call in self.calls for e in call.caller.errors]
        if errors:
            raise AssertionError(f"the simulated caller failed: {errors[0]!r}") from errors[0]

    async def __aenter__(self) -> PhoneSystem:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        """The gateway's base URL (``http://127.0.0.1:PORT``)."""
        return self.gateway_server.url

    @property
    def app(self) -> Gateway:
        """The running gateway: calls in progress, finished records."""
        return self.gateway_server.app.state.gateway

    # --- Calls ----------------------------------------------------------------------------------

    async def call(self, from_: str = "+15550001111", *, timeout: float = 10.0) -> PhoneCall:
        """Someone dials the number: Twilio POSTs the voice webhook, follows the TwiML and
        connects the stream. Returns once the gateway has connected the call to the model."""
        async with self._ringing:  # one at a time, so each call knows its model connection
            first = len(self.realtime.connections) if self.realtime is not None else 0
            fake = await self.twilio.ring(from_=from_, to=self.number)
            caller = fake.caller
            if caller is None:
                raise AssertionError(f"the gateway answered without a media stream: {fake.twiml!r}")
            model = None
            if self.realtime is not None:
                model = await self.realtime.wait_for_connection(first, timeout=timeout)
            call = PhoneCall(self, fake, caller, model)
            self.calls.append(call)
        return call


class PhoneCall:
    """One simulated call, from the caller's side, with the gateway's and the model's records
    at hand."""

    def __init__(self, phone: PhoneSystem, twilio_call: FakeCall, caller: TwilioCaller,
                 model: RealtimeConnection | None) -> None:
        self.phone = phone
        self.twilio_call = twilio_call
        self.caller = caller
        self.model = model
        self.call_sid = twilio_call.sid
        self._since = 0.0  # caller clock: the caller's last action (or the last listen)
        self._history_at_since = 0  # length of the gateway's transcript then (real model)

    # --- What the caller does -------------------------------------------------------------------

    async def say(self, what: str | bytes | Any, *, heard_as: str | None = None,
                  ms: float | None = None, wait: bool = True, timeout: float = 10.0) -> Utterance:
        """The caller speaks. ``what``: text (speech-like audio of a plausible length, or
        ``ms``), raw mu-law 8 kHz bytes, or a clip with ``.ulaw`` and ``.text`` (for example
        ``gateway.demo.clips.load("caller_thanks")``). The model hears it as ``heard_as``
        (default: the text). Returns once the audio has been sent (``wait=False``: at once)."""
        if isinstance(what, str):
            audio, text = caller_speech(what, ms), what
        elif isinstance(what, (bytes, bytearray)):
            audio, text = bytes(what), None
        else:
            audio, text = what.ulaw, getattr(what, "text", None)
        text = heard_as if heard_as is not None else text
        if text is not None and self.model is not None:
            self.model.will_hear(text)
        utterance = self.caller.say(audio)
        if wait:
            await self.caller.wait_said(timeout=timeout)
            self._acted(utterance.end or self.caller.clock.now())
        return utterance

    async def press(self, keys: str, *, gap_ms: float = 150.0) -> None:
        """The caller presses ``keys`` on the keypad, one ``dtmf`` each, ``gap_ms`` apart."""
        for i, key in enumerate(keys):
            if i:
                await self.caller.clock.sleep_until(self.caller.clock.now() + gap_ms / 1000)
            await self.caller.press(key)
        self._acted(self.caller.clock.now())

    async def pause(self, ms: float) -> None:
        """The caller stays quiet for ``ms`` (caller clock)."""
        await self.caller.clock.sleep_until(self.caller.clock.now() + ms / 1000)

    async def hang_up(self) -> CallRecord:
        """The caller hangs up (Twilio sends ``stop`` and closes); the gateway's record."""
        await self.twilio_call.hang_up()
        return await self.ended()

    # --- Listening ------------------------------------------------------------------------------

    async def hear(self, ms: float, *, timeout: float = 10.0) -> None:
        """Wait until ``ms`` more of the agent's audio has been heard (for example, to talk
        over the agent a second into its answer)."""
        await self.caller.wait_heard(self.caller.heard_ms + ms, timeout=timeout)

    async def listen(self, *, quiet_ms: float = DEFAULT_QUIET_MS, timeout: float = 10.0) -> AgentSpeech:
        """Wait until the agent has spoken since the caller's last action and is done: its
        audio has played out, it has been quiet for ``quiet_ms``, the model is not responding,
        no tool is running (except one waiting for the caller's keys, like ``collect_digits``)
        and no hang-up or transfer is pending; or the call ended after it spoke. Returns what was heard.
        Raises ``CallEnded`` if the call ends first with nothing said, ``TimeoutError`` if
        ``timeout`` (real seconds) passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        caller = self.caller
        start_ms = self._heard_ms_at(self._since)
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise self._gave_up(timeout)
            try:
                await caller.wait_agent_silent(quiet_ms, timeout=remaining, after=self._since)
            except TimeoutError:
                raise self._gave_up(timeout) from None
            except CallEnded:
                if not any(s.end > self._since for s in caller.heard_segments()):
                    raise  # hung up on, with nothing said
                # The agent spoke, then the call ended (a goodbye, a transfer): let the gateway
                # finish and Twilio run what comes next (a <Dial>), so the test sees it all.
                await self.ended(timeout=max(0.1, deadline - loop.time()))
                await self.twilio_call.wait_until(lambda: self.twilio_call.settled,
                                                  timeout=max(0.1, deadline - loop.time()))
                break
            if self._idle() and self._responded_since(self._since):
                break
            await asyncio.sleep(_POLL_S)
        segments = [s for s in caller.heard_segments() if s.end > self._since]
        text = self._reply_text(since=self._since)
        self._acted(caller.clock.now())
        heard = caller.heard_ms - start_ms
        return AgentSpeech(text, heard, segments[0].start if segments else None,
                           segments[-1].end if segments else None)

    async def ended(self, timeout: float = 10.0) -> CallRecord:
        """Wait until the gateway has finished the call; its ``CallRecord``."""
        deadline = time.monotonic() + timeout
        while (record := self._finished_record()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gateway did not finish call {self.call_sid} within {timeout} s")
            await asyncio.sleep(_POLL_S)
        return record

    def _gave_up(self, timeout: float) -> TimeoutError:
        """A timeout that says what the gateway saw go wrong (a tool the agent lacks, a model
        error), which is usually why the agent never finished."""
        errors = [e.get("error", "") for e in self.events if e["event"] == "error"]
        why = f"; the call's errors: {errors[-3:]}" if errors else ""
        return TimeoutError(f"gave up after {timeout} s waiting for the agent to speak and finish{why}")

    def _acted(self, t: float) -> None:
        self._since = t
        record = self.record
        self._history_at_since = len(record.transcript) if record is not None else 0

    def _idle(self) -> bool:
        """Nothing more is coming without the caller: the model is not responding; every tool
        it called has returned (except one waiting for the caller's keys, like
        ``collect_digits``) and been answered; the gateway is not ending the call."""
        if self.caller.closed:
            return True
        model = self.model
        live = self._live_call()
        if live is not None and live.control.ending:
            return False  # a hang-up or transfer is on its way: wait for the call to end
        if model is None:  # the real model: judge from the gateway's side
            return self._gateway_idle(live)
        if model.active_response is not None or self.caller.playing:
            return False
        called = sum(isinstance(item, ToolCall) for r in model.responses
                     if r.status == "completed" and r.turn is not None for item in turn_items(r.turn))
        outputs = model.function_call_outputs
        if len(outputs) < called:  # a tool is running
            return live is not None and live.control.collecting
        # The SDK asks for a response after each tool output: wait for it to begin.
        return not outputs or any(r.created_at >= outputs[-1].time for r in model.responses)

    def _gateway_idle(self, live: Any) -> bool:
        if live is None:
            return True
        if self.caller.playing or not live.control.quiet():
            return False
        starts = sum(e["event"] == "tool_start" for e in self.events)
        ends = sum(e["event"] == "tool_end" for e in self.events)
        return starts == ends or live.control.collecting

    def _live_call(self) -> Any:
        return next((c for c in self.phone.app.calls.values() if c.call_sid == self.call_sid), None)

    def _responded_since(self, since: float) -> bool:
        """The model has begun a response since caller-clock ``since`` (audio heard after
        ``since`` may still be the tail of a reply the caller is talking over)."""
        if self.model is None:
            return True  # the real model: audio heard after ``since`` is the best sign
        began = self.caller.clock.to_monotonic(since) if since > 0 else 0.0
        return any(r.created_at >= began for r in self.model.responses)

    def _heard_ms_at(self, t: float) -> float:
        return sum(len(s.audio) for s in self.caller.heard_segments() if s.end <= t) / 8

    def _reply_text(self, since: float) -> str:
        """The transcripts of the model's responses begun after caller-clock ``since`` (what
        was sent of a cancelled one). With the real model: the assistant messages added to the
        gateway's transcript since then."""
        if self.model is None:
            record = self.record
            items = record.transcript[self._history_at_since:] if record is not None else []
            return " ".join(i["text"] for i in items if i.get("role") == "assistant" and i.get("text"))
        began = self.caller.clock.to_monotonic(since) if since > 0 else 0.0
        texts = []
        for response in self.model.responses:
            if response.turn is None or response.created_at < began:
                continue
            if response.status == "cancelled":
                texts.extend([response.transcript] if response.transcript else [])
            else:
                texts.extend(item.transcript for item in turn_items(response.turn) if isinstance(item, Reply))
        return " ".join(texts)

    # --- What happened --------------------------------------------------------------------------

    @property
    def record(self) -> CallRecord | None:
        """The gateway's record of this call (live while it runs), None before it started."""
        finished = self._finished_record()
        if finished is not None:
            return finished
        live = self._live_call()
        return live.record if live is not None else None

    def _finished_record(self) -> CallRecord | None:
        return next((r for r in reversed(self.phone.app.finished) if r.call_sid == self.call_sid), None)

    @property
    def events(self) -> list[dict[str, Any]]:
        """The gateway's call events: tool_start/tool_end, interrupted, hang_up, transfer, ..."""
        record = self.record
        return list(record.events) if record is not None else []

    @property
    def tool_calls(self) -> list[ToolUse]:
        """The tools the agent ran, in order, with their arguments and outputs."""
        uses: list[ToolUse] = []
        open_: dict[str, list[int]] = {}
        for event in self.events:
            if event["event"] == "tool_start":
                open_.setdefault(event["tool"], []).append(len(uses))
                uses.append(ToolUse(event["tool"], _parse_json(event.get("arguments"))))
            elif event["event"] == "tool_end" and open_.get(event["tool"]):
                i = open_[event["tool"]].pop(0)
                uses[i] = ToolUse(uses[i].name, uses[i].arguments, event.get("output"))
        return uses

    @property
    def transcript(self) -> list[tuple[str, str]]:
        """The conversation as the session's history holds it: ("user" | "assistant", text)
        for each message with text, in order. A reply cut by a barge-in keeps its whole text
        here (the SDK's history keeps the transcript it received); the model itself drops the
        unheard part (``call.model.items[item_id]``, and ``call.model.truncations``)."""
        record = self.record
        if record is None:
            return []
        return [(item["role"], item["text"]) for item in record.transcript
                if item.get("type") == "message" and item.get("text")]

    @property
    def transferred_to(self) -> list[str]:
        """Where Twilio dialled the call (``<Dial>`` targets), in order."""
        return list(self.twilio_call.dialed)

    @property
    def end_reason(self) -> EndReason | None:
        record = self._finished_record()
        return record.end_reason if record is not None else None

    @property
    def heard_ms(self) -> float:
        """All agent audio heard so far (exact, from sample counts)."""
        return self.caller.heard_ms

    def heard_segments(self) -> list[HeardSegment]:
        """Unbroken stretches of agent audio heard (caller-clock start, audio)."""
        return self.caller.heard_segments()

    def silences(self, min_ms: float = 0.0) -> list[tuple[float, float]]:
        """Gaps between stretches of agent audio heard, as (start, end) caller-clock seconds,
        at least ``min_ms`` long."""
        segments = self.caller.heard_segments()
        gaps = [(a.end, b.start) for a, b in zip(segments, segments[1:])]
        return [(s, e) for s, e in gaps if (e - s) * 1000 >= min_ms]


def _parse_json(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text
