"""The load generator: many simulated Twilio calls from one process, at real-time pace.

    python bench/caller.py PLAN.json RESULT.pickle     # then a line on stdin: go

A process of its own (``bench/load.py`` starts it pinned to the load core, and tells it to go
once the system under test is up: its imports never eat into the schedule). The plan says
where to call and when each call starts and hangs up, in seconds from a base instant this
process picks once it is told to go and prints (``{"base": ...}``, a ``time.monotonic()``
value): CLOCK_MONOTONIC is shared by every process on Linux, so the orchestrator, the gateway's
peers and this process all time the same run on one clock.

Each call does what Twilio does (the wire format is ``gateway.twilio``'s, the signatures
``gateway.security``'s):

- POSTs the signed voice webhook and reads the ``<Connect><Stream>`` of the TwiML answer
  (following a ``<Redirect>``, as Twilio does: a draining gateway turns new calls away with
  one, to another instance);
- opens the Media Stream with ``X-Twilio-Signature``, sends ``connected`` and ``start``
  (with the TwiML's parameters: the per-call token);
- sends a 160-byte mu-law ``media`` frame every 20 ms on absolute deadlines: frame ``k`` is
  due at ``t0 + (k + 1) * 20 ms``, ``t0`` being the instant ``start`` went out (the frame holds
  the audio of ``[k, k + 1) * 20 ms``, sent once it has been "spoken");
- plays the agent's audio as Twilio does (queued, at real time) and echoes each ``mark`` when
  the audio before it has played, at once on ``clear``;
- sends ``stop`` and closes at its hang-up time (or, with ``after_audio``, that many seconds
  after the greeting's first audio arrived: a call that only sets up, for bursts; or, with
  ``after_clear``, that many seconds after the first ``clear``: a barge-in call, for
  ``bench/bargein.py``).

At the first ``clear`` a call records when it arrived, the agent audio received by then, how
much of it had played (``played_ms_at_clear``: the playout model above, audio playing from
its arrival, back to back, 8 bytes a millisecond), and when its last mark echo before it was
due and actually went out (the gateway reckons what was heard from its echoes: an echo this
process sent late is the harness's error, not the gateway's). The audio received after it is
in ``rx_t`` / ``rx_bytes``. A call of the plan may carry its ``call_sid`` (and ``barge_in``,
the model server's business, kept in the record).

Two options of the plan, for a test that runs its own load (tests/test_rolling_deploy.py):
``"stop_file"``, a path: once it exists, calls not yet started are not placed (``skipped``), so
the test ends the load when it is done rather than at a time fixed in advance; and
``"gc_freeze": true``, the start-up heap frozen before the run (``gc.freeze()``, as the gateway
does: a full collection of it stalls every call of this process for some 100 ms).

Why not ``gateway.testing.caller.TwilioCaller``: it is built for exact per-call
assertions (every message parsed strictly and kept, three tasks and a playout model per call,
the ``websockets`` library's full machinery). Here one core must drive more calls than the
gateway can carry, next to the Realtime server, so the same protocol is spoken with the least
work per frame:

- the WebSocket is a minimal RFC 6455 client (``CallSocket``: text frames, masked, no
  extensions, as Twilio offers none) driven by asyncio callbacks: a frame from the gateway is
  handled, and a mark echoed, in the callback that read it, with no task switch;
- one scheduler task sends every call's frames and mark echoes from a heap of deadlines;
- the record is kept in flat arrays: ``sent``, the instant each caller frame actually went out
  (its due time is implied by ``t0``, so the generator's own lateness is measured, never
  blamed on the gateway), and ``rx_t`` / ``rx_bytes``, the arrival instant of each agent
  ``media`` message and the mu-law bytes received by then.

A lag probe records how late this process's event loop wakes up (a sleep of 10 ms that
oversleeps by ``x`` means every frame due then went out up to ``x`` late).
"""

from __future__ import annotations

import array
import asyncio
import base64
import cProfile
import gc
import hashlib
import heapq
import json
import os
import pickle
import random
import secrets
import sys
import time
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from websockets.frames import apply_mask  # noqa: E402  (the C speedup when built)

from gateway.audio import FRAME_BYTES, ULAW_SILENCE  # noqa: E402
from gateway.security import TwilioSignatures  # noqa: E402
from gateway.serving import masked_frame  # noqa: E402
from gateway.twilio import Connected, Mark, Media, MediaFormat, Start, Stop  # noqa: E402

FRAME_S = 0.020
SILENT_FRAME = bytes([ULAW_SILENCE]) * FRAME_BYTES
#: A caller frame as ``gateway.twilio.Media.to_json`` writes it (checked below), filled by ``%``:
#: the same text for a fraction of the cost, 50 times a second per call.
MEDIA_TEXT = ('{"event":"media","sequenceNumber":"%d","media":{"track":"inbound","chunk":"%d",'
              '"timestamp":"%d","payload":"' + base64.b64encode(SILENT_FRAME).decode() + '"},"streamSid":"%s"}')
assert MEDIA_TEXT % (7, 3, 40, "MZ1") == Media(7, "MZ1", "inbound", 3, 40, SILENT_FRAME).to_json()
USER_AGENT = "Twilio.TmeWs/1.0"
#: Twilio plays mu-law at 8000 bytes a second.
ULAW_BYTES_PER_S = 8000.0
#: Twilio follows a chain of ``<Redirect>``s; a loop is cut off here.
MAX_REDIRECTS = 5
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x8, 0x9, 0xA, 0x0


def b64_decoded_len(text: str) -> int:
    """Bytes encoded by a base64 string, without decoding it."""
    n = len(text)
    if n == 0:
        return 0
    return n // 4 * 3 - (text.endswith("==") + text.endswith("="))


@dataclass
class CallRecord:
    """What one call measured (``time.monotonic()`` seconds), handed over as a plain dict."""

    index: int
    group: str
    call_sid: str
    stream_sid: str
    planned_start: float
    planned_end: float
    after_audio: float | None = None  # hang up this long after the greeting's first audio
    after_clear: float | None = None  # hang up this long after the first `clear`
    barge_in: float | None = None  # the plan's barge-in (the model server sends speech_started)
    t_post: float | None = None  # webhook POST sent
    t_open: float | None = None  # WebSocket open
    t0: float | None = None  # `start` sent: the stream's time zero
    t_end: float | None = None  # `stop` sent (or the socket closed)
    first_audio: float | None = None  # first agent media frame arrived
    sent: array.array = field(default_factory=lambda: array.array("d"))
    rx_t: array.array = field(default_factory=lambda: array.array("d"))
    rx_bytes: array.array = field(default_factory=lambda: array.array("q"))
    marks: int = 0
    echoes: int = 0
    clears: int = 0
    t_clear: float | None = None  # the first `clear` arrived
    rx_bytes_at_clear: int | None = None  # agent audio received by then (mu-law bytes)
    played_ms_at_clear: float | None = None  # of which played by then (ms)
    last_echo_at_clear: tuple[float, float] | None = None  # the last mark echo before it: (due, sent)
    other: int = 0  # messages that are neither media, mark nor clear
    redirects: int = 0  # <Redirect>s followed before the TwiML with the stream
    skipped: bool = False  # not placed: the plan's stop file existed at its start time
    closed_by: str | None = None  # "caller" or "gateway"
    close_code: int | None = None
    error: str | None = None


class CallSocket(asyncio.Protocol):
    """Twilio's side of one Media Stream: a minimal WebSocket client plus the call's playout.

    ``data_received`` completes the handshake, then parses the gateway's frames and handles
    each message at once: ``media`` is timed and queued for playing, a ``mark`` is echoed when
    the audio before it has played (now, or by the scheduler later), ``clear`` empties the
    queue and echoes every pending mark.
    """

    def __init__(self, generator: Generator, record: CallRecord, host: str, path: str, headers: dict[str, str]):
        self.generator, self.record = generator, record
        self.transport: asyncio.Transport | None = None
        self._key = base64.b64encode(secrets.token_bytes(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {self._key}", "Sec-WebSocket-Version: 13", f"User-Agent: {USER_AGENT}",
                 *(f"{k}: {v}" for k, v in headers.items())]
        self._request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.heard: asyncio.Future[None] = loop.create_future()  # the first agent audio arrived
        self.cleared: asyncio.Future[None] = loop.create_future()  # the first `clear` arrived
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._open = False
        self.live = False  # streaming: frames due, marks echoed
        self.seq = 0
        self.k = 0  # next frame to send
        self.rx_total = 0
        self.queue_end = 0.0  # when the audio queued at "Twilio" stops playing
        self.pending: list[tuple[float, str]] = []  # marks waiting for their audio to play
        self.generation = 0  # bumped by `clear`: scheduled echoes of older marks are void
        self.last_echo: tuple[float, float] | None = None  # the last mark echo: (due, sent)

    # --- sending ---------------------------------------------------------------------------------

    def send_text(self, text: str) -> None:
        self._send_frame(TEXT, text.encode())

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("the Media Stream socket is closed")
        mask = random.getrandbits(32).to_bytes(4, "big")  # clients mask every frame (RFC 6455 5.3)
        self.transport.write(masked_frame(opcode, payload, mask))

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def send_mark(self, name: str) -> None:
        self.send_text(Mark(self.next_seq(), self.record.stream_sid, name).to_json())
        self.record.echoes += 1

    def echo_due(self, now: float) -> None:
        pending = self.pending
        while pending and pending[0][0] <= now:
            due, name = pending.pop(0)
            self.send_mark(name)
            self.last_echo = (due, time.monotonic())

    def close(self, code: int = 1000) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._send_frame(CLOSE, code.to_bytes(2, "big"))

    # --- receiving -------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self._request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buffer = self._buffer
        buffer += data
        if not self._open:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = buffer[:end].decode("latin-1").split("\r\n")
            del buffer[:end + 4]
            status = int(head[0].split()[1])
            accept = base64.b64encode(hashlib.sha1((self._key + WS_GUID).encode()).digest()).decode()
            if status != 101 or not any(h.lower() == f"sec-websocket-accept: {accept}".lower() for h in head):
                if not self.opened.done():
                    self.opened.set_exception(ConnectionError(f"handshake refused: {head[0]}"))
                self.transport.close()
                return
            self._open = True
            self.opened.set_result(None)
        pos, size = 0, len(buffer)
        while size - pos >= 2:
            b0, b1 = buffer[pos], buffer[pos + 1]
            n, start = b1 & 0x7F, pos + 2
            if n == 126:
                if size - pos < 4:
                    break
                n, start = int.from_bytes(buffer[pos + 2:pos + 4], "big"), pos + 4
            elif n == 127:
                if size - pos < 10:
                    break
                n, start = int.from_bytes(buffer[pos + 2:pos + 10], "big"), pos + 10
            mask = b1 & 0x80
            if mask:
                start += 4
            if size < start + n:
                break
            payload = bytes(buffer[start:start + n])
            if mask:
                payload = apply_mask(payload, bytes(buffer[start - 4:start]))
            pos = start + n
            self._frame(b0 & 0x80, b0 & 0x0F, payload, now)
        del buffer[:pos]

    def _frame(self, fin: int, opcode: int, payload: bytes, now: float) -> None:
        if opcode in (TEXT, CONTINUATION):
            self._fragments.append(payload)
            if fin:
                text, self._fragments = b"".join(self._fragments).decode(), []
                self._message(text, now)
        elif opcode == PING:
            self._send_frame(PONG, payload)
        elif opcode == CLOSE:
            self.record.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            if self.live:  # the gateway ended the call
                self.live = False
                self.record.closed_by = "gateway"
                self.record.t_end = now
            try:
                self._send_frame(CLOSE, payload[:2])
            except ConnectionError:
                pass
            self.transport.close()

    def _message(self, text: str, now: float) -> None:
        record = self.record
        message = json.loads(text)
        event = message.get("event")
        if event == "media":
            n = b64_decoded_len(message["media"]["payload"])
            self.rx_total += n
            record.rx_t.append(now)
            record.rx_bytes.append(self.rx_total)
            if record.first_audio is None:
                record.first_audio = now
                self.heard.set_result(None)
            self.queue_end = max(self.queue_end, now) + n / ULAW_BYTES_PER_S
        elif event == "mark":
            record.marks += 1
            name = message["mark"]["name"]
            if not self.live:
                return
            if self.queue_end <= now and not self.pending:
                self.send_mark(name)
                self.last_echo = (now, now)
            else:
                self.pending.append((self.queue_end, name))
                self.generator.schedule(self.queue_end, Generator.ECHO, self, self.generation)
        elif event == "clear":
            record.clears += 1
            if record.t_clear is None:
                record.t_clear, record.rx_bytes_at_clear = now, self.rx_total
                queued_s = max(0.0, self.queue_end - now)
                record.played_ms_at_clear = 1000 * (self.rx_total / ULAW_BYTES_PER_S - queued_s)
                record.last_echo_at_clear = self.last_echo
                self.cleared.set_result(None)
            self.queue_end = now
            self.generation += 1
            pending, self.pending = self.pending, []
            if self.live:
                for _, name in pending:
                    self.send_mark(name)
        else:
            record.other += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if self.live:
            self.live = False
            self.record.closed_by = "gateway"
            self.record.t_end = time.monotonic()
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)


class Generator:
    FRAME, ECHO = 0, 1

    def __init__(self, plan: dict[str, Any]) -> None:
        self.plan = plan
        self.webhook = plan["webhook"]
        self.signatures = TwilioSignatures(plan["auth_token"])
        self.records: list[CallRecord] = []
        self.heap: list[tuple[float, int, int, CallSocket, int]] = []  # (due, tiebreak, kind, call, generation)
        self._tiebreak = 0
        self._alarm: asyncio.Future[None] | None = None
        self._alarm_at = float("inf")
        self.lag = array.array("d")  # loop-lag probe: oversleep of each 10 ms sleep
        self.lag_t = array.array("d")
        self._stopping = False
        #: Resolved once the plan's stop file exists (calls waiting to start are not placed).
        self.stopped: asyncio.Future[None] | None = None

    # --- scheduling ------------------------------------------------------------------------------

    def schedule(self, due: float, kind: int, call: CallSocket, generation: int = 0) -> None:
        self._tiebreak += 1
        heapq.heappush(self.heap, (due, self._tiebreak, kind, call, generation))
        if due < self._alarm_at and self._alarm is not None and not self._alarm.done():
            self._alarm.set_result(None)  # the scheduler sleeps past this: wake it

    async def scheduler(self) -> None:
        """Send every due frame and mark echo, then sleep until the next deadline."""
        loop = asyncio.get_running_loop()
        heap = self.heap
        while not self._stopping:
            now = time.monotonic()
            while heap and heap[0][0] <= now:
                _, _, kind, call, generation = heapq.heappop(heap)
                if not call.live:
                    continue
                try:
                    if kind == self.FRAME:
                        self._send_frame(call)
                    elif generation == call.generation:
                        call.echo_due(time.monotonic())
                except ConnectionError:
                    call.live = False
                now = time.monotonic()
            self._alarm_at = heap[0][0] if heap else now + 0.05
            alarm = self._alarm = loop.create_future()
            handle = loop.call_at(self._alarm_at, _resolve, alarm)
            await alarm
            handle.cancel()

    def _send_frame(self, call: CallSocket) -> None:
        record, k = call.record, call.k
        call.send_text(MEDIA_TEXT % (call.next_seq(), k + 1, k * 20, record.stream_sid))
        record.sent.append(time.monotonic())
        call.k = k + 1
        self.schedule(record.t0 + (k + 2) * FRAME_S, self.FRAME, call)

    async def lag_probe(self) -> None:
        while not self._stopping:
            before = time.monotonic()
            await asyncio.sleep(0.010)
            after = time.monotonic()
            self.lag.append(after - before - 0.010)
            self.lag_t.append(after)

    # --- one call --------------------------------------------------------------------------------

    async def run_call(self, record: CallRecord) -> None:
        await _sleep_until(record.planned_start, until=self.stopped)
        call: CallSocket | None = None
        if self.stopped is not None and self.stopped.done():
            record.skipped = True
            return
        account = self.plan["account_sid"]
        try:
            record.t_post = time.monotonic()
            form = webhook_form(record.call_sid, account)
            twiml = await self.fetch_twiml(record, form)
            url, parameters = parse_stream_twiml(twiml)
            parts = urllib.parse.urlsplit(url)
            headers = {"X-Twilio-Signature": self.signatures.sign(url, {})}
            call = CallSocket(self, record, parts.netloc, parts.path or "/", headers)
            await asyncio.get_running_loop().create_connection(lambda: call, parts.hostname, parts.port or 80)
            await asyncio.wait_for(call.opened, 30)
            record.t_open = time.monotonic()
            call.send_text(Connected("Call", "1.0.0").to_json())
            call.send_text(Start(call.next_seq(), record.stream_sid, account, record.call_sid, ("inbound",),
                                 parameters, MediaFormat("audio/x-mulaw", 8000, 1)).to_json())
            record.t0 = time.monotonic()
            call.live = True
            self.schedule(record.t0 + FRAME_S, self.FRAME, call)
            if record.after_audio is not None:  # a short call: hang up once the greeting plays
                await _sleep_until(record.planned_end, until=call.heard)
                if record.first_audio is not None:
                    end = min(record.planned_end, record.first_audio + record.after_audio)
                    await _sleep_until(end, until=call.closed)
            if record.after_clear is not None:  # a barge-in call: hang up a while after the clear
                await _sleep_until(record.planned_end, until=call.cleared)
                if record.t_clear is not None:
                    end = min(record.planned_end, record.t_clear + record.after_clear)
                    await _sleep_until(end, until=call.closed)
            await _sleep_until(record.planned_end, until=call.closed)
            if call.live:  # still up: the caller hangs up
                call.live = False
                record.t_end = time.monotonic()
                record.closed_by = "caller"
                call.send_text(Stop(call.next_seq(), record.stream_sid, account, record.call_sid).to_json())
                call.close(1000)
            await asyncio.wait_for(asyncio.shield(call.closed), 10)
        except Exception as exc:  # noqa: BLE001  recorded, never raised: one failed call must not end the run
            record.error = f"{type(exc).__name__}: {exc}"
        finally:
            if call is not None:
                call.live = False
                if call.transport is not None:
                    call.transport.close()

    async def fetch_twiml(self, record: CallRecord, form: dict[str, str]) -> str:
        """The voice webhook's TwiML, after the ``<Redirect>``s it leads to (each fetched as
        Twilio does: POSTed, signed over the new URL, with the call's form)."""
        url = self.webhook
        for _ in range(MAX_REDIRECTS + 1):
            twiml = await post_form(url, form, self.signatures.sign(url, form))
            target = redirect_target(twiml, url)
            if target is None:
                return twiml
            record.redirects += 1
            url = target
        raise ValueError(f"more than {MAX_REDIRECTS} <Redirect>s in a row")

    # --- the run ---------------------------------------------------------------------------------

    async def run(self) -> None:
        # Plan times are relative to a base a little after this process is told to go; the
        # orchestrator learns the base from the first line of output.
        base = time.monotonic() + self.plan.get("base_offset", 1.0)
        for i, spec in enumerate(self.plan["calls"]):
            self.records.append(CallRecord(
                index=i, group=spec.get("group", "load"), call_sid=spec.get("call_sid") or new_sid("CA"),
                stream_sid=new_sid("MZ"), planned_start=base + spec["start"], planned_end=base + spec["end"],
                after_audio=spec.get("after_audio"), after_clear=spec.get("after_clear"),
                barge_in=spec.get("barge_in")))
        print(json.dumps({"base": base}), flush=True)
        scheduler = asyncio.create_task(self.scheduler())
        probe = asyncio.create_task(self.lag_probe())
        watcher = None
        if self.plan.get("stop_file"):
            self.stopped = asyncio.get_running_loop().create_future()
            watcher = asyncio.create_task(self.watch_stop_file(self.plan["stop_file"], self.stopped))
        await asyncio.gather(*(self.run_call(r) for r in self.records))
        if watcher is not None:
            watcher.cancel()
        self._stopping = True
        if self._alarm is not None and not self._alarm.done():
            self._alarm.set_result(None)
        await asyncio.gather(scheduler, probe, return_exceptions=True)

    @staticmethod
    async def watch_stop_file(path: str, stopped: asyncio.Future[None]) -> None:
        """Resolve ``stopped`` once ``path`` exists (looked at ten times a second)."""
        while not os.path.exists(path):
            await asyncio.sleep(0.1)
        stopped.set_result(None)


async def post_form(url: str, form: dict[str, str], signature: str) -> str:
    """POST a form over HTTP/1.1 with asyncio streams and return the body (a tiny client: a
    thread pool would take the GIL from the frame scheduler)."""
    parts = urllib.parse.urlsplit(url)
    body = urllib.parse.urlencode(form).encode()
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
    try:
        head = (f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\nUser-Agent: TwilioProxy/1.1\r\n"
                f"X-Twilio-Signature: {signature}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n")
        writer.write(head.encode() + body)
        status_line = await reader.readline()
        status = int(status_line.split()[1])
        length = None
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        text = (await (reader.readexactly(length) if length is not None else reader.read())).decode()
        if status != 200:
            raise RuntimeError(f"voice webhook answered HTTP {status}: {text[:200]!r}")
        return text
    finally:
        writer.close()


def parse_stream_twiml(twiml: str) -> tuple[str, dict[str, str]]:
    """The ``<Connect><Stream url>`` of a TwiML answer and its ``<Parameter>``s, as
    ``gateway.testing.caller.twiml`` reads it (kept here with the least work per call)."""
    stream = ET.fromstring(twiml).find("./Connect/Stream")
    if stream is None or not stream.get("url"):
        raise ValueError(f"no <Connect><Stream url> in the TwiML: {twiml[:200]!r}")
    return stream.get("url", ""), {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}


def redirect_target(twiml: str, url: str) -> str | None:
    """Where a TwiML answer that is only a ``<Redirect>`` (POST) sends the call, resolved
    against the URL that answered it; None for any other answer."""
    root = ET.fromstring(twiml)
    redirect = root.find("./Redirect")
    if redirect is None or root.find("./Connect/Stream") is not None:
        return None
    if redirect.get("method", "POST").upper() != "POST":
        raise ValueError(f"a <Redirect> with method {redirect.get('method')!r}: only POST is simulated")
    return urllib.parse.urljoin(url, (redirect.text or "").strip())


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def webhook_form(call_sid: str, account_sid: str) -> dict[str, str]:
    """The main fields of Twilio's incoming-call webhook."""
    return {"AccountSid": account_sid, "ApiVersion": "2010-04-01", "CallSid": call_sid, "CallStatus": "ringing",
            "Called": "+15555550199", "Caller": "+15555550100", "Direction": "inbound", "From": "+15555550100",
            "To": "+15555550199"}


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _sleep_until(t: float, until: asyncio.Future[None] | None = None) -> None:
    """Sleep until monotonic ``t`` (or until ``until`` is done, if given)."""
    delay = t - time.monotonic()
    if delay <= 0:
        return
    if until is None:
        await asyncio.sleep(delay)
    else:
        await asyncio.wait([until], timeout=delay)


def main() -> None:
    plan_path, out_path = sys.argv[1], sys.argv[2]
    plan = json.loads(Path(plan_path).read_text())
    generator = Generator(plan)
    if plan.get("gc_freeze"):
        gc.collect()
        gc.freeze()
    sys.stdin.readline()  # "go": the system under test is up
    profile = os.environ.get("BENCH_PROFILE")  # a pstats file: where this process's CPU goes
    profiler = cProfile.Profile(time.process_time) if profile else None
    if profiler is not None:
        profiler.enable()
    asyncio.run(generator.run())
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    # Plain dicts, so that the orchestrator needs no class of this script to read them.
    calls = [{f.name: getattr(r, f.name) for f in fields(r)} for r in generator.records]
    result = {"calls": calls, "lag": generator.lag, "lag_t": generator.lag_t}
    Path(out_path).write_bytes(pickle.dumps(result))


if __name__ == "__main__":
    main()
