"""The Twilio caller simulator against a scripted fake gateway on a real local socket.

The fake gateway checks every frame the caller sends with the project's own strict
``MediaStream`` (so a passing test means the gateway's parser accepts the simulator's wire) and
keeps the raw JSON for exact wire checks. Timing checks use the caller clock; the few
wall-clock checks are the ones where real-time behaviour is the point (mark echoes after
playback, pacing without drift), everything else runs at ``speed`` > 1.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.server
import json
import threading
import time
import urllib.parse
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Connect, Say, Stream, VoiceResponse
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from gateway.audio import ULAW_SILENCE
from gateway.testing.caller import (
    CallEnded,
    CallerClock,
    HandshakeRejected,
    HeardSegment,
    MarkEcho,
    Playout,
    TwilioCaller,
    TwimlError,
    Utterance,
    WebhookError,
    fetch_twiml,
    load_audio,
    parse_stream_twiml,
    run_call,
)
from gateway.testing.caller.speech import Speech
from gateway.twilio import Dtmf, Media, MediaStream, Start, StreamState, Stop

AUTH_TOKEN = "12345678901234567890123456789012"
PUBLIC_STREAM_URL = "wss://gateway.example.com/twilio/stream"
SILENCE = bytes([ULAW_SILENCE])


def tone(ms: int, level: int = 0x10) -> bytes:
    """Recognisable non-silent mu-law: a ramp of byte values, never 0xFF."""
    return bytes((level + i) % 0x70 for i in range(ms * 8))


# -- the fake gateway -----------------------------------------------------------------------------


class GatewaySide:
    """The gateway's end of one call: records what the caller sends, sends what a test says."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.stream = MediaStream(max_size=1 << 20)
        self.frames: list[tuple[float, dict[str, Any]]] = []  # (monotonic, raw JSON)
        self.messages: list[Any] = []  # as typed by MediaStream
        self.raw: list[str | bytes] = []
        self.protocol_errors: list[Exception] = []
        self._changed = asyncio.Event()

    async def run(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._receive()

    async def _receive(self) -> None:
        async for data in self.ws:
            now = time.monotonic()
            self.raw.append(data)
            try:
                self.messages.append(self.stream.receive(data))
                self.frames.append((now, json.loads(data)))
            except Exception as error:  # recorded: the test asserts there are none
                self.protocol_errors.append(error)
            self._changed.set()
            self._changed = asyncio.Event()

    @property
    def sid(self) -> str:
        assert self.stream.stream_sid is not None
        return self.stream.stream_sid

    def of(self, event: str) -> list[dict[str, Any]]:
        return [frame for _, frame in self.frames if frame["event"] == event]

    def media_payloads(self) -> bytes:
        return b"".join(m.payload for m in self.messages if isinstance(m, Media))

    async def wait(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                await self._changed.wait()

    async def wait_mark(self, name: str, timeout: float = 5.0) -> float:
        """Monotonic time the echo of mark ``name`` arrived."""
        def arrived() -> float | None:
            for t, frame in self.frames:
                if frame["event"] == "mark" and frame["mark"]["name"] == name:
                    return t
            return None

        await self.wait(lambda: arrived() is not None, timeout)
        result = arrived()
        assert result is not None
        return result

    async def send_media(self, ulaw: bytes) -> None:
        await self.ws.send(self.stream.media(ulaw))

    async def send_mark(self, name: str) -> None:
        await self.ws.send(self.stream.mark(name))

    async def send_clear(self) -> None:
        await self.ws.send(self.stream.clear())


class FakeGateway:
    """A WebSocket server on 127.0.0.1 playing the gateway's side of calls.

    ``on_start(side)`` runs once the caller's ``start`` arrived. With ``auth_token`` the
    handshake must carry a valid ``X-Twilio-Signature`` over ``PUBLIC_STREAM_URL``, else 403.
    """

    def __init__(
        self,
        on_start: Callable[[GatewaySide], Awaitable[None]] | None = None,
        *,
        auth_token: str | None = None,
    ) -> None:
        self.on_start = on_start
        self.auth_token = auth_token
        self.sides: list[GatewaySide] = []
        self.requests: list[Request] = []
        self.script_errors: list[BaseException] = []
        self._server: Server | None = None
        self._connected = asyncio.Event()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/twilio/stream"

    async def __aenter__(self) -> FakeGateway:
        self._server = await serve(self._handle, "127.0.0.1", 0, process_request=self._check)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def side(self, timeout: float = 5.0) -> GatewaySide:
        """The first call's side, once its ``start`` has arrived."""
        await asyncio.wait_for(self._connected.wait(), timeout)
        side = self.sides[0]
        await side.wait(lambda: side.stream.stream_sid is not None)
        return side

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        self.requests.append(request)
        if self.auth_token is None:
            return None
        signature = request.headers.get("X-Twilio-Signature", "")
        if RequestValidator(self.auth_token).validate(PUBLIC_STREAM_URL, {}, signature):
            return None
        return connection.respond(HTTPStatus.FORBIDDEN, "invalid signature\n")

    async def _handle(self, ws: ServerConnection) -> None:
        side = GatewaySide(ws)
        self.sides.append(side)
        self._connected.set()
        script = asyncio.create_task(self._script(side))
        try:
            await side.run()
        finally:
            await asyncio.gather(script, return_exceptions=True)

    async def _script(self, side: GatewaySide) -> None:
        if self.on_start is None:
            return
        try:
            await side.wait(lambda: side.stream.state is StreamState.STARTED)
            await self.on_start(side)
        except Exception as error:  # surfaced by the tests that script
            self.script_errors.append(error)


@pytest.fixture
async def gateway() -> AsyncIterator[FakeGateway]:
    async with FakeGateway() as gw:
        yield gw


def assert_clean(caller: TwilioCaller, gw: FakeGateway | None = None) -> None:
    assert caller.invalid_count == 0, caller.invalid
    assert caller.errors == []
    if gw is not None:
        assert gw.script_errors == []
        for side in gw.sides:
            assert side.protocol_errors == []


# -- TwiML ----------------------------------------------------------------------------------------


def test_parse_stream_twiml_reads_url_and_parameters_of_voice_response() -> None:
    response = VoiceResponse()
    connect = Connect()
    stream = Stream(url=PUBLIC_STREAM_URL)
    stream.parameter(name="token", value="v1.123.abc")
    stream.parameter(name="caller", value="+15555550100")
    connect.append(stream)
    response.append(connect)

    instructions = parse_stream_twiml(str(response))

    assert instructions.url == PUBLIC_STREAM_URL
    assert instructions.parameters == {"token": "v1.123.abc", "caller": "+15555550100"}
    assert instructions.twilio_problems() == []


def test_twilio_problems_names_what_twilio_would_refuse() -> None:
    twiml = (
        '<Response><Connect><Stream url="ws://host/s?x=1">'
        f'<Parameter name="big" value="{"v" * 500}"/></Stream></Connect></Response>'
    )
    problems = parse_stream_twiml(twiml).twilio_problems()
    assert len(problems) == 3
    assert "wss" in problems[0] and "query string" in problems[1] and "500" in problems[2]


def test_parse_stream_twiml_without_connect_stream_is_a_clear_error() -> None:
    response = VoiceResponse()
    response.append(Say("Sorry, we are closed."))
    with pytest.raises(TwimlError, match=r"no <Connect><Stream>.*<Say>"):
        parse_stream_twiml(str(response))
    with pytest.raises(TwimlError, match="one-way"):
        parse_stream_twiml('<Response><Start><Stream url="wss://h/s"/></Start></Response>')
    with pytest.raises(TwimlError, match="not well-formed"):
        parse_stream_twiml("<Response><Connect>")
    with pytest.raises(TwimlError, match="no url"):
        parse_stream_twiml("<Response><Connect><Stream/></Connect></Response>")


# -- handshake and start --------------------------------------------------------------------------


async def test_handshake_is_signed_over_the_twiml_url_and_start_carries_the_call() -> None:
    async with FakeGateway(auth_token=AUTH_TOKEN) as gw:
        caller = TwilioCaller(
            PUBLIC_STREAM_URL,
            connect_url=gw.url,
            parameters={"token": "t0k", "lang": "fr"},
            auth_token=AUTH_TOKEN,
            call_sid="CA" + "1" * 32,
            speed=10,
        )
        async with caller:
            side = await gw.side()
            await side.wait(lambda: len(side.of("media")) >= 3)

    request = gw.requests[0]
    assert RequestValidator(AUTH_TOKEN).validate(
        PUBLIC_STREAM_URL, {}, request.headers["X-Twilio-Signature"]
    )
    assert request.path == "/twilio/stream"
    connected, start = side.frames[0][1], side.frames[1][1]
    assert connected == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert start["sequenceNumber"] == "1"
    assert start["streamSid"] == start["start"]["streamSid"] == caller.stream_sid
    assert caller.stream_sid.startswith("MZ") and len(caller.stream_sid) == 34
    assert start["start"]["callSid"] == "CA" + "1" * 32
    assert start["start"]["accountSid"] == caller.account_sid
    assert start["start"]["tracks"] == ["inbound"]
    assert start["start"]["customParameters"] == {"token": "t0k", "lang": "fr"}
    media_format = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    assert start["start"]["mediaFormat"] == media_format
    assert isinstance(side.messages[1], Start)
    assert side.stream.state is StreamState.STOPPED and side.stream.missed_messages == 0
    assert_clean(caller, gw)


async def test_bad_signature_is_refused_with_handshake_rejected() -> None:
    async with FakeGateway(auth_token=AUTH_TOKEN) as gw:
        wrong_token = TwilioCaller(PUBLIC_STREAM_URL, connect_url=gw.url, auth_token="f" * 32)
        with pytest.raises(HandshakeRejected) as refused:
            await wrong_token.connect()
        assert refused.value.status == 403
        assert b"invalid signature" in refused.value.body

        with pytest.raises(HandshakeRejected):
            await TwilioCaller(PUBLIC_STREAM_URL, connect_url=gw.url).connect()  # unsigned
        forged = TwilioCaller(PUBLIC_STREAM_URL, connect_url=gw.url, signature="Zm9yZ2Vk")
        with pytest.raises(HandshakeRejected):
            await forged.connect()

        # Signed over another URL than the one in the TwiML: refused too.
        elsewhere = TwilioCaller(gw.url, auth_token=AUTH_TOKEN)
        with pytest.raises(HandshakeRejected):
            await elsewhere.connect()
    assert [r.headers.get("X-Twilio-Signature") for r in gw.requests][2] == "Zm9yZ2Vk"
    assert "X-Twilio-Signature" not in gw.requests[1].headers
    assert gw.sides == []


# -- caller -> gateway ----------------------------------------------------------------------------


async def test_inbound_frames_are_continuous_numbered_and_do_not_drift(
    gateway: FakeGateway,
) -> None:
    speed = 10  # 500 frames a second: any per-frame drift adds up to something visible
    async with TwilioCaller(gateway.url, speed=speed) as caller:
        side = await gateway.side()
        await side.wait(lambda: len(side.of("media")) >= 400)
    arrivals = [(t, frame) for t, frame in side.frames if frame["event"] == "media"]
    first = arrivals[0][0]
    for k, (t, frame) in enumerate(arrivals):
        media = frame["media"]
        assert media["chunk"] == str(k + 1)
        assert media["timestamp"] == str(20 * k)
        assert media["track"] == "inbound"
        assert frame["sequenceNumber"] == str(k + 2)
        assert base64.b64decode(media["payload"]) == SILENCE * 160
    # Frame k goes out k * 20 ms / speed after frame 0: the last of 400 frames, due 0.798 s
    # in, arrives on time (accumulated sleeps would be tens of ms late by now).
    t_last, _ = arrivals[399]
    assert abs((t_last - first) - 399 * 0.020 / speed) < 0.03
    assert caller.frames_sent >= 400
    assert_clean(caller, gateway)


async def test_said_audio_arrives_intact_in_order_between_silences(gateway: FakeGateway) -> None:
    first, second = tone(110, 0x10), tone(75, 0x40)  # not whole frames
    async with TwilioCaller(gateway.url, speed=10) as caller:
        side = await gateway.side()
        pause = caller.pause(30)
        one = caller.say(first)
        two = caller.say(second)
        await caller.wait_said()
        assert two.end is not None
        end = round(two.end * 8000)
        await side.wait(lambda: len(side.media_payloads()) >= end + 160)
    audio = side.media_payloads()
    assert len(audio) % 160 == 0
    assert one.start is not None and two.start is not None and two.end is not None
    begin = round(one.start * 8000)
    assert audio[begin : begin + len(first) + len(second)] == first + second
    assert set(audio[:begin]) == {ULAW_SILENCE}
    assert set(audio[begin + len(first) + len(second) :]) == {ULAW_SILENCE}
    # Times are on the frames' timestamp grid: the pause came first, then back to back.
    assert pause.end == one.start and one.end == two.start
    assert one.end - one.start == pytest.approx(0.110) and two.ms == 75
    assert_clean(caller, gateway)


async def test_say_pcm16_is_encoded_to_mulaw(gateway: FakeGateway) -> None:
    from gateway.audio import pcm16_to_ulaw
    from gateway.audio.measure import to_pcm16
    from gateway.audio.measure import tone as sine

    pcm = to_pcm16(sine(440, 8000, 0.1))
    async with TwilioCaller(gateway.url, speed=10) as caller:
        utterance = caller.say_pcm16(pcm)
        wide = caller.say_pcm16(to_pcm16(sine(440, 24000, 0.1)), rate=24000)
    assert utterance.audio == pcm16_to_ulaw(pcm)
    assert len(wide.audio) == 800  # 100 ms at 8 kHz, resampled
    assert_clean(caller, gateway)


async def test_dtmf_then_hang_up_sends_stop_last_and_closes_1000(gateway: FakeGateway) -> None:
    async with TwilioCaller(gateway.url, speed=10) as caller:
        side = await gateway.side()
        await caller.press("5")
        await caller.press("#")
        with pytest.raises(ValueError):
            await caller.press("x")
        await side.wait(lambda: len(side.of("dtmf")) == 2)
        await caller.hang_up()
        await side.wait(lambda: side.ws.state.name == "CLOSED")
    dtmf = side.of("dtmf")
    assert [d["dtmf"] for d in dtmf] == [
        {"track": "inbound_track", "digit": "5"},
        {"track": "inbound_track", "digit": "#"},
    ]
    assert isinstance(side.messages[-1], Stop) and side.frames[-1][1]["event"] == "stop"
    stop = side.frames[-1][1]
    assert stop["stop"] == {"accountSid": caller.account_sid, "callSid": caller.call_sid}
    numbers = [int(frame["sequenceNumber"]) for _, frame in side.frames[1:]]
    assert numbers == list(range(1, len(numbers) + 1))
    assert any(isinstance(m, Dtmf) for m in side.messages)
    assert side.stream.state is StreamState.STOPPED and side.stream.missed_messages == 0
    assert caller.closed and caller.closed_by == "caller" and caller.close_code == 1000
    assert side.ws.close_code == 1000
    assert_clean(caller, gateway)


async def test_send_raw_goes_out_verbatim(gateway: FakeGateway) -> None:
    async with TwilioCaller(gateway.url, speed=10) as caller:
        side = await gateway.side()
        await caller.send_raw('{"event": "media", "nonsense": true}')
        await caller.send_raw(b"\x00\x01binary")
        await side.wait(lambda: b"\x00\x01binary" in side.raw)
    assert '{"event": "media", "nonsense": true}' in side.raw
    assert len(side.protocol_errors) == 2  # the gateway's parser rejects both


# -- gateway -> caller: playback, marks, clear ----------------------------------------------------


async def test_mark_is_echoed_only_after_the_audio_before_it_has_played() -> None:
    audio = tone(500)
    sent_at: list[float] = []

    async def script(side: GatewaySide) -> None:
        await side.send_media(audio[:2000])  # in two pieces: queued back to back
        await side.send_media(audio[2000:])
        sent_at.append(time.monotonic())
        await side.send_mark("end-of-greeting")

    async with FakeGateway(script) as gw, TwilioCaller(gw.url) as caller:  # real time
        side = await gw.side()
        echo_arrived = await side.wait_mark("end-of-greeting")
        echo = side.of("mark")[0]

    # Wall clock: Twilio plays in real time, so the echo cannot come back before 500 ms.
    assert 0.5 <= echo_arrived - sent_at[0] < 0.6
    # Caller clock: exact, from sample counts.
    start = caller.received[0].time
    assert caller.marks_echoed == [MarkEcho("end-of-greeting", start + 0.5)]
    assert caller.heard_audio() == audio
    [segment] = caller.heard_segments()
    assert segment.start == start and segment.ms == 500 and not segment.cut
    assert echo["streamSid"] == caller.stream_sid and echo["mark"] == {"name": "end-of-greeting"}
    assert int(echo["sequenceNumber"]) > 1
    assert_clean(caller, gw)


async def test_mark_with_nothing_queued_is_echoed_at_once(gateway: FakeGateway) -> None:
    async with TwilioCaller(gateway.url, speed=4) as caller:
        side = await gateway.side()
        await side.send_mark("idle")
        await side.wait_mark("idle")
        await side.send_media(tone(100))
        await side.send_mark("after-audio")
        await caller.wait_for_message("mark", since=2)
        await side.wait_mark("after-audio")
        await side.send_mark("drained")
        await side.wait_mark("drained")
    idle, after, drained = caller.marks_echoed
    received = {r.message.name: r.time for r in caller.received if r.event == "mark"}
    assert idle.time == received["idle"]
    assert after.time == pytest.approx(caller.received[1].time + 0.1, abs=1e-9)
    assert drained.time == received["drained"] >= after.time
    assert not any(e.cleared for e in caller.marks_echoed)
    assert_clean(caller, gateway)


async def test_clear_drops_the_queue_and_echoes_pending_marks_at_once(gateway: FakeGateway) -> None:
    audio = tone(2000)
    async with TwilioCaller(gateway.url, speed=2) as caller:
        side = await gateway.side()
        await side.send_media(audio[:8000])
        await side.send_mark("a")
        await side.send_media(audio[8000:])
        await side.send_mark("b")
        await caller.wait_heard(300)
        await side.send_clear()
        await side.wait_mark("b")
        await side.send_mark("after-clear")  # queue is empty now: echoed at once
        await side.wait_mark("after-clear")
    [cleared_at] = caller.clears
    start = caller.received[0].time
    # Heard audio stops where the clear arrived (exactly, here; Twilio: within a frame).
    assert caller.heard_ms == pytest.approx((cleared_at - start) * 1000, abs=0.125)
    assert 300 <= caller.heard_ms < 400
    assert caller.heard_audio() == audio[: len(caller.heard_audio())]
    [segment] = caller.heard_segments()
    assert segment.cut and segment.end == pytest.approx(cleared_at, abs=1 / 8000)
    assert caller.marks_echoed[:2] == [
        MarkEcho("a", cleared_at, cleared=True),
        MarkEcho("b", cleared_at, cleared=True),
    ]
    assert caller.marks_echoed[2].name == "after-clear" and not caller.marks_echoed[2].cleared
    assert [m["mark"]["name"] for m in side.of("mark")] == ["a", "b", "after-clear"]
    assert_clean(caller, gateway)


async def test_speed_changes_nothing_on_the_caller_clock() -> None:
    """The same reactive script at speed 1 and 10 records the same caller-clock times."""

    async def script(side: GatewaySide) -> None:
        await side.send_media(tone(300))
        await side.send_mark("a")
        await side.send_media(tone(400, 0x30))
        await side.send_mark("b")
        await side.wait_mark("a")
        await side.send_media(tone(100, 0x50))  # queued behind the 400 ms still playing
        await side.send_mark("c")

    async def record(speed: float) -> TwilioCaller:
        async with FakeGateway(script) as gw, TwilioCaller(gw.url, speed=speed) as caller:
            await caller.wait_until(lambda: len(caller.marks_echoed) == 3)
        assert_clean(caller, gw)
        return caller

    slow, fast = await record(1.0), await record(10.0)
    assert slow.heard_audio() == fast.heard_audio() == tone(300) + tone(400, 0x30) + tone(100, 0x50)
    [slow_heard], [fast_heard] = slow.heard_segments(), fast.heard_segments()
    # The one time that is not the simulator's: the first audio arrives one network hop (the
    # fake gateway reacting to start: 1-3 ms of real time, more on a loaded machine) after
    # start, and at speed 10 that hop weighs ten times more on the caller clock. It plays as
    # it arrives; from there on everything is sample counts.
    for caller, heard in ((slow, slow_heard), (fast, fast_heard)):
        assert heard.start == caller.received[0].time < 0.5
    assert [e.name for e in slow.marks_echoed] == [e.name for e in fast.marks_echoed]
    for s, f in zip(slow.marks_echoed, fast.marks_echoed, strict=True):
        assert f.time - fast_heard.start == pytest.approx(s.time - slow_heard.start, abs=1e-9)
    assert [e.time - slow_heard.start for e in slow.marks_echoed] == pytest.approx([0.3, 0.7, 0.8])


async def test_wait_agent_silent_returns_when_the_agent_stopped(gateway: FakeGateway) -> None:
    async with TwilioCaller(gateway.url, speed=5) as caller:
        side = await gateway.side()
        with pytest.raises(TimeoutError, match="agent to speak"):
            await caller.wait_agent_silent(quiet_ms=100, timeout=0.05)
        await side.send_media(tone(200))
        ended = await caller.wait_agent_silent(quiet_ms=100)
        assert caller.clock.now() >= ended + 0.1
    assert ended == pytest.approx(caller.received[0].time + 0.2, abs=1e-9)
    assert caller.heard_timeline(until=ended + 0.1)[-800:] == SILENCE * 800
    timeline = caller.heard_timeline()
    assert timeline[round(caller.received[0].time * 8000) :] == tone(200)
    assert_clean(caller, gateway)


# -- hostile gateways and endings -----------------------------------------------------------------


async def test_invalid_messages_are_recorded_not_raised(gateway: FakeGateway) -> None:
    async with TwilioCaller(gateway.url, speed=10) as caller:
        side = await gateway.side()
        for bad in (
            "not json",
            '{"event": "media", "streamSid": "%s", "media": {"payload": "@@@"}}' % side.sid,
            '{"event": "dance", "streamSid": "%s"}' % side.sid,
            '{"event": "clear", "streamSid": "MZ000"}',
        ):
            await side.ws.send(bad)
        await side.ws.send(b'{"event": "clear"}')
        await side.send_mark("still-alive")
        await side.wait_mark("still-alive")
    assert caller.invalid_count == 5
    errors = [m.error for m in caller.invalid]
    assert "base64" in errors[1] and "dance" in errors[2] and "MZ000" in errors[3]
    assert "binary" in errors[4]
    assert caller.clears == [] and caller.heard_ms == 0
    assert caller.errors == [] and caller.closed_by == "caller"


async def test_gateway_closing_the_call_is_recorded_and_ends_waits(gateway: FakeGateway) -> None:
    async with TwilioCaller(gateway.url, speed=10) as caller:
        side = await gateway.side()
        await side.ws.close(4000, "call over")
        await caller.wait_closed(timeout=2)
        with pytest.raises(CallEnded, match="closed by the gateway, code 4000"):
            await caller.wait_heard(100, timeout=2)
        with pytest.raises(CallEnded):
            await caller.press("1")
        frames = caller.frames_sent
    assert caller.closed and caller.closed_by == "gateway"
    assert (caller.close_code, caller.close_reason) == (4000, "call over")
    assert caller.closed_at is not None and caller.clock.now() == caller.closed_at
    assert caller.frames_sent == frames  # nothing more was sent
    assert caller.errors == []


async def test_a_failing_background_task_is_collected_and_ends_the_call(
    gateway: FakeGateway,
) -> None:
    async with TwilioCaller(gateway.url, speed=10) as caller:
        side = await gateway.side()

        def broken(name: str, now: float) -> list[MarkEcho]:
            raise RuntimeError("playout bug")

        caller.playout.mark = broken  # type: ignore[method-assign]
        await side.send_mark("boom")
        await caller.wait_closed(timeout=2)
    assert [str(e) for e in caller.errors] == ["playout bug"]
    assert caller.closed_by == "caller" and caller.close_code == 1011


# -- the playout and the clock, sans I/O ----------------------------------------------------------


def test_playout_queues_back_to_back_and_restarts_after_a_gap() -> None:
    playout = Playout()
    assert playout.media(b"\x01" * 800, now=1.0) == []  # 0.1 s from 1.0
    assert playout.media(b"\x02" * 800, now=1.05) == []  # behind it: 1.1 .. 1.2
    assert playout.mark("m", now=1.06) == []
    assert playout.heard_samples(1.15) == 1200
    assert playout.when_heard(1200) == pytest.approx(1.15)
    assert playout.advance(1.2) == [MarkEcho("m", pytest.approx(1.2))]
    playout.media(b"\x03" * 80, now=2.0)  # the queue ran dry at 1.2: this plays at 2.0
    playout.advance(3.0)
    assert [(s.start, len(s.audio)) for s in playout.heard] == [
        (1.0, 800), (pytest.approx(1.1), 800), (2.0, 80)
    ]


def test_playout_clear_cuts_to_the_sample_and_echoes_pending_marks() -> None:
    playout = Playout()
    playout.media(bytes(range(100)) * 16, now=0.0)  # 0.2 s
    playout.mark("a", now=0.0)
    playout.media(b"\x05" * 1600, now=0.0)
    playout.mark("b", now=0.0)
    assert playout.clear(0.05) == [MarkEcho("a", 0.05, True), MarkEcho("b", 0.05, True)]
    assert playout.heard == [HeardSegment(0.0, (bytes(range(100)) * 16)[:400], cut=True)]
    assert playout.next_deadline() is None and not playout.playing(0.05)
    assert playout.mark("c", now=0.06) == [MarkEcho("c", 0.06)]
    playout.media(b"\x07" * 160, now=0.1)
    playout.end(0.11)  # the call ends: cut, and nothing queued is echoed
    assert playout.heard[-1] == HeardSegment(0.1, b"\x07" * 80, cut=True)
    assert playout.mark("d", now=0.2) == []


def test_speech_frames_start_no_earlier_than_queued_and_run_back_to_back() -> None:
    speech = Speech()
    late = Utterance(b"\x01" * 200, queued_at=0.025)  # 5 ms into frame 1
    speech.say(late)
    speech.say(Utterance(b"\x02" * 10, queued_at=0.0))  # queued behind it
    assert speech.frame(0) == (SILENCE * 160, False)
    frame1, ended = speech.frame(1)
    assert frame1 == SILENCE * 40 + b"\x01" * 120 and not ended
    assert late.start == 0.025
    frame2, ended = speech.frame(2)
    assert frame2 == b"\x01" * 80 + b"\x02" * 10 + SILENCE * 70 and ended
    assert late.end == 0.05 and not speech
    assert speech.frame(3) == (SILENCE * 160, False)


def test_load_audio_reads_wav_and_raw_mulaw(tmp_path: Path) -> None:
    from gateway.audio.measure import to_pcm16
    from gateway.audio.measure import tone as sine

    wav_path = tmp_path / "hello.wav"
    with wave.open(str(wav_path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(to_pcm16(sine(300, 16000, 0.25)))
    assert len(load_audio(wav_path)) == 2000  # 250 ms at 8 kHz
    raw = tmp_path / "hello.ulaw"
    raw.write_bytes(tone(10))
    assert load_audio(raw) == tone(10)
    with pytest.raises(ValueError, match="expected a .wav"):
        load_audio(tmp_path / "hello.mp3")


def test_caller_clock_scales_and_freezes() -> None:
    now = [100.0]
    clock = CallerClock(speed=4, monotonic=lambda: now[0])
    assert clock.now() == 0.0
    clock.start()
    now[0] = 100.5
    assert clock.now() == 2.0
    assert clock.real_delay(3.0) == pytest.approx(0.25)
    clock.stop()
    now[0] = 200.0
    assert clock.now() == 2.0
    with pytest.raises(ValueError):
        CallerClock(speed=0)


# -- a whole call through the voice webhook -------------------------------------------------------


class Webhook(http.server.ThreadingHTTPServer):
    """A voice webhook that checks Twilio's signature and answers ``<Connect><Stream>``."""

    def __init__(self, stream_url: str) -> None:
        self.stream_url = stream_url
        self.forms: list[dict[str, str]] = []
        super().__init__(("127.0.0.1", 0), WebhookHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/voice"


class WebhookHandler(http.server.BaseHTTPRequestHandler):
    server: Webhook

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        form = dict(urllib.parse.parse_qsl(body))
        self.server.forms.append(form)
        signature = self.headers.get("X-Twilio-Signature", "")
        if not RequestValidator(AUTH_TOKEN).validate(self.server.url, form, signature):
            self.send_response(403)
            self.end_headers()
            self.wfile.write(b"bad signature")
            return
        response = VoiceResponse()
        connect = Connect()
        stream = Stream(url=self.server.stream_url)
        stream.parameter(name="from", value=form["From"])
        connect.append(stream)
        response.append(connect)
        payload = str(response).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


async def test_run_call_rings_the_webhook_follows_the_twiml_and_talks() -> None:
    greeting, answer, question = tone(200), tone(150, 0x40), tone(120, 0x30)

    async def agent(side: GatewaySide) -> None:
        await side.send_media(greeting)
        # Answer once the caller has spoken and stopped (like a VAD would).
        await side.wait(lambda: question in side.media_payloads())
        await side.send_media(answer)

    async with FakeGateway(agent) as gw:
        webhook = Webhook(gw.url)
        thread = threading.Thread(target=webhook.serve_forever, daemon=True)
        thread.start()
        try:
            caller = await run_call(
                webhook.url, auth_token=AUTH_TOKEN, audio=question, quiet_ms=200, speed=5
            )
            with pytest.raises(WebhookError) as refused:
                await fetch_twiml(webhook.url, {"CallSid": "CA1"}, auth_token="0" * 32)
        finally:
            webhook.shutdown()
            webhook.server_close()

    assert refused.value.status == 403
    form = webhook.forms[0]
    assert form["CallSid"] == caller.call_sid and form["AccountSid"] == caller.account_sid
    assert (form["CallStatus"], form["Direction"]) == ("ringing", "inbound")
    assert form["From"] == caller.from_
    assert caller.parameters == {"from": caller.from_}
    assert caller.heard_audio() == greeting + answer
    greeted, answered = caller.heard_segments()
    [said] = caller.utterances
    assert said.start is not None and said.start >= greeted.end + 0.2  # waited for the greeting
    assert answered.start >= said.end
    assert caller.closed_by == "caller" and caller.close_code == 1000
    assert_clean(caller, gw)
